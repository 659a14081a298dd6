import gzip
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from fptt.data import SHD, DatasetNotFoundError, SHDFormatError  # noqa: E402
from fptt.data.shd import bin_spikes  # noqa: E402

TIMES = [
    np.array([0.0, 0.24, 0.25, 0.99, 1.0, 1.5], dtype=np.float32),
    np.array([0.5, np.nan, 0.1], dtype=np.float32),
    np.array([], dtype=np.float32),
]
UNITS = [
    np.array([0, 1, 1, 699, 5, 5], dtype=np.uint16),
    np.array([3, 3, 700], dtype=np.uint16),
    np.array([], dtype=np.uint16),
]
LABELS = [4, 19, 0]


def write_shd(path, times=TIMES, units=UNITS, labels=LABELS, drop=()):
    with h5py.File(path, "w") as f:
        if "spikes/times" not in drop:
            d = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
            for i, t in enumerate(times):
                d[i] = t
        if "spikes/units" not in drop:
            d = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, u in enumerate(units):
                d[i] = u
        if "labels" not in drop:
            f.create_dataset("labels", data=np.array(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.arange(len(labels), dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"word{i}".encode() for i in range(20)]))
    return path


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("FPTT_DATA", raising=False)


def test_binning_by_hand(tmp_path):
    write_shd(tmp_path / "shd_train.h5")
    ds = SHD(tmp_path, "train", num_bins=4, max_time=1.0)
    assert (len(ds), ds.num_classes, ds.input_size, ds.seq_len) == (3, 20, 700, 4)
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (4, 700) and y.dtype == torch.int64 and int(y) == 4
    expected = torch.zeros(4, 700)
    expected[0, 0] = 1  # t = 0.0
    expected[0, 1] = 1  # t = 0.24 -> bin floor(0.96) = 0
    expected[1, 1] = 1  # t = 0.25 -> bin 1
    expected[3, 699] = 1  # t = 0.99
    # t = 1.0 and 1.5 >= max_time: dropped
    assert torch.equal(x, expected)
    assert ds.num_invalid_dropped == 0
    assert ds.speakers.tolist() == [0, 1, 2] and ds.keys[:2] == ["word0", "word1"]
    x_empty, y_empty = ds[2]
    assert x_empty.sum() == 0 and int(y_empty) == 0
    wide = SHD(tmp_path, "train", num_bins=2, max_time=2.0, channel_pool=2)
    x, _ = wide[0]
    assert x.shape == (2, 350) and x[0, 0] == 3 and x[0, 349] == 1 and x[1, 2] == 2 and x.sum() == 6  # t = 1.0, 1.5 -> bin 1


def test_nan_and_bad_units_dropped_with_one_warning(tmp_path):
    write_shd(tmp_path / "shd_train.h5")
    ds = SHD(tmp_path, "train", num_bins=10)
    with pytest.warns(RuntimeWarning, match="dropped 2 spike"):
        x, _ = ds[1]
    assert x.sum() == 1 and x[5, 3] == 1  # NaN time and unit 700 dropped
    assert ds.num_invalid_dropped == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1]
    assert ds.num_invalid_dropped == 4


def test_bin_spikes_edges():
    counts, invalid = bin_spikes(np.array([np.nextafter(1.0, 0), -0.1, np.inf]), np.array([0, 0, 0]), 3, 1.0)
    assert counts[2, 0] == 1 and counts.sum() == 1 and invalid == 2


def test_shd_subfolder_and_gz(tmp_path):
    folder = tmp_path / "SHD"
    folder.mkdir()
    plain = write_shd(tmp_path / "tmp.h5")
    with open(plain, "rb") as src, gzip.open(folder / "shd_test.h5.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    ds = SHD(tmp_path, "test", num_bins=4)
    assert ds.path == folder / "shd_test.h5" and ds.path.is_file()
    mtime = ds.path.stat().st_mtime_ns
    ds2 = SHD(tmp_path, "test", num_bins=4)  # decompressed once
    assert ds2.path.stat().st_mtime_ns == mtime
    assert int(ds[0][0].sum()) == 4


def test_gz_in_read_only_folder_goes_to_temp(tmp_path, monkeypatch):
    import tempfile

    import fptt.data.shd as shd_module

    plain = write_shd(tmp_path / "x.h5")
    data_dir = tmp_path / "ro"
    data_dir.mkdir()
    with open(plain, "rb") as src, gzip.open(data_dir / "shd_train.h5.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(shd_module.os, "access", lambda *a, **k: False)
    monkeypatch.chdir(tmp_path)
    ds = SHD(data_dir, "train", num_bins=4)
    assert ds.path.parent.parent == scratch and not (data_dir / "shd_train.h5").exists()
    assert int(ds[0][0].sum()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "scratch", "x.h5"]


def test_missing_file_names_paths_and_url(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        SHD(tmp_path, "test")
    message = str(info.value)
    assert "https://zenkelab.org/datasets/shd_test.h5.gz" in message
    assert str(tmp_path / "SHD" / "shd_test.h5") in message
    with pytest.raises(DatasetNotFoundError, match="FPTT_DATA"):
        SHD(None, "train")


def test_bad_layout_names_missing_dataset(tmp_path):
    write_shd(tmp_path / "shd_train.h5", drop=("spikes/units",))
    with pytest.raises(SHDFormatError, match="spikes/units"):
        SHD(tmp_path)
    (tmp_path / "shd_test.h5").write_bytes(b"not hdf5")
    with pytest.raises(SHDFormatError, match="HDF5"):
        SHD(tmp_path, "test")


def test_bad_arguments(tmp_path):
    write_shd(tmp_path / "shd_train.h5")
    with pytest.raises(ValueError, match="divide"):
        SHD(tmp_path, channel_pool=3)
    with pytest.raises(ValueError, match="split"):
        SHD(tmp_path, split="valid")


def test_pickles_without_handle(tmp_path):
    write_shd(tmp_path / "shd_train.h5")
    ds = SHD(tmp_path, num_bins=4)
    first = ds[0][0]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    assert torch.equal(clone[0][0], first) and clone._file is not None
    ds.close()
    clone.close()
