"""fptt: online training of spiking neural networks with Forward Propagation Through Time.

Axis convention: sequences are batch first, ``(batch, time, features)``.
"""
from importlib.metadata import PackageNotFoundError, version

from . import neurons, surrogate
from .models import NetworkState, SpikingRNN
from .state import detach_state, map_state, state_to

try:
    __version__ = version("fptt")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "__version__",
    "SpikingRNN",
    "NetworkState",
    "neurons",
    "surrogate",
    "detach_state",
    "map_state",
    "state_to",
]
