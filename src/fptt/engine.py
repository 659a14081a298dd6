"""Training engines: FPTT, BPTT, truncated BPTT and naive online gradient (SPEC §3).

Every engine trains any model that speaks the stateful-model protocol (:mod:`fptt.models`) on
batches ``(x, y)`` with ``x`` of shape ``(batch, time, features)`` (batch first).

Loss at step t (SPEC §3.2). For a *terminal* target ``y`` (a class per sequence, or a regression
target known only at the end), every step predicts the final answer and is weighted by ``w_t``:

.. math:: \\ell_t = w_t \\, L(v_t, y), \\qquad
          w_t = \\tfrac{t+1}{T}\\ (\\text{"linear"}),\\ 1\\ (\\text{"uniform"}),\\ [t = T-1]\\ (\\text{"last"})

with ``L`` the cross-entropy (integer targets) or the squared error (float targets). With
``per_step_targets=True``, ``y`` has a time axis and ``ℓ_t = w_t L(v_t, y_t)``.

Methods, for a sequence of length T split into windows of ``k`` steps:

* ``"fptt"``: the state is detached at each window start; after each window the mean of the
  window's ℓ_t is back-propagated (through that window only) and the :class:`~fptt.optim.FPTT`
  optimizer adds its dynamic regularizer and steps. Memory O(k), T/k updates per sequence.
* ``"tbptt"``: the same windows with a plain optimizer (no regularizer).
* ``"online"``: ``"tbptt"`` with k = 1, the ablation showing what FPTT's regularizer buys.
* ``"bptt"``: the whole sequence is unrolled, the mean of all ℓ_t is back-propagated once, one
  optimizer step per sequence. Memory O(T).

``loss_steps="window_end"`` keeps only the last step of each window in the loss (the authors'
adding-task setting with K update points); the default ``"every"`` uses all steps.
"""
from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .optim import FPTT
from .state import detach_state

__all__ = [
    "METHODS",
    "WEIGHTINGS",
    "EpochMetrics",
    "train_epoch",
    "evaluate",
    "loss_weights",
    "step_weight",
    "window_bounds",
    "iter_windows",
]

Method = Literal["fptt", "bptt", "tbptt", "online"]
Weighting = Literal["linear", "uniform", "last"]
METHODS: tuple[str, ...] = ("fptt", "bptt", "tbptt", "online")
WEIGHTINGS: tuple[str, ...] = ("linear", "uniform", "last")
LOSSES: tuple[str, ...] = ("auto", "cross_entropy", "mse")


@dataclass
class EpochMetrics:
    """What one pass over a loader measured. ``loss`` and ``accuracy``/``mse`` are computed on the
    final step's output (the prediction a user reads), averaged over sequences."""

    loss: float
    accuracy: Optional[float]
    mse: Optional[float]
    firing_rate: Optional[float]
    samples: int
    batches: int
    updates: int
    seconds: float
    peak_memory_mb: Optional[float]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_weight(t: int, seq_len: int, weighting: Weighting = "linear") -> float:
    """w_t of one step: ``"linear"`` (t+1)/T (the paper's), ``"uniform"`` 1, ``"last"`` [t = T-1].

    Computed on demand, so that nothing in the time loop grows with T."""
    if weighting == "linear":
        return (t + 1) / seq_len
    if weighting == "uniform":
        return 1.0
    if weighting == "last":
        return 1.0 if t == seq_len - 1 else 0.0
    raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")


def loss_weights(seq_len: int, weighting: Weighting = "linear") -> list[float]:
    """The list [w_0, ..., w_{T-1}] of :func:`step_weight` (for inspection and plots)."""
    return [step_weight(t, seq_len, weighting) for t in range(seq_len)]


def _window_length(seq_len: int, k: Optional[int], update_points: Optional[int]) -> int:
    if k is not None and update_points is not None:
        raise ValueError("give either k (steps per update) or update_points (updates per sequence), not both")
    if update_points is not None:
        if not isinstance(update_points, int) or update_points <= 0:
            raise ValueError(f"update_points must be a positive int, got {update_points!r}")
        if update_points > seq_len:
            raise ValueError(f"update_points ({update_points}) cannot exceed the sequence length ({seq_len})")
        k = math.ceil(seq_len / update_points)
    k = 1 if k is None else k
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > seq_len:
        raise ValueError(f"k ({k}) cannot exceed the sequence length ({seq_len})")
    return k


def iter_windows(seq_len: int, k: Optional[int] = None, update_points: Optional[int] = None) -> Iterator[tuple[int, int]]:
    """Lazily yield the ``(start, stop)`` windows of :func:`window_bounds` (arguments checked at
    the call, before the first window)."""
    length = _window_length(seq_len, k, update_points)
    return ((start, min(start + length, seq_len)) for start in range(0, seq_len, length))


