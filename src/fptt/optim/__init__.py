"""FPTT as an optimizer: :class:`FPTT` wraps any ``torch.optim.Optimizer``
(:mod:`.fptt`); :mod:`.fused_update` holds its optional fused update and :mod:`.regularizer`
the dynamic regularizer as a function."""
from .fptt import FPTT
from .regularizer import regularizer

__all__ = ["FPTT", "regularizer"]
