"""The state and parameter types of the spiking neurons (no functions: the pure steps in
:mod:`fptt.neurons.functional` and the compiled kernels in :mod:`fptt.neurons.kernels` both use
them, without importing each other for them)."""
from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Optional

from torch import Tensor

__all__ = ["NeuronState", "LTCParameters", "ALIFParameters", "BRFParameters", "ConvLTCParameters", "Reset", "SpikeFn"]

Reset = Literal["zero", "subtract"]
SpikeFn = Callable[[Tensor], Tensor]


class NeuronState(NamedTuple):
    """State of a spiking layer (LTC, ALIF, LIF and BRF share it).

    * membrane: u_t, membrane potential (after reset; BRF: the real part of its complex membrane)
    * adaptation: b_t, threshold adaptation variable (stays at its initial value when β = 0; BRF:
      the refractory variable q_t)
    * spikes: s_t ∈ {0, 1}
    * oscillation: v_t, the imaginary part of the BRF membrane u_t + i v_t; ``None`` for the other
      neurons (the state utilities of :mod:`fptt.models.state` skip ``None`` leaves)

    Read the fields by name: a BRF state has four, the others three and a ``None``.
    """

    membrane: Tensor
    adaptation: Tensor
    spikes: Tensor
    oscillation: Optional[Tensor] = None


class LTCParameters(NamedTuple):
    """Parameters of the liquid time constants: W_m (H×2H), c_m (H), W_a (H×2H), c_a (H).

    ``adaptation_weight``/``adaptation_bias`` are ``None`` when adaptation is off (β = 0: the
    ρ gate is not computed and b keeps its initial value). ``membrane_slope``/``adaptation_slope``
    are the optional slopes k of the gate sigmoids, σ(k · (W [d, x] + c)) (scalar or (H,);
    ``None`` means k = 1, the plain sigmoid).
    """

    membrane_weight: Tensor
    membrane_bias: Tensor
    adaptation_weight: Optional[Tensor]
    adaptation_bias: Optional[Tensor]
    membrane_slope: Optional[Tensor] = None
    adaptation_slope: Optional[Tensor] = None


class ALIFParameters(NamedTuple):
    """Per-neuron time constants τ_m and τ_adp (in steps of ``dt``), both shape (H,)."""

    tau_membrane: Tensor
    tau_adaptation: Tensor


class BRFParameters(NamedTuple):
    """Raw per-neuron parameters of the balanced resonate-and-fire neuron, both shape (H,): ω̂ and
    b̂, of which the step uses the angular frequency ω = ``abs(ω̂)`` and the damping offset b_off = ``abs(b̂)``."""

    omega: Tensor
    b_offset: Tensor


class ConvLTCParameters(NamedTuple):
    """Convolutional gates of a :func:`conv_ltc_step`: kernels W_m, W_a and biases c_m, c_a (C,).

    ``gate_input="sum"`` (the reference DVS-Gesture model): kernels (C, C, k, k) applied to
    d_t + u_{t-1} (resp. d_t + b_{t-1}); ``"concat"``: kernels (C, 2C, k, k) applied to the channel
    concatenation [d_t, u_{t-1}]. ``adaptation_weight``/``adaptation_bias`` are ``None`` when
    adaptation is off. ``padding`` keeps the feature map's size (k // 2 for odd k).
    """

    membrane_weight: Tensor
    membrane_bias: Tensor
    adaptation_weight: Optional[Tensor]
    adaptation_bias: Optional[Tensor]
    gate_input: str = "sum"
    padding: int = 0
