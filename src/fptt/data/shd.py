"""Spiking Heidelberg Digits (SHD; Cramer et al. 2020), read from the official HDF5 files.

Files: ``shd_train.h5`` / ``shd_test.h5`` (or the distributed ``.h5.gz``) in ``<root>/`` or
``<root>/SHD/`` (the latter is where ``tonic.datasets.SHD(save_to=<root>)`` puts them). A
``.h5.gz`` is decompressed once to ``shd_<split>.h5`` next to it, or, when that folder is
read-only, to ``<tempdir>/fptt-shd-<hash>/`` (never the working directory).

Layout read with h5py: ``spikes/times`` (ragged float, seconds), ``spikes/units`` (ragged int,
0..699), ``labels`` (int, 0..19) and, when present, ``extra/speaker`` and ``extra/keys``.

Binning: a spike at time ``t`` falls into bin ``floor(t / (max_time / num_bins))`` and channel
``unit // channel_pool``; the item is the dense count matrix ``x`` (num_bins, 700 // channel_pool)
float32 and ``y`` the int64 label. **Spikes at ``t >= max_time`` are dropped** (with the default
``max_time=1.0`` s this cuts the tail of the few digits longer than a second). Spikes with a NaN,
infinite or negative time, or a unit outside 0..699, are dropped too, counted in
:attr:`SHD.num_invalid_dropped` and reported by one warning per dataset object (per worker).
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._common import DatasetNotFoundError, data_root

__all__ = ["SHD", "SHDFormatError", "SHD_URLS", "bin_spikes"]

NUM_UNITS = 700
NUM_CLASSES = 20
SHD_URLS = {
    "train": "https://zenkelab.org/datasets/shd_train.h5.gz",
    "test": "https://zenkelab.org/datasets/shd_test.h5.gz",
}
_REQUIRED = ("spikes/times", "spikes/units", "labels")
_OPTIONAL = ("extra/speaker", "extra/keys")


class SHDFormatError(ValueError):
    """The HDF5 file does not have the SHD layout (missing datasets, mismatched lengths, bad labels)."""


def _import_h5py():
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('SHD needs h5py: pip install "fptt[data]"') from error
    return h5py


def bin_spikes(
    times: np.ndarray,
    units: np.ndarray,
    num_bins: int,
    max_time: float,
    num_units: int = NUM_UNITS,
    channel_pool: int = 1,
) -> tuple[np.ndarray, int]:
    """Dense spike counts (num_bins, num_units // channel_pool) float32, and the number of invalid
    spikes dropped (NaN/Inf/negative time, unit outside ``0..num_units-1``). Spikes with
    ``t >= max_time`` are dropped silently (they are not invalid)."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    units = np.asarray(units).reshape(-1)
    if times.shape != units.shape:
        raise SHDFormatError(f"spike times ({times.shape[0]}) and units ({units.shape[0]}) differ in length")
    units = units.astype(np.int64)
    valid = np.isfinite(times) & (times >= 0) & (units >= 0) & (units < num_units)
    invalid = int(valid.size - np.count_nonzero(valid))
    keep = valid & (times < max_time)
    bin_width = max_time / num_bins
    bins = np.floor(times[keep] / bin_width).astype(np.int64)
    np.clip(bins, 0, num_bins - 1, out=bins)  # t < max_time but t / width rounds up to num_bins
    channels = num_units // channel_pool
    flat = bins * channels + units[keep] // channel_pool
    counts = np.bincount(flat, minlength=num_bins * channels)
    return counts.reshape(num_bins, channels).astype(np.float32), invalid


def _gunzip_atomic(gz_path: Path, target: Path) -> Path:
    handle, partial = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, gzip.open(gz_path, "rb") as source:
            shutil.copyfileobj(source, out, length=1 << 20)
        os.replace(partial, target)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise
    return target


def _decompress(gz_path: Path) -> Path:
    """``shd_x.h5.gz`` -> ``shd_x.h5`` next to it (once; atomic write), or, when that folder is not
    writable, into ``<tempdir>/fptt-shd-<hash of path, size, mtime>/``."""
    target = gz_path.with_suffix("")  # drop .gz
    if target.is_file():
        return target
    try:
        if os.access(gz_path.parent, os.W_OK):
            return _gunzip_atomic(gz_path, target)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise SHDFormatError(f"{gz_path}: corrupt gzip file ({error})") from None
    except OSError:
        pass  # read-only folder or file system: fall back to the temp folder
    stat = gz_path.stat()
    key = hashlib.sha1(f"{gz_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"fptt-shd-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / target.name
    if target.is_file():
        return target
    try:
        return _gunzip_atomic(gz_path, target)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise SHDFormatError(f"{gz_path}: corrupt gzip file ({error})") from None


def _locate(root: Optional[Path], split: str) -> Path:
    name = f"shd_{split}.h5"
    url = SHD_URLS[split]
    if root is None:
        raise DatasetNotFoundError(
            f"SHD needs a data root: pass root=... or set FPTT_DATA to a folder holding {name} "
            f"(or {name}.gz, or SHD/{name}); download {url}"
        )
    folders = [root, root / "SHD"]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    for folder in folders:
        if (folder / (name + ".gz")).is_file():
            return _decompress(folder / (name + ".gz"))
    expected = [str(folder / candidate) for folder in folders for candidate in (name, name + ".gz")]
    raise DatasetNotFoundError(
        f"SHD {split} split not found; looked for {', '.join(expected)}. Download {url} into {root} "
        f"(e.g. `wget -P {root} {url}`); tonic.datasets.SHD(save_to='{root}') also works."
    )


class SHD(Dataset):
    """Spiking Heidelberg Digits as dense binned spike counts; see the module docstring.

    Args:
        root: folder with the files (default ``FPTT_DATA``); see the module docstring for layouts.
        split: ``"train"`` (8,156 digits) or ``"test"`` (2,264 digits).
        num_bins: time steps T.
        max_time: seconds covered by the bins; later spikes are dropped.
        channel_pool: sum groups of this many neighbouring units (must divide 700).

    Attributes: ``num_classes`` (20), ``input_size`` (700 // channel_pool), ``seq_len``
    (num_bins), ``labels`` (int64 tensor), ``speakers`` (array or None), ``keys`` (class names
    or None), ``path`` (the .h5 read), ``num_invalid_dropped``.
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        root: Optional[str | os.PathLike] = None,
        split: str = "train",
        num_bins: int = 100,
        max_time: float = 1.0,
        channel_pool: int = 1,
    ) -> None:
        if split not in SHD_URLS:
            raise ValueError(f"SHD split must be 'train' or 'test', got {split!r}")
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
        if not (isinstance(max_time, (int, float)) and math.isfinite(max_time) and max_time > 0):
            raise ValueError(f"max_time must be a positive finite number of seconds, got {max_time!r}")
        if not isinstance(channel_pool, int) or channel_pool < 1 or NUM_UNITS % channel_pool:
            divisors = [d for d in range(1, NUM_UNITS + 1) if NUM_UNITS % d == 0]
            raise ValueError(f"channel_pool must divide {NUM_UNITS}, one of {divisors}; got {channel_pool!r}")
        self.split = split
        self.num_bins, self.max_time, self.channel_pool = num_bins, float(max_time), channel_pool
        self.seq_len, self.input_size = num_bins, NUM_UNITS // channel_pool
        self.path = _locate(data_root(root), split)
        self.num_invalid_dropped = 0
        self._warned = False
        self._file: Any = None
        h5py = _import_h5py()
        try:
            with h5py.File(self.path, "r") as handle:
                self._validate(handle)
                self.labels = torch.from_numpy(np.asarray(handle["labels"][()], dtype=np.int64))
                self.speakers = np.asarray(handle["extra/speaker"][()]) if "extra/speaker" in handle else None
                keys = handle["extra/keys"][()] if "extra/keys" in handle else None
        except OSError as error:
            raise SHDFormatError(f"{self.path}: not a readable HDF5 file ({error})") from None
        self.keys = None if keys is None else [k.decode() if isinstance(k, bytes) else str(k) for k in keys]

    def _validate(self, handle) -> None:
        missing = [name for name in _REQUIRED if name not in handle]
        if missing:
            raise SHDFormatError(
                f"{self.path}: not in the SHD layout, missing dataset(s) {', '.join(missing)} "
                f"(expected {', '.join(_REQUIRED)}; optional {', '.join(_OPTIONAL)})"
            )
        lengths = {name: handle[name].shape[0] if handle[name].shape else None for name in _REQUIRED}
        if len(set(lengths.values())) != 1 or None in lengths.values():
            raise SHDFormatError(f"{self.path}: datasets differ in length: {lengths}")
        if "extra/speaker" in handle and handle["extra/speaker"].shape[:1] != (lengths["labels"],):
            raise SHDFormatError(f"{self.path}: extra/speaker has shape {handle['extra/speaker'].shape}, expected ({lengths['labels']},)")
        labels = np.asarray(handle["labels"][()])
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise SHDFormatError(f"{self.path}: labels must lie in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for SHD {self.split} ({len(self)} items)")
        if self._file is None:
            self._file = _import_h5py().File(self.path, "r")
        times = self._file["spikes/times"][index]
        units = self._file["spikes/units"][index]
        counts, invalid = bin_spikes(times, units, self.num_bins, self.max_time, NUM_UNITS, self.channel_pool)
        if invalid:
            self.num_invalid_dropped += invalid
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"SHD {self.path.name}: dropped {invalid} spike(s) of item {index} with NaN/Inf/negative "
                    f"times or units outside 0..{NUM_UNITS - 1} (further drops counted in num_invalid_dropped)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return torch.from_numpy(counts), self.labels[index]

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not pickle; each worker opens its own
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
