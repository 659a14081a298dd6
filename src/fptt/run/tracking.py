"""Experiment trackers: the metrics a run folder records, also sent to TensorBoard (``--log``).

The run folder stays the record (``metrics.jsonl``, ``curve.jsonl``, ``summary.json``); a tracker
receives the same numbers as they are written, on one step axis, the training batches so far,
under these tags:

* per epoch (at the epoch's last batch): ``epoch``, ``train/<key>`` and ``eval/<key>`` for every numeric entry of the
  metrics row (``loss``, ``accuracy`` or ``mse``, ``firing_rate``, ``peak_memory_mb``, ``seconds``,
  ``updates``, ``skipped_updates``, ...), ``lr``, and, with ``--measure-memory``,
  ``memory/saved_bytes_per_update`` (the peak bytes autograd saved in one update so far);
* per learning-curve point (``--eval-every``):
  ``curve/<metric>_weights`` and ``curve/<metric>_average`` (W and W̄).

``tensorboard`` (the ``logging`` extra: ``pip install 'fptt[logging]'``) writes event files to
``RUN_DIR/tensorboard``; view them with ``tensorboard --logdir RUN_DIR``. A resumed run purges the
points after its checkpoint, so the curves do not double back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from ..spec.vocabulary import LOGGERS

__all__ = ["Tracker", "TensorBoardTracker", "open_tracker", "epoch_scalars", "curve_scalars"]

TENSORBOARD_FOLDER = "tensorboard"


def epoch_scalars(row: Mapping[str, Any], saved_bytes_per_update: Optional[int] = None) -> dict[str, float]:
    """The ``{tag: value}`` of one ``metrics.jsonl`` row (numeric entries only; booleans and
    missing values are left out)."""
    scalars: dict[str, float] = {"epoch": float(row["epoch"])} if "epoch" in row else {}
    for part in ("train", "eval"):
        for key, value in (row.get(part) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                scalars[f"{part}/{key}"] = float(value)
    if isinstance(row.get("lr"), (int, float)):
        scalars["lr"] = float(row["lr"])
    if saved_bytes_per_update:
        scalars["memory/saved_bytes_per_update"] = float(saved_bytes_per_update)
    return scalars


def curve_scalars(point: Mapping[str, Any]) -> dict[str, float]:
    """The ``{tag: value}`` of one ``curve.jsonl`` point (W and, for FPTT, W̄)."""
    metric = point.get("metric", "score")
    return {f"curve/{metric}_{which}": float(point[which]) for which in ("weights", "average")
            if isinstance(point.get(which), (int, float))}


class Tracker:
    """A tracker that records nothing (``--log none``); the interface of every tracker."""

    def epoch(self, row: Mapping[str, Any], step: int, saved_bytes_per_update: Optional[int] = None) -> None:
        """Record one epoch's ``metrics.jsonl`` row at ``step`` (training batches so far)."""

    def curve(self, point: Mapping[str, Any]) -> None:
        """Record one learning-curve point."""

    def close(self) -> None:
        """Flush and release the tracker's files."""


class TensorBoardTracker(Tracker):
    """Scalars to ``RUN_DIR/tensorboard`` with ``torch.utils.tensorboard.SummaryWriter``.

    Args:
        run_dir: the run folder.
        purge_step: on resume, the training batches of the checkpoint plus one: the points after
            the checkpoint that the interrupted process had written are dropped (TensorBoard's
            ``purge_step``).
    """

    def __init__(self, run_dir: str | Path, purge_step: Optional[int] = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch raises this when the tensorboard package is absent
            raise ImportError(f"--log tensorboard needs the tensorboard package ({error}); "
                              "pip install 'fptt[logging]'") from error
        self.folder = Path(run_dir) / TENSORBOARD_FOLDER
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge_step)

    def _write(self, scalars: Mapping[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def epoch(self, row: Mapping[str, Any], step: int, saved_bytes_per_update: Optional[int] = None) -> None:
        self._write(epoch_scalars(row, saved_bytes_per_update), step)
        self.writer.flush()

    def curve(self, point: Mapping[str, Any]) -> None:
        self._write(curve_scalars(point), int(point["batch"]))

    def close(self) -> None:
        self.writer.close()


def open_tracker(kind: str, run_dir: str | Path, purge_step: Optional[int] = None) -> Tracker:
    """The tracker named ``kind`` (one of :data:`fptt.spec.vocabulary.LOGGERS`)."""
    if kind not in LOGGERS:
        raise ValueError(f"log must be one of {', '.join(LOGGERS)}, got {kind!r}")
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, purge_step)
    return Tracker()
