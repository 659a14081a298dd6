"""The training engines: update rules against plain loops, memory independence, errors, learning."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fptt import FPTT, SpikingRNN, detach_state, evaluate, train_epoch
from fptt.memory import per_update
from fptt.training.engine import loss_weights, window_bounds


class GRUModel(nn.Module):
    """A user's own stateful model: a GRU cell and a linear readout (two-method protocol)."""

    def __init__(self, input_size: int, hidden: int, output_size: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(input_size, hidden)
        self.head = nn.Linear(hidden, output_size)
        self.hidden = hidden
        self.output_size = output_size

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden, device=device, dtype=dtype)

    def step(self, x, h):
        h = self.cell(x, h)
        return self.head(h), h


def _classification_batch(batch=4, steps=12, features=3, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, steps, features, generator=generator, dtype=torch.float64) * 2
    y = torch.randint(0, classes, (batch,), generator=generator)
    return x, y


def _spiking_model(seed=0, features=3, classes=5):
    torch.manual_seed(seed)
    return SpikingRNN(features, [8, 6], classes, neuron="ltc", initial_membrane="zero").double()


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_loss_weights_follow_the_three_schemes():
    assert loss_weights(4, "linear") == [0.25, 0.5, 0.75, 1.0]
    assert loss_weights(3, "uniform") == [1.0, 1.0, 1.0]
    assert loss_weights(3, "last") == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="weighting"):
        loss_weights(3, "quadratic")


def test_window_bounds_cover_the_sequence_once():
    assert window_bounds(10, k=4) == [(0, 4), (4, 8), (8, 10)]
    assert window_bounds(10, update_points=2) == [(0, 5), (5, 10)]
    assert window_bounds(3) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="cannot exceed"):
        window_bounds(5, k=6)
    with pytest.raises(ValueError, match="either"):
        window_bounds(5, k=1, update_points=2)


@pytest.mark.parametrize("k, steps", [(1, 12), (3, 12), (7, 300)])  # 300: windows across input blocks
def test_fptt_engine_equals_a_plain_loop_of_windowed_updates(k, steps):
    x, y = _classification_batch(steps=steps)
    model = _spiking_model()
    reference = copy.deepcopy(model)
    optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), alpha=0.3, beta=0.4)
    reference_optimizer = FPTT(torch.optim.Adam(reference.parameters(), lr=1e-2), alpha=0.3, beta=0.4)

    torch.manual_seed(1)
    train_epoch(model, [(x, y)], optimizer, method="fptt", k=k)

    torch.manual_seed(1)
    state = reference.init_state(x.shape[0])
    for start in range(0, steps, k):
        state = detach_state(state)
        loss = 0.0
        stop = min(start + k, steps)
        for t in range(start, stop):
            output, state = reference.step(x[:, t], state)
            loss = loss + (t + 1) / steps * F.cross_entropy(output, y)
        reference_optimizer.zero_grad()
        (loss / (stop - start)).backward()
        reference_optimizer.step()

    for trained, expected in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(trained, expected, rtol=1e-10, atol=1e-12)


def test_bptt_engine_takes_one_step_on_the_whole_sequence_loss():
    x, y = _classification_batch()
    model = _spiking_model()
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)

    torch.manual_seed(1)
    metrics = train_epoch(model, [(x, y)], optimizer, method="bptt", weighting="uniform")
    assert metrics.updates == 1

    torch.manual_seed(1)
    outputs = reference(x)
    loss = sum(F.cross_entropy(outputs[:, t], y) for t in range(x.shape[1])) / x.shape[1]
    reference_optimizer.zero_grad()
    loss.backward()
    reference_optimizer.step()
    for trained, expected in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(trained, expected, rtol=1e-10, atol=1e-12)


