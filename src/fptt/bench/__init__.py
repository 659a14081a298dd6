"""The benchmarks behind ``fptt bench memory | speed`` (their measurement tools are in
:mod:`fptt.memory`; ``fptt.bench.SavedTensorMeter`` is kept as an alias for existing code)."""
from ..memory import SavedTensorMeter

__all__ = ["SavedTensorMeter"]
