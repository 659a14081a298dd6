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

Untrusted files: the layout, dtypes and lengths are checked from the HDF5 metadata *before* any
data are read (at most :data:`MAX_ITEMS` digits, :data:`MAX_SPIKES` spikes per digit), so a file
declaring 10^12 digits is refused without allocating; any file h5py cannot read, or whose layout
is wrong, raises :class:`SHDFormatError` (a ``ValueError``) naming the file.
"""
from __future__ import annotations

import contextlib
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

__all__ = ["SHD", "SHDFormatError", "SHD_URLS", "bin_spikes", "MAX_ITEMS", "MAX_SPIKES"]

NUM_UNITS = 700
NUM_CLASSES = 20
SHD_URLS = {
    "train": "https://zenkelab.org/datasets/shd_train.h5.gz",
    "test": "https://zenkelab.org/datasets/shd_test.h5.gz",
}
MAX_ITEMS = 10_000_000  # SHD has 10,420 digits; nothing legitimate comes near
MAX_SPIKES = 10_000_000  # per digit (SHD's longest has about 15,000)
MAX_KEYS = 10_000
_REQUIRED = ("spikes/times", "spikes/units", "labels")
# what each dataset must hold: numpy kinds of the (vlen base) dtype
_KINDS = {"spikes/times": "fiu", "spikes/units": "iu", "labels": "iu", "extra/speaker": "iu"}
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _gunzip_atomic(gz_path: Path, target: Path) -> Path:
    handle, partial = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, gzip.open(gz_path, "rb") as source:
            shutil.copyfileobj(source, out, length=1 << 20)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
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
                self._validate(handle, h5py)
                self.labels = torch.from_numpy(np.asarray(handle["labels"][()], dtype=np.int64).reshape(-1))
                self.speakers = np.asarray(handle["extra/speaker"][()]) if "extra/speaker" in handle else None
                keys = handle["extra/keys"][()] if "extra/keys" in handle else None
        except SHDFormatError:
            raise
        except Exception as error:  # h5py raises OSError, KeyError, ValueError, TypeError, ... on bad files
            raise SHDFormatError(f"{self.path}: not a readable HDF5 file in the SHD layout "
                                 f"({type(error).__name__}: {_first_line(error)})") from None
        labels = self.labels.numpy()
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise SHDFormatError(f"{self.path}: labels must lie in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")
        try:
            self.keys = None if keys is None else [k.decode() if isinstance(k, bytes) else str(k)
                                                   for k in np.asarray(keys).reshape(-1)]
        except UnicodeDecodeError as error:
            raise SHDFormatError(f"{self.path}: extra/keys is not text ({error})") from None

    def _validate(self, handle, h5py) -> None:
        """Layout, dtypes and lengths from the metadata only: nothing is read or allocated here."""
        missing = [name for name in _REQUIRED if name not in handle]
        if missing:
            raise SHDFormatError(
                f"{self.path}: not in the SHD layout, missing dataset(s) {', '.join(missing)} "
                f"(expected {', '.join(_REQUIRED)}; optional {', '.join(_OPTIONAL)})"
            )
        present = [name for name in _REQUIRED + _OPTIONAL if name in handle]
        for name in present:
            if not isinstance(handle[name], h5py.Dataset):
                raise SHDFormatError(f"{self.path}: {name} must be a dataset, got a {type(handle[name]).__name__}")
        for name in present:
            if name in _KINDS:
                dtype = handle[name].dtype
                base = h5py.check_vlen_dtype(dtype) or dtype
                if base.kind not in _KINDS[name]:
                    raise SHDFormatError(f"{self.path}: {name} has dtype {dtype}, expected numbers of kind "
                                         f"{'/'.join(_KINDS[name])} (numpy kinds)")
        shapes = {name: handle[name].shape for name in present}
        for name in ("spikes/times", "spikes/units", "labels", "extra/speaker"):
            if name in shapes and (shapes[name] is None or len(shapes[name]) != 1):
                raise SHDFormatError(f"{self.path}: {name} must be one-dimensional (one entry per digit), "
                                     f"got shape {shapes[name]}")
        lengths = {name: shapes[name][0] for name in _REQUIRED}
        if len(set(lengths.values())) != 1:
            raise SHDFormatError(f"{self.path}: datasets differ in length: {lengths}")
        count = lengths["labels"]
        if count > MAX_ITEMS:
            raise SHDFormatError(f"{self.path}: declares {count} digits, more than the {MAX_ITEMS} an SHD file may "
                                 "hold (corrupt or malicious file); nothing was read")
        if "extra/speaker" in shapes and shapes["extra/speaker"] != (count,):
            raise SHDFormatError(f"{self.path}: extra/speaker has shape {shapes['extra/speaker']}, expected ({count},)")
        if "extra/keys" in shapes and (shapes["extra/keys"] is None or math.prod(shapes["extra/keys"]) > MAX_KEYS):
            raise SHDFormatError(f"{self.path}: extra/keys has shape {shapes['extra/keys']}, expected at most "
                                 f"{MAX_KEYS} class names")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for SHD {self.split} ({len(self)} items)")
        try:
            if self._file is None:
                self._file = _import_h5py().File(self.path, "r")
            times = self._file["spikes/times"][index]
            units = self._file["spikes/units"][index]
        except Exception as error:  # a file corrupted after it was opened, or damaged data blocks
            raise SHDFormatError(f"{self.path}: cannot read digit {index} ({type(error).__name__}: "
                                 f"{_first_line(error)})") from None
        times, units = np.asarray(times).reshape(-1), np.asarray(units).reshape(-1)
        if times.size > MAX_SPIKES:
            raise SHDFormatError(f"{self.path}: digit {index} holds {times.size} spikes, more than {MAX_SPIKES}")
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
        with contextlib.suppress(Exception):
            self.close()
