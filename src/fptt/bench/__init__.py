"""Measurement tools used by the benchmarks and the tests."""
from .memory import SavedTensorMeter

__all__ = ["SavedTensorMeter"]
