"""Datasets and tasks. Every item is ``(x, y)`` with ``x`` a float32 tensor of shape (T, C) and
``y`` an int64 class label (or a float32 target); a ``DataLoader`` batch is then ``(B, T, C)``,
the library's batch-first convention."""
from ._common import DatasetNotFoundError, data_root
from .adding import AddingTask
from .idx import IDXFormatError, read_idx, write_idx
from .mnist import SequentialMNIST, mnist10k_split

__all__ = [
    "AddingTask", "SequentialMNIST", "mnist10k_split",
    "read_idx", "write_idx", "IDXFormatError", "DatasetNotFoundError", "data_root",
]