def test_tbptt_gradients_do_not_cross_window_boundaries():
    """With lr = 0 nothing changes, so the first window's gradient must equal the gradient of
    the first window's loss alone; a leak across the boundary would change the second one."""
    x, y = _classification_batch(steps=8)
    model = _spiking_model()
    grads = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    original_step = optimizer.step

    def recording_step(*args, **kwargs):
        grads.append([p.grad.clone() for p in model.parameters()])
        return original_step(*args, **kwargs)

    optimizer.step = recording_step
    torch.manual_seed(1)
    train_epoch(model, [(x, y)], optimizer, method="tbptt", k=4, weighting="uniform")
    assert len(grads) == 2

    torch.manual_seed(1)
    state = model.init_state(x.shape[0])
    for t in range(4):
        _, state = model.step(x[:, t], state)
    state = detach_state(state)
    loss = 0.0
    for t in range(4, 8):
        output, state = model.step(x[:, t], state)
        loss = loss + F.cross_entropy(output, y)
    model.zero_grad()
    (loss / 4).backward()
    for recorded, parameter in zip(grads[1], model.parameters()):
        torch.testing.assert_close(recorded, parameter.grad)


def _saved_bytes_per_update(method: str, steps: int, k=None) -> int:
    torch.manual_seed(0)
    model = SpikingRNN(2, 16, 3)
    x = torch.rand(4, steps, 2)
    y = torch.randint(0, 3, (4,))
    inner = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer = FPTT(inner) if method == "fptt" else inner
    with per_update(optimizer) as meter:
        train_epoch(model, [(x, y)], optimizer, method=method, k=k)
    return meter.peak


def test_saved_bytes_per_update_do_not_grow_with_length_in_fptt_and_grow_linearly_in_bptt():
    fptt_bytes = [_saved_bytes_per_update("fptt", steps) for steps in (10, 40, 160)]
    fptt_window_bytes = [_saved_bytes_per_update("fptt", steps, k=5) for steps in (10, 40, 160)]
    bptt_bytes = [_saved_bytes_per_update("bptt", steps) for steps in (10, 40, 160)]
    assert fptt_bytes[0] > 0
    assert fptt_bytes[0] == fptt_bytes[1] == fptt_bytes[2]
    assert fptt_window_bytes[0] == fptt_window_bytes[1] == fptt_window_bytes[2]
    # a 5-step window keeps about five steps' worth, never the whole sequence
    assert 4 * fptt_bytes[0] < fptt_window_bytes[0] < 6 * fptt_bytes[0]
    per_step = (bptt_bytes[2] - bptt_bytes[1]) / 120
    assert per_step == pytest.approx((bptt_bytes[1] - bptt_bytes[0]) / 30, rel=0.01)
    assert per_step == pytest.approx(fptt_bytes[0], rel=0.25)


@pytest.mark.parametrize("method", ["fptt", "bptt", "tbptt", "online"])
def test_every_method_trains_a_users_own_stateful_model(method):
    torch.manual_seed(0)
    model = GRUModel(3, 8, 5)
    x, y = _classification_batch(batch=8)
    x = x.float()
    inner = torch.optim.Adam(model.parameters(), lr=1e-2)
    optimizer = FPTT(inner) if method == "fptt" else inner
    before = _params(model)
    metrics = train_epoch(model, [(x, y)] * 2, optimizer, method=method, k=4 if method == "tbptt" else None)
    assert metrics.samples == 16 and metrics.batches == 2
    assert metrics.accuracy is not None and 0.0 <= metrics.accuracy <= 1.0
    assert metrics.firing_rate is None  # a GRU has no spikes to report
    expected_updates = {"fptt": 24, "bptt": 2, "tbptt": 6, "online": 24}[method]
    assert metrics.updates == expected_updates
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_last_weighting_updates_only_on_the_final_window():
    x, y = _classification_batch(steps=6)
    model = _spiking_model()
    metrics = train_epoch(model, [(x, y)], FPTT(torch.optim.SGD(model.parameters(), lr=0.1)), weighting="last")
    assert metrics.updates == 1


def test_regression_with_per_step_targets_reports_mse():
    torch.manual_seed(0)
    model = SpikingRNN(2, 8, 1).double()
    x = torch.rand(4, 10, 2, dtype=torch.float64)
    y = torch.rand(4, 10, dtype=torch.float64)
    metrics = train_epoch(model, [(x, y)], FPTT(torch.optim.Adam(model.parameters())), per_step_targets=True)
    assert metrics.accuracy is None and metrics.mse is not None and metrics.mse >= 0
    result = evaluate(model, [(x, y)], per_step_targets=True)
    assert result.mse is not None and result.updates == 0


