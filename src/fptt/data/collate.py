"""Batching of variable-length sequences."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["pad_collate"]


def pad_collate(batch: Sequence[tuple[Tensor, object]]) -> tuple[Tensor, Tensor, Tensor]:
    """Collate ``(x, y)`` items whose ``x`` (T_i, ...) differ in length: returns ``x`` (B, T_max, ...)
    zero-padded at the end of the time axis, ``y`` stacked (tensors) or made a tensor (numbers),
    and ``lengths`` (B,) int64 with each T_i. Use as ``DataLoader(..., collate_fn=pad_collate)``."""
    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch")
    xs = [torch.as_tensor(item[0]) for item in batch]
    trailing = xs[0].shape[1:]
    for x in xs:
        if x.dim() < 1 or x.shape[1:] != trailing:
            raise ValueError(f"items must share every dimension but time; got {[tuple(x.shape) for x in xs]}")
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    out = xs[0].new_zeros((len(xs), int(lengths.max()), *trailing))
    for row, x in enumerate(xs):
        out[row, : x.shape[0]] = x
    ys = [item[1] for item in batch]
    y = torch.stack([torch.as_tensor(v) for v in ys]) if isinstance(ys[0], Tensor) else torch.tensor(ys)
    return out, y, lengths
