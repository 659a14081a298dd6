import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from fptt.data import DATASET_NAMES, AddingTask, SequentialMNIST, get_dataset, pad_collate


def test_mnist1d_shapes_and_rng_untouched(tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")
    from fptt.data import MNIST1D

    monkeypatch.chdir(tmp_path)
    random.seed(1)
    np.random.seed(1)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(1)
    np.random.seed(1)
    train, test = MNIST1D("train"), MNIST1D("test")
    assert random.random() == expected_py and np.random.rand() == expected_np
    assert (len(train), len(test)) == (4000, 1000)
    x, y = train[0]
    assert x.shape == (40, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert (train.seq_len, train.input_size, train.num_classes) == (40, 1, 10)
    assert set(torch.cat([train.targets, test.targets]).tolist()) == set(range(10))
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory
    assert torch.equal(MNIST1D("train", seed=42).inputs, train.inputs)
    with pytest.raises(ValueError):
        MNIST1D("valid")


def test_get_dataset_names():
    assert DATASET_NAMES == ("add", "smnist", "psmnist", "mnist1d", "shd", "dvsgesture", "dvscifar10", "nmnist",
                             "saccade-mnist")
    train = get_dataset("add", "train", seq_len=20, num_samples=8)
    test = get_dataset("ADD", "test", seq_len=20, num_samples=8, root="/ignored")
    assert torch.equal(test.inputs, AddingTask(20, 8, seed=1_000_003).inputs)
    assert isinstance(train, AddingTask) and torch.equal(train.inputs, AddingTask(20, 8, seed=0).inputs)
    assert not torch.equal(train.inputs, test.inputs)
    ps = get_dataset("psmnist", "heldout", root=None)
    assert isinstance(ps, SequentialMNIST) and ps.permutation is not None
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*dvsgesture"):
        get_dataset("cifar", "train")


def test_import_is_light():
    code = "import sys, fptt.data; print(sorted(m for m in ('h5py', 'tonic', 'mnist1d') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pad_collate():
    batch = [(torch.ones(3, 2), torch.tensor(1)), (torch.full((5, 2), 2.0), torch.tensor(0)), (torch.ones(1, 2), torch.tensor(4))]
    x, y, lengths = pad_collate(batch)
    assert x.shape == (3, 5, 2) and lengths.tolist() == [3, 5, 1] and y.tolist() == [1, 0, 4]
    assert x[0, 3:].abs().sum() == 0 and x[2, 1:].abs().sum() == 0 and torch.equal(x[1], batch[1][0])
    _, y_float, _ = pad_collate([(torch.zeros(2, 1), 0.5), (torch.zeros(1, 1), 1.5)])
    assert y_float.tolist() == [0.5, 1.5]
    loader = torch.utils.data.DataLoader(batch, batch_size=2, collate_fn=pad_collate)
    assert [b[0].shape[1] for b in loader] == [5, 1]
    with pytest.raises(ValueError):
        pad_collate([(torch.zeros(2, 1), 0), (torch.zeros(2, 3), 1)])
