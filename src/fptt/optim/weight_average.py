"""An exponential moving average of the weights (Polyak averaging), kept beside any optimizer.

After every training batch :meth:`WeightEMA.update` applies, to every parameter,

.. math:: W_{\\text{ema}} \\leftarrow d\\, W_{\\text{ema}} + (1 - d)\\, W, \\qquad W_{\\text{ema}} = W \\text{ at the start},

with ``d`` the decay: a window of about ``1 / (1 − d)`` batches. FPTT at k = 1 makes one update per
time step, and its weights at any one moment (W, or FPTT's own running average W̄, which follows W
within a few updates) swing from batch to batch; evaluated with ``W_ema`` the same run is steadier
(docs/RESULTS.md §10.7). It only reads the weights, so it applies to BPTT and every other method
alike, and training is the same with or without it.

The update is :func:`torch.optim.swa_utils.get_ema_multi_avg_fn` (one foreach lerp over the
parameters); this module keeps the averages, swaps them in for evaluation and checkpoints them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import Tensor
from torch.optim.swa_utils import get_ema_multi_avg_fn

__all__ = ["WeightEMA"]


class WeightEMA:
    """The exponential moving average ``W_ema`` of ``model``'s parameters (see the module docstring).

    Args:
        model: the module whose parameters are averaged (the unwrapped model under DDP: its
            parameters are equal on every rank, and so are the averages).
        decay: ``d`` in ``(0, 1)``.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.params: list[Tensor] = [param for _, param in named]
        with torch.no_grad():
            self.averages = [param.detach().clone() for param in self.params]
        self._lerp = get_ema_multi_avg_fn(decay)

    def update(self) -> None:
        """``W_ema ← d W_ema + (1 − d) W`` for every parameter."""
        if self.params:
            self._lerp(self.averages, [param.detach() for param in self.params], None)

    @contextmanager
    def applied(self) -> Iterator[WeightEMA]:
        """Parameters hold ``W_ema`` inside the block and their exact old values after it (also
        when the block raises)."""
        with torch.no_grad():
            backup = [param.detach().clone() for param in self.params]
            if self.params:
                torch._foreach_copy_(self.params, self.averages)
        try:
            yield self
        finally:
            with torch.no_grad():
                if self.params:
                    torch._foreach_copy_(self.params, backup)

    def model_state_dict(self, model: torch.nn.Module) -> dict[str, Tensor]:
        """``model.state_dict()`` with the parameters replaced by ``W_ema`` (copies): what a
        checkpoint stores, and what ``fptt eval --with ema`` and the exports load."""
        with self.applied():
            return {name: value.detach().clone() for name, value in model.state_dict().items()}

    def load_model_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore the averages from a :meth:`model_state_dict` (a checkpoint's ``model_ema``)."""
        missing = [name for name in self.names if name not in state]
        if missing:
            raise KeyError(f"the saved EMA lacks the parameters {missing[:3]}")
        with torch.no_grad():
            for name, average in zip(self.names, self.averages):
                if state[name].shape != average.shape:
                    raise ValueError(f"the saved EMA of {name} has shape {tuple(state[name].shape)}, "
                                     f"the model's {tuple(average.shape)}")
                average.copy_(state[name])

    def __repr__(self) -> str:
        return f"WeightEMA(decay={self.decay}, parameters={len(self.params)})"
