"""OnlineLearner: bounded memory over long streams, per-stream resets, exact resume."""
from __future__ import annotations

import io
import math

import pytest
import torch

from fptt import FPTT, SpikingRNN
from fptt.bench import SavedTensorMeter
from fptt.training.streaming import OnlineLearner


def _learner(k: int = 1, seed: int = 0, streams: int = 3) -> OnlineLearner:
    torch.manual_seed(seed)
    # the exact paths: under the default fused="auto" a stream longer than FUSE_AFTER_STEPS switches
    # to the compiled kernels once, which keep another (constant) set of tensors
    model = SpikingRNN(2, 12, 4, initial_membrane="zero", fused=False)
    optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), fused=False)
    return OnlineLearner(model, optimizer, loss="cross_entropy", k=k, batch_size=streams, history=50)


def _stream(steps: int, streams: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    xs = torch.rand(steps, streams, 2, generator=generator) * 2
    ys = torch.randint(0, 4, (steps, streams), generator=generator)
    return xs, ys


def test_saved_bytes_per_update_stay_constant_over_ten_thousand_steps():
    learner = _learner()
    xs, ys = _stream(10_000)
    per_update = []
    with SavedTensorMeter() as meter:
        for t in range(10_000):
            learner.observe(xs[t], ys[t])
            if t in (9, 999, 9_999):
                per_update.append(meter.reset())
            else:
                meter.reset()
    assert per_update[0] > 0
    assert per_update[0] == per_update[1] == per_update[2]
    assert learner.updates == 10_000
    assert len(learner.history) == 50  # a ring buffer, not an ever-growing list


def test_updates_happen_once_per_window_that_saw_a_target():
    learner = _learner(k=4)
    xs, ys = _stream(12)
    for t in range(12):
        learner.observe(xs[t], ys[t] if t >= 8 else None)
    assert learner.updates == 1  # windows 0-3 and 4-7 had no target
    assert learner.at_window_boundary


def test_reset_streams_restarts_only_the_masked_streams():
    learner = _learner()
    xs, ys = _stream(20)
    for t in range(20):
        learner.observe(xs[t], ys[t])
    before = [t.clone() for t in (learner.state.layers[0].membrane, learner.state.readout)]
    learner.reset_streams(torch.tensor([False, True, False]))
    fresh = learner.model.init_state(3)
    after = (learner.state.layers[0].membrane, learner.state.readout)
    for old, new, initial in zip(before, after, (fresh.layers[0].membrane, fresh.readout)):
        assert torch.equal(new[0], old[0]) and torch.equal(new[2], old[2])
        assert torch.equal(new[1], initial[1])
    assert not torch.equal(before[0][1], after[0][1])


def test_learner_state_round_trip_continues_identically():
    xs, ys = _stream(60)
    reference = _learner(seed=3)
    for t in range(60):
        expected = reference.observe(xs[t], ys[t])

    first = _learner(seed=3)
    for t in range(30):
        first.observe(xs[t], ys[t])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = _learner(seed=99)  # different initial weights: everything must come from the file
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for t in range(30, 60):
        output = resumed.observe(xs[t], ys[t])
    assert torch.equal(output, expected)
    for a, b in zip(resumed.model.parameters(), reference.model.parameters()):
        assert torch.equal(a, b)
    assert resumed.steps == reference.steps == 60


def test_saving_in_the_middle_of_a_window_is_refused():
    learner = _learner(k=5)
    xs, ys = _stream(3)
    for t in range(3):
        learner.observe(xs[t], ys[t])
    with pytest.raises(RuntimeError, match="window boundary"):
        learner.state_dict()


def test_target_mask_counts_only_the_selected_streams():
    learner = _learner()
    xs, ys = _stream(2)
    learner.observe(xs[0], ys[0], target_mask=torch.tensor([False, False, False]))
    assert learner.updates == 0
    learner.observe(xs[1], ys[1], target_mask=torch.tensor([True, False, False]))
    assert learner.updates == 1


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="k must be"):
        _learner(k=0)
    learner = _learner()
    with pytest.raises(ValueError, match=r"x_t must have shape \(3, features\)"):
        learner.observe(torch.rand(2, 2))
    with pytest.raises(ValueError, match="mask must have shape"):
        learner.reset_streams(torch.tensor([True]))
    with pytest.raises(ValueError, match="unknown loss"):
        OnlineLearner(learner.model, learner.optimizer, loss="hinge", batch_size=3)


