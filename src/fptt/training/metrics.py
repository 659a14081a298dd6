"""What a pass over a loader measured: :class:`EpochMetrics` and its device-side accumulator."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..memory import peak_rss_mb
from .batches import LossFn

__all__ = ["EpochMetrics", "Accumulator", "firing_rate"]


@dataclass
class EpochMetrics:
    """What one pass over a loader measured. ``loss`` and ``accuracy``/``mse`` are computed on the
    final step's output (the prediction a user reads), averaged over sequences; an evaluation with
    ``decode="mean"`` scores the mean of the steps' class probabilities instead."""

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


def firing_rate(model: nn.Module, state: Any) -> Optional[Tensor]:
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


class Accumulator:
    """Sums kept on the device during a batch; read once per batch (no per-step host sync)."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.correct = 0.0
        self.squared_error = 0.0
        self.rate = 0.0
        self.rate_steps = 0
        self.samples = 0
        self.batches = 0

    def add_batch(self, final_output: Tensor, y: Tensor, loss_fn: LossFn, rate_sum: Optional[Tensor],
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
