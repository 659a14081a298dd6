"""The benchmarks behind ``fptt bench memory | speed`` (their measurement tools are in
:mod:`fptt.measure`; ``fptt.bench.SavedTensorMeter`` is kept as an alias for existing code)."""
from ..measure import SavedTensorMeter

__all__ = ["SavedTensorMeter"]
