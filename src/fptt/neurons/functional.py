"""Pure step functions of the spiking neurons and readouts (THEORY.md §2).

Each function takes ``(input, state, parameters)`` and returns ``(output, new_state)``; it never
mutates its arguments. Shapes: ``current`` and every state tensor are ``(batch, hidden)``.
Discrete time, step ``t``; ``d_t`` is the input current computed by the layer's synapses.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .kernels import LTCDynamicsKernels, gate_forward, gate_weight_grad, ltc_dynamics, ltc_layer_dynamics
from .types import ALIFParameters, BRFParameters, ConvLTCParameters, LTCParameters, NeuronState, Reset, SpikeFn

__all__ = [
    "NeuronState",
    "LTCParameters",
    "ALIFParameters",
    "BRFParameters",
    "ConvLTCParameters",
    "ltc_update",
    "ltc_step",
    "conv_ltc_step",
    "alif_step",
    "alif_decay",
    "alif_min_tau",
    "lif_step",
    "brf_step",
    "brf_divergence_boundary",
    "fixed_readout_step",
    "liquid_readout_step",
    "Reset",
]


def _check_reset(reset: str) -> None:
    if reset not in ("zero", "subtract"):
        raise ValueError(f"reset must be 'zero' or 'subtract', got {reset!r}")


def _check_ltc_options(reset: str, adaptive: bool, adaptation_strength: float) -> None:
    _check_reset(reset)
    if not adaptive and adaptation_strength != 0:
        raise ValueError("adaptation_strength (β) must be 0 when the adaptation gate is off "
                         "(params.adaptation_weight is None)")


class _Gate(torch.autograd.Function):
    """``c + x W_x^T + d W_d^T`` with ``W = [W_d, W_x]`` — i.e. ``W [d, x] + c`` — and its gradients.

    Forward: two ``addmm`` on column views of ``W`` (no ``(B, 2H)`` concatenation). Backward, by
    hand: ``∂/∂d = g W_d``, ``∂/∂x = g W_x`` (each only when needed: at an FPTT window start the
    state ``x`` is detached and its matmul is skipped), ``∂/∂W = g^T [d, x]`` written straight
    into the two column blocks of one buffer, ``∂/∂c = Σ_batch g``. Autograd on the views would
    add a zero-filled ``(H, 2H)`` buffer and a copy per block (SliceBackward).
    """

    @staticmethod
    def forward(ctx, current: Tensor, own: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(current, own, weight)
        return gate_forward(current, own, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        current, own, weight = ctx.saved_tensors
        width = current.shape[-1]
        grad_current = grad_own = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_current = grad.mm(weight[:, :width])
        if ctx.needs_input_grad[1]:
            grad_own = grad.mm(weight[:, width:])
        if ctx.needs_input_grad[2]:
            grad_weight = gate_weight_grad(grad, current, own)
        if ctx.needs_input_grad[3]:
            grad_bias = grad.sum(0)
        return grad_current, grad_own, grad_weight, grad_bias


def _gate(current: Tensor, own: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """W [d, x] + c for the LTC rates (see :class:`_Gate`); plain ops when no gradient is needed."""
    if torch.is_grad_enabled() and (
        current.requires_grad or own.requires_grad or weight.requires_grad or bias.requires_grad
    ):
        return _Gate.apply(current, own, weight, bias)
    return gate_forward(current, own, weight, bias)


def _preactivation(current: Tensor, own: Tensor, weight: Tensor, bias: Tensor, slope: Optional[Tensor]) -> Tensor:
    """k (W [d, x] + c), with k = 1 when ``slope`` is None (the argument of a rate's sigmoid)."""
    gate = _gate(current, own, weight, bias)
    return gate if slope is None else slope * gate


def ltc_update(
    current: Tensor,
    state: NeuronState,
    membrane_gate: Tensor,
    adaptation_gate: Optional[Tensor],
    spike_fn: SpikeFn,
    *,
    baseline_threshold: float = 0.1,
    adaptation_strength: float = 1.8,
    reset: Reset = "zero",
    kernels: Optional[LTCDynamicsKernels] = None,
) -> tuple[Tensor, NeuronState]:
    """The LTC neuron's state update, given the pre-activations of its liquid rates (THEORY.md §2.2);
    shared by the dense (:func:`ltc_step`) and the convolutional (:func:`conv_ltc_step`) layers,
    which differ only in how they compute z_m and z_a. Works elementwise on tensors of any shape.

    .. math::
        α_t &= σ(z_m),\\qquad ρ_t = σ(z_a)\\\\
        b_t &= ρ_t b_{t-1} + (1-ρ_t) s_{t-1}\\\\
        θ_t &= b_0 + β b_t\\\\
        u_t &= u_{t-1} + α_t (d_t - u_{t-1})            \\quad (R_m = 1)\\\\
        s_t &= H(u_t - θ_t)\\\\
        u_t &← u_t (1 - s_t)\\ \\text{(reset="zero")}\\quad\\text{or}\\quad u_t - θ_t s_t\\ \\text{(reset="subtract")}

    ``membrane_gate`` is z_m, ``adaptation_gate`` is z_a (``None``: adaptation off, β must be 0,
    b_t = b_{t-1}). With ``kernels`` (:class:`fptt.neurons.kernels.LTCDynamicsKernels`) the update
    runs as one compiled forward and one hand-written compiled backward (same results to float
    rounding). Returns ``(s_t, NeuronState(u_t, b_t, s_t))``.
    """
    _check_ltc_options(reset, adaptation_gate is not None, adaptation_strength)
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    if kernels is not None:
        # the fused kernels need the surrogate object itself (its derivative), as the cells pass it
        return ltc_dynamics(membrane_gate, adaptation_gate, current, state, spike_fn, kernels,  # type: ignore[arg-type]
                            baseline_threshold=baseline_threshold, adaptation_strength=adaptation_strength,
                            subtract=reset == "subtract")
    if adaptation_gate is not None:
        # b_t = ρ b + (1 - ρ) s = s + ρ (b - s);  u_t = u + α (d - u)   (lerp: one kernel each)
        adaptation = torch.lerp(spikes, adaptation, torch.sigmoid(adaptation_gate))
    threshold = baseline_threshold + adaptation_strength * adaptation
    membrane = torch.lerp(membrane, current, torch.sigmoid(membrane_gate))
    spikes = spike_fn(membrane - threshold)
    membrane = membrane * (1.0 - spikes) if reset == "zero" else membrane - threshold * spikes
    return spikes, NeuronState(membrane, adaptation, spikes)


def ltc_step(
    current: Tensor,
    state: NeuronState,
    params: LTCParameters,
    spike_fn: SpikeFn,
    *,
    baseline_threshold: float = 0.1,
    adaptation_strength: float = 1.8,
    reset: Reset = "zero",
    kernels: Optional[LTCDynamicsKernels] = None,
) -> tuple[Tensor, NeuronState]:
    """One step of the liquid-time-constant (LTC) spiking neuron (THEORY.md §2.2, Yin et al. 2023).

    .. math::
        α_t &= σ(W_m [d_t, u_{t-1}] + c_m)            \\quad\\text{(membrane rate, 1/τ_m)}\\\\
        ρ_t &= σ(W_a [d_t, b_{t-1}] + c_a)            \\quad\\text{(adaptation decay)}

    then the state update of :func:`ltc_update` (b_t, θ_t, u_t, s_t and the reset; fused with
    ``kernels``).

    ``baseline_threshold`` is b_0, ``adaptation_strength`` is β (β = 0 disables adaptation).
    With ``params.adaptation_weight`` None (adaptation off, β must be 0) ρ_t is not computed and
    b_t = b_{t-1}: the threshold is the fixed b_0 (the authors' adding-task regime, b_0 = 0.5).
    With gate slopes k (``params.membrane_slope``/``adaptation_slope``) the rates are
    α_t = σ(k_m (W_m [d_t, u_{t-1}] + c_m)) and ρ_t = σ(k_a (W_a [d_t, b_{t-1}] + c_a)).
    Returns ``(s_t, NeuronState(u_t, b_t, s_t))``.
    """
    if kernels is not None and params.membrane_slope is None and params.adaptation_slope is None:
        _check_ltc_options(reset, params.adaptation_weight is not None, adaptation_strength)
        # gates and dynamics as one autograd node (fptt.neurons.kernels.ltc_layer_dynamics)
        return ltc_layer_dynamics(current, state, params.membrane_weight, params.membrane_bias,
                                  params.adaptation_weight, params.adaptation_bias, spike_fn,  # type: ignore[arg-type]
                                  kernels, baseline_threshold=baseline_threshold,
                                  adaptation_strength=adaptation_strength, subtract=reset == "subtract")
    membrane, adaptation = state.membrane, state.adaptation
    membrane_gate = _preactivation(current, membrane, params.membrane_weight, params.membrane_bias,
                                   params.membrane_slope)
    adaptation_gate = None if params.adaptation_weight is None else _preactivation(
        current, adaptation, params.adaptation_weight, params.adaptation_bias,  # type: ignore[arg-type]
        params.adaptation_slope)
    return ltc_update(current, state, membrane_gate, adaptation_gate, spike_fn, baseline_threshold=baseline_threshold,
                      adaptation_strength=adaptation_strength, reset=reset, kernels=kernels)


def _conv_preactivation(current: Tensor, own: Tensor, weight: Tensor, bias: Tensor, gate_input: str,
                        padding: int) -> Tensor:
    """W ⊛ (d + x) + c (``"sum"``) or W ⊛ [d, x] + c (``"concat"``, channels): a rate's argument."""
    if gate_input == "sum":
        gate_in = current + own
    elif gate_input == "concat":
        gate_in = torch.cat((current, own), dim=1)
    else:
        raise ValueError(f"gate_input must be 'sum' or 'concat', got {gate_input!r}")
    return F.conv2d(gate_in, weight, bias, padding=padding)


def conv_ltc_step(
    current: Tensor,
    state: NeuronState,
    params: ConvLTCParameters,
    spike_fn: SpikeFn,
    *,
    baseline_threshold: float = 0.1,
    adaptation_strength: float = 1.8,
    reset: Reset = "zero",
    kernels: Optional[LTCDynamicsKernels] = None,
) -> tuple[Tensor, NeuronState]:
    """One step of a convolutional LTC layer (THEORY.md §2.4 and §4.3, the reference DVS-Gesture model): the state
    (u, b, s) is a feature map (batch, C, H, W) and the liquid rates are convolutions,

    .. math::
        α_t &= σ(W_m ⊛ [d_t, u_{t-1}] + c_m),\\qquad ρ_t = σ(W_a ⊛ [d_t, b_{t-1}] + c_a)

    where ``[d, x]`` is d + x (``params.gate_input="sum"``, the reference's tied form) or the
    channel concatenation (``"concat"``); then the elementwise update of :func:`ltc_update`
    (fused with ``kernels``). Returns ``(s_t, NeuronState(u_t, b_t, s_t))``.
    """
    membrane, adaptation = state.membrane, state.adaptation
    membrane_gate = _conv_preactivation(current, membrane, params.membrane_weight, params.membrane_bias,
                                        params.gate_input, params.padding)
    adaptation_gate = None if params.adaptation_weight is None else _conv_preactivation(
        current, adaptation, params.adaptation_weight, params.adaptation_bias,  # type: ignore[arg-type]
        params.gate_input, params.padding)
    return ltc_update(current, state, membrane_gate, adaptation_gate, spike_fn, baseline_threshold=baseline_threshold,
                      adaptation_strength=adaptation_strength, reset=reset, kernels=kernels)


def alif_decay(tau: Tensor, dt: float = 1.0) -> Tensor:
    """The one-step decay of an ALIF/LIF time constant τ (in steps of ``dt``), THEORY.md §2.3:

    .. math:: \\exp(-dt / \\max(τ, dt/100))

    The clamp keeps the decay inside (0, 1) whatever an optimizer does to τ. The neuron step, the
    e-prop/OSTL traces and the NIR export all use this function."""
    return torch.exp(-dt / tau.clamp(min=alif_min_tau(dt)))


def alif_min_tau(dt: float = 1.0) -> float:
    """The smallest time constant :func:`alif_decay` lets through: ``dt / 100``."""
    return dt / 100.0


def alif_step(
    current: Tensor,
    state: NeuronState,
    params: ALIFParameters,
    spike_fn: SpikeFn,
    *,
    baseline_threshold: float = 0.1,
    adaptation_strength: float = 1.8,
    reset: Reset = "subtract",
    dt: float = 1.0,
) -> tuple[Tensor, NeuronState]:
    """One step of the adaptive LIF neuron with learnable per-neuron τ_m, τ_adp (THEORY.md §2.3, SRNN).

    .. math::
        α &= \\exp(-dt/τ_m),\\quad ρ = \\exp(-dt/τ_{adp})\\\\
        b_t &= ρ b_{t-1} + (1-ρ) s_{t-1}\\\\
        θ_t &= b_0 + β b_t\\\\
        u_t &= α u_{t-1} + (1-α) R_m d_t - θ_t s_{t-1} dt \\quad\\text{(reset="subtract", SRNN)}\\\\
        u_t &= α u_{t-1} (1 - s_{t-1}) + (1-α) R_m d_t     \\quad\\text{(reset="zero")}\\\\
        s_t &= H(u_t - θ_t)

    with R_m = 1. The reset acts on the next step, through s_{t-1}, as in the SRNN code.
    Time constants are clamped to at least ``dt``/100 to keep the decays in (0, 1).
    Returns ``(s_t, NeuronState(u_t, b_t, s_t))``.
    """
    _check_reset(reset)
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    membrane_decay = alif_decay(params.tau_membrane, dt)
    adaptation_decay = alif_decay(params.tau_adaptation, dt)
    adaptation = adaptation_decay * adaptation + (1.0 - adaptation_decay) * spikes
    threshold = baseline_threshold + adaptation_strength * adaptation
    if reset == "subtract":
        membrane = membrane_decay * membrane + (1.0 - membrane_decay) * current - threshold * spikes * dt
    else:
        membrane = membrane_decay * membrane * (1.0 - spikes) + (1.0 - membrane_decay) * current
    spikes = spike_fn(membrane - threshold)
    return spikes, NeuronState(membrane, adaptation, spikes)


def lif_step(
    current: Tensor,
    state: NeuronState,
    params: ALIFParameters,
    spike_fn: SpikeFn,
    *,
    baseline_threshold: float = 0.1,
    reset: Reset = "subtract",
    dt: float = 1.0,
) -> tuple[Tensor, NeuronState]:
    """One step of the LIF neuron: :func:`alif_step` with β = 0 (fixed threshold b_0)."""
    return alif_step(
        current, state, params, spike_fn,
        baseline_threshold=baseline_threshold, adaptation_strength=0.0, reset=reset, dt=dt,
    )


def brf_divergence_boundary(omega: Tensor, dt: float = 0.01) -> Tensor:
    """The divergence boundary p(ω) of the BRF neuron (THEORY.md §2.8): the damping at which the
    undamped Euler step of the oscillator u + i v neither grows nor decays,

    .. math:: p(ω) = \\frac{-1 + \\sqrt{\\max(1 - (δω)^2,\\ ε)}}{δ},\\qquad |1 + δ (p(ω) + iω)| = 1

    with δ = ``dt`` and ω ≥ 0 the angular frequency. The radicand is clamped at the dtype's machine
    epsilon ε so that an ω the optimizer pushed to 1/δ or beyond gives a finite p ≈ −1/δ and a zero
    gradient, not NaN (the square root's derivative is infinite at 0, and 0 · ∞ = NaN); there the
    boundary no longer exists (:math:`|1 + δ(p + iω)| ≈ δω ≥ 1`) and the neuron is not stable. The clamp is
    inactive wherever 1 − (δω)² > ε, i.e. for all but the last sliver of ω below 1/δ (the initial
    ω lie below 1/δ: :func:`fptt.spec.rules.check_brf_omega_init`)."""
    radicand = (1.0 - (dt * omega) ** 2).clamp(min=torch.finfo(omega.dtype).eps)
    return (torch.sqrt(radicand) - 1.0) / dt


def _check_brf_options(state: NeuronState, dt: float, refractory_decay: float) -> Tensor:
    if state.oscillation is None:
        raise ValueError("a BRF state carries the oscillation v (NeuronState.oscillation), got None; "
                         "start from BRF.init_state(batch)")
    if not dt > 0:
        raise ValueError(f"dt (δ) must be positive, got {dt}")
    if not 0.0 <= refractory_decay < 1.0:
        raise ValueError(f"refractory_decay (γ) must lie in [0, 1), got {refractory_decay}")
    return state.oscillation


def brf_step(
    current: Tensor,
    state: NeuronState,
    params: BRFParameters,
    spike_fn: SpikeFn,
    *,
    baseline_threshold: float = 1.0,
    dt: float = 0.01,
    refractory_decay: float = 0.9,
) -> tuple[Tensor, NeuronState]:
    """One step of the balanced resonate-and-fire (BRF) neuron (THEORY.md §2.8; Higuchi, Kairat,
    Bohté and Otte, ICML 2024): a damped oscillator u + i v integrated by an Euler step of ``dt``,

    .. math::
        ω &= |\\hat ω|,\\qquad b_{off} = |\\hat b|\\\\
        b_t &= p(ω) - b_{off} - q_{t-1}\\\\
        u_t &= u_{t-1} + δ\\,(b_t u_{t-1} - ω v_{t-1} + d_t)\\\\
        v_t &= v_{t-1} + δ\\,(ω u_{t-1} + b_t v_{t-1})\\\\
        z_t &= H(u_t - θ - q_{t-1})\\\\
        q_t &= γ\\, q_{t-1} + z_t

    i.e. u_t + i v_t = (1 + δ (b_t + iω)) (u_{t-1} + i v_{t-1}) + δ d_t. p(ω) is the divergence
    boundary (:func:`brf_divergence_boundary`): with b_off = q = 0 the free oscillation keeps its
    amplitude, b_off > 0 damps it. The refractory variable q raises the threshold and the damping
    after each spike (the "smooth reset"; there is no other reset). ``baseline_threshold`` is θ
    (the paper's 1), ``refractory_decay`` is γ (0.9). The state maps u → ``membrane``,
    q → ``adaptation``, z → ``spikes``, v → ``oscillation``; the parameters are the raw ω̂ and b̂.
    Returns ``(z_t, NeuronState(u_t, q_t, z_t, v_t))``.
    """
    oscillation = _check_brf_options(state, dt, refractory_decay)
    membrane, refractory = state.membrane, state.adaptation
    omega = params.omega.abs()
    damping = brf_divergence_boundary(omega, dt) - params.b_offset.abs() - refractory
    new_membrane = membrane + dt * (damping * membrane - omega * oscillation + current)
    new_oscillation = oscillation + dt * (omega * membrane + damping * oscillation)
    spikes = spike_fn(new_membrane - baseline_threshold - refractory)
    refractory = refractory_decay * refractory + spikes
    return spikes, NeuronState(new_membrane, refractory, spikes, new_oscillation)


def fixed_readout_step(current: Tensor, membrane: Tensor, decay: Tensor) -> tuple[Tensor, Tensor]:
    """Leaky, non-spiking readout with a learnable fixed decay (THEORY.md §2.5).

    .. math:: v_t = k\\, v_{t-1} + (1 - k)\\, z_t,\\qquad k = \\exp(-1/τ_{out})

    ``current`` is z_t = W_o s_t + c_o, ``decay`` is k (shape (O,)). Returns ``(v_t, v_t)``.
    """
    membrane = decay * membrane + (1.0 - decay) * current
    return membrane, membrane


def liquid_readout_step(current: Tensor, membrane: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Leaky readout with a liquid (input- and state-dependent) rate (THEORY.md §2.5).

    .. math::
        a_t &= σ(W'_o [z_t, v_{t-1}] + c)\\\\
        v_t &= (1 - a_t)\\, v_{t-1} + a_t z_t

    ``current`` is z_t = W_o s_t + c_o; ``weight`` is W'_o (O×2O). Returns ``(v_t, v_t)``.
    """
    rate = torch.sigmoid(F.linear(torch.cat((current, membrane), dim=-1), weight, bias))
    membrane = (1.0 - rate) * membrane + rate * current
    return membrane, membrane
