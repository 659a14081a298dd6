"""A recurrent spiking network: stacked spiking layers (LTC, ALIF, LIF or BRF) and a leaky readout."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from ..neurons.cells import check_step_input, get_neuron
from ..neurons.readout import get_readout
from ..neurons.surrogate import SurrogateSpec
from ..neurons.types import NeuronState
from .protocol import check_sequence_input, layer_widths, unroll_steps

__all__ = ["SpikingRNN", "NetworkState"]


class NetworkState(NamedTuple):
    """State of a :class:`SpikingRNN`: one :class:`NeuronState` per layer and the readout potential."""

    layers: tuple[NeuronState, ...]
    readout: Tensor


class SpikingRNN(nn.Module):
    """Stacked recurrent spiking layers followed by a non-spiking leaky readout.

    Args:
        input_size: features per time step.
        hidden_sizes: one int per recurrent spiking layer (an int means one layer).
        output_size: readout units (classes, or regression outputs).
        neuron: ``"ltc"`` (default), ``"alif"``, ``"lif"`` or ``"brf"``.
        readout: ``"liquid"`` (default, the paper's S-MNIST readout), ``"fixed"`` or ``"linear"``
            (v_t = W_o x_t + c_o, no leak: with ``readout_from="membrane"`` the adding-task readout).
        readout_from: ``"spikes"`` (default, z_t = W_o s_t) or ``"membrane"`` (z_t = W_o u_t, what
            the authors' adding-task code reads out).
        surrogate: spike function name, config dict or :class:`~fptt.neurons.surrogate.Surrogate`.
        **neuron_options: passed to every layer (``reset``, ``initial_membrane``, ``norm``,
            ``baseline_threshold``, ``adaptation_strength``, ...).

    Layer ``l > 0`` receives the spikes of layer ``l - 1``; the readout receives the last layer's
    spikes. ``step`` returns the readout potential v_t (class scores) and the new state.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: int | Sequence[int],
        output_size: int,
        *,
        neuron: str = "ltc",
        readout: str = "liquid",
        surrogate: SurrogateSpec = "multi_gaussian",
        readout_from: str = "spikes",
        **neuron_options,
    ) -> None:
        super().__init__()
        if readout_from not in ("spikes", "membrane"):
            raise ValueError(f"readout_from must be 'spikes' or 'membrane', got {readout_from!r}")
        self.readout_from = readout_from
        sizes = layer_widths(hidden_sizes)
        if input_size <= 0 or output_size <= 0:
            raise ValueError(f"input_size and output_size must be positive, got {input_size}, {output_size}")
        cell_class = get_neuron(neuron)
        self.input_size = input_size
        self.hidden_sizes = tuple(sizes)
        self.output_size = output_size
        self.neuron = neuron.lower()
        self.layers = nn.ModuleList(
            cell_class(fan_in, size, surrogate=surrogate, **neuron_options)
            for fan_in, size in zip([input_size] + sizes[:-1], sizes)
        )
        self.readout = get_readout(readout)(sizes[-1], output_size)

    def init_state(
        self,
        batch_size: int,
        device: Optional[torch.device | str] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> NetworkState:
        """Initial state for ``batch_size`` sequences (on the parameters' device/dtype by default)."""
        return NetworkState(
            tuple(layer.init_state(batch_size, device, dtype) for layer in self.layers),
            self.readout.init_state(batch_size, device, dtype),
        )

    def check_step(self, x: Tensor, state: NetworkState) -> None:
        """Raise ``ValueError`` unless ``x`` (batch, input_size) and ``state`` fit this model. The
        engines and the :class:`~fptt.training.streaming.OnlineLearner` call it once per batch or
        stream segment; :meth:`step` itself checks nothing (it runs at every time step)."""
        check_step_input(x, self.input_size)
        if not isinstance(state, NetworkState) or len(state.layers) != len(self.layers):
            raise ValueError(
                f"state must be a NetworkState with {len(self.layers)} layer states; use model.init_state(batch)"
            )
        if state.readout.shape[0] != x.shape[0]:
            raise ValueError(f"batch size of input ({x.shape[0]}) and state ({state.readout.shape[0]}) differ")

    def step(self, x: Tensor, state: NetworkState) -> tuple[Tensor, NetworkState]:
        """One time step: ``x`` (batch, input_size) -> scores v_t (batch, output_size), new state
        (unchecked: see :meth:`check_step`)."""
        spikes = x
        layer_states = []
        for layer, layer_state in zip(self.layers, state.layers):
            spikes, layer_state = layer(spikes, layer_state)
            layer_states.append(layer_state)
        readout_input = spikes if self.readout_from == "spikes" else layer_states[-1].membrane
        scores, readout_state = self.readout(readout_input, state.readout)
        return scores, NetworkState(tuple(layer_states), readout_state)

    def unroll(self, x: Tensor, state: Optional[NetworkState] = None) -> tuple[Tensor, NetworkState]:
        """Run a whole sequence ``x`` (batch, time, input_size); returns scores (batch, time, output_size)
        and the final state. Keeps the graph of every step (this is what BPTT differentiates)."""
        check_sequence_input(x, self.input_size)
        weight = self.layers[0].input_weight.weight
        if x.dtype != weight.dtype:  # once per sequence, not per step
            raise ValueError(f"input has dtype {x.dtype} but the model's parameters are {weight.dtype}; "
                             f"convert one of them (x.to({weight.dtype}) or model.to({x.dtype}))")
        if x.device != weight.device:
            raise ValueError(f"input is on {x.device} but the model is on {weight.device}; move one of them")
        if state is not None and x.shape[1]:
            self.check_step(x[:, 0], state)
        return unroll_steps(self, x, state)

    def forward(self, x: Tensor, state: Optional[NetworkState] = None) -> Tensor:
        """Scores for every step: (batch, time, input_size) -> (batch, time, output_size)."""
        return self.unroll(x, state)[0]

    @staticmethod
    def firing_rates(state: NetworkState) -> list[Tensor]:
        """Mean spike rate of each layer at the state's step (a 0-dim tensor per layer, no host sync)."""
        return [layer_state.spikes.mean() for layer_state in state.layers]

    @staticmethod
    def spike_counts(state: NetworkState) -> list[Tensor]:
        """Number of spikes of each layer at the state's step, per batch row: (batch,) per layer."""
        return [layer_state.spikes.sum(dim=-1) for layer_state in state.layers]
