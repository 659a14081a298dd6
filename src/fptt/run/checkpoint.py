"""Checkpoints that resume exactly and load with ``torch.load(weights_only=True)``.

A checkpoint is one dict of tensors, numbers, strings, lists and dicts only:

``format``, ``model`` (state_dict), ``optimizer`` (state_dict; FPTT's holds W̄ and λ),
``scheduler`` (state_dict or None), ``epoch`` (completed epochs), ``batches_done`` (batches of the
next epoch already trained, > 0 only after an interruption), ``rng`` (torch CPU/CUDA, numpy and
Python ``random`` states, as tensors and lists), ``config`` (the run's resolved config),
``history`` (the metrics rows so far) and ``best`` (the best evaluation score so far).

Writes are atomic: a temporary file in the target's folder is written, flushed and fsync'ed,
then renamed over the target with :func:`os.replace`, so a crash never leaves a torn file.
:func:`save_generation` also keeps the file it replaces as ``checkpoint_previous.pt`` (a hard
link: no extra write), so one bad file never leaves a run without a checkpoint to resume from.

Every checkpoint (format 2 on) carries ``checksum``: the SHA-256 of its contents (each tensor's
dtype, shape and bytes, every key, number and string, in order; :func:`content_digest`), which
:func:`load_checkpoint` recomputes. torch's zip reader does not verify its records' CRC-32, so
without it a flipped bit in a tensor loads silently (measured: 203 of 300 single-bit flips of a
small checkpoint loaded with changed values). Format-1 checkpoints (fptt 0.3 and earlier) carry no
checksum: they still load, checked only by torch's unpickler (:func:`is_verified` tells them apart).

Loading is safe on untrusted files: :func:`load_checkpoint` uses ``weights_only=True`` (no
arbitrary pickled objects, so no code runs) and turns a refused, corrupt or truncated file into
one :class:`CheckpointError` naming the file and the reason. :func:`newest_good_checkpoint` picks
the newest checkpoint of a run folder that loads and verifies (``--resume`` falls back with it).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..optim import FPTT, WeightEMA
from .files import atomic_write, write_text_atomic
from .records import BEST, LAST, PREVIOUS

__all__ = ["save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state", "find_checkpoint",
           "remove_stale_temporaries", "write_text_atomic", "CheckpointError", "CHECKPOINT_FORMAT", "LAST", "BEST",
           "PREVIOUS", "PoisonedCheckpointError", "CheckpointWriteError", "nonfinite_tensors", "training_payload",
           "restore_training", "content_digest", "is_verified", "save_generation", "newest_good_checkpoint",
           "GoodCheckpoint"]

CHECKPOINT_FORMAT = 2  # 2: with a content checksum (after fptt 0.3.0); 1: without (fptt 0.3 and earlier)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: refused by the safe loader (it holds pickled objects
    other than tensors and plain containers), corrupt, truncated, or not an fptt checkpoint."""


class PoisonedCheckpointError(FloatingPointError):
    """A checkpoint was not written because the weights or optimizer state hold NaN/Inf."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, an I/O error, a read-only folder); the
    previous checkpoint file is left as it was. The message names the folder, the reason and,
    for a full disk, the space the checkpoint needs and the space free."""


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


def _feed(hasher: Any, value: Any) -> None:
    """Add ``value`` to ``hasher`` unambiguously: a type tag, a length where needed, the content."""
    if torch.is_tensor(value):
        if value.layout != torch.strided:
            raise TypeError(f"cannot checksum a {value.layout} tensor; checkpoints hold dense tensors")
        tensor = value.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"T{value.dtype}{tuple(value.shape)}:".encode())
        hasher.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    elif isinstance(value, dict):
        hasher.update(f"D{len(value)}:".encode())
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, str):
        encoded = value.encode("utf-8", "surrogatepass")
        hasher.update(f"S{len(encoded)}:".encode() + encoded)
    elif isinstance(value, bool) or value is None:
        hasher.update(f"B{value}:".encode())
    elif isinstance(value, int):
        hasher.update(f"I{value}:".encode())
    elif isinstance(value, float):
        hasher.update(f"F{value.hex()}:".encode())
    elif isinstance(value, (bytes, bytearray)):
        hasher.update(f"Y{len(value)}:".encode() + bytes(value))
    elif isinstance(value, (torch.dtype, torch.device)):
        hasher.update(f"O{value}:".encode())
    else:
        raise TypeError(f"a checkpoint holds tensors, numbers, strings, lists and dicts only, found "
                        f"{type(value).__name__} (it would not load with torch.load(weights_only=True))")


