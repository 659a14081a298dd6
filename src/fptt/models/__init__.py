"""Recurrent spiking networks that speak the *stateful-model protocol*.

Axis convention (the whole library): sequences are **batch first**, ``(batch, time, features)``;
one time step is ``(batch, features)``.

Stateful-model protocol (what the training engines need, and all they need)::

    state = model.init_state(batch_size, device=None, dtype=None)
    output_t, state = model.step(x_t, state)          # one time step
    outputs = model(x)                                  # (B, T, C) -> (B, T, O)

A state is a tensor or a nested tuple/NamedTuple of tensors; engines only map over it
(:mod:`fptt.state`). Any ``nn.Module`` with these methods can be trained by every engine.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from ..neurons.cells import LTC, check_step_input, get_neuron
from ..neurons.conv import ConvLTC
from ..neurons.types import NeuronState
from ..neurons.readout import get_readout
from ..surrogate import SurrogateSpec

__all__ = ["SpikingRNN", "NetworkState", "unroll_steps", "ConvSNN", "ConvNetworkState", "REFERENCE_DVS_CONV", "SMALL_DVS_CONV",
           "check_sequence_input"]


class NetworkState(NamedTuple):
    """State of a :class:`SpikingRNN`: one :class:`NeuronState` per layer and the readout potential."""

    layers: tuple[NeuronState, ...]
    readout: Tensor


def _hidden_sizes(hidden_sizes: int | Sequence[int]) -> list[int]:
    """``hidden_sizes`` as a list of layer widths (an int is one layer); ``ValueError`` unless all positive ints."""
    sizes = [hidden_sizes] if isinstance(hidden_sizes, int) else list(hidden_sizes)
    if not sizes or any((not isinstance(size, int)) or size <= 0 for size in sizes):
        raise ValueError(f"hidden_sizes must be one or more positive ints, got {hidden_sizes!r}")
    return sizes


def unroll_steps(model: nn.Module, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
    """Step a stateful model over ``x`` (batch, time, ...) from ``state`` (``model.init_state`` if
    None): the outputs stacked on the time axis and the final state. Keeps the graph of every step
    (what BPTT differentiates)."""
    if state is None:
        state = model.init_state(x.shape[0], x.device, x.dtype)
    outputs = []
    for t in range(x.shape[1]):
        output, state = model.step(x[:, t], state)
        outputs.append(output)
    return torch.stack(outputs, dim=1), state


def check_sequence_input(x: Tensor, features: int, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` is a floating ``(batch, time, features)`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != features:
        raise ValueError(
            f"{name} must have shape (batch, time, {features}) (batch first), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}; convert with .float()")


class SpikingRNN(nn.Module):
    """Stacked recurrent spiking layers followed by a non-spiking leaky readout.

    Args:
        input_size: features per time step.
        hidden_sizes: one int per recurrent spiking layer (an int means one layer).
        output_size: readout units (classes, or regression outputs).
        neuron: ``"ltc"`` (default), ``"alif"`` or ``"lif"``.
        readout: ``"liquid"`` (default, the paper's S-MNIST readout), ``"fixed"`` or ``"linear"``
            (v_t = W_o x_t + c_o, no leak: with ``readout_from="membrane"`` the adding-task readout).
        readout_from: ``"spikes"`` (default, z_t = W_o s_t) or ``"membrane"`` (z_t = W_o u_t, what
            the authors' adding-task code reads out).
        surrogate: spike function name, config dict or :class:`~fptt.surrogate.Surrogate`.
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
        sizes = _hidden_sizes(hidden_sizes)
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

    def step(self, x: Tensor, state: NetworkState) -> tuple[Tensor, NetworkState]:
        """One time step: ``x`` (batch, input_size) -> scores v_t (batch, output_size), new state."""
        check_step_input(x, self.input_size)
        if not isinstance(state, NetworkState) or len(state.layers) != len(self.layers):
            raise ValueError(
                f"state must be a NetworkState with {len(self.layers)} layer states; use model.init_state(batch)"
            )
        if state.readout.shape[0] != x.shape[0]:
            raise ValueError(f"batch size of input ({x.shape[0]}) and state ({state.readout.shape[0]}) differ")
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
        sizes = _hidden_sizes(hidden_sizes)
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

    def step(self, x: Tensor, state: ConvNetworkState) -> tuple[Tensor, ConvNetworkState]:
        """One frame: ``x`` (batch, P·H·W) or (batch, P, H, W) -> scores (batch, output_size), new state."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() == 2 and x.shape[1] == self.input_size:
            x = x.reshape(x.shape[0], *self.input_shape)
        elif x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"input must have shape (batch, {self.input_size}) (a flattened {self.input_shape} frame) "
                             f"or (batch, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if not isinstance(state, ConvNetworkState) or len(state.conv) != len(self.conv_layers) \
                or len(state.dense) != len(self.dense_layers):
            raise ValueError("state must be this model's ConvNetworkState; use model.init_state(batch)")
        if state.readout.shape[0] != x.shape[0]:
            raise ValueError(f"batch size of input ({x.shape[0]}) and state ({state.readout.shape[0]}) differ")
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
