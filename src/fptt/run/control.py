"""Stopping a run cleanly: SIGINT/SIGTERM handling, the stop vote of all ranks, and the epoch's
batches, which end at a batch boundary once a stop is agreed.

A first SIGINT (Ctrl-C) or SIGTERM asks for a stop at the next batch boundary (the trainer then
writes a checkpoint); a second one raises ``KeyboardInterrupt`` at once.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

__all__ = ["StopRequest", "stop_on_signals", "agree_to_stop", "EpochBatches"]


@dataclass
class StopRequest:
    """Whether a stop was asked for, and by which signal (``"SIGINT"``/``"SIGTERM"``)."""

    requested: bool = False
    signal: Optional[str] = None


@contextmanager
def stop_on_signals(request: StopRequest, enabled: bool = True) -> Iterator[None]:
    """While active, SIGINT and SIGTERM set ``request`` (a second one raises ``KeyboardInterrupt``).
    Does nothing when ``enabled`` is false or outside the main thread (signals go to it only)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True
        request.signal = signal.Signals(signum).name
        what = "interrupt" if signum == signal.SIGINT else request.signal
        print(f"\nfptt: {what} received: saving a checkpoint at the next batch boundary "
              "(press Ctrl-C or send the signal again to abort without saving)", file=sys.stderr, flush=True)

    # SIGINT (Ctrl-C) and SIGTERM (kill, batch schedulers, container stops) alike
    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def agree_to_stop(requested: bool, world_size: int, device: torch.device) -> bool:
    """A stop request of any rank, agreed by all ranks (one tiny all-reduce; no-op for one process)."""
    if world_size == 1:
        return requested
    import torch.distributed as dist

    flag = torch.tensor([1.0 if requested else 0.0], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


class EpochBatches:
    """The training loader for one epoch: skips the batches already trained (resume), caps the
    count (``limit``, ``max_batches``) and stops at a batch boundary once ``stop()`` is true.
    ``on_boundary(done)`` runs between batches (checkpoints, learning-curve points)."""

    def __init__(self, loader: Iterable[Any], total: int, skip: int, limit: Optional[int], stop: Callable[[], bool],
                 on_boundary: Optional[Callable[[int], None]] = None) -> None:
        self.loader, self.skip, self.stop = loader, skip, stop
        self.on_boundary = on_boundary
        self.done = 0
        total = total if limit is None else min(total, limit)
        self.remaining = max(total - skip, 0)

    def __len__(self) -> int:
        return self.remaining

    def __iter__(self) -> Iterator[Any]:
        for index, batch in enumerate(self.loader):
            if index < self.skip:
                continue
            if self.done >= self.remaining:
                return
            if self.done and self.on_boundary is not None:
                self.on_boundary(self.done)  # after `done` batches were trained, before the next
            if self.done > 0 and self.stop():
                return
            self.done += 1
            yield batch
