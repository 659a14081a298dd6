"""Memory measurement used by the trainer, the benchmarks and the tests (the library's own tools;
:mod:`fptt.bench` imports them, not the reverse).

* :class:`SavedTensorMeter`: the bytes autograd keeps for backward, counted exactly through
  ``saved_tensors_hooks`` (independent of the allocator and of other processes, hence usable in
  tests where RSS or wall time would be noisy). Autograd's saved tensors are the part of training
  memory that grows with the length of the graph (BPTT: O(T); FPTT: O(k)).
* :func:`per_update`: resets a meter at every ``optimizer.step()``, so that ``meter.peak`` is the
  largest graph one update kept.
* :func:`rss_mb`, :func:`peak_rss_mb`, :func:`status_kb`, :func:`reset_peak_rss`: process memory
  from ``/proc/self/status`` and ``getrusage`` (Linux; ``None`` where unavailable).
"""
from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

__all__ = ["SavedTensorMeter", "per_update", "rss_mb", "peak_rss_mb", "status_kb", "reset_peak_rss"]


def _held_by_caller(tensor: Tensor) -> bool:
    """True for leaves that require grad (parameters) and views of them: saving them costs nothing."""
    root = tensor._base if tensor._base is not None else tensor
    return root.is_leaf and root.requires_grad


class SavedTensorMeter:
    """Context manager counting the bytes autograd saves for backward.

    Only *activation* memory is counted: a saved tensor that is a leaf requiring grad (a
    parameter) or a view of one is storage the caller holds anyway, and is skipped unless
    ``count_parameters=True``.

    ``meter.bytes`` is the running total since the last :meth:`reset`; ``meter.peak`` the largest
    total seen at a :meth:`reset` (call it at each update, e.g. after ``optimizer.step()``), so
    ``peak`` is the largest graph any single update had to keep.

    >>> with SavedTensorMeter() as meter:
    ...     loss = model(x).sum(); loss.backward()
    >>> meter.bytes
    """

    def __init__(self, count_parameters: bool = False) -> None:
        self.count_parameters = bool(count_parameters)
        self.bytes = 0
        self.peak = 0
        self._hooks: Any = None

    def _pack(self, tensor: Tensor) -> Tensor:
        if self.count_parameters or not _held_by_caller(tensor):
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

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._hooks.__exit__(*exc_info)
        self.peak = max(self.peak, self.bytes)


@contextmanager
def per_update(optimizer: torch.optim.Optimizer, meter: Optional[SavedTensorMeter] = None) -> Iterator[SavedTensorMeter]:
    """Count saved bytes with ``meter`` (a new one by default) and close one update at each
    ``optimizer.step()``: inside the block ``meter.peak`` is the largest graph a single update kept."""
    meter = meter if meter is not None else SavedTensorMeter()
    original = optimizer.step

    def step_and_reset(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        meter.reset()
        return result

    optimizer.step = step_and_reset  # type: ignore[method-assign]
    try:
        with meter:
            yield meter
    finally:
        del optimizer.step  # back to the class's method


def status_kb(field: str) -> Optional[int]:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``, ...), or None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> Optional[float]:
    """The process's current resident memory in MiB (``VmRSS``; the peak where that is unavailable)."""
    current = status_kb("VmRSS")
    return current / 1024.0 if current is not None else peak_rss_mb()


def peak_rss_mb() -> Optional[float]:
    """The process's peak resident memory so far in MiB (``ru_maxrss``, kB on Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
