"""Trainer, checkpoints, config files and plots, in process (the CLI is tested in test_cli.py)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from fptt import FPTT
from fptt.run.build import load_run
from fptt.run.checkpoint import BEST, LAST, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from fptt.run.config import ConfigError, TrainConfig, load_config_file, resolve_config
from fptt.run.trainer import Trainer

TIMING_KEYS = {"seconds", "peak_memory_mb"}


def _tiny(**overrides) -> TrainConfig:
    values = dict(task="add", seq_len=12, train_samples=64, test_samples=32, batch_size=16, hidden=[8],
                  epochs=2, max_batches=2, plots=False, schedule_unit="epoch")
    values.update(overrides)
    return resolve_config({}, values)


def _without_timing(rows):
    return [{key: ({k: v for k, v in value.items() if k not in TIMING_KEYS} if isinstance(value, dict) else value)
             for key, value in row.items() if key != "resumed_at_batch"} for row in rows]


def _assert_same_state(first: dict, second: dict) -> None:
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name
    assert (first.get("model_ema") is None) == (second.get("model_ema") is None)
    for name, tensor in (first.get("model_ema") or {}).items():
        assert torch.equal(tensor, second["model_ema"][name]), name
    averages_a = first["optimizer"].get("fptt", {}).get("state", {})
    averages_b = second["optimizer"].get("fptt", {}).get("state", {})
    assert averages_a.keys() == averages_b.keys()
    for index in averages_a:
        for key in ("average", "lambda"):
            assert torch.equal(averages_a[index][key], averages_b[index][key])


@pytest.mark.parametrize("method,eval_with", [("fptt", "average"), ("bptt", "average"), ("fptt", "ema"),
                                              ("bptt", "ema")])
def test_one_epoch_plus_resume_equals_two_epochs(tmp_path, method, eval_with):
    common = dict(method=method, schedule="step", milestones=[1], eval_with=eval_with)
    straight = Trainer(_tiny(**common), tmp_path / "a", log=None).fit()
    Trainer(_tiny(**common, epochs=1), tmp_path / "b", log=None).fit()
    config = TrainConfig.from_dict({**json.loads((tmp_path / "b" / "config.json").read_text()), "epochs": 2})
    resumed = Trainer(config, tmp_path / "b", resume=True, log=None).fit()
    assert straight["epochs_completed"] == resumed["epochs_completed"] == 2
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert _without_timing(rows_a) == _without_timing(rows_b)
    assert rows_a[1]["lr"] == pytest.approx(rows_a[0]["lr"] * 0.1)  # the scheduler resumed too
    _assert_same_state(load_checkpoint(tmp_path / "a" / LAST), load_checkpoint(tmp_path / "b" / LAST))


@pytest.mark.parametrize("eval_with", ["average", "ema"])
def test_interruption_mid_epoch_resumes_at_the_next_batch(tmp_path, eval_with):
    config = _tiny(epochs=1, max_batches=4, eval_with=eval_with)
    Trainer(config, tmp_path / "a", log=None).fit()

    interrupted = Trainer(_tiny(epochs=1, max_batches=4, eval_with=eval_with), tmp_path / "b", log=None)
    original = interrupted.train_loader

    def loader_that_stops_after_two(epoch):
        loader = original(epoch)

        class Stopping:
            def __len__(self):
                return len(loader)

            def __iter__(self):
                for index, batch in enumerate(loader):
                    if index == 2:
                        interrupted.stop_requested = True
                    yield batch

        return Stopping()

    interrupted.train_loader = loader_that_stops_after_two
    summary = interrupted.fit()
    assert summary["interrupted"] and summary["epochs_completed"] == 0
    checkpoint = load_checkpoint(tmp_path / "b" / LAST)
    assert (checkpoint["epoch"], checkpoint["batches_done"]) == (0, 2)
    resumed = Trainer(TrainConfig.from_dict(checkpoint["config"]), tmp_path / "b", resume=True, log=None).fit()
    assert resumed["epochs_completed"] == 1 and not resumed["interrupted"]
    _assert_same_state(load_checkpoint(tmp_path / "a" / LAST), load_checkpoint(tmp_path / "b" / LAST))
    assert resumed["last"]["resumed_at_batch"] == 2


@pytest.mark.parametrize("method", ["fptt", "bptt"])
def test_the_moving_average_is_updated_once_per_batch_and_is_what_the_run_selects_on(tmp_path, monkeypatch, method):
    from fptt.optim.weight_average import WeightEMA

    updates = []
    original = WeightEMA.update
    monkeypatch.setattr(WeightEMA, "update", lambda self: (updates.append(1), original(self))[1])
    trainer = Trainer(_tiny(method=method, eval_with="ema", ema_decay=0.5, epochs=2, max_batches=3, eval_every=2),
                      tmp_path, log=None)
    trainer.fit()
    assert len(updates) == 2 * 3  # after every batch, the epoch's last one included
    points = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert points and all(point["ema"] is not None and point["weights"] is not None for point in points)
    assert all((point["average"] is not None) == (method == "fptt") for point in points)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["eval_with"] for row in rows] == ["ema", "ema"]
    assert rows[-1]["eval"]["mse"] == pytest.approx(trainer.evaluate(with_="ema").mse, rel=1e-6)
    assert rows[-1]["eval"]["mse"] != pytest.approx(trainer.evaluate(with_="weights").mse, rel=1e-6)


def test_evaluating_with_a_moving_average_the_run_does_not_keep_is_refused(tmp_path):
    trainer = Trainer(_tiny(epochs=1), tmp_path, log=None)
    with pytest.raises(ValueError, match="--eval-with ema"):
        trainer.evaluate(with_="ema")


def test_checkpoint_is_weights_only_and_holds_fptt_state(tmp_path):
    Trainer(_tiny(epochs=1), tmp_path, log=None).fit()
    payload = torch.load(tmp_path / LAST, weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config", "history"} <= set(payload)
    assert payload["optimizer"]["fptt"]["state"], "FPTT's W̄ and λ are in the optimizer state"
    assert (tmp_path / BEST).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs_completed"] == 1 and summary["last"]["eval"]["mse"] is not None


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    target = save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}, "value": torch.ones(2)})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError, match="found Unpicklable"):  # refused before anything is written
        save_checkpoint(target, {"model": {}, "config": {}, "value": Unpicklable()})
    assert torch.equal(load_checkpoint(target)["value"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_rng_state_round_trip():
    state = get_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_evaluation_with_average_or_weights(tmp_path):
    trainer = Trainer(_tiny(epochs=1, load_average_each_epoch=False), tmp_path, log=None)
    trainer.fit()
    assert isinstance(trainer.optimizer, FPTT)
    torch.manual_seed(0)
    with_average = trainer.evaluate(with_="average").loss
    torch.manual_seed(0)
    with_weights = trainer.evaluate(with_="weights").loss
    assert with_average != with_weights
    _, model, optimizer, payload = load_run(tmp_path)
    assert payload["epoch"] == 1 and isinstance(optimizer, FPTT)


@pytest.mark.parametrize("method", ["tbptt", "online"])
def test_other_methods_train(tmp_path, method):
    summary = Trainer(_tiny(method=method, epochs=1, k=None if method == "online" else 3, clip=1.0),
                      tmp_path, log=None).fit()
    assert summary["last"]["train"]["updates"] > 2


def test_config_precedence_file_then_flags(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("task: add\nhidden: [8, 4]\nepochs: 3\nbatch-size: 32\n")
    toml_file = tmp_path / "run.toml"
    toml_file.write_text('[train]\ntask = "add"\nlr = 0.01\nepochs = 5\n')
    config = resolve_config(load_config_file(yaml_file), {"epochs": 1})
    assert (config.hidden_sizes, config.epochs, config.batch_size, config.readout_from) == ((8, 4), 1, 32, "membrane")
    assert resolve_config(load_config_file(toml_file), {}).lr == 0.01


def test_unknown_config_key_names_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: add\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="hidden"):
        resolve_config({"hidden": [0]}, {})


def test_plots_and_recorded_time_constants(tmp_path):
    pytest.importorskip("matplotlib")
    from fptt import SpikingRNN
    from fptt.run.plots import plot_learning_curves, plot_spike_raster, plot_time_constants, record_activity

    torch.manual_seed(0)
    model = SpikingRNN(2, [6, 5], 1)
    x = torch.rand(9, 2)
    activity = record_activity(model, x)
    assert activity["spikes"][0].shape == (9, 6) and activity["spikes"][1].shape == (9, 5)
    rates = activity["membrane_rate"][0]
    assert rates.shape == (9, 6) and bool(((rates > 0) & (rates < 1)).all())
    torch.manual_seed(1)  # the same initial membrane: recorded spikes equal the model's own steps
    activity = record_activity(model, x)
    torch.manual_seed(1)
    state = model.init_state(1)
    for t in range(9):
        _, state = model.step(x[t : t + 1], state)
        assert torch.equal(state.layers[1].spikes[0], activity["spikes"][1][t])
    rows = [{"epoch": 1, "train": {"loss": 1.0}, "eval": {"loss": 1.1, "accuracy": 0.2}},
            {"epoch": 2, "train": {"loss": 0.5}, "eval": {"loss": 0.7, "accuracy": 0.4}}]
    for path in (plot_learning_curves({"FPTT": rows, "BPTT": rows}, tmp_path / "curves.png"),
                 plot_spike_raster(model, x, tmp_path / "raster.png"),
                 plot_time_constants(model, x, tmp_path / "tau.png")):
        assert path.stat().st_size > 1000


def test_mnist_tasks_decay_the_learning_rate_by_default_and_flags_override_it():
    from fptt.run.config import resolve_config

    assert resolve_config({}, {"task": "smnist"}).schedule == "step"
    assert resolve_config({}, {"task": "psmnist"}).schedule == "step"
    add = resolve_config({}, {"task": "add"})
    assert (add.schedule, add.schedule_unit) == ("cosine", "batch")
    assert resolve_config({"schedule": "cosine"}, {"task": "smnist"}).schedule == "cosine"
    assert resolve_config({}, {"task": "smnist", "schedule": "none"}).schedule == "none"


# ------------------------------------------------------------------ presets, learning curves, stop_at
def test_preset_values_sit_between_task_defaults_and_the_config_file():
    from fptt.run.presets import PRESETS, TASK_DEFAULTS, preset_values

    plain = resolve_config({}, {"task": "add"})
    assert plain.preset is None and plain.epochs == TASK_DEFAULTS["add"]["epochs"]
    paper = resolve_config({}, {"task": "add", "preset": "paper"})
    assert paper.preset == "paper" and paper.train_samples == PRESETS["paper"]["add"]["train_samples"]
    assert (paper.fixed_threshold, paper.baseline_threshold, paper.initial_membrane, paper.readout) == (
        True, 0.5, "zero", "linear")
    from_file = resolve_config({"preset": "paper", "alpha": 0.3}, {"task": "add"})
    assert from_file.alpha == 0.3, "a config file overrides the preset"
    flagged = resolve_config({"alpha": 0.3}, {"task": "add", "preset": "paper", "alpha": 0.2})
    assert flagged.alpha == 0.2, "explicit flags override everything"
    assert preset_values("paper", "add") is not preset_values("paper", "add")
    with pytest.raises(ConfigError, match="no setting for task"):
        resolve_config({}, {"task": "mnist1d", "preset": "paper"})
    with pytest.raises(ValueError, match="unknown preset"):
        preset_values("best", "add")


@pytest.mark.parametrize("method", ["fptt", "bptt", "tbptt", "online"])
def test_every_method_runs_on_the_adding_preset(tmp_path, method):
    config = resolve_config({}, {"task": "add", "preset": "paper", "method": method, "seq_len": 20,
                                 "hidden": [8], "batch_size": 8, "max_batches": 2, "test_samples": 16,
                                 "plots": False})
    assert config.update_points == (None if method == "online" else 10)
    summary = Trainer(config, tmp_path / method, log=None).fit()
    assert summary["epochs_completed"] == 1


def test_an_explicit_window_replaces_the_presets_window():
    config = resolve_config({}, {"task": "add", "preset": "paper", "k": 5})
    assert (config.k, config.update_points) == (5, None)


@pytest.mark.parametrize("task", ["smnist", "psmnist"])
def test_mnist_paper_preset_builds_the_reference_network(task):
    from fptt.run.build import build_model

    config = resolve_config({}, {"task": task, "preset": "paper"})
    model = build_model(config, 1, 10)
    assert model.hidden_sizes == (256, 256) and config.batch_size == 512 and config.optimizer == "adamax"
    assert config.milestones == (10, 30, 50, 75, 90) and config.k == 1
    layer = model.layers[0]
    assert layer.membrane_slope is not None and float(layer.input_norm.weight.detach()[0]) == pytest.approx(0.1)


def test_learning_curve_records_weights_and_average_every_n_batches(tmp_path):
    config = _tiny(epochs=2, max_batches=4, eval_every=2)
    trainer = Trainer(config, tmp_path / "run", log=None)
    trainer.fit()
    points = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()]
    assert [p["batch"] for p in points] == [2, 4, 6, 8]
    assert all(p["metric"] == "mse" and p["weights"] >= 0 and p["average"] >= 0 for p in points)
    assert points[1]["weights"] != points[1]["average"], "W and W̄ differ during training"
    # the epoch-end point reuses nothing stale: the average it reports is the epoch's evaluation
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert points[1]["average"] == pytest.approx(rows[0]["eval"]["mse"], rel=1e-6)
    assert load_checkpoint(tmp_path / "run" / LAST)["curve"] == points


def test_stop_at_ends_the_run_once_the_target_is_met(tmp_path):
    config = _tiny(epochs=3, max_batches=4, eval_every=1, stop_at=10.0)  # any MSE meets it
    summary = Trainer(config, tmp_path / "run", log=None).fit()
    points = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()]
    assert summary["epochs_completed"] == 1 and not summary["interrupted"]
    assert [p["batch"] for p in points] == [1], "stopped at the first point that met the target"
    never = Trainer(_tiny(epochs=2, max_batches=2, eval_every=1, stop_at=0.0), tmp_path / "b", log=None).fit()
    assert never["epochs_completed"] == 2


def test_a_per_batch_schedule_steps_after_every_batch_and_resumes_exactly(tmp_path):
    import math

    config = _tiny(epochs=2, max_batches=4, schedule="cosine", schedule_unit="batch", checkpoint_every=1)
    straight = Trainer(config, tmp_path / "a", log=None)
    straight.fit()
    assert straight.scheduler.last_epoch == 8  # 2 epochs x 4 batches
    lr = straight.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.0, abs=1e-12)  # cosine to 0 over the 8 batches
    interrupted = Trainer(config, tmp_path / "b", log=None)
    calls = {"n": 0}
    original = interrupted._between_batches

    def stop_after_three(epoch, done):
        original(epoch, done)
        calls["n"] += 1
        if calls["n"] == 3:  # after batch 3 of epoch 1: lr = 3e-3 (1 + cos(3π/8)) / 2
            assert interrupted.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * (1 + math.cos(3 * math.pi / 8)) / 2)
            interrupted.stop_requested = True

    interrupted._between_batches = stop_after_three
    assert interrupted.fit()["interrupted"]
    resumed = Trainer(config, tmp_path / "b", resume=True, log=None).fit()
    assert resumed["epochs_completed"] == 2
    _assert_same_state(load_checkpoint(tmp_path / "a" / LAST), load_checkpoint(tmp_path / "b" / LAST))


def test_the_averaged_model_loads_into_a_fresh_model_without_the_optimizer(tmp_path):
    from fptt.run.build import build_model, load_model

    trainer = Trainer(_tiny(epochs=1, load_average_each_epoch=False), tmp_path / "run", log=None)
    trainer.fit()
    average = trainer.optimizer.averaged_state_dict(trainer.model)
    assert any(not torch.equal(average[name], value) for name, value in trainer.model.state_dict().items()), \
        "W̄ differs from W after training without the end-of-epoch copy"
    config, model, payload, used = load_model(tmp_path / "run")
    assert used == "average" and payload["model_average"] is not None
    for name, value in model.state_dict().items():
        assert torch.equal(value, average[name]), name
    _, weights_model, _, used = load_model(tmp_path / "run", weights="weights")
    assert used == "weights" and all(torch.equal(v, trainer.model.state_dict()[n])
                                     for n, v in weights_model.state_dict().items())
    # an older checkpoint without model_average: rebuilt from the optimizer's state
    checkpoint = load_checkpoint(tmp_path / "run" / LAST)
    checkpoint.pop("model_average")
    save_checkpoint(tmp_path / "old.pt", checkpoint)
    _, old_model, _, used = load_model(tmp_path / "old.pt")
    assert used == "average" and all(torch.equal(v, average[n]) for n, v in old_model.state_dict().items())
    fresh = build_model(config, 2, 1)
    fresh.load_state_dict(average)  # a plain state_dict, no optimizer involved


# ---------------------------------------------------------------------------------- the protocol
def test_validation_count_rule():
    from fptt.spec.rules import validation_count

    assert [validation_count("auto", n) for n in (9, 10, 64, 4000, 60_000)] == [0, 1, 6, 400, 1000]
    assert validation_count(0, 100) == 0 and validation_count(7, 100) == 7
    for bad in (-1, 2.5, True, "some"):
        with pytest.raises(ValueError, match="validation_samples"):
            validation_count(bad, 100)


def test_selection_is_on_validation_and_test_is_read_once_at_the_end(tmp_path):
    from fptt.run.records import read_test_reads

    trainer = Trainer(_tiny(eval_every=None), tmp_path / "run", log=None)
    assert trainer.config.validation_samples == 6 and len(trainer.eval_set) == 6 and len(trainer.train_set) == 58
    held_out = set(trainer.eval_set.indices)
    assert held_out.isdisjoint(trainer.train_set.indices)  # nothing trained on is validated on
    reads: list[str] = []
    original = trainer.evaluate

    def counting(dataset=None, with_=None):
        reads.append("validation" if dataset is None else "test")
        return original(dataset, with_)

    trainer.evaluate = counting
    summary = trainer.fit()
    assert reads == ["validation", "validation", "test"]  # one per epoch, then test once
    assert [row["eval_split"] for row in trainer.history] == ["validation"] * 2
    assert summary["best_split"] == "validation" and summary["test"]["split"] == "test"
    assert summary["test"]["samples"] == 32 and summary["test_reads"] == 1
    assert [read["by"] for read in read_test_reads(tmp_path / "run")] == ["fptt train"]
    # resuming the finished run trains nothing and does not read test again
    again = Trainer(trainer.config, tmp_path / "run", resume=True, log=None).fit()
    assert again["test"] == summary["test"] and len(read_test_reads(tmp_path / "run")) == 1


def test_no_read_test_never_loads_the_test_split_and_a_resume_may_read_it_later(tmp_path, monkeypatch):
    """A tuning run (``read_test=False``) finishes without building or scoring the test split; resuming the
    finished run with ``read_test=True`` reads it once, and a further resume does not read it again."""
    from fptt.run import trainer as trainer_module
    from fptt.run.records import read_test_reads

    built: list[str] = []
    original_build = trainer_module.build_dataset

    def recording(config, split):
        built.append(split)
        return original_build(config, split)

    monkeypatch.setattr(trainer_module, "build_dataset", recording)
    summary = Trainer(_tiny(eval_every=None, read_test=False), tmp_path / "search", log=None).fit()
    assert "test" not in built and summary["test"] is None and summary["test_reads"] == 0
    assert read_test_reads(tmp_path / "search") == [] and summary["best_split"] == "validation"
    config = _tiny(eval_every=None, read_test=True)
    later = Trainer(config, tmp_path / "search", resume=True, log=None).fit()
    assert built.count("test") == 1 and later["test"]["split"] == "test" and later["test_reads"] == 1
    assert Trainer(config, tmp_path / "search", resume=True, log=None).fit()["test_reads"] == 1


def test_an_interrupted_run_reads_no_test_and_no_validation_means_no_per_epoch_evaluation(tmp_path):
    from fptt.run.records import read_test_reads

    trainer = Trainer(_tiny(epochs=3), tmp_path / "stopped", log=None)
    trainer.stop_requested = True  # as if Ctrl-C came before the first batch ended
    summary = trainer.fit()
    assert summary["interrupted"] and summary["test"] is None and read_test_reads(tmp_path / "stopped") == []

    plain = Trainer(_tiny(validation_samples=0, eval_every=None), tmp_path / "plain", log=None)
    assert plain.eval_set is None and len(plain.train_set) == 64
    summary = plain.fit()
    assert all("eval" not in row for row in plain.history) and summary["best_score"] is None
    assert not (tmp_path / "plain" / BEST).exists() and summary["test_reads"] == 1
    with pytest.raises(ConfigError, match="validation split"):
        Trainer(_tiny(validation_samples=0, eval_every=1), tmp_path / "curve", log=None)
