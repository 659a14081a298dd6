"""Shared pieces of the datasets: the data root, the not-found error."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["DatasetNotFoundError", "data_root"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message names them and how to get them."""


def data_root(root: Optional[str | os.PathLike] = None) -> Optional[Path]:
    """``root`` if given, else the ``FPTT_DATA`` environment variable, else ``None``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("FPTT_DATA")
    return Path(env).expanduser() if env else None