def content_digest(payload: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's contents, every entry but ``checksum``, in order: for each
    tensor its dtype, shape and bytes; for each dict its keys and values; lists, strings, numbers
    (floats exactly, by ``float.hex``), booleans and None by type and value."""
    hasher = hashlib.sha256()
    _feed(hasher, {key: value for key, value in payload.items() if key != "checksum"})
    return hasher.hexdigest()


def is_verified(payload: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint carried a checksum (format 2 on), which :func:`load_checkpoint`
    has verified; False for a format-1 file (fptt 0.3 and earlier), loaded unverified."""
    return isinstance(payload.get("checksum"), dict)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus ``format`` and its ``checksum``) to ``path`` atomically; returns the
    path. A value that is not a tensor, number, string, list or dict raises ``TypeError`` before
    anything is written; a failed write (``OSError``) leaves the previous file as it was."""
    payload = {key: value for key, value in payload.items() if key not in ("format", "checksum")}
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    payload["checksum"] = {"algorithm": "sha256", "digest": content_digest(payload)}
    return atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def save_generation(path: str | os.PathLike, payload: dict[str, Any], previous: str = PREVIOUS,
                    keep_previous: bool = True) -> Path:
    """:func:`save_checkpoint` to ``path``, keeping the file it replaces as ``previous`` (in the
    same folder; a hard link, so nothing is copied) when ``keep_previous``. At every moment ``path``
    holds the old or the new checkpoint, whole, and ``previous`` the one before or the old one.
    On a failed write (a full disk) it raises :class:`CheckpointWriteError` naming the folder, the
    space needed and the space free; both files are left as they were. A filesystem without hard
    links keeps no previous generation."""
    path = Path(path)
    if keep_previous and path.is_file():
        kept = path.with_name(previous)
        link = path.with_name(f".{previous}.{os.getpid()}.tmp")
        try:
            if link.exists():
                link.unlink()
            os.link(path, link)
            os.replace(link, kept)
        except OSError:  # no hard links here, or the folder cannot be written (the save below reports it)
            with contextlib.suppress(OSError):
                link.unlink()
    try:
        return save_checkpoint(path, payload)
    except OSError as error:
        raise CheckpointWriteError(error.errno, _write_failure(path, payload, error)) from None


def _payload_bytes(payload: Any) -> int:
    """The bytes of the tensors in a (nested) payload: about the size of its checkpoint file."""
    if torch.is_tensor(payload):
        return payload.numel() * payload.element_size()
    if isinstance(payload, dict):
        return sum(_payload_bytes(value) for value in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(_payload_bytes(value) for value in payload)
    return 0


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB"


def _write_failure(path: Path, payload: dict[str, Any], error: OSError) -> str:
    """The one-line message of a failed checkpoint write."""
    reason = error.strerror or str(error)
    message = f"could not write {path.name} in {path.parent}: {reason}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        needed = max(path.stat().st_size if path.is_file() else 0, _payload_bytes(payload)) + 2**16
        try:
            free = shutil.disk_usage(path.parent).free
            message += f" (the checkpoint needs about {_megabytes(needed)}; {_megabytes(free)} free)"
        except OSError:  # pragma: no cover
            message += f" (the checkpoint needs about {_megabytes(needed)})"
    kept = [name for name in (path.name, PREVIOUS) if (path.parent / name).is_file()]
    if kept:
        message += f"; the previous checkpoint was kept intact ({', '.join(kept)})"
    else:
        message += "; no checkpoint had been written yet"
    return message


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
    for name in (LAST, BEST, PREVIOUS):
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
        reason = _refusal_reason(error)
        if "GLOBAL" not in reason:  # a damaged pickle stream (e.g. a flipped opcode), not a foreign object
            raise CheckpointError(f"{path} is corrupt, truncated or not a torch checkpoint ({reason})") from None
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, which "
            f"could run code ({reason}); fptt checkpoints never do. Load it yourself "
            "with torch.load(weights_only=False) only if you trust its source"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, OverflowError, MemoryError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is corrupt, truncated or not a torch checkpoint ({first})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not an fptt checkpoint (no model/config entries)")
    version = payload.get("format", 0)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written by a newer fptt (format {version!r}); upgrade fptt")
    checksum = payload.get("checksum")
    if version >= 2 or checksum is not None:  # format 1 (fptt <= 0.3) has none and loads unverified
        if not (isinstance(checksum, dict) and set(checksum) == {"algorithm", "digest"}
                and checksum["algorithm"] == "sha256" and isinstance(checksum["digest"], str)):
            raise CheckpointError(f"{path} is corrupt: its checksum entry is missing or damaged")
        try:
            digest = content_digest(payload)
        except TypeError as error:
            raise CheckpointError(f"{path} is corrupt: {error}") from None
        if digest != checksum["digest"]:
            raise CheckpointError(f"{path} is corrupt: its contents do not match the checksum written with them "
                                  "(a flipped bit or a damaged copy); it was not loaded")
    return payload


@dataclass
class GoodCheckpoint:
    """What :func:`newest_good_checkpoint` found: the path and payload of the newest checkpoint
    that loads and verifies, and one line per newer candidate it had to pass over."""

    path: Path
    payload: dict[str, Any]
    rejected: list[str] = field(default_factory=list)


def _progress(payload: dict[str, Any]) -> tuple[int, int]:
    """How far a checkpoint's run had got: (epochs or stream steps, batches into the next epoch)."""
    return int(payload.get("epoch", payload.get("steps", 0))), int(payload.get("batches_done", 0))


