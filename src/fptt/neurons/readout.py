"""Non-spiking leaky readouts (THEORY.md §2.5): the class scores at step t are the readout potential v_t."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..spec.vocabulary import READOUTS as READOUT_NAMES
from ..spec.vocabulary import check_registry
from .functional import fixed_readout_step, liquid_readout_step

__all__ = ["Readout", "FixedReadout", "LiquidReadout", "LinearReadout", "READOUT_CLASSES", "get_readout"]


class Readout(nn.Module):
    r"""Shared mechanism: :math:`z_t = W_o s_t + c_o`, then a leaky integration implemented by subclasses."""

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        if input_size <= 0 or output_size <= 0:
            raise ValueError(f"readout sizes must be positive, got {input_size}, {output_size}")
        self.input_size = input_size
        self.output_size = output_size
        self.weight = nn.Linear(input_size, output_size)
        nn.init.xavier_uniform_(self.weight.weight)
        nn.init.zeros_(self.weight.bias)

    def init_state(
        self, batch_size: int, device: Optional[torch.device | str] = None, dtype: Optional[torch.dtype] = None
    ) -> Tensor:
        """v_0 = 0, shape (batch, output_size)."""
        reference = self.weight.weight
        return torch.zeros(
            batch_size, self.output_size,
            device=reference.device if device is None else device,
            dtype=reference.dtype if dtype is None else dtype,
        )

    def integrate(self, current: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, spikes: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(v_t, v_t)``: the scores and the new readout state."""
        return self.integrate(self.weight(spikes), membrane)


class FixedReadout(Readout):
    r""":math:`v_t = k\, v_{t-1} + (1 - k)\, z_t` with a learnable per-output :math:`k = e^{-1/\tau_{out}}` (THEORY §2.5).

    τ_out is initialised to ``tau_init`` (steps) and learned through log τ_out so that k stays in (0, 1).
    """

    def __init__(self, input_size: int, output_size: int, *, tau_init: float = 20.0) -> None:
        super().__init__(input_size, output_size)
        if tau_init <= 0:
            raise ValueError(f"tau_init must be positive, got {tau_init}")
        self.log_tau = nn.Parameter(torch.full((output_size,), math.log(tau_init)))

    @property
    def decay(self) -> Tensor:
        return torch.exp(-torch.exp(-self.log_tau))

    def integrate(self, current: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:
        return fixed_readout_step(current, membrane, self.decay)


class LiquidReadout(Readout):
    r"""The paper's liquid readout (THEORY §2.5):

    .. math:: a_t = \sigma(W'_o [z_t, v_{t-1}] + c), \qquad v_t = (1 - a_t)\, v_{t-1} + a_t z_t
    """

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__(input_size, output_size)
        self.rate = nn.Linear(2 * output_size, output_size)
        nn.init.xavier_uniform_(self.rate.weight)
        nn.init.zeros_(self.rate.bias)

    def integrate(self, current: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:
        return liquid_readout_step(current, membrane, self.rate.weight, self.rate.bias)


class LinearReadout(Readout):
    r""":math:`v_t = z_t = W_o x_t + c_o`: no leak, no state (the authors' adding-task readout, read from the
    last layer's membrane u_t). W_o is Xavier-normal, c_o PyTorch's default, as in their code.
    The returned state is v_t itself, so the readout speaks the same protocol as the leaky ones."""

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__(input_size, output_size)
        self.weight.reset_parameters()
        nn.init.xavier_normal_(self.weight.weight)

    def integrate(self, current: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:
        return current, current


READOUT_CLASSES: dict[str, type[Readout]] = {"liquid": LiquidReadout, "fixed": FixedReadout, "linear": LinearReadout}
check_registry("readout", tuple(READOUT_CLASSES), READOUT_NAMES)


def get_readout(name: str) -> type[Readout]:
    if name not in READOUT_CLASSES:
        raise ValueError(f"unknown readout {name!r}; choose one of {sorted(READOUT_CLASSES)}")
    return READOUT_CLASSES[name]
