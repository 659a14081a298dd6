"""fptt: online training of spiking neural networks with Forward Propagation Through Time."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fptt")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
