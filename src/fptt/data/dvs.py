"""Event-camera datasets (DVS128 Gesture, CIFAR10-DVS, N-MNIST) read through ``tonic`` and binned
into a fixed number of frames.

:func:`events_to_frames` turns a tonic structured event array (fields ``x``, ``y``, ``t``, ``p``
in any order and integer/bool dtypes) into float32 counts (num_frames, P, H', W'):

* time: the span ``[t_min, t_max]`` of the recording is cut into ``num_frames`` equal bins; an
  event goes to ``floor((t - t_min) / (t_max - t_min) * num_frames)``, the last event into the last
  bin (so **every** event is counted; ``tonic.transforms.ToFrame(n_time_bins=...)`` instead uses a
  floor-divided integer bin width and drops the events at and after ``t_min + n * width``);
* space: ``x' = floor(x * spatial_factor)`` as ``tonic.transforms.Downsample`` does, frame width
  ``W' = ceil(W * spatial_factor)`` (same for y);
* polarity: ``p > 0`` -> channel 1, else channel 0 (channel 0 only when the sensor has one);
* events with a NaN or infinite time stamp, or outside the sensor, are dropped (never counted
  in a wrong bin).

Datasets return ``x`` (num_frames, 2*H'*W') float32 (``flatten=True``) or (num_frames, 2, H', W')
and ``y`` int64. Binned items are cached under ``<root>/.fptt_cache/<dataset>-<settings hash>/``
(``torch.save``; read back with ``weights_only=True``; an entry of the wrong shape or dtype,
corrupt or refused, is recomputed).

Untrusted files: before tonic reads a DVS128 Gesture ``.npy`` recording, its header is checked
(numeric dtype, shape (N, 4), declared size equal to the bytes in the file), so a header claiming
10^12 events fails with :class:`EventFileError` (a ``ValueError``) without allocating. The other
formats are read by tonic with ``np.fromfile`` (memory bounded by the file's size).
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._common import DatasetNotFoundError, data_root

__all__ = ["events_to_frames", "DVSGesture", "DVSCIFAR10", "NMNIST", "EventFileError", "check_npy_events"]

_BINNING_VERSION = 1  # bump when events_to_frames changes, to invalidate caches
_NPY_MAX_HEADER = 10_000


class EventFileError(ValueError):
    """An event recording whose header is malformed or does not match the file's size."""


def check_npy_events(path: str | os.PathLike, columns: int = 4) -> tuple[int, ...]:
    """Validate a ``.npy`` event recording from its header alone; returns its shape.

    Checks the magic string, a numeric (integer or float) dtype, a 2-D shape ``(N, columns)`` and
    that the declared size equals the data bytes in the file, so nothing is allocated for a header
    that lies. Raises :class:`EventFileError` naming the file and the problem.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=_NPY_MAX_HEADER)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=_NPY_MAX_HEADER)
            else:
                raise EventFileError(f"{path}: unsupported .npy version {version}")
            offset = handle.tell()
    except EventFileError:
        raise
    except Exception as error:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EventFileError(f"{path}: not a valid .npy event file ({first})") from None
    if dtype.hasobject or dtype.kind not in "iuf" or dtype.fields is not None:
        raise EventFileError(f"{path}: events must be a plain integer or float array, got dtype {dtype}")
    if len(shape) != 2 or shape[1] != columns:
        raise EventFileError(f"{path}: events must have shape (N, {columns}) (x, y, p, t), got {shape}")
    declared = math.prod(shape) * dtype.itemsize
    if declared != size - offset:
        raise EventFileError(f"{path}: header declares shape {shape} ({declared} bytes) but the file holds "
                             f"{size - offset} data bytes")
    return tuple(shape)


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    num_frames: int,
    spatial_factor: float = 1.0,
) -> np.ndarray:
    """Bin structured events into float32 frame counts (num_frames, P, H', W'); see the module docstring.

    ``sensor_size`` is tonic's ``(W, H, P)``. Events outside the (downsampled) sensor are dropped.
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if not (math.isfinite(spatial_factor) and 0 < spatial_factor <= 1):
        raise ValueError(f"spatial_factor must lie in (0, 1], got {spatial_factor!r}")
    width, height, polarities = (int(v) for v in sensor_size)
    names = events.dtype.names or ()
    for field in ("x", "t", "p"):
        if field not in names:
            raise ValueError(f"events need fields x, y, t, p (tonic structured array); got {names}")
    out_w = max(1, math.ceil(width * spatial_factor))
    out_h = max(1, math.ceil(height * spatial_factor))
    frames = np.zeros((num_frames, polarities, out_h, out_w), dtype=np.float32)
    if len(events) == 0:
        return frames
    t = events["t"].astype(np.float64)
    with np.errstate(invalid="ignore"):  # NaN/Inf coordinates cast to garbage and are dropped below
        x = np.floor(events["x"].astype(np.float64) * spatial_factor).astype(np.int64)
        y = (
            np.floor(events["y"].astype(np.float64) * spatial_factor).astype(np.int64)
            if "y" in names
            else np.zeros(len(events), dtype=np.int64)
        )
    p = (events["p"].astype(np.float64) > 0).astype(np.int64) if polarities > 1 else np.zeros(len(events), np.int64)
    timed = np.isfinite(t)  # a NaN/Inf time stamp has no bin: drop the event
    if not timed.any():
        return frames
    t_min, t_max = t[timed].min(), t[timed].max()
    if t_max > t_min:
        with np.errstate(invalid="ignore"):  # halving is exact and keeps huge spans finite
            position = (t * 0.5 - t_min * 0.5) / (t_max * 0.5 - t_min * 0.5)
            bins = np.floor(np.where(timed, position, 0.0) * num_frames).astype(np.int64)
        np.clip(bins, 0, num_frames - 1, out=bins)
    else:
        bins = np.zeros(len(events), dtype=np.int64)
    keep = timed & (x >= 0) & (x < out_w) & (y >= 0) & (y < out_h)
    flat = ((bins * polarities + p) * out_h + y) * out_w + x
    counts = np.bincount(flat[keep], minlength=frames.size)
    return counts.reshape(frames.shape).astype(np.float32)


