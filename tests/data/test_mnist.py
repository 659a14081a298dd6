import numpy as np
import pytest
import torch

from fptt.data import DatasetNotFoundError, SequentialMNIST, mnist10k_split, write_idx
from fptt.data.mnist import _load_files

CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("FPTT_DATA", raising=False)


@pytest.fixture(scope="module")
def bundled():
    import os

    saved = os.environ.pop("FPTT_DATA", None)
    try:
        return SequentialMNIST("train"), SequentialMNIST("heldout")
    finally:
        if saved is not None:
            os.environ["FPTT_DATA"] = saved


def test_mnist10k_sizes_and_class_counts(bundled):
    train, heldout = bundled
    assert (len(train), len(heldout)) == (8000, 2000)
    counts = np.bincount(torch.cat([train.targets, heldout.targets]).numpy(), minlength=10)
    assert counts.tolist() == CLASS_COUNTS
    assert train.num_classes == 10 and (train.seq_len, train.input_size) == (784, 1)
    assert train.inputs.dtype == torch.float32 and train.targets.dtype == torch.int64


def test_mnist10k_split_deterministic_disjoint_stratified():
    _, labels = _load_files(None, "test")
    a_train, a_held = mnist10k_split(labels)
    b_train, b_held = mnist10k_split(labels)
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_held, b_held)
    assert len(np.intersect1d(a_train, a_held)) == 0
    assert np.array_equal(np.sort(np.concatenate([a_train, a_held])), np.arange(10_000))
    per_class = np.bincount(labels[a_train], minlength=10)
    assert np.all(np.abs(per_class - 0.8 * np.array(CLASS_COUNTS)) <= 1)


def test_shapes(bundled):
    train, _ = bundled
    x, y = train[0]
    assert x.shape == (784, 1) and y.dtype == torch.int64
    small = SequentialMNIST("heldout", downsample=14)
    assert small[0][0].shape == (196, 1)
    rows = SequentialMNIST("heldout", row_by_row=True)
    assert rows[0][0].shape == (28, 28)
    torch.testing.assert_close(rows.inputs.reshape(len(rows), 784, 1), SequentialMNIST("heldout").inputs)


def test_permuted_is_indexed_unpermuted():
    plain = SequentialMNIST("heldout")
    permuted = SequentialMNIST("heldout", permute=True, permutation_seed=3)
    assert sorted(permuted.permutation.tolist()) == list(range(784))
    torch.testing.assert_close(permuted.inputs, plain.inputs[:, permuted.permutation])
    assert torch.equal(permuted.targets, plain.targets)
    again = SequentialMNIST("heldout", permute=True, permutation_seed=3)
    assert torch.equal(again.permutation, permuted.permutation)


def test_bad_split_for_bundled():
    with pytest.raises(ValueError, match="heldout"):
        SequentialMNIST("test")


def _write_torchvision_layout(root, n_train=12, n_test=5):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[split] = (images, labels)
    return data


def test_full_mnist_torchvision_layout(tmp_path):
    data = _write_torchvision_layout(tmp_path)
    for split in ("train", "test"):
        ds = SequentialMNIST(split, root=tmp_path, normalize=False)
        images, labels = data[split]
        assert len(ds) == len(labels)
        torch.testing.assert_close(ds.inputs, torch.from_numpy(images).float().div(255).reshape(-1, 784, 1))
        assert ds.targets.tolist() == labels.tolist()


def test_full_mnist_from_env(tmp_path, monkeypatch):
    _write_torchvision_layout(tmp_path)
    monkeypatch.setenv("FPTT_DATA", str(tmp_path))
    assert len(SequentialMNIST("test")) == 5


def test_missing_full_mnist_names_file(tmp_path):
    data = _write_torchvision_layout(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        SequentialMNIST("test", root=tmp_path)
    assert len(SequentialMNIST("train", root=tmp_path)) == len(data["train"][1])