def window_bounds(seq_len: int, k: Optional[int] = None, update_points: Optional[int] = None) -> list[tuple[int, int]]:
    """Split ``range(seq_len)`` into windows of ``k`` steps, or into ``update_points`` windows of
    ``ceil(T / K)`` steps (the last may be shorter). Returns ``[(start, stop), ...]``."""
    return list(iter_windows(seq_len, k, update_points))


def _resolve_loss(loss: str, y: Tensor) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    if loss == "auto":
        return "mse" if y.is_floating_point() else "cross_entropy"
    return loss


def _check_batch(x: Tensor, y: Tensor, per_step_targets: bool, batch_index: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"inputs must be a (batch, time, features) tensor, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"inputs must be floating point, got {x.dtype}")
    if x.shape[1] == 0:
        raise ValueError("inputs have zero time steps")
    # in chunks of time steps: a temporary of O(chunk), not of O(T), whatever the sequence length
    for chunk in x.split(_CHECK_CHUNK, dim=1):
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError(f"inputs of batch {batch_index} contain NaN or Inf values")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"targets have batch size {y.shape[0]} but inputs have {x.shape[0]}")
    if per_step_targets and (y.dim() < 2 or y.shape[1] != x.shape[1]):
        raise ValueError(f"per_step_targets needs targets of shape (batch, time, ...), got {tuple(y.shape)}")


class _LossFn:
    """L(v_t, y_t) for one step, plus the metrics on the final step."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        if self.kind == "cross_entropy":
            return F.cross_entropy(output, target)
        return F.mse_loss(output, target.reshape(output.shape).to(output.dtype))

    def check_targets(self, y: Tensor, output_size: Optional[int]) -> None:
        if self.kind == "cross_entropy":
            if y.is_floating_point():
                raise ValueError("cross-entropy needs integer class labels, got floating-point targets")
            if output_size is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= output_size):
                raise ValueError(
                    f"labels must lie in [0, {output_size - 1}] for a model with {output_size} outputs, "
                    f"got range [{int(y.min())}, {int(y.max())}]"
                )


def _firing_rate(model: nn.Module, state: Any) -> Optional[Tensor]:
    rates = getattr(model, "firing_rates", None)
    if rates is None:
        return None
    values = rates(state)
    if len(values) == 1:  # the mean of one value is the value: skip stack + mean (per-step cost)
        return values[0].detach()
    return torch.stack([value.detach() for value in values]).mean() if values else None


def _peak_memory_mb(device: torch.device) -> Optional[float]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if sys.platform.startswith("linux"):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    return None


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _check_protocol(model: nn.Module) -> None:
    for name in ("init_state", "step"):
        if not callable(getattr(model, name, None)):
            raise TypeError(
                f"{type(model).__name__} does not implement the stateful-model protocol: missing {name}(); "
                "see fptt.models for init_state(batch, device, dtype) and step(x_t, state)"
            )


def _check_optimizer(method: str, optimizer: torch.optim.Optimizer, clip_grad_norm: Optional[float]) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "fptt" and not isinstance(optimizer, FPTT):
        raise TypeError("method='fptt' needs an FPTT optimizer: wrap yours, e.g. FPTT(torch.optim.Adam(...))")
    if method != "fptt" and isinstance(optimizer, FPTT):
        raise TypeError(f"method={method!r} trains without FPTT's regularizer: pass the plain inner optimizer")
    if method == "fptt" and clip_grad_norm is not None:
        raise ValueError(
            "with method='fptt' set clipping on the optimizer, FPTT(..., clip_grad_norm=c), so that it "
            "clips the combined gradient (loss + regularizer) as in SPEC §3"
        )
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")


class _Accumulator:
    """Sums kept on the device during a batch; read once per batch (no per-step host sync)."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.correct = 0.0
        self.squared_error = 0.0
        self.rate = 0.0
        self.rate_steps = 0
        self.samples = 0
        self.batches = 0

    def add_batch(self, final_output: Tensor, y: Tensor, loss_fn: _LossFn, rate_sum: Optional[Tensor],
                  steps: int, per_step_targets: bool) -> tuple[float, float]:
        final_target = y[:, -1] if per_step_targets else y
        with torch.no_grad():
            loss = float(loss_fn(final_output, final_target))
            batch = final_output.shape[0]
            self.loss += loss * batch
            if loss_fn.kind == "cross_entropy":
                self.correct += float((final_output.argmax(dim=-1) == final_target).sum())
            else:
                self.squared_error += loss * batch
            if rate_sum is not None:
                self.rate += float(rate_sum)
                self.rate_steps += steps
        self.samples += batch
        self.batches += 1
        return loss, (self.correct / self.samples if loss_fn.kind == "cross_entropy" else self.squared_error / self.samples)

    def result(self, kind: str, updates: int, seconds: float, device: torch.device) -> EpochMetrics:
        if self.samples == 0:
            raise ValueError("the loader yielded no batches: is the dataset empty?")
        classification = kind == "cross_entropy"
        return EpochMetrics(
            loss=self.loss / self.samples,
            accuracy=self.correct / self.samples if classification else None,
            mse=None if classification else self.squared_error / self.samples,
            firing_rate=self.rate / self.rate_steps if self.rate_steps else None,
            samples=self.samples,
            batches=self.batches,
            updates=updates,
            seconds=seconds,
            peak_memory_mb=_peak_memory_mb(device),
        )


