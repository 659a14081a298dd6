"""A run folder: the names of its files, in one place, and the writers and readers of its JSON
records (no torch import: the command line reads run folders before loading the library).

What ``fptt train`` writes in a run folder::

    config.json          the resolved configuration: enough to rebuild the model and to resume
    metrics.jsonl        one JSON line per epoch (train and evaluation metrics)
    curve.jsonl          learning-curve points every ``eval_every`` batches
    summary.json         written at the end of the run (with the one test score)
    test_reads.json      every read of the test split: ``fptt train``'s one, after the last epoch,
                         and each ``fptt eval --split test`` (:func:`record_test_read`)
    checkpoint_last.pt   after every epoch (and every ``checkpoint_every`` batches)
    checkpoint_best.pt   when the validation score improved
    checkpoint_previous.pt  the checkpoint_last.pt that the latest one replaced (a fallback)
    plots/               figures (the ``plot`` extra)

Every whole-file write is atomic (:func:`fptt.run.files.write_text_atomic`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from .files import write_text_atomic

__all__ = ["CONFIG", "METRICS", "CURVE", "SUMMARY", "LAST", "BEST", "PREVIOUS", "PLOTS", "TEST_READS", "write_json",
           "write_json_lines", "append_json_line", "read_json_lines", "read_test_reads", "record_test_read"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CURVE = "curve.jsonl"
SUMMARY = "summary.json"
LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"
PREVIOUS = "checkpoint_previous.pt"
PLOTS = "plots"
TEST_READS = "test_reads.json"


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """``value`` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def write_json_lines(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """One JSON line per row, atomically (the whole file replaced)."""
    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_json_line(path: str | os.PathLike, row: Any) -> None:
    """Append one JSON line."""
    with Path(path).open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (``[]`` when it does not exist); ``ValueError`` naming the line
    that is not JSON."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error.msg}); is the file complete?") from None
    return rows


def read_test_reads(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every read of the run's test split so far (``[]`` for a run that never read it, or a run
    folder from before v0.4, which did not count)."""
    path = Path(run_dir) / TEST_READS
    if not path.is_file():
        return []
    return list(json.loads(path.read_text())["reads"])


def record_test_read(run_dir: str | os.PathLike, read: dict[str, Any]) -> int:
    """Append one read of the test split (who read it, which weights, the score), numbered and
    time-stamped, to ``test_reads.json``, atomically, and return how many reads the run has had."""
    earlier = read_test_reads(run_dir)
    reads = [*earlier, {"read": len(earlier) + 1, **read, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
    write_json(Path(run_dir) / TEST_READS, {"count": len(reads), "reads": reads})
    return len(reads)
