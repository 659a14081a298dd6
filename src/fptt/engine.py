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
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .measure import peak_rss_mb
from .optim import FPTT
from .vocabulary import LOSS_STEPS, LOSSES, METHODS, WEIGHTINGS
from .window import WindowUpdate

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
    skipped_updates: int = 0  # updates left out for a non-finite loss or gradient (on_nonfinite="skip")
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


def _unpack(batch: Any, batch_index: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of one loader item; anything else is refused with what was received."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        raise ValueError(
            f"batch {batch_index} has 3 items; the engines take (x, y) batches of equal-length sequences. "
            "For variable-length data (pad_collate's (x, y, lengths)), bin every sample to the same length "
            "(e.g. SHD(num_bins=...)) and use the default collate"
        )
    kind = f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, (tuple, list)) else type(batch).__name__
    raise ValueError(f"each batch must be a pair (x, y); batch {batch_index} is {kind}")


def _check_batch(x: Tensor, y: Tensor, per_step_targets: bool, batch_index: int,
                 input_size: Optional[int] = None) -> None:
    """Shapes, dtypes and finiteness of one batch, checked once per batch (not per step)."""
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"inputs must be a (batch, time, features) tensor, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"inputs must be floating point, got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"batch {batch_index} holds zero sequences (inputs of shape {tuple(x.shape)})")
    if x.shape[1] == 0:
        raise ValueError("inputs have zero time steps")
    if input_size is not None and x.shape[2] != input_size:
        raise ValueError(f"inputs of batch {batch_index} have {x.shape[2]} features per step but the model "
                         f"expects {input_size} (shape (batch, time, features) = {tuple(x.shape)})")
    if not isinstance(y, Tensor):
        raise TypeError(f"targets of batch {batch_index} must be a tensor, got {type(y).__name__}")
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

    def check_targets(self, y: Tensor, output_size: Optional[int], per_step_targets: bool = False) -> None:
        """Dtype, shape and range of one batch's targets (once per batch)."""
        batch_dims = 2 if per_step_targets else 1
        if self.kind == "cross_entropy":
            if y.is_floating_point():
                raise ValueError("cross-entropy needs integer class labels, got floating-point targets")
            if y.dim() != batch_dims:
                expected = "(batch, time)" if per_step_targets else "(batch,)"
                raise ValueError(f"class labels must have shape {expected}, got {tuple(y.shape)}")
            if output_size is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= output_size):
                raise ValueError(
                    f"labels must lie in [0, {output_size - 1}] for a model with {output_size} outputs, "
                    f"got range [{int(y.min())}, {int(y.max())}]"
                )
        elif output_size is not None and y.dim() >= batch_dims and y.shape[0]:
            per_item = y[0, 0].numel() if per_step_targets else y[0].numel()
            if per_item != output_size:
                raise ValueError(f"regression targets have {per_item} value(s) per "
                                 f"{'step' if per_step_targets else 'sequence'} but the model has "
                                 f"{output_size} output(s) (targets of shape {tuple(y.shape)})")


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
    return peak_rss_mb()


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


def _check_optimizer(method: str, optimizer: torch.optim.Optimizer) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "fptt" and not isinstance(optimizer, FPTT):
        raise TypeError("method='fptt' needs an FPTT optimizer: wrap yours, e.g. FPTT(torch.optim.Adam(...))")
    if method != "fptt" and isinstance(optimizer, FPTT):
        raise TypeError(f"method={method!r} trains without FPTT's regularizer: pass the plain inner optimizer")


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
                  steps: int, per_step_targets: bool, drop_nonfinite: bool = False) -> Optional[tuple[float, float]]:
        """Add one batch's final-step metrics; with ``drop_nonfinite`` a batch whose loss is NaN/Inf
        is left out and ``None`` returned."""
        final_target = y[:, -1] if per_step_targets else y
        with torch.no_grad():
            loss = float(loss_fn(final_output, final_target))
            if drop_nonfinite and not math.isfinite(loss):
                return None
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

    def result(self, kind: str, updates: int, seconds: float, device: torch.device,
               skipped_updates: int = 0) -> EpochMetrics:
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
            skipped_updates=skipped_updates,
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


def _method_windows(seq_len: int, method: str, k: Optional[int],
                    update_points: Optional[int]) -> Iterable[tuple[int, int]]:
    """The update windows of one sequence: the whole sequence for BPTT, single steps for online."""
    if method == "bptt":
        return ((0, seq_len),)
    return iter_windows(seq_len, 1 if method == "online" else k, update_points)


