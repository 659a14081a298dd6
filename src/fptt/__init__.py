"""fptt: online training of spiking neural networks with Forward Propagation Through Time.

Axis convention: sequences are batch first, ``(batch, time, features)``.
"""
from importlib.metadata import PackageNotFoundError, version

from . import neurons, surrogate
from .engine import EpochMetrics, evaluate, train_epoch
from .models import NetworkState, SpikingRNN
from .optim import FPTT
from .state import detach_state, map_state, state_to
from .streaming import OnlineLearner
from .config import TrainConfig
from .trainer import Trainer, fit

try:
    __version__ = version("fptt")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "__version__",
    "FPTT",
    "train_epoch",
    "evaluate",
    "EpochMetrics",
    "OnlineLearner",
    "Trainer",
    "TrainConfig",
    "fit",
    "SpikingRNN",
    "NetworkState",
    "neurons",
    "surrogate",
    "detach_state",
    "map_state",
    "state_to",
]
