"""Checkpoints that resume exactly and load with ``torch.load(weights_only=True)``.

A checkpoint is one dict of tensors, numbers, strings, lists and dicts only:

``format``, ``model`` (state_dict), ``optimizer`` (state_dict; FPTT's holds W̄ and λ),
``scheduler`` (state_dict or None), ``epoch`` (completed epochs), ``batches_done`` (batches of the
next epoch already trained, > 0 only after an interruption), ``rng`` (torch CPU/CUDA, numpy and
Python ``random`` states, as tensors and lists), ``config`` (the run's resolved config),
``history`` (the metrics rows so far) and ``best`` (the best evaluation score so far).

Writes are atomic: a temporary file in the target's folder is written, flushed and fsync'ed,
then renamed over the target with :func:`os.replace`, so a crash never leaves a torn file.

Loading is safe on untrusted files: :func:`load_checkpoint` uses ``weights_only=True`` (no
arbitrary pickled objects, so no code runs) and turns a refused, corrupt or truncated file into
one :class:`CheckpointError` naming the file and the reason.
"""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..optim import FPTT
from .files import atomic_write, write_text_atomic
from .records import BEST, LAST

__all__ = ["save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state", "find_checkpoint",
           "remove_stale_temporaries", "write_text_atomic", "CheckpointError", "CHECKPOINT_FORMAT", "LAST", "BEST",
           "PoisonedCheckpointError", "nonfinite_tensors", "training_payload", "restore_training"]

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: refused by the safe loader (it holds pickled objects
    other than tensors and plain containers), corrupt, truncated, or not an fptt checkpoint."""


class PoisonedCheckpointError(FloatingPointError):
    """A checkpoint was not written because the weights or optimizer state hold NaN/Inf."""


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
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    return atomic_write(Path(path), lambda handle: torch.save(payload, handle))


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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a process killed inside :func:`save_checkpoint` left in
    ``folder`` (``.<name>.<random>.tmp``); the checkpoints themselves are never touched."""
    removed = []
    for name in (LAST, BEST):
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            try:
                stale.unlink()
                removed.append(stale)
            except FileNotFoundError:  # pragma: no cover - removed concurrently
                pass
    return removed


def _refusal_reason(error: BaseException) -> str:
    """The informative line of torch's weights-only refusal (e.g. the blocked global)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line:
            return line
    return lines[0] if lines else type(error).__name__


def load_checkpoint(path: str | os.PathLike, map_location: Optional[str | torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises :class:`CheckpointError` (a ``ValueError``) for a file the safe loader refuses (a
    malicious or foreign pickle: nothing in it is executed), a corrupt or truncated file, or a
    file that is not an fptt checkpoint; ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, which "
            f"could run code ({_refusal_reason(error)}); fptt checkpoints never do. Load it yourself "
            "with torch.load(weights_only=False) only if you trust its source"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, OverflowError, MemoryError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is corrupt, truncated or not a torch checkpoint ({first})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not an fptt checkpoint (no model/config entries)")
    if not isinstance(payload.get("format", 0), int) or payload.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written by a newer fptt (format {payload['format']}); upgrade fptt")
    return payload


def nonfinite_tensors(value: Any, where: str = "") -> list[str]:
    """The names of the floating-point tensors in a (nested) checkpoint entry that hold NaN/Inf."""
    if torch.is_tensor(value):
        return [where] if value.is_floating_point() and not bool(torch.isfinite(value).all()) else []
    if isinstance(value, dict):
        return [name for key, item in value.items() for name in nonfinite_tensors(item, f"{where}.{key}" if where else str(key))]
    if isinstance(value, (list, tuple)):
        return [name for index, item in enumerate(value) for name in nonfinite_tensors(item, f"{where}[{index}]")]
    return []


def training_payload(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *, epoch: int,
                     batches_done: int, config: dict[str, Any], **progress: Any) -> dict[str, Any]:
    """The checkpoint of a training run after ``epoch`` completed epochs (+ ``batches_done`` of
    the next): weights, W̄ as a plain model ``state_dict`` (FPTT; ``fptt eval`` and exports read
    it without the optimizer), optimizer, scheduler, RNG states, the config, and the run's
    ``progress`` entries (history, curve, best score, model shape, ...)."""
    return {
        "model": model.state_dict(),
        "model_average": optimizer.averaged_state_dict(model) if isinstance(optimizer, FPTT) else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "batches_done": batches_done,
        "rng": get_rng_state(),
        "config": config,
        **progress,
    }


def restore_training(payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any) -> None:
    """Load what :func:`training_payload` saved into ``model``, ``optimizer`` and ``scheduler``, and
    restore the RNG states (the caller reads the progress entries)."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