def _prepared_batches(batches: Iterable, model: nn.Module, loss: str, per_step_targets: bool,
                      max_batches: Optional[int], device: torch.device,
                      dtype: torch.dtype) -> Iterator[tuple[int, "_StepInputs", Tensor, "_LossFn"]]:
    """``(batch_index, inputs, y, loss_fn)`` per batch, checked once per batch and moved to the
    model's device; the loss function is resolved from the first batch's targets."""
    loss_fn: Optional[_LossFn] = None
    for batch_index, batch in enumerate(batches):
        if max_batches is not None and batch_index >= max_batches:
            return
        x, y = _unpack(batch, batch_index)
        _check_batch(x, y, per_step_targets, batch_index, getattr(model, "input_size", None))
        if loss_fn is None:
            loss_fn = _LossFn(_resolve_loss(loss, y))
        loss_fn.check_targets(y, getattr(model, "output_size", None), per_step_targets)
        yield batch_index, _StepInputs(x, device, dtype), y.to(device=device, non_blocking=True), loss_fn


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
    on_nonfinite: Literal["stop", "skip"] = "stop",
) -> EpochMetrics:
    """Train ``model`` for one pass over ``loader`` with ``method`` (see the module docstring).

    Args:
        k / update_points: window length, or number of updates per sequence (FPTT and TBPTT;
            default k = 1; ``"online"`` forces k = 1; ignored by ``"bptt"``).
        weighting: w_t, ``"linear"`` (default), ``"uniform"`` or ``"last"``.
        loss: ``"auto"`` (cross-entropy for integer targets, MSE for float), or explicit.
        clip_grad_norm: total-norm clipping for plain optimizers (for FPTT, set it on the optimizer).
        max_batches: stop after this many batches (quick runs).
        on_nonfinite: ``"stop"`` (default): a NaN/Inf loss, or a parameter made NaN/Inf by an
            update, raises ``FloatingPointError`` naming the batch and the time steps of the first
            bad update (checked once per batch, no per-update host sync). ``"skip"``: an update
            whose loss or gradient is not finite is not applied (gradients dropped, the state
            detached as at any window start) and counted in ``skipped_updates``; batches whose
            final-step loss is not finite are left out of the metrics (``extra["nonfinite_batches"]``).
            Costs one host sync per update.
    Returns the :class:`EpochMetrics` of the pass.
    """
    _check_protocol(model)
    _check_optimizer(method, optimizer)
    if loss_steps not in LOSS_STEPS:
        raise ValueError(f"loss_steps must be one of {LOSS_STEPS}, got {loss_steps!r}")
    if method == "online":
        if (k not in (None, 1)) or update_points is not None:
            raise ValueError("method='online' updates at every step (k = 1); use 'tbptt' for longer windows")
    window = WindowUpdate(model, optimizer, clip_grad_norm=clip_grad_norm, on_nonfinite=on_nonfinite)
    skip_nonfinite = window.skip_nonfinite
    first_skipped: Optional[str] = None
    nonfinite_batches = 0
    device = _model_device(model)
    dtype = next(model.parameters()).dtype
    model.train()
    accumulator = _Accumulator()
    loss_fn: Optional[_LossFn] = None
    started = time.perf_counter()
    total = _loader_length(loader, max_batches)
    bar = _progress(loader, progress, total, description)
    for batch_index, inputs, y, loss_fn in _prepared_batches(bar, model, loss, per_step_targets, max_batches,
                                                            device, dtype):
        seq_len = inputs.seq_len
        windows = _method_windows(seq_len, method, k, update_points)
        state = model.init_state(inputs.batch_size, device=device, dtype=dtype)
        rate_sum = torch.zeros((), device=device) if hasattr(model, "firing_rates") else None
        output = None
        for start, stop in windows:
            state = window.begin(state)
            # DistributedModel: only the last step of a window that will back-propagate syncs
            sync_step = stop - 1 if _window_has_loss(seq_len, weighting, start, stop, loss_steps) else -1
            for t in range(start, stop):
                output, state = window.step(inputs[t], state, sync=t == sync_step)
                if rate_sum is not None:
                    rate_sum += _firing_rate(model, state)
                if loss_steps == "window_end" and t != stop - 1:
                    continue
                weight = step_weight(t, seq_len, weighting)
                if weight == 0.0:
                    continue
                window.add(weight * loss_fn(output, _step_target(y, t, per_step_targets)))
            skipped_before = window.skipped
            window.close(stop - start if loss_steps == "every" and stop - start != 1 else 1)
            if window.skipped != skipped_before and first_skipped is None:
                first_skipped = f"batch {batch_index}, time steps {start}..{stop - 1}"
        first = window.first_nonfinite()
        if first is not None:
            start, stop = _nth_update_window(first, seq_len, method, k, update_points, weighting, loss_steps)
            raise FloatingPointError(
                f"non-finite loss in batch {batch_index} at update {first + 1} of the batch (time steps "
                f"{start}..{stop - 1}, method={method}); lower the learning rate, enable gradient clipping, "
                "check the inputs for extreme values, or train with on_nonfinite='skip'"
            )
        bad_parameter = _first_nonfinite_parameter(model, window.parameters)
        if bad_parameter is not None:
            raise FloatingPointError(
                f"parameter {bad_parameter} became NaN/Inf during batch {batch_index} (method={method}): a "
                "non-finite or exploding gradient reached the optimizer; lower the learning rate, enable "
                "gradient clipping, or train with on_nonfinite='skip'"
            )
        assert output is not None
        added = accumulator.add_batch(output.detach(), y, loss_fn, rate_sum, seq_len, per_step_targets,
                                      drop_nonfinite=skip_nonfinite)
        if added is None:
            nonfinite_batches += 1  # left out of the metrics; its updates were guarded above
            continue
        batch_loss, running = added
        if progress and hasattr(bar, "set_postfix"):
            key = "acc" if loss_fn.kind == "cross_entropy" else "mse"
            postfix = {"loss": f"{batch_loss:.4f}", key: f"{running:.4f}"}
            if rate_sum is not None:
                postfix["rate"] = f"{float(rate_sum) / seq_len:.3f}"
            bar.set_postfix(postfix)
    kind = loss_fn.kind if loss_fn is not None else "cross_entropy"
    if skip_nonfinite and accumulator.samples == 0 and nonfinite_batches:
        raise FloatingPointError(f"every one of the {nonfinite_batches} batches gave a non-finite final loss; "
                                 "nothing was learnt (check the inputs and the learning rate)")
    metrics = accumulator.result(kind, window.updates, time.perf_counter() - started, device, window.skipped)
    if window.skipped or nonfinite_batches:
        metrics.extra.update(nonfinite_batches=nonfinite_batches, first_skipped=first_skipped)
        warnings.warn(f"{window.skipped} update(s) skipped for a non-finite loss or gradient (first: "
                      f"{first_skipped}); {nonfinite_batches} batch(es) with a non-finite final loss left out "
                      "of the metrics", RuntimeWarning, stacklevel=2)
    return metrics