def test_the_drifting_mnist_stream_runs_and_writes_its_figures(tmp_path):
    from fptt.cli.stream import run_stream

    result = run_stream(steps=392, streams=2, hidden=8, drift_at=0.5, log_every_digits=1, progress=False, out=tmp_path)
    assert result["updates"] == 392
    assert [point["drifted"] for point in result["curve"]] == [False, True]
    assert (tmp_path / "stream.json").is_file() and (tmp_path / "stream.png").is_file()
    with pytest.raises(ValueError, match="drift_at"):
        run_stream(steps=392, drift_at=2.0, progress=False)


def test_the_stream_holds_out_the_validation_digits_of_fptt_train_and_scores_them(tmp_path):
    """The stream's digits are `fptt train --task smnist --downsample 14 --validation-samples N`'s
    training part, its validation draw is never streamed, and the held-out score is the trainer's
    evaluation of W̄ on that draw (fresh state per digit) after the stream's updates."""
    from torch.utils.data import DataLoader

    from fptt.cli.stream import run_stream, stream_digits
    from fptt.run.build import build_dataset
    from fptt.run.config import resolve_config
    from fptt.run.trainer import evaluation_rng
    from fptt.training.engine import evaluate

    config = resolve_config({}, {"task": "smnist", "downsample": 14, "validation_samples": 0})
    pixels, labels, held_out = stream_digits(config, 40)
    train = build_dataset(config.updated(validation_samples=40), "train")
    validation = build_dataset(config.updated(validation_samples=40), "validation")
    assert len(pixels) == len(train) == len(build_dataset(config, "train")) - 40 and len(held_out) == 40
    assert torch.equal(pixels, torch.stack([train[i][0][:, 0] for i in range(len(train))]))
    assert torch.equal(labels, torch.tensor([train[i][1] for i in range(len(train))]))
    assert [int(held_out[i][1]) for i in range(40)] == [int(validation[i][1]) for i in range(40)]
    assert stream_digits(config, 0)[2] is None and len(stream_digits(config, 0)[0]) == len(train) + 40

    result = run_stream(steps=392, streams=2, hidden=8, log_every_digits=1, progress=False, out=tmp_path,
                        validation_samples=40, eval_every=196, schedule="cosine", checkpoint_every=392, ema_decay=0.5)
    assert [point["step"] for point in result["held_out"]] == [196, 392]
    assert [point["digits"] for point in result["held_out"]] == [2, 4]
    assert result["held_out_accuracy"] == result["held_out"][-1]["accuracy"]
    assert result["config"]["validation_samples"] == 40
    # the end of the stream rescored from its checkpoint: W̄ on the held-out digits, as the stream scored it
    from fptt.run.build import build_model, build_optimizer
    from fptt.run.checkpoint import load_checkpoint

    saved = load_checkpoint(tmp_path / "checkpoint_last.pt")
    assert saved["steps"] == 392
    model_config = resolve_config({}, {"task": "smnist", "hidden_sizes": [8], "method": "fptt", "fused": False})
    model = build_model(model_config, 1, 10)
    optimizer = build_optimizer(model_config, model)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    with optimizer.averaged(), evaluation_rng(0, torch.device("cpu")):
        again = evaluate(model, DataLoader(held_out, batch_size=256))
    assert again.accuracy == result["held_out_accuracy"] and again.loss == pytest.approx(result["held_out"][-1]["loss"])
    # and W_ema (ema_decay), saved as a plain state_dict: what the stream scored as accuracy_ema
    model.load_state_dict(saved["stream"]["model_ema"])
    with evaluation_rng(0, torch.device("cpu")):
        again = evaluate(model, DataLoader(held_out, batch_size=256))
    assert again.accuracy == result["held_out_accuracy_ema"] == result["held_out"][-1]["accuracy_ema"]
    assert any(not torch.equal(saved["stream"]["model_ema"][name], value) for name, value in saved["model"].items())
    with pytest.raises(ValueError, match=r"ema_decay must lie in \(0, 1\)"):
        run_stream(steps=196, ema_decay=1.0, progress=False)


