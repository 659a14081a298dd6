"""A convolutional spiking network for event frames: conv LTC layers, dense LTC layers, a readout."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from ..neurons.cells import LTC
from ..neurons.conv import ConvLTC
from ..neurons.readout import get_readout
from ..neurons.surrogate import SurrogateSpec
from ..neurons.types import NeuronState
from .protocol import check_sequence_input, layer_widths, unroll_steps

__all__ = ["ConvSNN", "ConvNetworkState", "REFERENCE_DVS_CONV", "SMALL_DVS_CONV"]


class ConvNetworkState(NamedTuple):
    """State of a :class:`ConvSNN`: one feature-map :class:`NeuronState` per conv layer, one per
    dense layer, and the readout potential."""

    conv: tuple[NeuronState, ...]
    dense: tuple[NeuronState, ...]
    readout: Tensor


class ConvSNN(nn.Module):
    """Convolutional LTC spiking network for event frames (THEORY.md §4.3): conv LTC layers
    (:class:`~fptt.neurons.conv.ConvLTC`), flattened into recurrent dense LTC layers, then a leaky
    readout. It speaks the stateful-model protocol on flat frames, so every engine, FPTT,
    checkpoints and DDP train it unchanged.

    Args:
        input_shape: (P, H, W) of one frame (polarities, height, width); a step's input is the
            flattened frame (batch, P·H·W), the layout of the event datasets' items.
        conv: layer specifications, e.g. ``["64c7", "128c7", "128c3", "256c3", "256c3", "512c3"]``
            (the reference DVS-Gesture front end, :data:`REFERENCE_DVS_CONV`).
        hidden_sizes: dense recurrent LTC layers after the conv layers (reference: 512).
        output_size: classes.
        readout: ``"liquid"`` (default, the reference's), ``"fixed"`` or ``"linear"``.
        gate_input: conv gates over d + u (``"sum"``, reference) or [d, u] (``"concat"``).
        norm / norm_scale: normalisation of the conv and dense currents (``"none"``/``"layer"``).
        **neuron_options: ``baseline_threshold``, ``adaptation_strength``, ``reset``,
            ``initial_membrane``, ``fused`` for every layer; LTC options (``gate_slopes``, ``chrono_tau``,
            ``synapse_init``) for the dense layers.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        conv: Sequence[str],
        hidden_sizes: int | Sequence[int],
        output_size: int,
        *,
        readout: str = "liquid",
        surrogate: SurrogateSpec = "multi_gaussian",
        gate_input: str = "sum",
        norm: str = "none",
        norm_scale: float = 1.0,
        **neuron_options,
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(f"input_shape must be (channels, height, width) with positive sizes, got {input_shape!r}")
        if not conv:
            raise ValueError("a ConvSNN needs at least one conv layer (e.g. conv=['8c3']); use SpikingRNN without")
        sizes = layer_widths(hidden_sizes)
        if output_size <= 0:
            raise ValueError(f"output_size must be positive, got {output_size}")
        shared = {key: neuron_options[key] for key in ("baseline_threshold", "adaptation_strength", "reset",
                                                       "initial_membrane", "fused") if key in neuron_options}
        layers = []
        channels, hw = shape[0], shape[1:]
        for spec in conv:
            layer = ConvLTC(channels, spec, hw, gate_input=gate_input, surrogate=surrogate, norm=norm,
                            norm_scale=norm_scale, **shared)
            layers.append(layer)
            channels, hw = layer.channels, layer.output_hw
        self.conv_layers = nn.ModuleList(layers)
        flat = channels * hw[0] * hw[1]
        self.input_shape = shape
        self.input_size = shape[0] * shape[1] * shape[2]
        self.conv_output_size = flat
        self.hidden_sizes = tuple(sizes)
        self.output_size = output_size
        self.dense_layers = nn.ModuleList(
            LTC(fan_in, size, surrogate=surrogate, norm=norm, norm_scale=norm_scale, **neuron_options)
            for fan_in, size in zip([flat] + sizes[:-1], sizes)
        )
        self.readout = get_readout(readout)(sizes[-1], output_size)

    def init_state(self, batch_size: int, device: Optional[torch.device | str] = None,
                   dtype: Optional[torch.dtype] = None) -> ConvNetworkState:
        """Initial state for ``batch_size`` sequences (on the parameters' device/dtype by default)."""
        return ConvNetworkState(
            tuple(layer.init_state(batch_size, device, dtype) for layer in self.conv_layers),
            tuple(layer.init_state(batch_size, device, dtype) for layer in self.dense_layers),
            self.readout.init_state(batch_size, device, dtype),
        )

    def check_step(self, x: Tensor, state: ConvNetworkState) -> None:
        """Raise ``ValueError`` unless ``x`` (one frame, flat or not) and ``state`` fit this model;
        called once per batch or stream segment (:meth:`step` itself checks nothing)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if not (x.dim() == 2 and x.shape[1] == self.input_size) and (x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape):
            raise ValueError(f"input must have shape (batch, {self.input_size}) (a flattened {self.input_shape} frame) "
                             f"or (batch, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if not isinstance(state, ConvNetworkState) or len(state.conv) != len(self.conv_layers) \
                or len(state.dense) != len(self.dense_layers):
            raise ValueError("state must be this model's ConvNetworkState; use model.init_state(batch)")
        if state.readout.shape[0] != x.shape[0]:
            raise ValueError(f"batch size of input ({x.shape[0]}) and state ({state.readout.shape[0]}) differ")

    def step(self, x: Tensor, state: ConvNetworkState) -> tuple[Tensor, ConvNetworkState]:
        """One frame: ``x`` (batch, P·H·W) or (batch, P, H, W) -> scores (batch, output_size), new state
        (unchecked: see :meth:`check_step`)."""
        if x.dim() == 2:
            x = x.reshape(x.shape[0], *self.input_shape)
        spikes = x
        conv_states = []
        for layer, layer_state in zip(self.conv_layers, state.conv):
            spikes, layer_state = layer(spikes, layer_state)
            conv_states.append(layer_state)
        spikes = spikes.flatten(1)
        dense_states = []
        for layer, layer_state in zip(self.dense_layers, state.dense):
            spikes, layer_state = layer(spikes, layer_state)
            dense_states.append(layer_state)
        scores, readout_state = self.readout(spikes, state.readout)
        return scores, ConvNetworkState(tuple(conv_states), tuple(dense_states), readout_state)

    def unroll(self, x: Tensor, state: Optional[ConvNetworkState] = None) -> tuple[Tensor, ConvNetworkState]:
        """Run a sequence ``x`` (batch, time, P·H·W); scores (batch, time, output_size) and the final state."""
        check_sequence_input(x, self.input_size)
        if state is not None and x.shape[1]:
            self.check_step(x[:, 0], state)
        return unroll_steps(self, x, state)

    def forward(self, x: Tensor, state: Optional[ConvNetworkState] = None) -> Tensor:
        return self.unroll(x, state)[0]

    @staticmethod
    def firing_rates(state: ConvNetworkState) -> list[Tensor]:
        """Mean spike rate of each layer (conv layers first) at the state's step (0-dim tensors)."""
        return [layer_state.spikes.mean() for layer_state in (*state.conv, *state.dense)]

    @staticmethod
    def spike_counts(state: ConvNetworkState) -> list[Tensor]:
        """Number of spikes of each layer at the state's step, per batch row: (batch,) per layer."""
        return [layer_state.spikes.flatten(1).sum(dim=1) for layer_state in (*state.conv, *state.dense)]


# The reference DVS-Gesture network (THEORY.md §4.3; 128x128 input, 14.1 M parameters with 512 LTC):
# conv LTC 64c7-128c7-128c3-256c3-256c3-512c3, each followed by 2x2 max pooling, then 512 LTC.
REFERENCE_DVS_CONV: tuple[str, ...] = ("64c7", "128c7", "128c3", "256c3", "256c3", "512c3")
# A variant sized for 2 CPU cores (e.g. 2x16x16 or 2x17x17 frames): two small conv layers, 64 LTC.
SMALL_DVS_CONV: tuple[str, ...] = ("8c3", "16c3")
