"""FPTT as an optimizer: :class:`FPTT` wraps any ``torch.optim.Optimizer``
(:mod:`.fptt`); :mod:`.fused_update` holds its optional fused update, :mod:`.regularizer`
the dynamic regularizer as a function, and :mod:`.weight_average` an exponential moving average
of the weights to evaluate with (any method)."""
from .fptt import FPTT
from .regularizer import regularizer
from .weight_average import WeightEMA

__all__ = ["FPTT", "WeightEMA", "regularizer"]
