"""MNIST-1D (Greydanus & Kobak 2020): 1-D procedurally generated digits, 40 steps × 1 channel.

Generated in memory by the ``mnist1d`` package (optional extra: ``pip install "fptt[data]"``)
with ``mnist1d.data.get_dataset_args()`` and ``make_dataset(args)``; nothing is downloaded or
written to disk (``mnist1d.get_dataset`` would pickle to the working directory, so it is not
used). The defaults give 5,000 samples: ``"train"`` 4,000 and ``"test"`` 1,000, 10 classes.

``make_dataset`` reseeds Python's ``random`` and NumPy's global generator; their states are
saved and restored around the call, so building the dataset leaves the caller's RNGs untouched.

Published baselines on the default (seed 42) data, test accuracy (Greydanus & Kobak 2020,
README of github.com/greydanus/mnist1d): logistic regression 32 %, MLP 68 %, CNN 94 %, GRU 91 %;
humans ~96 %.

Items: ``x`` (40, 1) float32 (the package's standardised signal), ``y`` int64.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["MNIST1D"]

_CACHE: dict[tuple, dict] = {}


def _generate(seed: int, overrides: tuple) -> dict:
    key = (seed, overrides)
    if key not in _CACHE:
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as error:
            raise ImportError('MNIST1D needs the mnist1d package: pip install "fptt[data]"') from error
        args = get_dataset_args()
        args.seed = seed
        for name, value in overrides:
            if not hasattr(args, name):
                raise ValueError(f"unknown mnist1d argument {name!r}")
            setattr(args, name, value)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(args)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        _CACHE.clear()  # keep at most one generated dataset alive
        _CACHE[key] = {k: data[k] for k in ("x", "y", "x_test", "y_test")}
    return _CACHE[key]


class MNIST1D(Dataset):
    """MNIST-1D; see the module docstring. ``split`` is ``"train"`` or ``"test"``; ``seed`` (default
    42, the published data's) drives the generator; other ``mnist1d`` arguments (e.g.
    ``num_samples``, ``shuffle_seq``) may be passed as keywords."""

    num_classes = 10
    input_size = 1

    def __init__(self, split: str = "train", seed: int = 42, **mnist1d_args: Any) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"MNIST1D split must be 'train' or 'test', got {split!r}")
        data = _generate(int(seed), tuple(sorted(mnist1d_args.items())))
        xs, ys = (data["x"], data["y"]) if split == "train" else (data["x_test"], data["y_test"])
        self.split, self.seed = split, seed
        self.inputs = torch.from_numpy(np.asarray(xs, dtype=np.float32)).unsqueeze(-1).contiguous()
        self.targets = torch.from_numpy(np.asarray(ys, dtype=np.int64))
        self.seq_len = self.inputs.shape[1]

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]