def _progress(iterable: Iterable, enabled: bool, total: Optional[int], description: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def _loader_length(loader: Iterable, max_batches: Optional[int]) -> Optional[int]:
    try:
        length = len(loader)  # type: ignore[arg-type]
    except TypeError:
        length = None
    if max_batches is not None:
        return max_batches if length is None else min(length, max_batches)
    return length


_CHECK_CHUNK = 1024  # time steps per finiteness check
_BLOCK = 128  # time steps per time-major input block


class _StepInputs:
    """``inputs[t]``: the contiguous ``(batch, features)`` input of step t.

    The batch-first ``(batch, time, features)`` tensor is made time-major one block of
    ``_BLOCK`` steps at a time (steps are read in increasing order), so the engine's own copy of
    the input is O(block), not O(T)."""

    def __init__(self, x: Tensor, device: torch.device, dtype: torch.dtype) -> None:
        self.x = x.to(device=device, dtype=dtype, non_blocking=True)
        self.batch_size, self.seq_len = self.x.shape[0], self.x.shape[1]
        self.start, self.block = 0, self.x[:, :0].transpose(0, 1)

    def __getitem__(self, t: int) -> Tensor:
        offset = t - self.start
        if not 0 <= offset < self.block.shape[0]:
            self.start, offset = t, 0
            self.block = self.x[:, t:t + _BLOCK].transpose(0, 1).contiguous()
        return self.block[offset]


def _window_has_loss(seq_len: int, weighting: Weighting, start: int, stop: int, loss_steps: str) -> bool:
    if loss_steps == "window_end":
        return step_weight(stop - 1, seq_len, weighting) != 0.0
    return any(step_weight(t, seq_len, weighting) != 0.0 for t in range(start, stop))


def _step_target(y: Tensor, t: int, per_step_targets: bool) -> Tensor:
    return y[:, t] if per_step_targets else y


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    method: Method = "fptt",
    k: Optional[int] = None,
    update_points: Optional[int] = None,
    weighting: Weighting = "linear",
    loss: str = "auto",
    loss_steps: Literal["every", "window_end"] = "every",
    per_step_targets: bool = False,
    clip_grad_norm: Optional[float] = None,
    max_batches: Optional[int] = None,
    progress: bool = False,
    description: str = "train",
) -> EpochMetrics:
    """Train ``model`` for one pass over ``loader`` with ``method`` (see the module docstring).

    Args:
        k / update_points: window length, or number of updates per sequence (FPTT and TBPTT;
            default k = 1; ``"online"`` forces k = 1; ignored by ``"bptt"``).
        weighting: w_t, ``"linear"`` (default), ``"uniform"`` or ``"last"``.
        loss: ``"auto"`` (cross-entropy for integer targets, MSE for float), or explicit.
        clip_grad_norm: total-norm clipping for plain optimizers (for FPTT, set it on the optimizer).
        max_batches: stop after this many batches (quick runs).
    Returns the :class:`EpochMetrics` of the pass. Raises ``FloatingPointError`` on a NaN/Inf loss.
    """
    _check_protocol(model)
    _check_optimizer(method, optimizer, clip_grad_norm)
    if loss_steps not in ("every", "window_end"):
        raise ValueError(f"loss_steps must be 'every' or 'window_end', got {loss_steps!r}")
    if method == "online":
        if (k not in (None, 1)) or update_points is not None:
            raise ValueError("method='online' updates at every step (k = 1); use 'tbptt' for longer windows")
    device = _model_device(model)
    dtype = next(model.parameters()).dtype
    model.train()
    accumulator = _Accumulator()
    loss_fn: Optional[_LossFn] = None
    updates = 0
    parameters = [p for p in model.parameters() if p.requires_grad]
    set_sync = getattr(model, "set_gradient_sync", None)
    started = time.perf_counter()
    total = _loader_length(loader, max_batches)
    bar = _progress(loader, progress, total, description)
    for batch_index, (x, y) in enumerate(bar):
        if max_batches is not None and batch_index >= max_batches:
            break
        _check_batch(x, y, per_step_targets, batch_index)
        if loss_fn is None:
            loss_fn = _LossFn(_resolve_loss(loss, y))
        loss_fn.check_targets(y, getattr(model, "output_size", None))
        inputs = _StepInputs(x, device, dtype)
        y = y.to(device=device, non_blocking=True)
        seq_len = inputs.seq_len
        if method == "bptt":
            windows: Iterable[tuple[int, int]] = ((0, seq_len),)
        else:
            windows = iter_windows(seq_len, 1 if method == "online" else k, update_points)
        state = model.init_state(inputs.batch_size, device=device, dtype=dtype)
        rate_sum = torch.zeros((), device=device) if hasattr(model, "firing_rates") else None
        # 0 while every window loss is finite; NaN as soon as one is not (x * 0 is NaN for NaN/Inf):
        # two scalar kernels per update, read once per batch
        nonfinite = torch.zeros((), dtype=dtype, device=device)
        output = None
        for start, stop in windows:
            state = detach_state(state)
            window_loss: Optional[Tensor] = None
            # DistributedModel: only the last step of a window that will back-propagate syncs
            sync_step = -1
            if set_sync is not None and _window_has_loss(seq_len, weighting, start, stop, loss_steps):
                sync_step = stop - 1
            for t in range(start, stop):
                if set_sync is not None:
                    set_sync(t == sync_step)
                output, state = model.step(inputs[t], state)
                if rate_sum is not None:
                    rate_sum += _firing_rate(model, state)
                if loss_steps == "window_end" and t != stop - 1:
                    continue
                weight = step_weight(t, seq_len, weighting)
                if weight == 0.0:
                    continue
                term = weight * loss_fn(output, _step_target(y, t, per_step_targets))
                window_loss = term if window_loss is None else window_loss + term
            if window_loss is None:
                continue  # nothing to learn from in this window (e.g. "last" weighting, early windows)
            if loss_steps == "every" and stop - start != 1:
                window_loss = window_loss / (stop - start)
            nonfinite.add_(window_loss.detach() * 0.0)
            optimizer.zero_grad(set_to_none=True)
            window_loss.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
            optimizer.step()
            updates += 1
        if not bool(torch.isfinite(nonfinite)):
            raise FloatingPointError(
                f"non-finite loss in batch {batch_index} (method={method}); lower the learning rate, "
                "enable gradient clipping, or check the inputs for NaN/Inf"
            )
        assert output is not None
        batch_loss, running = accumulator.add_batch(
            output.detach(), y, loss_fn, rate_sum, seq_len, per_step_targets
        )
        if progress and hasattr(bar, "set_postfix"):
            key = "acc" if loss_fn.kind == "cross_entropy" else "mse"
            postfix = {"loss": f"{batch_loss:.4f}", key: f"{running:.4f}"}
            if rate_sum is not None:
                postfix["rate"] = f"{float(rate_sum) / seq_len:.3f}"
            bar.set_postfix(postfix)
    kind = loss_fn.kind if loss_fn is not None else "cross_entropy"
    return accumulator.result(kind, updates, time.perf_counter() - started, device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss: str = "auto",
    per_step_targets: bool = False,
    max_batches: Optional[int] = None,
    progress: bool = False,
    description: str = "eval",
) -> EpochMetrics:
    """Run ``model`` over ``loader`` without gradients; metrics on the final step's output.

    To evaluate with FPTT's running average W̄, wrap the call: ``with optimizer.averaged(): ...``.
    """
    _check_protocol(model)
    device = _model_device(model)
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    accumulator = _Accumulator()
    loss_fn: Optional[_LossFn] = None
    started = time.perf_counter()
    try:
        bar = _progress(loader, progress, _loader_length(loader, max_batches), description)
        for batch_index, (x, y) in enumerate(bar):
            if max_batches is not None and batch_index >= max_batches:
                break
            _check_batch(x, y, per_step_targets, batch_index)
            if loss_fn is None:
                loss_fn = _LossFn(_resolve_loss(loss, y))
            loss_fn.check_targets(y, getattr(model, "output_size", None))
            inputs = _StepInputs(x, device, dtype)
            y = y.to(device=device, non_blocking=True)
            state = model.init_state(inputs.batch_size, device=device, dtype=dtype)
            rate_sum = torch.zeros((), device=device) if hasattr(model, "firing_rates") else None
            for t in range(inputs.seq_len):
                output, state = model.step(inputs[t], state)
                if rate_sum is not None:
                    rate_sum += _firing_rate(model, state)
            accumulator.add_batch(output, y, loss_fn, rate_sum, inputs.seq_len, per_step_targets)
    finally:
        model.train(was_training)
    kind = loss_fn.kind if loss_fn is not None else "cross_entropy"
    return accumulator.result(kind, 0, time.perf_counter() - started, device)
