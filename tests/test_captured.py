"""The captured update (fptt.training.captured) against the eager update of the same engine.

Each comparison trains two identical networks on the same batches, one eagerly and one with
``capture=True``, in float64, and checks every tensor an update writes: the parameters, FPTT's W̄
and λ, and the inner optimizer's moments and step counts. Compiling is the slow part (seconds per
graph), so each test compiles few graphs and checks several behaviours on them.
"""
from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from torch import nn

from fptt.models import SpikingRNN
from fptt.models.baselines import RecurrentBaseline
from fptt.optim import FPTT
from fptt.training.captured import CapturedUpdate, capture_unsupported_reason, captured_update_for
from fptt.training.engine import train_epoch


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _batches(seed: int, count: int, batch: int, steps: int, features: int, classes: int) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, steps, features, generator=generator),
             torch.randint(0, classes, (batch,), generator=generator)) for _ in range(count)]


def _optimizer_tensors(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[torch.Tensor]:
    """Every tensor an update writes, in a fixed order: parameters, W̄, λ, the inner state."""
    inner = optimizer.optimizer if isinstance(optimizer, FPTT) else optimizer
    out = []
    for p in model.parameters():
        out.append(p.detach())
        if isinstance(optimizer, FPTT):
            out += [optimizer._fptt_state[p]["average"], optimizer._fptt_state[p]["lambda"]]
        out += [v.reshape(-1).to(torch.float64) for _, v in sorted(inner.state[p].items())]
    return out


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor], tolerance: float = 1e-10) -> None:
    assert len(a) == len(b)
    worst = max(float((x.detach().to(y.device) - y.detach()).abs().max()) for x, y in zip(a, b))
    assert worst <= tolerance, f"captured and eager updates differ by {worst:.3e}"


def _train(model, optimizer, batches, epochs: int, seed: int, **kwargs):
    metrics = []
    for epoch in range(epochs):
        torch.manual_seed(seed + epoch)  # the random initial membranes of each batch
        metrics.append(train_epoch(model, batches, optimizer, **kwargs))
    return metrics


def _ltc(seed: int = 0):
    torch.manual_seed(seed)
    model = SpikingRNN(3, 24, 5, neuron="ltc", fused=False)
    return model, FPTT(torch.optim.Adamax(model.parameters(), lr=5e-3), alpha=0.1, beta=0.5, clip_grad_norm=0.05,
                       fused=False)


def test_captured_fptt_update_equals_the_eager_one_over_200_updates_with_clipping_and_resumes():
    batches = _batches(1, 4, 8, 25, 3, 5)  # 4 batches x 25 steps x 2 epochs = 200 updates at k = 1
    eager_model, eager_opt = _ltc()
    captured_model, captured_opt = _ltc()
    eager = _train(eager_model, eager_opt, batches, 2, 10, method="fptt", k=1)
    captured = _train(captured_model, captured_opt, batches, 2, 10, method="fptt", k=1, capture=True)
    assert captured_update_for(captured_model, captured_opt, True, "fptt").failed is None  # it really ran captured
    _assert_same(_optimizer_tensors(eager_opt, eager_model), _optimizer_tensors(captured_opt, captured_model))
    for e, c in zip(eager, captured):
        assert c.updates == e.updates == 100
        assert c.loss == pytest.approx(e.loss, rel=1e-9)
        assert c.accuracy == pytest.approx(e.accuracy)
        assert c.firing_rate == pytest.approx(e.firing_rate, rel=1e-9)
    # the state lives where eager training keeps it: a fresh eager optimizer loaded from the captured
    # run's checkpoint continues exactly as the captured run does
    fresh_model, fresh_opt = _ltc(seed=3)
    fresh_model.load_state_dict(captured_model.state_dict())
    fresh_opt.load_state_dict(copy.deepcopy(captured_opt.state_dict()))  # as a checkpoint file: no shared tensors
    _train(captured_model, captured_opt, batches[:2], 1, 20, method="fptt", k=1, capture=True)
    _train(fresh_model, fresh_opt, batches[:2], 1, 20, method="fptt", k=1)
    _assert_same(_optimizer_tensors(fresh_opt, fresh_model), _optimizer_tensors(captured_opt, captured_model))


