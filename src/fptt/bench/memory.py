"""Deterministic activation-memory accounting through ``saved_tensors_hooks``.

Autograd keeps, for the backward pass, the tensors that forward operations save. Their total size
is the part of training memory that grows with the length of the graph (BPTT: O(T); FPTT: O(k)).
:class:`SavedTensorMeter` counts those bytes exactly, independent of the allocator and of other
processes, which makes it usable in tests, where RSS or wall time would be noisy.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["SavedTensorMeter"]


class SavedTensorMeter:
    """Context manager counting the bytes autograd saves for backward.

    ``meter.bytes`` is the running total since the last :meth:`reset`; ``meter.peak`` the largest
    total seen at a :meth:`reset` (call it at each update, e.g. after ``optimizer.step()``), so
    ``peak`` is the largest graph any single update had to keep.

    >>> with SavedTensorMeter() as meter:
    ...     loss = model(x).sum(); loss.backward()
    >>> meter.bytes
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.peak = 0
        self._hooks: Any = None

    def _pack(self, tensor: Tensor) -> Tensor:
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor

    @staticmethod
    def _unpack(tensor: Tensor) -> Tensor:
        return tensor

    def reset(self) -> int:
        """Close the current update: fold ``bytes`` into ``peak``, return it, and start from zero."""
        counted = self.bytes
        self.peak = max(self.peak, counted)
        self.bytes = 0
        return counted

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._hooks.__exit__(*exc_info)
        self.peak = max(self.peak, self.bytes)