def _first_nonfinite_parameter(model: nn.Module, parameters: list[Tensor]) -> Optional[str]:
    """The name of the first NaN/Inf parameter, or None (one host sync per call: once per batch).

    A parameter's sum is non-finite when it holds a NaN/Inf (or, rarely, when finite values near
    the float maximum overflow: then each parameter is checked and None returned)."""
    if not parameters:
        return None
    sums = torch.stack([p.detach().sum().to(parameters[0].dtype) for p in parameters])
    if bool(torch.isfinite(sums).all()):
        return None
    names = {id(p): name for name, p in model.named_parameters()}
    for parameter in parameters:
        if not bool(torch.isfinite(parameter.detach()).all()):
            return names.get(id(parameter), "(unnamed)")
    return None  # only the sums overflowed


def _nth_update_window(index: int, seq_len: int, method: str, k: Optional[int], update_points: Optional[int],
                       weighting: str, loss_steps: str) -> tuple[int, int]:
    """(start, stop) of the ``index``-th update of a sequence (error messages only)."""
    count = 0
    for start, stop in _method_windows(seq_len, method, k, update_points):
        if _window_has_loss(seq_len, weighting, start, stop, loss_steps):
            if count == index:
                return start, stop
            count += 1
    return 0, seq_len  # pragma: no cover - index beyond the updates


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
        for _, inputs, y, loss_fn in _prepared_batches(bar, model, loss, per_step_targets, max_batches,
                                                       device, dtype):
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