def _import_tonic():
    try:
        import tonic
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('event datasets need tonic: pip install "fptt[data]"') from error
    return tonic


class _TonicFrames(Dataset):
    """Common machinery: locate the data through tonic without downloading, sort the file list,
    bin and cache items."""

    tonic_name: str = ""  # class name in tonic.datasets (also tonic's folder name under root)
    cache_name: str = ""
    num_classes: int = 0
    splits: tuple[str, ...] = ("train", "test")
    min_files: tuple[str, int] = ("", 0)  # (extension, count) tonic requires once extracted

    def __init__(
        self,
        root: Optional[str | os.PathLike] = None,
        split: str = "train",
        num_frames: int = 20,
        spatial_factor: float = 0.25,
        flatten: bool = True,
        cache: bool = True,
        download: bool = False,
        **tonic_kwargs: Any,
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__} split must be one of {self.splits}, got {split!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if not (isinstance(spatial_factor, (int, float)) and 0 < spatial_factor <= 1):
            raise ValueError(f"spatial_factor must lie in (0, 1], got {spatial_factor!r}")
        root_path = data_root(root)
        if root_path is None:
            raise DatasetNotFoundError(
                f"{type(self).__name__} needs a data root: pass root=... or set FPTT_DATA; "
                f"{self._hint('<root>')}"
            )
        self.root, self.split = root_path, split
        self.num_frames, self.spatial_factor, self.flatten = num_frames, float(spatial_factor), flatten
        self._tonic_kwargs = dict(tonic_kwargs)
        self._tonic = self._open_tonic(root_path, split, download, tonic_kwargs)
        width, height, polarities = self._tonic.sensor_size
        self.sensor_size = (int(width), int(height), int(polarities))
        self.frame_shape = (
            self.sensor_size[2],
            max(1, math.ceil(height * self.spatial_factor)),
            max(1, math.ceil(width * self.spatial_factor)),
        )
        self.seq_len = num_frames
        self.input_size = int(np.prod(self.frame_shape))
        self.indices = self._split_indices(split)
        self.targets = torch.tensor([int(self._tonic.targets[i]) for i in self.indices], dtype=torch.int64)
        self.cache_dir: Optional[Path] = None
        if cache:
            settings = (f"{self.cache_name}|{self._source_split(split)}|{num_frames}|{self.spatial_factor!r}|"
                        f"{sorted(tonic_kwargs.items())}|v{_BINNING_VERSION}")
            digest = hashlib.sha1(settings.encode()).hexdigest()[:12]
            self.cache_dir = root_path / ".fptt_cache" / f"{self.cache_name}-{digest}"

    # --- tonic access -------------------------------------------------------------------------
    def _hint(self, root: str) -> str:
        return (
            f"get it with `tonic.datasets.{self.tonic_name}(save_to='{root}'"
            f"{self._hint_args()})` (downloads into {root}/{self.tonic_name}/) or pass download=True"
        )

    def _hint_args(self) -> str:
        return ", train=True" if self.splits == ("train", "test") else ""

    def _source_split(self, split: str) -> str:
        return split

    def _tonic_args(self, split: str) -> dict:
        return {"train": split == "train"}

    def _open_tonic(self, root: Path, split: str, download: bool, extra: dict):
        tonic = _import_tonic()
        base = getattr(tonic.datasets, self.tonic_name)
        extension, count = self.min_files
        hint = self._hint(str(root))
        folder = root / self.tonic_name

        def is_file_present(self_) -> bool:  # extracted data suffice; the archive may be deleted
            return True

        def no_download(self_) -> None:
            raise DatasetNotFoundError(
                f"{self.tonic_name} not found under {folder} (tonic expects at least {count} *{extension} "
                f"files in {folder}/{getattr(self_, 'folder_name', '') or ''}); {hint}"
            )

        namespace: dict = {"_is_file_present": is_file_present}
        if not download:
            namespace["download"] = no_download
        # same class name, so tonic's location_on_system stays <root>/<tonic_name>
        reader_cls = type(self.tonic_name, (base,), namespace)
        dataset = reader_cls(str(root), **self._tonic_args(split), **extra)
        # a deterministic order independent of the file system's listing order
        order = sorted(range(len(dataset.data)), key=lambda i: str(dataset.data[i]))
        for attribute in ("data", "targets", "users", "lighting"):
            values = getattr(dataset, attribute, None)
            if isinstance(values, list) and len(values) == len(order):
                setattr(dataset, attribute, [values[i] for i in order])
        if len(dataset.data) == 0:
            no_download(dataset)
        return dataset

    def _split_indices(self, split: str) -> list[int]:
        return list(range(len(self._tonic.data)))

    def _reader(self):
        if self._tonic is None:  # after unpickling in a DataLoader worker
            self._tonic = self._open_tonic(self.root, self.split, False, self._tonic_kwargs)
        return self._tonic

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tonic"] = None  # the reader class is built at run time and does not pickle
        return state

    # --- items --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.indices)

    def _cache_path(self, source_index: int) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        name = os.path.relpath(str(self._reader().data[source_index]), str(self.root))
        return self.cache_dir / (hashlib.sha1(name.encode()).hexdigest()[:20] + ".pt")

    def frames(self, index: int) -> Tensor:
        """The binned frames (num_frames, P, H', W') of item ``index``, from the cache if there."""
        source_index = self.indices[index]
        path = self._cache_path(source_index)
        expected = (self.num_frames, *self.frame_shape)
        if path is not None and path.is_file():
            try:
                cached = torch.load(path, weights_only=True)
            except Exception:
                cached = None  # a corrupt or refused cache entry: recompute and overwrite
            if isinstance(cached, Tensor) and tuple(cached.shape) == expected and cached.dtype == torch.float32:
                return cached
        self._check_source(source_index)
        events, _ = self._reader()[source_index]
        frames = torch.from_numpy(
            events_to_frames(events, self.sensor_size, self.num_frames, self.spatial_factor)
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(suffix=".part", dir=path.parent)
            os.close(handle)
            try:
                torch.save(frames, partial)
                os.replace(partial, path)  # atomic: safe with several DataLoader workers
            except BaseException:
                if os.path.exists(partial):
                    os.unlink(partial)
                raise
        return frames

    def _check_source(self, source_index: int) -> None:
        """Validate the recording's file before tonic reads it (subclasses with a header format)."""

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range ({len(self)} items)")
        frames = self.frames(index)
        x = frames.reshape(self.num_frames, -1) if self.flatten else frames
        return x, self.targets[index]


class DVSGesture(_TonicFrames):
    """IBM DVS128 Gesture (Amir et al. 2017), 11 classes, official train/test split (1,077 / 264
    recordings in tonic's preprocessed version). 128×128 sensor; default 20 frames at 32×32:
    items (20, 2048). On disk: ``<root>/DVSGesture/ibmGestureTrain/user*_*/<label>.npy`` and
    ``ibmGestureTest/...`` (tonic's layout)."""

    tonic_name = "DVSGesture"
    cache_name = "dvsgesture"
    num_classes = 11
    min_files = (".npy", 100)

    def _check_source(self, source_index: int) -> None:
        check_npy_events(self._reader().data[source_index])


class NMNIST(_TonicFrames):
    """N-MNIST (Orchard et al. 2015), 10 classes, official 60,000 / 10,000 split, 34×34 sensor.
    On disk: ``<root>/NMNIST/Train/<digit>/*.bin`` and ``Test/`` (tonic's layout). Extra keyword
    ``first_saccade_only`` passes through to tonic."""

    tonic_name = "NMNIST"
    cache_name = "nmnist"
    num_classes = 10
    min_files = (".bin", 10000)


class DVSCIFAR10(_TonicFrames):
    """CIFAR10-DVS (Li et al. 2017), 10 classes, 10,000 recordings, 128×128 sensor. There is **no
    official split**: fptt uses its own deterministic stratified split ``"train90"`` (900 per
    class) / ``"test10"`` (100 per class), by a seeded shuffle of each class's sorted file list.
    On disk: ``<root>/CIFAR10DVS/<class>/*.aedat4`` (tonic's layout; reading needs ``aedat``)."""

    tonic_name = "CIFAR10DVS"
    cache_name = "dvscifar10"
    num_classes = 10
    splits = ("train90", "test10")
    min_files = (".aedat4", 1000)
    split_seed = 20240

    def _tonic_args(self, split: str) -> dict:
        return {}

    def _source_split(self, split: str) -> str:
        return "all"  # the cache holds every recording once, whichever split reads it

    def _split_indices(self, split: str) -> list[int]:
        targets = np.asarray(self._tonic.targets, dtype=np.int64)
        rng = np.random.default_rng(self.split_seed)
        chosen = []
        for label in range(self.num_classes):
            members = np.flatnonzero(targets == label)  # in sorted path order
            members = members[rng.permutation(len(members))]
            cut = int(round(0.9 * len(members)))
            chosen.append(members[:cut] if split == "train90" else members[cut:])
        return sorted(int(i) for i in np.concatenate(chosen))
