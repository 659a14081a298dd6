"""From a loader's items to checked, device-ready batches for the engines' time loop.

One batch ``(x, y)``: ``x`` of shape ``(batch, time, features)`` (batch first), checked once per
batch (shape, dtype, finite values, matching targets), then read step by step as contiguous
``(batch, features)`` inputs (:class:`StepInputs`). :class:`LossFn` is L(v_t, y_t) of THEORY.md §3.2:
the cross-entropy for integer targets, the squared error for float targets.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..spec.vocabulary import LOSSES

__all__ = ["LossFn", "StepInputs", "prepared_batches", "progress_bar", "loader_length"]


def resolve_loss(loss: str, y: Tensor) -> str:
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
    # in chunks of time steps holding at most _CHECK_ELEMENTS values: isfinite's temporaries (it
    # builds |x| as a full float copy) stay O(chunk), not O(T), whatever the length and width
    steps = max(1, _CHECK_ELEMENTS // max(1, x.shape[0] * x.shape[2]))
    for chunk in x.split(steps, dim=1):
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError(f"inputs of batch {batch_index} contain NaN or Inf values")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"targets have batch size {y.shape[0]} but inputs have {x.shape[0]}")
    if per_step_targets and (y.dim() < 2 or y.shape[1] != x.shape[1]):
        raise ValueError(f"per_step_targets needs targets of shape (batch, time, ...), got {tuple(y.shape)}")


class LossFn:
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


def progress_bar(iterable: Iterable, enabled: bool, total: Optional[int], description: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def loader_length(loader: Iterable, max_batches: Optional[int]) -> Optional[int]:
    try:
        length = len(loader)  # type: ignore[arg-type]
    except TypeError:
        length = None
    if max_batches is not None:
        return max_batches if length is None else min(length, max_batches)
    return length


_CHECK_ELEMENTS = 1 << 20  # values per finiteness check (a 4 MiB float32 chunk)
_BLOCK = 128  # at most this many time steps per time-major input block
_BLOCK_ELEMENTS = 1 << 22  # and at most this many values (16 MiB in float32; wide event frames)


class StepInputs:
    """``inputs[t]``: the contiguous ``(batch, features)`` input of step t.

    The batch-first ``(batch, time, features)`` tensor is made time-major one block at a time
    (``_BLOCK`` steps, fewer for wide inputs so that a block holds at most ``_BLOCK_ELEMENTS``
    values; steps are read in increasing order), so the engine's own copy of the input is
    O(block), not O(T). The previous block is released before the next is made."""

    def __init__(self, x: Tensor, device: torch.device, dtype: torch.dtype) -> None:
        self.x = x.to(device=device, dtype=dtype, non_blocking=True)
        self.batch_size, self.seq_len = self.x.shape[0], self.x.shape[1]
        self.block_steps = max(1, min(_BLOCK, _BLOCK_ELEMENTS // max(1, self.batch_size * self.x.shape[2])))
        self.start, self.block = 0, self.x[:, :0].transpose(0, 1)

    def __getitem__(self, t: int) -> Tensor:
        offset = t - self.start
        if not 0 <= offset < self.block.shape[0]:
            self.start, offset = t, 0
            self.block = self.x[:, :0].transpose(0, 1)  # drop our reference to the old block first
            self.block = self.x[:, t:t + self.block_steps].transpose(0, 1).contiguous()
        return self.block[offset]


def prepared_batches(batches: Iterable, model: nn.Module, loss: str, per_step_targets: bool,
                      max_batches: Optional[int], device: torch.device,
                      dtype: torch.dtype) -> Iterator[tuple[int, StepInputs, Tensor, LossFn]]:
    """``(batch_index, inputs, y, loss_fn)`` per batch, checked once per batch and moved to the
    model's device; the loss function is resolved from the first batch's targets."""
    loss_fn: Optional[LossFn] = None
    for batch_index, batch in enumerate(batches):
        if max_batches is not None and batch_index >= max_batches:
            return
        x, y = _unpack(batch, batch_index)
        _check_batch(x, y, per_step_targets, batch_index, getattr(model, "input_size", None))
        if loss_fn is None:
            loss_fn = LossFn(resolve_loss(loss, y))
        loss_fn.check_targets(y, getattr(model, "output_size", None), per_step_targets)
        yield batch_index, StepInputs(x, device, dtype), y.to(device=device, non_blocking=True), loss_fn
