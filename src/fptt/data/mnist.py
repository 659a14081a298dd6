"""Sequential and permuted MNIST, pixel by pixel, from IDX files.

With no ``root`` (and no ``FPTT_DATA``) the bundled MNIST **test** split (10,000 real digits,
CC BY-SA 3.0, Y. LeCun, C. Cortes, C. Burges) is used as **MNIST-10k**: a deterministic,
stratified split into 8,000 ``"train"`` and 2,000 ``"heldout"`` images (80/20 per class). With a
``root``, the full MNIST is read from ``<root>/MNIST/raw/``, ``<root>/MNIST/`` or ``<root>/``
(torchvision layout or plain folder, files ``train-images-idx3-ubyte[.gz]`` etc.), splits
``"train"`` (60,000) and ``"test"`` (10,000).

Items: ``x`` (T, C) float32 with T = 784, C = 1 (pixel by pixel), T = 196 with
``downsample=14`` (2×2 average pooling), or T = 28, C = 28 with ``row_by_row=True``;
``y`` an int64 label. Pixels are scaled to [0, 1] and normalised with MNIST's mean 0.1307 and
standard deviation 0.3081.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ._common import DatasetNotFoundError, data_root
from .idx import read_idx

__all__ = ["SequentialMNIST", "mnist10k_split", "mnist10k_images"]

MEAN, STD = 0.1307, 0.3081
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SPLIT_SEED = 20231
_DOWNLOAD_HINT = (
    "download it with `python -c \"import torchvision; torchvision.datasets.MNIST('<root>', download=True)\"` "
    "or from https://ossci-datasets.s3.amazonaws.com/mnist/ into <root>/MNIST/raw/"
)


def _find(folder_candidates: list[Path], stem: str) -> Optional[Path]:
    for folder in folder_candidates:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _load_files(root: Optional[Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    if root is None:
        assets = resources.files("fptt.data") / "assets"
        images = read_idx(Path(str(assets / "t10k-images-idx3-ubyte.gz")))
        labels = read_idx(Path(str(assets / "t10k-labels-idx1-ubyte.gz")))
    else:
        if split not in _FILES:
            raise ValueError(f"split must be 'train' or 'test' for the full MNIST, got {split!r}")
        folders = [root / "MNIST" / "raw", root / "MNIST", root]
        found = [_find(folders, stem) for stem in _FILES[split]]
        missing = [stem for stem, path in zip(_FILES[split], found) if path is None]
        if missing:
            raise DatasetNotFoundError(
                f"MNIST {split} split not found: missing {', '.join(missing)}[.gz] in "
                f"{' or '.join(str(f) for f in folders)}; {_DOWNLOAD_HINT}"
            )
        images, labels = read_idx(found[0]), read_idx(found[1])  # type: ignore[arg-type]  # none missing
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"MNIST images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"MNIST labels must be (N,) matching {images.shape[0]} images, got {labels.shape}")
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"MNIST labels must lie in 0..9, got max {int(labels.max())}")
    return images, labels


def mnist10k_split(labels: np.ndarray, train_fraction: float = 0.8, seed: int = _SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of indices: per class, a seeded shuffle, the first 80 % to
    ``train`` and the rest to ``heldout``; each part sorted to keep the original order."""
    rng = np.random.default_rng(seed)
    train, heldout = [], []
    for label in range(10):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        cut = int(round(train_fraction * len(members)))
        train.append(members[:cut])
        heldout.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(heldout))


def mnist10k_images(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of a split of the bundled MNIST-10k: ``"train"``
    (8,000) or ``"heldout"`` (2,000), by :func:`mnist10k_split`."""
    if split not in ("train", "heldout"):
        raise ValueError(f"the bundled MNIST-10k has splits 'train' (8,000) and 'heldout' (2,000), got {split!r}")
    images, labels = _load_files(None, "test")
    train_index, heldout_index = mnist10k_split(labels)
    index = train_index if split == "train" else heldout_index
    return images[index], labels[index]


class SequentialMNIST(Dataset):
    """(Permuted) sequential MNIST; see the module docstring for splits, shapes and sources.

    Args:
        split: ``"train"`` / ``"heldout"`` (bundled MNIST-10k) or ``"train"`` / ``"test"`` (full MNIST).
        root: folder of the full MNIST (default: ``FPTT_DATA``; none = bundled MNIST-10k).
        permute: apply a fixed pixel permutation drawn from ``permutation_seed`` (recorded in
            :attr:`permutation`).
        downsample: ``14`` for 14×14 images (196 steps), ``None`` for 28×28 (784 steps).
        row_by_row: one row per step (28 or 14 steps of 28 or 14 pixels).
    """

    num_classes = 10

    def __init__(
        self,
        split: str = "train",
        root: Optional[str | Path] = None,
        *,
        permute: bool = False,
        permutation_seed: int = 0,
        downsample: Optional[int] = None,
        row_by_row: bool = False,
        normalize: bool = True,
    ) -> None:
        root_path = data_root(root)
        if downsample not in (None, 28, 14):
            raise ValueError(f"downsample must be None, 28 or 14, got {downsample!r}")
        self.source = "MNIST-10k (bundled MNIST test split)" if root_path is None else f"MNIST at {root_path}"
        if root_path is None:
            images, labels = mnist10k_images(split)
        else:
            images, labels = _load_files(root_path, split)
        self.split = split
        pixels = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
        side = 28
        if downsample == 14:
            pixels = F.avg_pool2d(pixels, 2)
            side = 14
        if normalize:
            pixels = (pixels - MEAN) / STD
        if row_by_row:
            sequences = pixels.reshape(len(pixels), side, side)
        else:
            sequences = pixels.reshape(len(pixels), side * side, 1)
        self.permutation: Optional[Tensor] = None
        if permute:
            generator = torch.Generator().manual_seed(permutation_seed)
            self.permutation = torch.randperm(sequences.shape[1], generator=generator)
            sequences = sequences[:, self.permutation]
        self.inputs = sequences.contiguous()
        self.targets = torch.from_numpy(labels.astype(np.int64))
        self.seq_len, self.input_size = self.inputs.shape[1], self.inputs.shape[2]

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]
