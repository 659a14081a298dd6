"""Saccade-MNIST: an offline event-camera dataset made from the bundled MNIST-10k digits.

Built the way N-MNIST was recorded (Orchard et al. 2015): a digit moves in front of a DVS
sensor along three saccades, and the sensor reports brightness *changes* as events. Here both
the motion and the sensor are simulated:

* **Scene** (:func:`saccade_scene`). The 28×28 digit (intensities in [0, 1]) sits at the centre of
  a ``sensor``×``sensor`` field (default 34×34, N-MNIST's). Over ``duration_ms`` it moves along
  three straight saccades of equal duration around the triangle (0, −a) → (a, a) → (−a, a) →
  (0, −a) (``amplitude`` a = 2 pixels), sampled every ``1 / samples_per_ms`` ms. A sub-pixel
  position is rendered by bilinear interpolation.
* **Sensor** (:func:`simulate_dvs`). Each pixel keeps a reference log intensity
  L_ref = log(I + ε) (ε = ``log_eps``), set at t = 0. Between two samples t_{k−1}, t_k its log
  intensity goes linearly from L_{k−1} to L_k; every time it moves a threshold C away from
  L_ref the pixel emits an event (ON, p = 1, for an increase; OFF, p = 0, for a decrease) at the
  interpolated crossing time, and L_ref moves by ±C. A change of n·C therefore gives n events.
  C is ``threshold`` (default 0.2), and each recording draws a fixed per-pixel mismatch
  C_xy = C·(1 + ``threshold_mismatch``·N(0, 1)) (clipped to ≥ 0.25 C) from its seed: the sensor
  non-uniformity of a real DVS, and the only random element.

Items are deterministic: recording ``i`` of a split uses the seed ``(seed, split, i)``, so
``SaccadeMNIST(seed=s)[i]`` is the same everywhere. Events are tonic structured arrays with
fields ``x, y, t, p`` (t in µs, p ∈ {0, 1}): tonic's transforms apply to :meth:`SaccadeMNIST.events`
unchanged, and items are binned with :func:`fptt.data.dvs.events_to_frames` (the DVS datasets'
frame pipeline) into any number of frames.

Splits: ``"train"`` (8,000) and ``"heldout"`` (2,000), the stratified MNIST-10k split of
:func:`fptt.data.mnist.mnist10k_split`; ``num_samples`` keeps the first N of a split (their
classes stay balanced within a few per cent). Items: ``x`` (num_frames, 2·H'·W') float32 event
counts (``flatten=True``) or (num_frames, 2, H', W'), with H' = W' = ceil(sensor · spatial_factor);
``y`` int64.
"""
from __future__ import annotations

import copy
import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .dvs import events_to_frames

__all__ = ["EVENT_DTYPE", "saccade_path", "saccade_scene", "simulate_dvs", "SaccadeMNIST"]

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
_SPLITS = {"train": 0, "heldout": 1}