def newest_good_checkpoint(folder: str | os.PathLike, names: Sequence[str] = (LAST, PREVIOUS, BEST),
                           map_location: Optional[str | torch.device] = "cpu") -> Optional[GoodCheckpoint]:
    """The newest checkpoint of ``folder`` that loads and passes its checksum.

    ``names[0]`` (``checkpoint_last.pt``) is always the newest when it is good and is used at once;
    otherwise the good one of the others that had got furthest (epoch, batches) is taken, and
    ``rejected`` says why each newer file was passed over. Returns None when none of the files
    exists (a run killed before its first checkpoint); raises :class:`CheckpointError` naming every
    file and its fault when files exist but none is good: it never returns a damaged payload."""
    folder = Path(folder)
    rejected: list[str] = []
    best: Optional[GoodCheckpoint] = None
    present = [folder / name for name in names if (folder / name).is_file()]
    if not present:
        return None
    for path in present:
        try:
            payload = load_checkpoint(path, map_location=map_location)
        except CheckpointError as error:
            rejected.append(str(error))
            continue
        if path.name == names[0]:
            return GoodCheckpoint(path, payload, rejected)
        if best is None or _progress(payload) > _progress(best.payload):
            best = GoodCheckpoint(path, payload)
    if best is None:
        raise CheckpointError(f"no good checkpoint to resume from in {folder}: " + "; ".join(rejected)
                              + ". Start a new run (or restore the folder from a backup)")
    if not (folder / names[0]).is_file():
        rejected.insert(0, f"{folder / names[0]} is missing")
    best.rejected = rejected
    return best


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
                     batches_done: int, config: dict[str, Any], weight_average: Optional[WeightEMA] = None,
                     **progress: Any) -> dict[str, Any]:
    """The checkpoint of a training run after ``epoch`` completed epochs (+ ``batches_done`` of
    the next): weights, W̄ (FPTT) and W_ema (``weight_average``) as plain model ``state_dict``s
    (``fptt eval`` and exports read them without the optimizer), optimizer, scheduler, RNG
    states, the config, and the run's ``progress`` entries (history, curve, best score, model
    shape, ...)."""
    return {
        "model": model.state_dict(),
        "model_average": optimizer.averaged_state_dict(model) if isinstance(optimizer, FPTT) else None,
        "model_ema": weight_average.model_state_dict(model) if weight_average is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "batches_done": batches_done,
        "rng": get_rng_state(),
        "config": config,
        **progress,
    }


def restore_training(payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, weight_average: Optional[WeightEMA] = None) -> None:
    """Load what :func:`training_payload` saved into ``model``, ``optimizer``, ``scheduler`` and
    ``weight_average``, and restore the RNG states (the caller reads the progress entries)."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if weight_average is not None:
        if payload.get("model_ema") is None:
            raise CheckpointError("this checkpoint holds no moving average of the weights (model_ema), which the "
                                  "run's config asks for (eval_with ema)")
        weight_average.load_model_state_dict(payload["model_ema"])
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