def test_the_stream_schedule_anneals_the_lr_once_per_update_and_reset_restarts_every_digit(monkeypatch):
    from fptt.cli.stream import run_stream
    from fptt.training.streaming import OnlineLearner

    resets, lrs = [], []
    reset = OnlineLearner.reset_streams

    def counted(self, mask):
        resets.append((self.steps, int(mask.sum())))
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return reset(self, mask)

    monkeypatch.setattr(OnlineLearner, "reset_streams", counted)
    run_stream(steps=588, streams=2, hidden=8, k=2, progress=False, validation_samples=0, schedule="cosine",
               reset_each_digit=True, lr=1e-2)
    assert [steps for steps, _ in resets] == [196, 392] and all(count == 2 for _, count in resets)
    # cosine over ceil(588 / 2) = 294 updates: update n uses lr · (1 + cos(π (n - 1) / 294)) / 2; at each
    # digit boundary the lr is the one its last update (n = 98, 196) used
    assert lrs == pytest.approx([1e-2 * (1 + math.cos(math.pi * (n - 1) / 294)) / 2 for n in (98, 196)])
    with pytest.raises(ValueError, match="schedule must be one of"):
        run_stream(steps=196, schedule="linear", progress=False)
    with pytest.raises(ValueError, match="eval_every must be a positive int"):
        run_stream(steps=196, eval_every=0, progress=False)


def test_the_stream_runs_with_the_smnist_preset_regime():
    from fptt.cli.stream import run_stream

    result = run_stream(steps=196, streams=2, hidden=8, log_every_digits=1, progress=False, preset="paper")
    assert result["updates"] == 196 and result["config"]["preset"] == "paper"


def test_step_weight_scales_the_update_and_must_not_be_negative():
    torch.manual_seed(0)
    model = SpikingRNN(2, 6, 4, initial_membrane="zero")
    deltas = []
    xs, ys = _stream(2)
    for weight in (1.0, 0.25):
        trained = SpikingRNN(2, 6, 4, initial_membrane="zero")
        trained.load_state_dict(model.state_dict())
        learner = OnlineLearner(trained, torch.optim.SGD(trained.parameters(), lr=0.1), k=2, batch_size=3)
        before = [p.detach().clone() for p in trained.parameters()]
        learner.observe(xs[0], ys[0], weight=weight)
        learner.observe(xs[1], ys[1], weight=weight)
        deltas.append([p.detach() - b for p, b in zip(trained.parameters(), before)])
    assert any(d.abs().sum() > 0 for d in deltas[0])
    for full, quarter in zip(*deltas):  # plain SGD: the update is linear in the loss
        torch.testing.assert_close(quarter, 0.25 * full)
    with pytest.raises(ValueError, match="weight must be a non-negative"):
        learner.observe(xs[0], ys[0], weight=-1.0)


def test_state_dict_saves_and_restores_the_rng_of_a_cuda_learners_device(monkeypatch):
    """Reset streams draw their initial membranes on the learner's device: on CUDA that device's
    generator is saved and restored with the CPU's (checked without a GPU: the device calls are
    recorded)."""
    learner = _learner()
    calls = []
    saved = torch.tensor([7, 8, 9], dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", state, device)))
    state = learner.state_dict()
    assert state["device_rng"] is None and calls == []  # a CPU learner has no device generator
    learner.device = torch.device("cuda", 0)  # what a learner on a GPU holds (only the RNG code reads it here)
    state = learner.state_dict()
    assert state["device_rng"] is saved and calls == [("get", torch.device("cuda", 0))]
    learner.device = torch.device("cpu")
    learner.load_state_dict(state)  # a CPU learner ignores a saved device generator
    assert len(calls) == 1
    learner.device = torch.device("cuda", 0)
    # the network state would move to the (absent) GPU: keep it where it is for this check
    monkeypatch.setattr("fptt.training.streaming.map_state", lambda function, tree: tree)
    learner.load_state_dict(state)
    assert calls[-1] == ("set", saved, torch.device("cuda", 0))