def saccade_path(duration_ms: float, samples_per_ms: float = 1.0, amplitude: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample times (µs, float64, K + 1 values from 0 to the duration) and (dx, dy) offsets (K + 1, 2)
    of the three-saccade triangle (0, −a) → (a, a) → (−a, a) → (0, −a), at constant speed per saccade."""
    if not (math.isfinite(duration_ms) and duration_ms > 0):
        raise ValueError(f"duration_ms must be a positive number, got {duration_ms!r}")
    if not (math.isfinite(samples_per_ms) and samples_per_ms > 0):
        raise ValueError(f"samples_per_ms must be a positive number, got {samples_per_ms!r}")
    steps = max(3, int(round(duration_ms * samples_per_ms)))
    times = np.linspace(0.0, duration_ms * 1000.0, steps + 1)
    vertices = np.array([[0.0, -amplitude], [amplitude, amplitude], [-amplitude, amplitude], [0.0, -amplitude]])
    phase = np.linspace(0.0, 3.0, steps + 1)  # saccade index + fraction
    index = np.minimum(phase.astype(np.int64), 2)
    fraction = (phase - index)[:, None]
    offsets = vertices[index] * (1.0 - fraction) + vertices[index + 1] * fraction
    return times, offsets


def saccade_scene(image: np.ndarray, offsets: np.ndarray, sensor: int = 34) -> np.ndarray:
    """Intensities (K, sensor, sensor) float64 of ``image`` (h, w) in [0, 1], centred on the sensor
    and shifted by each (dx, dy) of ``offsets`` (sub-pixel: bilinear interpolation; outside the
    image the scene is black)."""
    image = np.asarray(image, dtype=np.float64)
    height, width = image.shape
    if sensor < max(height, width):
        raise ValueError(f"sensor ({sensor}) must be at least the image size {image.shape}")
    padded = np.zeros((height + 2, width + 2))
    padded[1:-1, 1:-1] = image
    top, left = (sensor - height) / 2.0, (sensor - width) / 2.0
    grid = np.arange(sensor, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 2)
    # sensor pixel (r, c) sees image point (r - top - dy, c - left - dx); +1 for the padding.
    # All K samples at once: rows (K, S), columns (K, S), then four gathers of (K, S, S).
    rows = np.clip(grid[None, :] - top - offsets[:, 1:2] + 1.0, 0.0, height + 1.0)
    cols = np.clip(grid[None, :] - left - offsets[:, 0:1] + 1.0, 0.0, width + 1.0)
    r0 = np.minimum(np.floor(rows).astype(np.int64), height)
    c0 = np.minimum(np.floor(cols).astype(np.int64), width)
    fr, fc = (rows - r0)[:, :, None], (cols - c0)[:, None, :]
    r0, c0 = r0[:, :, None], c0[:, None, :]
    top_row = padded[r0, c0] * (1 - fc) + padded[r0, c0 + 1] * fc
    bottom_row = padded[r0 + 1, c0] * (1 - fc) + padded[r0 + 1, c0 + 1] * fc
    scene = top_row * (1 - fr) + bottom_row * fr
    return scene


def simulate_dvs(intensities: np.ndarray, times_us: np.ndarray, threshold: float | np.ndarray = 0.2,
                 log_eps: float = 0.1) -> np.ndarray:
    """Events of a DVS pixel array watching ``intensities`` (K+1, H, W) at ``times_us`` (K+1,); see
    the module docstring for the rule. ``threshold`` is C, a scalar or a per-pixel (H, W) array.

    Returns a structured array (:data:`EVENT_DTYPE`: x = column, y = row, t in µs rounded to the
    nearest µs, p = 1 ON / 0 OFF), sorted by time (ties: by y, x)."""
    intensities = np.asarray(intensities, dtype=np.float64)
    times_us = np.asarray(times_us, dtype=np.float64)
    if intensities.ndim != 3 or len(times_us) != len(intensities) or len(times_us) < 2:
        raise ValueError(f"intensities must be (K+1, H, W) with one time per frame (K >= 1), got "
                         f"{intensities.shape} and {times_us.shape} times")
    if np.any(np.diff(times_us) <= 0):
        raise ValueError("times_us must increase strictly")
    if intensities.min() < 0 or not np.isfinite(intensities).all():
        raise ValueError("intensities must be finite and >= 0")
    if not log_eps > 0:
        raise ValueError(f"log_eps must be positive, got {log_eps!r}")
    contrast = np.broadcast_to(np.asarray(threshold, dtype=np.float64), intensities.shape[1:])
    if not (contrast > 0).all():
        raise ValueError("threshold must be positive")
    log_intensity = np.log(intensities + log_eps)
    reference = log_intensity[0].copy()
    xs, ys, ts, ps = [], [], [], []
    for k in range(1, len(times_us)):
        previous, current = log_intensity[k - 1], log_intensity[k]
        change = current - reference
        count = np.floor(np.abs(change) / contrast).astype(np.int64)
        rows, cols = np.nonzero(count)
        if len(rows) == 0:
            continue
        n = count[rows, cols]
        sign = np.sign(change[rows, cols])
        # the j-th crossing (j = 1..n) is at level reference + j·C·sign, reached at the time where
        # the linear path previous -> current passes it
        repeat = np.repeat(np.arange(len(rows)), n)
        j = np.arange(len(repeat)) - np.repeat(np.cumsum(n) - n, n) + 1
        level = reference[rows, cols][repeat] + j * contrast[rows, cols][repeat] * sign[repeat]
        start, stop = previous[rows, cols][repeat], current[rows, cols][repeat]
        span = stop - start
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(span != 0, (level - start) / span, 1.0)
        fraction = np.clip(fraction, 0.0, 1.0)
        ts.append(np.rint(times_us[k - 1] + fraction * (times_us[k] - times_us[k - 1])).astype(np.int64))
        ys.append(rows[repeat])
        xs.append(cols[repeat])
        ps.append((sign[repeat] > 0).astype(np.int8))
        reference[rows, cols] += n * contrast[rows, cols] * sign
    events = np.zeros(sum(len(t) for t in ts), dtype=EVENT_DTYPE)
    if len(events):
        events["x"], events["y"] = np.concatenate(xs), np.concatenate(ys)
        events["t"], events["p"] = np.concatenate(ts), np.concatenate(ps)
        events = events[np.lexsort((events["x"], events["y"], events["t"]))]
    return events


class SaccadeMNIST(Dataset):
    """MNIST-10k digits seen by a simulated DVS along three saccades (see the module docstring).

    Args:
        split: ``"train"`` (8,000) or ``"heldout"`` (2,000).
        num_frames: frames per item (any positive int: 20, 100, 300, 500, ...).
        spatial_factor: frame downsampling in (0, 1] (0.5: 34×34 -> 17×17).
        duration_ms: recording length (default 300 ms, N-MNIST's), samples_per_ms: scene samples.
        threshold / threshold_mismatch / log_eps: the sensor (contrast threshold C, its per-pixel
            relative spread, ε of log(I + ε)).
        seed: seeds the per-recording sensor mismatch.
        num_samples: keep the first N recordings of the split.
        flatten: items (num_frames, 2·H'·W') if True, else (num_frames, 2, H', W').
        cache: keep each recording's events in memory once simulated (about 100 kB per
            recording with the defaults; shared with :meth:`rebinned` copies).
    """

    num_classes = 10

    def __init__(
        self,
        split: str = "train",
        *,
        num_frames: int = 20,
        spatial_factor: float = 1.0,
        duration_ms: float = 300.0,
        samples_per_ms: float = 1.0,
        sensor: int = 34,
        amplitude: float = 2.0,
        threshold: float = 0.2,
        threshold_mismatch: float = 0.05,
        log_eps: float = 0.1,
        seed: int = 0,
        num_samples: Optional[int] = None,
        flatten: bool = True,
        cache: bool = False,
    ) -> None:
        from .mnist import mnist10k_images

        if split not in _SPLITS:
            raise ValueError(f"saccade-mnist has splits 'train' (8,000) and 'heldout' (2,000), got {split!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if not (isinstance(spatial_factor, (int, float)) and 0 < spatial_factor <= 1):
            raise ValueError(f"spatial_factor must lie in (0, 1], got {spatial_factor!r}")
        if not threshold > 0 or not threshold_mismatch >= 0:
            raise ValueError(f"threshold must be > 0 and threshold_mismatch >= 0, got {threshold}, {threshold_mismatch}")
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        images, labels = mnist10k_images(split)
        if num_samples is not None:
            images, labels = images[:num_samples], labels[:num_samples]
        self.images = images
        self.targets = torch.from_numpy(labels.astype(np.int64))
        self.split, self.seed = split, int(seed)
        self.num_frames, self.spatial_factor, self.flatten = num_frames, float(spatial_factor), flatten
        self.threshold, self.threshold_mismatch, self.log_eps = float(threshold), float(threshold_mismatch), float(log_eps)
        self.times, self.offsets = saccade_path(duration_ms, samples_per_ms, amplitude)
        self.duration_ms = float(duration_ms)
        self.sensor_size = (int(sensor), int(sensor), 2)  # tonic's (W, H, P)
        side = max(1, math.ceil(sensor * self.spatial_factor))
        self.frame_shape = (2, side, side)
        self.seq_len = num_frames
        self.input_size = 2 * side * side
        saccade_scene(np.zeros((28, 28)), self.offsets[:1], sensor)  # checks the sensor size once
        self._events: Optional[dict[int, np.ndarray]] = {} if cache else None

    def rebinned(self, num_frames: int) -> SaccadeMNIST:
        """The same recordings binned into ``num_frames`` frames (a copy sharing the event cache)."""
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        other = copy.copy(self)
        other.num_frames = other.seq_len = num_frames
        return other

    def __len__(self) -> int:
        return len(self.images)

    def _threshold_map(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        width, height, _ = self.sensor_size
        spread = 1.0 + self.threshold_mismatch * rng.standard_normal((height, width))
        return self.threshold * np.maximum(spread, 0.25)

    def events(self, index: int) -> np.ndarray:
        """The events of recording ``index`` (tonic structured array, fields x, y, t, p; t in µs)."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range ({len(self)} recordings)")
        if self._events is not None and index in self._events:
            return self._events[index]
        scene = saccade_scene(self.images[index] / 255.0, self.offsets, self.sensor_size[0])
        events = simulate_dvs(scene, self.times, self._threshold_map(index), self.log_eps)
        if self._events is not None:
            self._events[index] = events
        return events

    def frames(self, index: int) -> Tensor:
        """Binned events (num_frames, 2, H', W') float32, the span of the *recording* cut in equal bins."""
        events = self.events(index)
        # bin over the recording's full duration, not the span of its events (fixed frame times)
        bounds = np.zeros(2, dtype=EVENT_DTYPE)
        bounds["t"] = [0, int(round(self.duration_ms * 1000.0))]
        bounds["x"] = -1  # outside the sensor: fixes the time span, dropped from the counts
        return torch.from_numpy(events_to_frames(np.concatenate([bounds, events]), self.sensor_size,
                                                 self.num_frames, self.spatial_factor))

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        frames = self.frames(index)
        x = frames.reshape(self.num_frames, -1) if self.flatten else frames
        return x, self.targets[index]
