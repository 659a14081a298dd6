"""Convolutional LTC spiking layer (THEORY.md §2.4 and §4.3, the reference DVS-Gesture model).

A :class:`ConvLTC` layer owns a synaptic convolution, an optional normalisation, a max pooling
and the two gate convolutions; its state (u, b, s) is a feature map (batch, C, H', W'). One step:

.. math:: d_t = \\mathrm{pool}(\\mathrm{N}(W_x ⊛ x_t + c_x))

then :func:`~fptt.neurons.functional.conv_ltc_step` (liquid rates by convolution, the LTC update
shared with the dense layer). The reference pools the *current* d_t (after its batch norm), so
the neurons live on the pooled map; so does this layer.

Layer specifications are strings ``"<channels>c<kernel>"`` with an optional ``"p<pool>"``
(default pool 2, ``p1``: no pooling): the reference front end is
``64c7 128c7 128c3 256c3 256c3 512c3``. Kernels are odd, padded to keep the map size.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..spec.vocabulary import CONV_GATES, CONV_LAYER_PATTERN, INITIAL_STATES, NORMS, RESETS
from .cells import initial_neuron_state
from .functional import _conv_preactivation, conv_ltc_step
from .kernels import FusedDynamics
from .surrogate import SurrogateSpec, get_surrogate
from .types import ConvLTCParameters, NeuronState, Reset

__all__ = ["ConvSpec", "parse_conv_spec", "ConvLTC"]

_LAYER_PATTERN = re.compile(CONV_LAYER_PATTERN)


class ConvSpec(NamedTuple):
    """One convolutional layer: output ``channels``, odd ``kernel`` size, max-``pool`` size (1: none)."""

    channels: int
    kernel: int
    pool: int = 2


def parse_conv_spec(text: str | ConvSpec) -> ConvSpec:
    """``"64c7"`` -> ConvSpec(64, 7, 2); ``"32c3p1"`` -> ConvSpec(32, 3, 1). Raises ``ValueError``
    with the expected form for anything else."""
    if isinstance(text, ConvSpec):
        spec = text
    else:
        match = _LAYER_PATTERN.match(str(text).strip())
        if match is None:
            raise ValueError(f"conv layer {text!r} is not of the form <channels>c<kernel>[p<pool>], e.g. 64c7 or 32c3p1")
        spec = ConvSpec(int(match.group(1)), int(match.group(2)), int(match.group(3) or 2))
    if spec.channels <= 0 or spec.pool <= 0:
        raise ValueError(f"conv layer {text!r}: channels and pool must be positive")
    if spec.kernel <= 0 or spec.kernel % 2 == 0:
        raise ValueError(f"conv layer {text!r}: the kernel size must be odd (padded to keep the map size), "
                         f"got {spec.kernel}")
    return spec


def _map_norm(norm: str, channels: int, scale: float) -> nn.Module:
    """Identity, or a layer norm over one sample's whole feature map (C, H, W) at one step
    (``GroupNorm(1, C)``, per-channel gain γ initialised to ``scale``, shift 0): no running
    statistics, so it acts the same in training, evaluation and on a stream of any length."""
    if norm == "none":
        return nn.Identity()
    if norm == "layer":
        layer = nn.GroupNorm(1, channels)
        nn.init.constant_(layer.weight, scale)
        return layer
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


class ConvLTC(nn.Module):
    """Convolutional liquid-time-constant spiking layer (see the module docstring).

    Args:
        in_channels: channels of the input map.
        spec: a :class:`ConvSpec` or its string (``"64c7"``).
        input_hw: (H, W) of the input map; the neurons' map is (H // pool, W // pool).
        gate_input: ``"sum"`` (reference: gate kernels C→C over d_t + u_{t-1}) or ``"concat"``
            (kernels 2C→C over [d_t, u_{t-1}]).
        norm / norm_scale: ``"none"`` or ``"layer"`` on the synaptic current (before pooling).
        baseline_threshold / adaptation_strength / reset / initial_membrane: as the dense LTC.
        fused: as the dense LTC (:class:`fptt.neurons.kernels.FusedDynamics`): ``"auto"``
            (default) compiles the dynamics after the gate convolutions once the layer has run
            :data:`fptt.spec.rules.FUSE_AFTER_STEPS` training steps.

    Convolutions are Xavier-uniform with zero biases, as in the reference.
    """

    def __init__(
        self,
        in_channels: int,
        spec: ConvSpec | str,
        input_hw: tuple[int, int],
        *,
        gate_input: str = "sum",
        surrogate: SurrogateSpec = "multi_gaussian",
        baseline_threshold: float = 0.1,
        adaptation_strength: float = 1.8,
        reset: Reset = "zero",
        initial_membrane: str = "random",
        norm: str = "none",
        norm_scale: float = 1.0,
        fused: bool | str = "auto",
    ) -> None:
        super().__init__()
        spec = parse_conv_spec(spec)
        if in_channels <= 0:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if gate_input not in CONV_GATES:
            raise ValueError(f"gate_input must be one of {CONV_GATES}, got {gate_input!r}")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if initial_membrane not in INITIAL_STATES:
            raise ValueError(f"initial_membrane must be one of {INITIAL_STATES}, got {initial_membrane!r}")
        if adaptation_strength < 0:
            raise ValueError(f"adaptation_strength (β) must be >= 0, got {adaptation_strength}")
        height, width = (int(v) for v in input_hw)
        if height < spec.pool or width < spec.pool:
            raise ValueError(f"conv layer {spec.channels}c{spec.kernel}p{spec.pool}: an input map of {height}x{width} "
                             f"is smaller than its pooling window")
        self.in_channels, self.spec, self.input_hw = in_channels, spec, (height, width)
        self.channels = spec.channels
        self.output_hw = (height // spec.pool, width // spec.pool)
        self.gate_input = gate_input
        self.spike_fn = get_surrogate(surrogate)
        self.baseline_threshold = float(baseline_threshold)
        self.adaptation_strength = float(adaptation_strength)
        self.reset = reset
        self.initial_membrane = initial_membrane
        self.fusion = FusedDynamics(fused, "ConvLTC")  # fptt.neurons.kernels
        self.fused = self.fusion.mode
        padding = spec.kernel // 2
        self.padding = padding
        self.synapse = nn.Conv2d(in_channels, spec.channels, spec.kernel, padding=padding)
        self.norm = _map_norm(norm, spec.channels, norm_scale)
        self.pool = nn.MaxPool2d(spec.pool) if spec.pool > 1 else nn.Identity()
        gate_channels = spec.channels * (2 if gate_input == "concat" else 1)
        self.membrane_rate = nn.Conv2d(gate_channels, spec.channels, spec.kernel, padding=padding)
        self.adaptation_rate = nn.Conv2d(gate_channels, spec.channels, spec.kernel, padding=padding)
        for conv in (self.synapse, self.membrane_rate, self.adaptation_rate):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]  # the convolutions are built with a bias

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H', W') of the layer's spikes."""
        return (self.channels, *self.output_hw)

    def init_state(self, batch_size: int, device: Optional[torch.device | str] = None,
                   dtype: Optional[torch.dtype] = None) -> NeuronState:
        """Feature maps (batch, C, H', W'): u_0 ~ U(0, 1) (or 0), b_0 = baseline threshold, s_0 = 0."""
        reference = self.synapse.weight
        return initial_neuron_state((batch_size, *self.output_shape), self.initial_membrane, self.baseline_threshold,
                                    reference.device if device is None else device,
                                    reference.dtype if dtype is None else dtype)

    def parameters_tuple(self) -> ConvLTCParameters:
        return ConvLTCParameters(self.membrane_rate.weight, self.membrane_rate.bias,  # type: ignore[arg-type]
                                 self.adaptation_rate.weight,
                                 self.adaptation_rate.bias, self.gate_input, self.padding)

    def input_current(self, x: Tensor) -> Tensor:
        """d_t = pool(N(W_x ⊛ x_t + c_x))."""
        return self.pool(self.norm(self.synapse(x)))

    def membrane_rate_at(self, x: Tensor, state: NeuronState) -> Tensor:
        """α_t = σ(W_m ⊛ [d_t, u_{t-1}] + c_m) of the step ``forward(x, state)`` takes (plots, inspection)."""
        params = self.parameters_tuple()
        return torch.sigmoid(_conv_preactivation(self.input_current(x), state.membrane, params.membrane_weight,
                                                 params.membrane_bias, params.gate_input, params.padding))

    def check_input(self, x: Tensor) -> None:
        """Raise unless ``x`` is a (batch, C_in, H, W) step input (checked once per batch by the model's
        ``check_step``; :meth:`forward` itself checks nothing)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.input_hw:
            raise ValueError(f"conv layer input must have shape (batch, {self.in_channels}, {self.input_hw[0]}, "
                             f"{self.input_hw[1]}), got {tuple(x.shape)}")

    def forward(self, x: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        """One step: ``x`` (batch, C_in, H, W) -> spikes (batch, C, H', W'), new state (unchecked)."""
        return conv_ltc_step(self.input_current(x), state, self.parameters_tuple(), self.spike_fn,
                             baseline_threshold=self.baseline_threshold,
                             adaptation_strength=self.adaptation_strength, reset=self.reset,
                             kernels=self.fusion.kernels_now(self.spike_fn))

    def extra_repr(self) -> str:
        spec = self.spec
        return (f"{self.in_channels}x{self.input_hw[0]}x{self.input_hw[1]} -> {spec.channels}c{spec.kernel}p{spec.pool} "
                f"-> {self.output_shape}, gate_input={self.gate_input!r}, b0={self.baseline_threshold}, "
                f"beta={self.adaptation_strength}")
