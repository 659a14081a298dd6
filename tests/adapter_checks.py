"""Checks shared by the adapter tests of every library (tests/test_adapters_*.py).

A library's test supplies ``make(dtype)`` (an adapter around a freshly seeded library network) and
a *reference*: the same network run the library's own way (its own forward, its own state
handling), with ``start()`` (a new sequence), ``window(x)`` (outputs (B, w, O) for the steps of
``x``, carrying the library's state) and ``detach()`` (cut the state's history, as a user of that
library would at a window boundary).
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fptt import FPTT, OnlineLearner, evaluate, train_epoch
from fptt.run.checkpoint import load_checkpoint, save_checkpoint

FEATURES, CLASSES = 3, 2


class Reference(Protocol):
    def start(self) -> None: ...
    def window(self, x: Tensor) -> Tensor: ...
    def detach(self) -> None: ...


class GradientRecorder(torch.optim.SGD):
    """SGD with lr 0 that records the gradient of every parameter at each step (one per window)."""

    def __init__(self, parameters) -> None:
        super().__init__(list(parameters), lr=0.0)
        self.records: list[list[Tensor]] = []

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - records instead of moving the weights
        self.records.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                             for p in self.param_groups[0]["params"]])


def sign_task(batches: int, seed: int, batch_size: int = 32, steps: int = 20,
              dtype: torch.dtype = torch.float32) -> list[tuple[Tensor, Tensor]]:
    """Noisy sequences whose class is the sign of their mean (a task a small SNN learns fast)."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(batches):
        y = torch.randint(0, CLASSES, (batch_size,), generator=generator)
        x = torch.randn(batch_size, steps, FEATURES, generator=generator) * 0.5
        x = x + (y.to(dtype) * 2 - 1).view(-1, 1, 1) * 0.6
        data.append((x.to(dtype), y))
    return data


def check_window_gradients(make: Callable[[torch.dtype], nn.Module],
                           reference_of: Callable[[nn.Module], Reference], steps: int = 6, k: int = 3,
                           dtype: torch.dtype = torch.float64) -> None:
    """FPTT windows through the adapter (train_epoch, method "fptt") give, window by window, the
    gradients of the library's own forward over the same steps (float64 unless the library only
    computes in float32). The inner optimizer has lr 0, so W = W̄ and λ = 0 throughout and FPTT
    adds no regulariser term."""
    adapter = make(dtype)
    parameters = [p for p in adapter.parameters() if p.requires_grad]
    x, y = sign_task(1, seed=3, batch_size=4, steps=steps, dtype=dtype)[0]
    recorder = GradientRecorder(parameters)
    train_epoch(adapter, [(x, y)], FPTT(recorder, alpha=0.3), method="fptt", k=k)
    reference = reference_of(adapter.network)
    reference.start()
    expected = []
    for start in range(0, steps, k):
        stop = min(start + k, steps)
        reference.detach()
        outputs = reference.window(x[:, start:stop])
        loss = sum((t + 1) / steps * F.cross_entropy(outputs[:, t - start], y) for t in range(start, stop))
        grads = torch.autograd.grad(loss / (stop - start), parameters, allow_unused=True)
        expected.append([torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)])
    assert len(recorder.records) == len(expected) == -(-steps // k)
    for window, (got, want) in enumerate(zip(recorder.records, expected)):
        for parameter_index, (g, w) in enumerate(zip(got, want)):
            torch.testing.assert_close(g, w, rtol=1e-9 if dtype == torch.float64 else 1e-5,
                                       atol=1e-12 if dtype == torch.float64 else 1e-7,
                                       msg=lambda m, w=window, i=parameter_index: f"window {w}, parameter {i}: {m}")
    assert any(float(g.abs().sum()) > 0 for record in recorder.records for g in record), "all gradients zero"


def check_training_reduces_loss(make: Callable[[torch.dtype], nn.Module], lr: float = 1e-2, epochs: int = 3,
                                k: int = 5, factor: float = 0.7) -> None:
    """A short FPTT run lowers the held-out loss below ``factor`` times its initial value."""
    adapter = make(torch.float32)
    test = sign_task(4, seed=100)
    before = evaluate(adapter, test).loss
    optimizer = FPTT(torch.optim.Adam(adapter.parameters(), lr=lr), alpha=0.1)
    for epoch in range(epochs):
        train_epoch(adapter, sign_task(12, seed=epoch), optimizer, method="fptt", k=k)
    with optimizer.averaged():
        after = evaluate(adapter, test)
    assert after.loss < factor * before, (before, after.loss)
    assert after.accuracy > 0.75, after.accuracy


def check_checkpoint_resume(make: Callable[[torch.dtype], nn.Module], path) -> None:
    """Train, checkpoint (fptt.run.checkpoint, weights_only), rebuild a fresh adapter from the file,
    and continue both: the weights and W̄ stay bit-identical."""
    def optimizer_of(model: nn.Module) -> FPTT:
        return FPTT(torch.optim.Adam(model.parameters(), lr=5e-3), alpha=0.1)

    data = sign_task(6, seed=7, batch_size=8, steps=10)
    torch.manual_seed(0)
    model = make(torch.float32)
    optimizer = optimizer_of(model)
    train_epoch(model, data[:3], optimizer, method="fptt", k=4)
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": {}})

    torch.manual_seed(1)  # a different initialisation, replaced by the checkpoint
    restored = make(torch.float32)
    restored_optimizer = optimizer_of(restored)
    payload = load_checkpoint(path)
    restored.load_state_dict(payload["model"])
    restored_optimizer.load_state_dict(payload["optimizer"])
    first = train_epoch(model, data[3:], optimizer, method="fptt", k=4)
    second = train_epoch(restored, data[3:], restored_optimizer, method="fptt", k=4)
    assert first.loss == second.loss
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    averages = restored_optimizer.averaged_state_dict(restored).values()
    for a, b in zip(optimizer.averaged_state_dict(model).values(), averages):
        assert torch.equal(a, b)


def check_stream_learning(make: Callable[[torch.dtype], nn.Module]) -> None:
    """An OnlineLearner (FPTT, k = 4) observes 40 steps of 4 streams through the adapter: 10
    updates, every loss finite, and the weights move."""
    adapter = make(torch.float32)
    before = [p.detach().clone() for p in adapter.parameters()]
    learner = OnlineLearner(adapter, FPTT(torch.optim.Adam(adapter.parameters(), lr=1e-2)), k=4, batch_size=4)
    x, y = sign_task(1, seed=5, batch_size=4, steps=40)[0]
    for t in range(40):
        learner.observe(x[:, t], y)
    assert learner.updates == 10 and all(torch.isfinite(torch.tensor(list(learner.history))))
    assert any(not torch.equal(a, b) for a, b in zip(before, adapter.parameters()))