def test_evaluate_does_not_change_parameters_or_mode():
    x, y = _classification_batch()
    model = _spiking_model()
    before = _params(model)
    model.train()
    metrics = evaluate(model, [(x, y)])
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert metrics.samples == 4 and metrics.firing_rate is not None


def _plain_step_outputs(model, x):
    """(T, batch, classes): the model's output at every step, by a plain loop."""
    state = model.init_state(x.shape[0], dtype=x.dtype)
    outputs = []
    for t in range(x.shape[1]):
        output, state = model.step(x[:, t], state)
        outputs.append(output)
    return torch.stack(outputs)


def test_decode_mean_scores_the_mean_of_the_steps_class_probabilities():
    x, y = _classification_batch(batch=6, steps=9)
    model = _spiking_model().eval()
    with torch.no_grad():
        outputs = _plain_step_outputs(model, x)
    mixture = outputs.softmax(dim=-1).mean(dim=0)  # (1/T) Σ_t softmax(y_t), written plainly
    last, mean = evaluate(model, [(x, y)]), evaluate(model, [(x, y)], decode="mean")
    assert last.loss == pytest.approx(float(F.cross_entropy(outputs[-1], y)), rel=1e-9)
    assert last.accuracy == pytest.approx(float((outputs[-1].argmax(-1) == y).double().mean()))
    assert mean.loss == pytest.approx(float(F.nll_loss(mixture.log(), y)), rel=1e-9)
    assert mean.accuracy == pytest.approx(float((mixture.argmax(-1) == y).double().mean()))
    assert mean.loss != pytest.approx(last.loss)  # the two decodings score different things here
    assert mean.firing_rate == pytest.approx(last.firing_rate)


def test_decode_mean_does_not_underflow_on_confident_steps():
    class Confident(nn.Module):
        """Scores of ±200: softmax underflows to 0 for the losing classes in float32."""

        def init_state(self, batch_size, device=None, dtype=None):
            return torch.zeros(batch_size, dtype=dtype)

        def step(self, x, state):
            return 200.0 * torch.stack([x[:, 0], -x[:, 0]], dim=-1), state

    x = torch.ones(2, 5, 1)
    y = torch.tensor([1, 1])  # the class every step is sure against
    model = Confident()
    model.register_parameter("unused", nn.Parameter(torch.zeros(1)))
    metrics = evaluate(model, [(x, y)], decode="mean")
    assert metrics.loss == pytest.approx(400.0, rel=1e-4) and metrics.accuracy == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"decode": "max"}, "decode must be one of last, mean"),
    ({"decode": "mean", "per_step_targets": True}, "one label per sequence"),
])
def test_bad_decodings_raise_clear_errors(kwargs, message):
    x, y = _classification_batch()
    with pytest.raises(ValueError, match=message):
        evaluate(_spiking_model(), [(x, y)], **kwargs)


