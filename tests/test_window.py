"""One window unit for batch and stream learning: the same updates, non-finite policy, clipping
and DDP gradient sync whichever loop drives it (fptt.training.window)."""
from __future__ import annotations

import warnings

import pytest
import torch

from fptt import FPTT, SpikingRNN, train_epoch
from fptt.training.streaming import OnlineLearner
from fptt.training.window import WindowUpdate

T, STREAMS, K = 12, 3, 4


class _Poisoned(SpikingRNN):
    """Its output at step ``poison_at`` (counted over the model's life) is NaN."""

    poison_at = -1

    def step(self, x, state):
        output, state = super().step(x, state)
        self.count = getattr(self, "count", -1) + 1
        return (output + float("nan") if self.count == self.poison_at else output), state


def _model(seed: int = 0, poison_at: int = -1) -> SpikingRNN:
    torch.manual_seed(seed)
    model = _Poisoned(2, 6, 4, initial_membrane="zero").double()
    model.poison_at = poison_at
    return model


def _data(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(STREAMS, T, 2, generator=generator, dtype=torch.float64) * 2
    y = torch.randint(0, 4, (STREAMS,), generator=generator)
    return x, y


def _optimizer(model, kind: str, clip=None):
    if kind == "fptt":
        return FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), alpha=0.1, beta=0.5, clip_grad_norm=clip)
    return torch.optim.SGD(model.parameters(), lr=0.5)


def _train_batch(kind: str, x, y, clip=None, on_nonfinite="stop", poison_at=-1):
    model = _model(poison_at=poison_at)
    optimizer = _optimizer(model, kind, clip if kind == "fptt" else None)
    train_epoch(model, [(x, y)], optimizer, method="fptt" if kind == "fptt" else "tbptt", k=K,
                weighting="uniform", clip_grad_norm=None if kind == "fptt" else clip, on_nonfinite=on_nonfinite)
    return model


def _train_stream(kind: str, x, y, clip=None, on_nonfinite="stop", poison_at=-1):
    model = _model(poison_at=poison_at)
    optimizer = _optimizer(model, kind, clip if kind == "fptt" else None)
    learner = OnlineLearner(model, optimizer, loss="cross_entropy", k=K, batch_size=STREAMS,
                            clip_grad_norm=None if kind == "fptt" else clip, on_nonfinite=on_nonfinite)
    for t in range(T):
        learner.observe(x[:, t], y)
    return model, learner


@pytest.mark.parametrize("kind, clip", [("fptt", None), ("fptt", 0.05), ("sgd", None), ("sgd", 0.05)])
def test_a_stream_of_one_sequence_makes_exactly_the_batch_engines_updates(kind, clip):
    x, y = _data()
    batch = _train_batch(kind, x, y, clip)
    stream, learner = _train_stream(kind, x, y, clip)
    assert learner.updates == T // K
    for (name, a), b in zip(batch.named_parameters(), stream.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)
    untrained = _model()
    assert any(not torch.equal(a, b) for a, b in zip(batch.parameters(), untrained.parameters()))


def test_clipping_is_refused_in_the_loop_for_fptt_in_both_loops_with_the_same_message():
    model = _model()
    optimizer = _optimizer(model, "fptt")
    x, y = _data()
    with pytest.raises(ValueError, match=r"FPTT\(\.\.\., clip_grad_norm=c\)"):
        train_epoch(model, [(x, y)], optimizer, clip_grad_norm=1.0)
    with pytest.raises(ValueError, match=r"FPTT\(\.\.\., clip_grad_norm=c\)"):
        OnlineLearner(model, optimizer, clip_grad_norm=1.0, batch_size=STREAMS)


@pytest.mark.parametrize("kind", ["fptt", "sgd"])
def test_a_nonfinite_window_stops_both_loops_or_is_skipped_by_both(kind):
    x, y = _data()
    poison = 5  # window 1 (steps 4..7)
    with pytest.raises(FloatingPointError, match=r"non-finite loss in batch 0 at update 2 of the batch \(time steps 4\.\.7"):
        _train_batch(kind, x, y, poison_at=poison)
    with pytest.raises(FloatingPointError, match=r"non-finite loss in the update of stream time steps 4\.\.7 "):
        _train_stream(kind, x, y, poison_at=poison)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        batch = _train_batch(kind, x, y, on_nonfinite="skip", poison_at=poison)
    stream, learner = _train_stream(kind, x, y, on_nonfinite="skip", poison_at=poison)
    assert learner.skipped == 1 and learner.updates == T // K - 1
    for a, b in zip(batch.parameters(), stream.parameters()):
        assert bool(torch.isfinite(a).all())
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


class _SyncRecorder(torch.nn.Module):
    """A stateful model that records the gradient-sync flag of each step (as DistributedModel sees it)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _model()
        self.flags: list[bool] = []
        self._next = True
        self.input_size, self.output_size = 2, 4

    def set_gradient_sync(self, enabled: bool) -> None:
        self._next = enabled

    def init_state(self, batch_size, device=None, dtype=None):
        return self.inner.init_state(batch_size, device, dtype)

    def step(self, x, state):
        self.flags.append(self._next)
        return self.inner.step(x, state)


def test_both_loops_sync_gradients_on_the_last_step_of_each_window_only():
    x, y = _data()
    expected = [t % K == K - 1 for t in range(T)]
    batch_model = _SyncRecorder()
    train_epoch(batch_model, [(x, y)], torch.optim.SGD(batch_model.parameters(), lr=0.1), method="tbptt", k=K,
                weighting="uniform")
    stream_model = _SyncRecorder()
    learner = OnlineLearner(stream_model, torch.optim.SGD(stream_model.parameters(), lr=0.1), k=K,
                            batch_size=STREAMS)
    for t in range(T):
        learner.observe(x[:, t], y)
    assert batch_model.flags == stream_model.flags == expected


def test_a_synced_window_without_a_loss_still_takes_part_in_the_all_reduce():
    """Under DDP every rank must back-propagate at a synced window end, even without targets."""
    model = _SyncRecorder()
    window = WindowUpdate(model, torch.optim.SGD(model.parameters(), lr=0.1))
    state = window.begin(model.init_state(STREAMS, dtype=torch.float64))
    x, _ = _data()
    for t in range(K):
        _, state = window.step(x[:, t], state, sync=t == K - 1)
    before = [p.detach().clone() for p in model.parameters()]
    assert window.close() is True and window.updates == 1
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters() if p.grad is not None)
    for a, b in zip(before, model.parameters()):
        torch.testing.assert_close(a, b)  # a zero gradient: plain SGD leaves the weights as they were
