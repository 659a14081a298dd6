"""Non-spiking recurrent baselines (GRU, LSTM) that speak the stateful-model protocol.

They are the ceiling row of every accuracy table: the same engines (FPTT, BPTT, truncated BPTT,
naive online gradient), losses, data and budget as the spiking networks, with PyTorch's own
cells (``nn.GRUCell``, ``nn.LSTMCell``, stacked) and a linear readout of the last layer's hidden
state at every step:

.. math:: v_t = W_o h_t + c_o

so the class scores at step t are v_t, as for :class:`~fptt.models.SpikingRNN`. The state is
``(h^1, …, h^L)`` for a GRU and ``((h^1, c^1), …, (h^L, c^L))`` for an LSTM, zeros at t = 0.
They have no spikes (no ``firing_rates``), so e-prop and OSTL, which need spiking layers, do not
apply.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from ..spec.vocabulary import BASELINE_CELLS as BASELINES
from .protocol import check_sequence_input, unroll_steps

__all__ = ["RecurrentBaseline", "BASELINES"]


class RecurrentBaseline(nn.Module):
    """Stacked ``nn.GRUCell`` or ``nn.LSTMCell`` layers and a linear readout (see the module docstring).

    Args:
        input_size: features per time step.
        hidden_sizes: one int per layer (an int means one layer).
        output_size: readout units.
        cell: ``"gru"`` or ``"lstm"``.
    """

    def __init__(self, input_size: int, hidden_sizes: int | Sequence[int], output_size: int, *,
                 cell: str = "gru") -> None:
        super().__init__()
        if cell not in BASELINES:
            raise ValueError(f"cell must be one of {BASELINES}, got {cell!r}")
        sizes = [hidden_sizes] if isinstance(hidden_sizes, int) else list(hidden_sizes)
        if not sizes or any(not isinstance(size, int) or size <= 0 for size in sizes):
            raise ValueError(f"hidden_sizes must be one or more positive ints, got {hidden_sizes!r}")
        if input_size <= 0 or output_size <= 0:
            raise ValueError(f"input_size and output_size must be positive, got {input_size}, {output_size}")
        cell_class = nn.GRUCell if cell == "gru" else nn.LSTMCell
        self.cell = cell
        self.input_size = input_size
        self.hidden_sizes = tuple(sizes)
        self.output_size = output_size
        self.layers = nn.ModuleList(cell_class(fan_in, size) for fan_in, size in zip([input_size] + sizes[:-1], sizes))
        self.readout = nn.Linear(sizes[-1], output_size)

    def init_state(self, batch_size: int, device: Optional[torch.device | str] = None,
                   dtype: Optional[torch.dtype] = None) -> tuple[Any, ...]:
        """Zeros: h (and c for an LSTM) of every layer, (batch, hidden) each."""
        reference = self.readout.weight
        device = reference.device if device is None else device
        dtype = reference.dtype if dtype is None else dtype
        if self.cell == "gru":
            return tuple(torch.zeros(batch_size, size, device=device, dtype=dtype) for size in self.hidden_sizes)
        return tuple((torch.zeros(batch_size, size, device=device, dtype=dtype),
                      torch.zeros(batch_size, size, device=device, dtype=dtype)) for size in self.hidden_sizes)

    def step(self, x: Tensor, state: tuple[Any, ...]) -> tuple[Tensor, tuple[Any, ...]]:
        """One time step: ``x`` (batch, input_size) -> scores (batch, output_size), new state."""
        layer_input, new_state = x, []
        for layer, layer_state in zip(self.layers, state):
            layer_state = layer(layer_input, layer_state)
            new_state.append(layer_state)
            layer_input = layer_state if self.cell == "gru" else layer_state[0]
        return self.readout(layer_input), tuple(new_state)

    def unroll(self, x: Tensor, state: Optional[tuple[Any, ...]] = None) -> tuple[Tensor, tuple[Any, ...]]:
        """Scores for every step (batch, time, output_size) and the final state."""
        check_sequence_input(x, self.input_size)
        return unroll_steps(self, x, state)

    def forward(self, x: Tensor, state: Optional[tuple[Any, ...]] = None) -> Tensor:
        return self.unroll(x, state)[0]

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}"