def _regression_lif(seed: int = 0):
    torch.manual_seed(seed)
    model = SpikingRNN(2, 16, 1, neuron="lif")
    return model, FPTT(torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3), alpha=0.2, beta=0.3,
                       fused=False)


def _regression_batches(bad_batch: int) -> list:
    generator = torch.Generator().manual_seed(4)
    batches = [(torch.rand(6, 12, 2, generator=generator), torch.rand(6, generator=generator)) for _ in range(3)]
    batches[bad_batch][1][0] = float("inf")  # an infinite target: every update of that batch is non-finite
    return batches


def test_captured_update_follows_both_nonfinite_policies_like_the_eager_one():
    batches = _regression_batches(bad_batch=1)
    eager_model, eager_opt = _regression_lif()
    captured_model, captured_opt = _regression_lif()
    with pytest.warns(RuntimeWarning, match="skipped"):
        (eager,) = _train(eager_model, eager_opt, batches, 1, 0, method="fptt", k=1, on_nonfinite="skip")
    with pytest.warns(RuntimeWarning, match="skipped"):
        (captured,) = _train(captured_model, captured_opt, batches, 1, 0, method="fptt", k=1, on_nonfinite="skip",
                             capture=True)
    assert captured.skipped_updates == eager.skipped_updates == 12
    assert captured.updates == eager.updates == 24
    assert captured.extra["first_skipped"] == eager.extra["first_skipped"] == "batch 1, time steps 0..0"
    _assert_same(_optimizer_tensors(eager_opt, eager_model), _optimizer_tensors(captured_opt, captured_model))

    messages = []
    for capture in (False, True):
        model, optimizer = _regression_lif()
        with pytest.raises(FloatingPointError) as error:
            _train(model, optimizer, batches, 1, 0, method="fptt", k=1, capture=capture)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "batch 1 at update 1" in messages[1]


def _gru(seed: int = 0):
    torch.manual_seed(seed)
    model = RecurrentBaseline(3, 12, 4, cell="gru")
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.1, nesterov=False)


def test_captured_plain_optimizer_update_equals_eager_with_windows_a_shorter_last_window_and_clipping():
    batches = _batches(2, 3, 5, 10, 3, 4)  # k = 3 over 10 steps: windows of 3, 3, 3 and 1 (a second graph)
    eager_model, eager_opt = _gru()
    captured_model, captured_opt = _gru()
    kwargs = dict(method="tbptt", k=3, clip_grad_norm=0.2, weighting="uniform")
    eager = _train(eager_model, eager_opt, batches, 2, 0, **kwargs)
    captured = _train(captured_model, captured_opt, batches, 2, 0, capture=True, **kwargs)
    _assert_same(_optimizer_tensors(eager_opt, eager_model), _optimizer_tensors(captured_opt, captured_model))
    assert [m.updates for m in captured] == [m.updates for m in eager] == [12, 12]


