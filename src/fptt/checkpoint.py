"""Checkpoints that resume exactly and load with ``torch.load(weights_only=True)``.

A checkpoint is one dict of tensors, numbers, strings, lists and dicts only:

``format``, ``model`` (state_dict), ``optimizer`` (state_dict; FPTT's holds W̄ and λ),
``scheduler`` (state_dict or None), ``epoch`` (completed epochs), ``batches_done`` (batches of the
next epoch already trained, > 0 only after an interruption), ``rng`` (torch CPU/CUDA, numpy and
Python ``random`` states, as tensors and lists), ``config`` (the run's resolved config),
``history`` (the metrics rows so far) and ``best`` (the best evaluation score so far).

Writes are atomic: a temporary file in the target's folder is written, flushed and fsync'ed,
then renamed over the target with :func:`os.replace`, so a crash never leaves a torn file.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state", "find_checkpoint",
           "CHECKPOINT_FORMAT", "LAST", "BEST"]

CHECKPOINT_FORMAT = 1
LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"


def get_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python ``random`` generator states, weights_only-safe."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus ``format``) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass
    return path


def find_checkpoint(run_dir_or_file: str | os.PathLike, which: str = "last") -> Path:
    """The checkpoint file of a run folder (``last`` or ``best``), or the file itself."""
    path = Path(run_dir_or_file)
    if path.is_dir():
        candidate = path / (LAST if which == "last" else BEST)
        if not candidate.is_file() and which == "best":
            candidate = path / LAST
        if not candidate.is_file():
            raise FileNotFoundError(f"no checkpoint in {path} (expected {LAST}); is it a run folder of `fptt train`?")
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint or run folder not found: {path}")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Optional[str | torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check its format."""
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not an fptt checkpoint (no model/config entries)")
    if payload.get("format", 0) > CHECKPOINT_FORMAT:
        raise ValueError(f"{path} was written by a newer fptt (format {payload['format']}); upgrade fptt")
    return payload
