"""Saccade-MNIST: the simulated DVS against hand-made scenes, determinism, frames, tonic."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fptt.data import get_dataset
from fptt.data.saccade import EVENT_DTYPE, SaccadeMNIST, saccade_path, saccade_scene, simulate_dvs

EPS = 0.1


def intensity_for(log_value: float) -> float:
    """I such that log(I + ε) = log_value."""
    return math.exp(log_value) - EPS


def test_events_match_hand_made_log_intensity_changes():
    C = 0.2
    base = math.log(0.5 + EPS)
    # one row of three pixels, three samples at t = 0, 1000, 3000 µs
    # pixel 0: +2.5 C over the first interval -> ON at fractions 1/2.5 and 2/2.5 of it, then flat
    # pixel 1: -1.2 C over the first interval, then -0.9 C more (total -2.1 C) -> OFF at 1/1.2 of
    #          the first interval, OFF when the second crosses -2 C: fraction (0.8 C)/(0.9 C) of it
    # pixel 2: +0.9 C then back: no event
    levels = np.array([
        [base, base, base],
        [base + 2.5 * C, base - 1.2 * C, base + 0.9 * C],
        [base + 2.5 * C, base - 2.1 * C, base],
    ])
    intensities = np.vectorize(intensity_for)(levels)[:, None, :]  # (K+1, H=1, W=3)
    times = np.array([0.0, 1000.0, 3000.0])
    events = simulate_dvs(intensities, times, threshold=C, log_eps=EPS)
    assert events.dtype == EVENT_DTYPE
    expected = sorted([
        (400, 0, 1), (800, 0, 1),                       # ON, ON
        (round(1000 / 1.2), 1, 0),                      # OFF in the first interval
        (round(1000 + 2000 * 0.8 / 0.9), 1, 0),         # OFF in the second
    ])
    got = [(int(e["t"]), int(e["x"]), int(e["p"])) for e in events]
    assert got == expected
    assert (events["y"] == 0).all()


def test_per_pixel_thresholds_and_a_constant_scene():
    levels = np.log(np.array([[0.2, 0.2], [0.8, 0.8]]) + EPS)  # the same change at two pixels
    intensities = np.exp(levels) - EPS
    scene = intensities[:, None, :]
    change = levels[1, 0] - levels[0, 0]
    thresholds = np.array([[change / 3.5, change / 1.5]])  # 3 events at pixel 0, 1 at pixel 1
    events = simulate_dvs(scene, np.array([0.0, 100.0]), threshold=thresholds, log_eps=EPS)
    assert np.bincount(events["x"], minlength=2).tolist() == [3, 1] and (events["p"] == 1).all()
    still = simulate_dvs(np.full((5, 3, 3), 0.4), np.arange(5.0), threshold=0.1)
    assert len(still) == 0


@pytest.mark.parametrize("bad", [
    dict(intensities=np.zeros((1, 2, 2)), times_us=np.zeros(1)),
    dict(intensities=np.zeros((2, 2, 2)), times_us=np.array([0.0, 0.0])),
    dict(intensities=-np.ones((2, 2, 2)), times_us=np.array([0.0, 1.0])),
    dict(intensities=np.zeros((2, 2, 2)), times_us=np.array([0.0, 1.0]), threshold=0.0),
])
def test_simulate_dvs_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        simulate_dvs(**bad)


def test_scene_centres_and_shifts_the_digit():
    image = np.zeros((4, 4))
    image[1, 2] = 1.0
    scene = saccade_scene(image, np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]), sensor=8)
    assert scene[0, 3, 4] == 1.0 and scene[0].sum() == 1.0  # centred: offset 2 in both axes
    assert scene[1, 3, 5] == 1.0 and scene[1].sum() == 1.0  # dx = +1: one column right
    np.testing.assert_allclose(scene[2, 3, 4:6], [0.5, 0.5])  # half a pixel: bilinear
    times, offsets = saccade_path(300.0, samples_per_ms=1.0, amplitude=2.0)
    assert times[0] == 0 and times[-1] == 300_000 and len(times) == 301
    np.testing.assert_allclose(offsets[[0, 100, 200, 300]], [[0, -2], [2, 2], [-2, 2], [0, -2]])


def test_recordings_are_deterministic_per_seed_and_binnable_into_any_number_of_frames():
    data = SaccadeMNIST("heldout", num_samples=3, seed=7, num_frames=20, spatial_factor=0.5, cache=True)
    again = SaccadeMNIST("heldout", num_samples=3, seed=7)
    other = SaccadeMNIST("heldout", num_samples=3, seed=8)
    events = data.events(1)
    assert len(events) > 500 and set(np.unique(events["p"])) == {0, 1}
    assert np.array_equal(events, again.events(1))
    assert not np.array_equal(events, other.events(1))
    assert events["t"].min() >= 0 and events["t"].max() <= 300_000
    assert np.all(np.diff(events["t"]) >= 0)
    assert data.frame_shape == (2, 17, 17) and data.input_size == 578
    for frames in (20, 100, 300, 500):
        binned = data.rebinned(frames)
        x, y = binned[1]
        assert x.shape == (frames, 578) and x.dtype == torch.float32 and y == data.targets[1]
        assert float(x.sum()) == len(events)  # every event counted once
    assert data.rebinned(20)._events is data._events
    short = SaccadeMNIST("heldout", num_samples=1, duration_ms=30.0)
    assert short.events(0)["t"].max() <= 30_000


def test_tonic_transforms_apply_to_the_events():
    transforms = pytest.importorskip("tonic.transforms")
    data = SaccadeMNIST("train", num_samples=1)
    events = data.events(0)
    frames = transforms.ToFrame(sensor_size=data.sensor_size, n_time_bins=10)(events)
    assert frames.shape == (10, 2, 34, 34) and 0.95 * len(events) <= frames.sum() <= len(events)
    assert len(transforms.Denoise(filter_time=10_000)(events)) <= len(events)


def test_registry_and_bad_options():
    data = get_dataset("saccade-mnist", "test", num_samples=2)
    assert data.split == "heldout" and len(data) == 2 and data.num_classes == 10
    assert len(get_dataset("saccade-mnist", "train")) == 8000
    with pytest.raises(ValueError, match="heldout"):
        SaccadeMNIST("validation")
    with pytest.raises(ValueError, match="num_frames"):
        SaccadeMNIST("train", num_frames=0)
    with pytest.raises(ValueError, match="duration_ms"):
        SaccadeMNIST("train", duration_ms=-1.0)
    with pytest.raises(ValueError, match="sensor"):
        SaccadeMNIST("train", sensor=20)