class _HostSyncModel(nn.Module):
    """A stateful model whose step reads a value on the host (``.item()``): it cannot be one graph."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(2, 8)
        self.readout = nn.Linear(8, 3)

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, 8, device=device, dtype=dtype)

    def step(self, x_t, state):
        state = self.cell(x_t, state)
        if state.abs().max().item() > 1e6:  # a host sync with data-dependent control flow
            state = state.clamp(-1e6, 1e6)
        return self.readout(state), state


def test_a_model_that_does_not_capture_falls_back_to_the_eager_update_with_one_log_line(caplog):
    batches = _batches(3, 2, 4, 6, 2, 3)
    results = []
    for capture in (False, True):
        torch.manual_seed(0)
        model = _HostSyncModel()
        optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), fused=False)
        with caplog.at_level(logging.WARNING, logger="fptt"):
            _train(model, optimizer, batches, 2, 0, method="fptt", k=1, capture=capture)
        results.append(_optimizer_tensors(optimizer, model))
    _assert_same(results[0], results[1], tolerance=0.0)
    lines = [r.getMessage() for r in caplog.records if "captured update is off" in r.getMessage()]
    assert len(lines) == 1, lines


def test_setups_that_cannot_be_captured_are_named_before_compiling():
    model, fptt = _ltc()
    assert capture_unsupported_reason(model, fptt, "fptt") is None
    assert "method='bptt'" in capture_unsupported_reason(model, fptt.optimizer, "bptt")
    assert "method='eprop'" in capture_unsupported_reason(model, fptt.optimizer, "eprop")
    assert "RMSprop" in capture_unsupported_reason(model, torch.optim.RMSprop(model.parameters()), "online")
    assert "amsgrad" in capture_unsupported_reason(model, torch.optim.Adam(model.parameters(), amsgrad=True), "tbptt")
    model.set_gradient_sync = lambda sync: None  # what DistributedModel offers
    assert "data-parallel" in capture_unsupported_reason(model, fptt, "fptt")
    with pytest.raises(ValueError, match="capture must be True, False or 'auto'"):
        train_epoch(model, _batches(0, 1, 2, 2, 3, 5), fptt, capture="always")


def test_auto_capture_waits_for_its_planned_steps():
    model, fptt = _ltc()
    captured = CapturedUpdate(model, fptt, "auto", after=10)
    assert [captured.use(4) for _ in range(4)] == [False, False, False, True]
    assert CapturedUpdate(model, fptt, True).use(1) is True
    assert CapturedUpdate(model, fptt, False).use(1) is False
    broken = CapturedUpdate(model, fptt, True)
    broken.give_up("a reason")
    assert broken.use(1) is False and broken.failed == "a reason"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_update_on_cuda_agrees_with_the_eager_one_in_float32():
    """On CUDA the captured update is also replayed as a CUDA graph; float32, 200 updates. Spikes make
    the two runs' paths split where a rounding difference flips one, so the check is on the first
    25 updates (1e-4, relative to the weights' scale) and on finite, learning runs after 200."""
    torch.set_default_dtype(torch.float32)
    device = torch.device("cuda")
    batches = [(x.float().to(device), y.to(device)) for x, y in _batches(1, 4, 16, 25, 3, 5)]
    results = []
    for capture in (False, True):
        model, optimizer = _ltc()
        model = model.float().to(device)
        optimizer = FPTT(torch.optim.Adamax(model.parameters(), lr=5e-3), alpha=0.1, beta=0.5, clip_grad_norm=0.05,
                         fused=False)
        first = _train(model, optimizer, batches[:1][:1], 1, 10, method="fptt", k=1, capture=capture)
        snapshot = [t.detach().clone() for t in _optimizer_tensors(optimizer, model)]
        later = _train(model, optimizer, batches, 2, 20, method="fptt", k=1, capture=capture)
        results.append((snapshot, first, later, model, optimizer))
    _assert_same(results[0][0], results[1][0], tolerance=1e-4)
    assert captured_update_for(results[1][3], results[1][4], True, "fptt").failed is None
    assert all(torch.isfinite(t).all() for t in _optimizer_tensors(results[1][4], results[1][3]))
    assert results[1][2][-1].loss < results[1][1][0].loss * 1.5


def test_fptt_train_resolves_and_records_the_captured_update(tmp_path):
    """``fptt train --capture`` logs that the update is captured and records it in config.json; a
    run too short for the rule records it off (``--capture`` unset)."""
    from tests.test_cli import TINY_ADD, fptt

    captured_run, default_run = tmp_path / "captured", tmp_path / "default"
    result = fptt("train", *TINY_ADD, "--k", "4", "--capture", "--epochs", "2", "--schedule", "cosine",
                  "--run-dir", str(captured_run), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "captured update on (set by --capture" in result.stdout + result.stderr
    assert "lr_scheduler.step()" not in result.stderr  # torch's scheduler is told the captured graph stepped
    assert "captured update is off" not in result.stdout + result.stderr  # it ran captured, no fallback
    assert json.loads((captured_run / "config.json").read_text())["compute"]["capture"] is True
    result = fptt("train", *TINY_ADD, "--run-dir", str(default_run))
    assert result.returncode == 0, result.stderr
    assert "captured update off (" in result.stdout + result.stderr
    assert json.loads((default_run / "config.json").read_text())["compute"]["capture"] is False
