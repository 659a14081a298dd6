"""fptt: online training of spiking neural networks with Forward Propagation Through Time.

Axis convention: sequences are batch first, ``(batch, time, features)``.

The public names below are imported on first use (PEP 562), so that ``import fptt.cli`` and
``fptt --help`` do not pay for importing torch; ``from fptt import FPTT`` works as usual.
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("fptt")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

# public name -> the module that defines it
_EXPORTS = {
    "FPTT": "optim",
    "WeightEMA": "optim",
    "train_epoch": "training.engine",
    "evaluate": "training.engine",
    "EpochMetrics": "training.engine",
    "OnlineLearner": "training.streaming",
    "WindowUpdate": "training.window",
    "TraceLearner": "training.traces.learner",
    "Trainer": "run.trainer",
    "fit": "run.trainer",
    "TrainConfig": "run.config",
    "SpikingRNN": "models",
    "NetworkState": "models",
    "ConvSNN": "models",
    "ConvNetworkState": "models",
    "RecurrentBaseline": "models.baselines",
    "detach_state": "models.state",
    "map_state": "models.state",
    "state_to": "models.state",
    "preset_values": "run.presets",
}
# public submodule name -> its module (``fptt.surrogate`` is the surrogate module of the neurons)
_SUBMODULES = {"neurons": "neurons", "surrogate": "neurons.surrogate"}

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = import_module(f".{_SUBMODULES[name]}", __name__)
    else:
        raise AttributeError(f"module 'fptt' has no attribute {name!r}")
    globals()[name] = value  # cached: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
