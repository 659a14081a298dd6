"""Datasets by name: ``get_dataset("shd", "train", root=...)``."""
from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from ..spec.vocabulary import SPLITS, TASKS, check_registry

__all__ = ["get_dataset", "DATASET_NAMES"]

ADD_TEST_SEED_OFFSET = 1_000_003


def _adding(split: str, **kwargs: Any) -> Dataset:
    from .adding import AddingTask

    if split not in SPLITS:
        raise ValueError(f"the adding task has splits 'train' and 'test', got {split!r}")
    kwargs.pop("root", None)  # generated in memory
    seed = int(kwargs.pop("seed", 0))
    # the test set is a fixed draw far from the training seed (fptt.run.build.build_dataset comes here too)
    return AddingTask(seed=seed if split == "train" else seed + ADD_TEST_SEED_OFFSET, **kwargs)


def _smnist(split: str, **kwargs: Any) -> Dataset:
    from .mnist import SequentialMNIST

    return SequentialMNIST(split=split, **kwargs)


def _psmnist(split: str, **kwargs: Any) -> Dataset:
    from .mnist import SequentialMNIST

    return SequentialMNIST(split=split, permute=True, **kwargs)


def _mnist1d(split: str, **kwargs: Any) -> Dataset:
    from .mnist1d import MNIST1D

    kwargs.pop("root", None)  # generated in memory
    return MNIST1D(split=split, **kwargs)


def _shd(split: str, **kwargs: Any) -> Dataset:
    from .shd import SHD

    return SHD(split=split, **kwargs)


def _dvsgesture(split: str, **kwargs: Any) -> Dataset:
    from .dvs import DVSGesture

    return DVSGesture(split=split, **kwargs)


def _dvscifar10(split: str, **kwargs: Any) -> Dataset:
    from .dvs import DVSCIFAR10

    # no official split: the generic names map onto fptt's own 90/10 split
    split = {"train": "train90", "test": "test10"}.get(split, split)
    return DVSCIFAR10(split=split, **kwargs)


def _nmnist(split: str, **kwargs: Any) -> Dataset:
    from .dvs import NMNIST

    return NMNIST(split=split, **kwargs)


def _saccade_mnist(split: str, **kwargs: Any) -> Dataset:
    from .saccade import SaccadeMNIST

    kwargs.pop("root", None)  # made from the bundled MNIST-10k
    split = {"test": "heldout"}.get(split, split)
    return SaccadeMNIST(split=split, **kwargs)


_REGISTRY: dict[str, Callable[..., Dataset]] = {
    "add": _adding,
    "smnist": _smnist,
    "psmnist": _psmnist,
    "mnist1d": _mnist1d,
    "shd": _shd,
    "dvsgesture": _dvsgesture,
    "dvscifar10": _dvscifar10,
    "nmnist": _nmnist,
    "saccade-mnist": _saccade_mnist,
}
DATASET_NAMES = tuple(_REGISTRY)
check_registry("dataset", DATASET_NAMES, TASKS)


def get_dataset(name: str, split: str = "train", **kwargs: Any) -> Dataset:
    """Build dataset ``name`` (one of :data:`DATASET_NAMES`, case-insensitive) for ``split``;
    ``kwargs`` go to its constructor. ``root`` is accepted and ignored by the generated datasets
    (``add``, ``mnist1d``); ``"add"`` uses ``seed`` s for train and s + 1,000,003 for test (as
    the trainer does); ``"dvscifar10"`` maps ``"train"``/``"test"`` to its own ``"train90"``/``"test10"``;
    ``"saccade-mnist"`` maps ``"test"`` to ``"heldout"``."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    return _REGISTRY[key](split, **kwargs)
