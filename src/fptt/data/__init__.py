"""Datasets and tasks. Every item is ``(x, y)`` with ``x`` a float32 tensor of shape (T, C) and
``y`` an int64 class label (or a float32 target); a ``DataLoader`` batch is then ``(B, T, C)``,
the library's batch-first convention.

Optional dependencies (h5py, tonic, mnist1d) are imported only when the dataset that needs them
is used; ``import fptt.data`` stays light. See docs/DATASETS.md."""
from ._common import DatasetNotFoundError, data_root
from .adding import AddingTask
from .collate import pad_collate
from .dvs import DVSCIFAR10, NMNIST, DVSGesture, EventFileError, events_to_frames
from .idx import IDXFormatError, read_idx, write_idx
from .mnist import SequentialMNIST, mnist10k_split
from .mnist1d import MNIST1D
from .registry import DATASET_NAMES, get_dataset
from .saccade import SaccadeMNIST, simulate_dvs
from .shd import SHD, SHDFormatError

__all__ = [
    "AddingTask", "SequentialMNIST", "mnist10k_split", "MNIST1D", "SHD", "SHDFormatError",
    "DVSGesture", "DVSCIFAR10", "NMNIST", "EventFileError", "events_to_frames", "pad_collate",
    "get_dataset", "DATASET_NAMES", "SaccadeMNIST", "simulate_dvs",
    "read_idx", "write_idx", "IDXFormatError", "DatasetNotFoundError", "data_root",
]
