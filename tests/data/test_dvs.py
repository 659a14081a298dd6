import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fptt.data import DVSCIFAR10, DatasetNotFoundError, DVSGesture, events_to_frames

GESTURE_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def random_events(n, seed=0, t_max=1000, dtype=GESTURE_DTYPE, size=128):
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=dtype)
    events["x"] = rng.integers(0, size, n)
    events["y"] = rng.integers(0, size, n)
    events["p"] = rng.integers(0, 2, n).astype(bool)
    t = np.sort(rng.integers(0, t_max + 1, n))
    t[0], t[-1] = 0, t_max
    events["t"] = t
    return events


def test_counts_per_bin_and_polarity():
    events = random_events(5000)
    frames = events_to_frames(events, (128, 128, 2), num_frames=10, spatial_factor=0.25)
    assert frames.dtype == np.float32 and frames.shape == (10, 2, 32, 32)
    assert frames.sum() == len(events)
    bins = np.minimum(events["t"] * 10 // 1000, 9)
    for b in range(10):
        for p in (0, 1):
            assert frames[b, p].sum() == np.count_nonzero((bins == b) & (events["p"] == bool(p)))


def test_pixels_by_hand():
    events = np.zeros(4, dtype=GESTURE_DTYPE)
    events["x"], events["y"], events["p"], events["t"] = [0, 3, 7, 7], [1, 5, 7, 0], [True, False, True, True], [10, 20, 30, 30]
    frames = events_to_frames(events, (8, 8, 2), num_frames=2, spatial_factor=0.5)
    expected = np.zeros((2, 2, 4, 4), np.float32)
    expected[0, 1, 0, 0] = 1  # t=10 -> bin 0; (x=0, y=1) -> (0, 0)
    expected[1, 0, 2, 1] = 1  # t=20 -> floor(0.5 * 2) = 1; (3, 5) -> (1, 2)
    expected[1, 1, 3, 3] = 1
    expected[1, 1, 0, 3] = 1
    np.testing.assert_array_equal(frames, expected)
    single = events_to_frames(events[:1], (8, 8, 2), num_frames=3)
    assert single[0].sum() == 1 and single.sum() == 1
    assert events_to_frames(events[:0], (8, 8, 2), 3).shape == (3, 2, 8, 8)


def test_matches_tonic_except_last_edge():
    transforms = pytest.importorskip("tonic.transforms")
    events = random_events(3000, seed=1, t_max=1000)
    ours = events_to_frames(events, (128, 128, 2), num_frames=10, spatial_factor=0.25)
    down = transforms.Downsample(spatial_factor=0.25)(events)
    theirs = transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=10)(down).astype(np.float32)
    last = events[events["t"] == 1000]  # tonic's bins stop just before t_max
    edge = np.zeros_like(ours)
    np.add.at(edge, (9, last["p"].astype(int), last["y"] // 4, last["x"] // 4), 1)
    np.testing.assert_array_equal(ours - theirs, edge)


def test_other_dtypes_and_sizes():
    dtype = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])  # CIFAR10-DVS
    events = random_events(500, seed=2, dtype=dtype)
    assert events_to_frames(events, (128, 128, 2), 5, 0.25).sum() == 500
    nmnist = random_events(500, seed=3, dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]), size=34)
    frames = events_to_frames(nmnist, (34, 34, 2), 4, 0.25)
    assert frames.shape == (4, 2, 9, 9) and frames.sum() == 500
    with pytest.raises(ValueError):
        events_to_frames(events, (128, 128, 2), 0)


def _gesture_layout(root, n=110):
    rng = np.random.default_rng(0)
    labels = []
    for i in range(n):
        folder = root / "DVSGesture" / "ibmGestureTrain" / f"user{i // 11 + 1:02d}_fluorescent"
        folder.mkdir(parents=True, exist_ok=True)
        label = i % 11
        m = 30
        arr = np.stack([rng.integers(0, 128, m), rng.integers(0, 128, m), rng.integers(0, 2, m),
                        np.sort(rng.integers(0, 500, m))], 1)
        np.save(folder / f"{label}.npy", arr)
        labels.append(label)
    return labels


def test_dvsgesture_from_tonic_layout_with_cache(tmp_path):
    pytest.importorskip("tonic")
    _gesture_layout(tmp_path)
    ds = DVSGesture(tmp_path, "train", num_frames=8)
    assert len(ds) == 110 and ds.num_classes == 11 and ds.input_size == 2 * 32 * 32 and ds.seq_len == 8
    x, y = ds[5]
    assert x.shape == (8, 2048) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.sum() == 30
    cached = list((tmp_path / ".fptt_cache").glob("dvsgesture-*/*.pt"))
    assert len(cached) == 1
    again = DVSGesture(tmp_path, "train", num_frames=8, flatten=False)
    x4, y4 = again[5]
    assert x4.shape == (8, 2, 32, 32) and torch.equal(x4.reshape(8, -1), x) and y4 == y
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[5][0], x)
    other = DVSGesture(tmp_path, "train", num_frames=4, cache=False)
    assert other.cache_dir is None and other[5][0].shape == (4, 2048)
    assert len(list((tmp_path / ".fptt_cache").iterdir())) == 1


def test_dvsgesture_missing_no_download(tmp_path):
    pytest.importorskip("tonic")
    with pytest.raises(DatasetNotFoundError, match="tonic.datasets.DVSGesture") as info:
        DVSGesture(tmp_path, "test")
    assert "download=True" in str(info.value)
    assert not any(tmp_path.rglob("*.tar.gz"))


def test_dvscifar10_split_is_deterministic_stratified():
    targets = [label for label in range(10) for _ in range(100)]
    parts = {}
    for split in ("train90", "test10"):
        ds = DVSCIFAR10.__new__(DVSCIFAR10)
        ds._tonic = SimpleNamespace(targets=targets)
        parts[split] = ds._split_indices(split)
        assert parts[split] == ds._split_indices(split)
    assert len(parts["train90"]) == 900 and len(parts["test10"]) == 100
    assert not set(parts["train90"]) & set(parts["test10"])
    assert np.bincount(np.array(targets)[parts["test10"]]).tolist() == [10] * 10
    with pytest.raises(ValueError, match="train90"):
        DVSCIFAR10("/nonexistent", split="train")


def test_registry_maps_generic_split_names(monkeypatch):
    import fptt.data.dvs as dvs
    from fptt.data import get_dataset

    seen = {}

    def fake_init(self, root=None, split="train", **kwargs):
        seen["split"] = split

    monkeypatch.setattr(dvs.DVSCIFAR10, "__init__", fake_init)
    get_dataset("dvscifar10", "test")
    assert seen["split"] == "test10"