def test_decode_mean_refuses_a_regression_loader():
    model = SpikingRNN(2, 8, 1).double()
    x, y = torch.rand(4, 10, 2, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="mse task"):
        evaluate(model, [(x, y)], decode="mean")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"method": "rtrl"}, ValueError, "unknown method"),
        ({"method": "fptt", "plain": True}, TypeError, "needs an FPTT optimizer"),
        ({"method": "bptt"}, TypeError, "plain inner optimizer"),
        ({"method": "fptt", "k": 50}, ValueError, "cannot exceed"),
        ({"method": "online", "k": 4, "plain": True}, ValueError, "k = 1"),
        ({"method": "fptt", "clip_grad_norm": 1.0}, ValueError, "clip_grad_norm=c"),
        ({"method": "fptt", "loss": "hinge"}, ValueError, "unknown loss"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    x, y = _classification_batch()
    model = _spiking_model()
    kwargs = dict(kwargs)
    plain = kwargs.pop("plain", False)
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer = inner if plain else FPTT(inner)
    with pytest.raises(error, match=message):
        train_epoch(model, [(x, y)], optimizer, **kwargs)


def test_bad_batches_raise_clear_errors():
    model = _spiking_model()
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    x, y = _classification_batch()
    with pytest.raises(ValueError, match="labels must lie in"):
        train_epoch(model, [(x, y + 10)], optimizer)
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        train_epoch(model, [(x[:, :, 0], y)], optimizer)
    with pytest.raises(ValueError, match="batch size"):
        train_epoch(model, [(x, y[:2])], optimizer)
    with pytest.raises(ValueError, match="no batches"):
        train_epoch(model, [], optimizer)
    with pytest.raises(TypeError, match="stateful-model protocol"):
        train_epoch(nn.Linear(3, 5), [(x, y)], optimizer)


def test_a_nan_input_is_refused_with_a_message_naming_the_batch():
    """A NaN input can silence neurons (NaN > threshold is False) and give a finite, wrong loss,
    so inputs are checked explicitly."""
    model = _spiking_model()
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    x, y = _classification_batch()
    poisoned = x.clone()
    poisoned[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="batch 1 contain NaN"):
        train_epoch(model, [(x, y), (poisoned, y)], optimizer)
    with pytest.raises(ValueError, match="batch 0 contain NaN"):
        evaluate(model, [(poisoned, y)])


def test_a_nan_loss_stops_training_with_a_message_naming_the_batch():
    model = _spiking_model()
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    x, y = _classification_batch()
    with torch.no_grad():
        model.readout.weight.bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss in batch 0"):
        train_epoch(model, [(x, y)], optimizer)


def _adding_batches(steps: int, batches: int, batch: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(batches):
        values = torch.rand(batch, steps, generator=generator)
        markers = torch.zeros(batch, steps)
        first = torch.randint(0, steps // 2, (batch,), generator=generator)
        second = torch.randint(steps // 2, steps, (batch,), generator=generator)
        markers[torch.arange(batch), first] = 1.0
        markers[torch.arange(batch), second] = 1.0
        data.append((torch.stack([values, markers], dim=-1), (values * markers).sum(dim=1)))
    return data


@pytest.mark.slow
def test_fptt_learns_the_adding_task_below_the_trivial_baseline():
    """T = 50, LTC network read out from its membrane, FPTT at every step: 15,000 updates (lr × 0.3 per epoch) bring
    the held-out MSE well below the 0.167 of always answering 1.0 (seen: 0.933 -> 0.111)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same float rounding on every machine, so the same trajectory
    try:
        _train_adding_task_and_check()
    finally:
        torch.set_num_threads(threads)


def _train_adding_task_and_check():
    torch.manual_seed(0)
    steps = 50
    model = SpikingRNN(2, 32, 1, neuron="ltc", readout_from="membrane")
    optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=5e-3), alpha=0.5, beta=0.5)
    train = _adding_batches(steps, 100, 32, seed=1)
    test = _adding_batches(steps, 2, 256, seed=2)
    before = evaluate(model, test).mse
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.3)
    for _ in range(3):
        metrics = train_epoch(model, train, optimizer, method="fptt", k=1)
        scheduler.step()
    assert metrics.updates == 100 * steps
    result = evaluate(model, test)
    print("adding task T=50 held-out MSE", before, "->", result.mse)
    assert result.mse < 0.75 * 0.167 < before, (before, result)
    with optimizer.averaged():
        assert evaluate(model, test).mse < 0.75 * 0.167


@pytest.mark.parametrize("batch, message", [
    ((torch.zeros(2, 3, 3), torch.zeros(2, dtype=torch.long), torch.tensor([3, 2])), "variable-length"),
    ((torch.zeros(2, 3, 3),), "pair \\(x, y\\)"),
    (torch.zeros(2, 3, 3), "pair \\(x, y\\)"),
])
def test_batches_that_are_not_pairs_are_refused_with_what_was_received(batch, message):
    model = _spiking_model()
    optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2))
    with pytest.raises(ValueError, match=message):
        train_epoch(model, [batch], optimizer)
    with pytest.raises(ValueError, match=message):
        evaluate(model, [batch])
