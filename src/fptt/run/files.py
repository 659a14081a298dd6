"""Crash-safe file writes (no torch import: the command line uses them before loading the library)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "write_text_atomic"]


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Temporary file in ``path``'s folder, ``write`` into it, flush, fsync, ``os.replace``, fsync
    the folder: a crash at any moment leaves either the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
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


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``config.json``, ``summary.json``, ...)."""
    data = text.encode("utf-8")
    return atomic_write(Path(path), lambda handle: handle.write(data))
