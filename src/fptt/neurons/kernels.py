"""Fused elementwise dynamics of the LTC neuron: one compiled forward and one hand-written,
compiled backward for everything after the gate matmuls (THEORY.md §2.2).

Given the gate pre-activations ``z_m`` (and ``z_a``, when adaptation is on) the LTC step is a chain
of about ten elementwise operations, and its autograd backward about twenty; each reads and
writes (batch, hidden) tensors. :func:`ltc_dynamics` runs the forward as one compiled function
and its backward as another, written out by hand:

Forward (θ the threshold, H the Heaviside step, σ the logistic function)::

    α = σ(z_m);  ρ = σ(z_a)
    b = s₀ + ρ (b₀ − s₀)          (b = b₀ without adaptation)
    θ = b_thr + β b
    u' = u₀ + α (d − u₀)
    v = u' − θ;  s = H(v)
    u = u' (1 − s)                 (reset "zero")   or   u = u' − θ s   (reset "subtract")

Backward, for the incoming gradients ĝ_s, ĝ_u, ĝ_b of (s, u, b) and the surrogate derivative H̃'::

    zero:     g_u' = ĝ_u (1 − s),  g_s = ĝ_s − ĝ_u u',  g_θ = 0
    subtract: g_u' = ĝ_u,          g_s = ĝ_s − ĝ_u θ,   g_θ = −ĝ_u s
    g_v = g_s H̃'(v);   g_u' += g_v;   g_θ −= g_v;   g_b = ĝ_b + β g_θ
    g_d = g_u' α;   g_u₀ = g_u' (1 − α);   g_zm = g_u' (d − u₀) α (1 − α)
    g_za = g_b (b₀ − s₀) ρ (1 − ρ);   g_b₀ = g_b ρ;   g_s₀ = g_b (1 − ρ)     (g_b₀ = g_b without adaptation)

The results equal :func:`fptt.neurons.functional.ltc_step`'s to float rounding
(``tests/test_fused.py`` compares values and gradients in float64).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..compiled import FusedMode, FusePolicy, LazyCompiled, check_fused_mode
from .surrogate import Surrogate
from .types import NeuronState

__all__ = ["ltc_dynamics", "ltc_layer_dynamics", "LTCDynamicsKernels", "FusedDynamics"]


def _forward(z_m: Tensor, z_a: Optional[Tensor], current: Tensor, membrane: Tensor, adaptation: Tensor,
             spikes: Tensor, threshold: float, strength: float, subtract: bool):
    alpha = torch.sigmoid(z_m)
    rho = None if z_a is None else torch.sigmoid(z_a)
    new_adaptation = adaptation if rho is None else torch.lerp(spikes, adaptation, rho)
    theta = threshold + strength * new_adaptation
    integrated = torch.lerp(membrane, current, alpha)
    distance = integrated - theta
    new_spikes = (distance > 0).to(distance.dtype)
    new_membrane = integrated - theta * new_spikes if subtract else integrated * (1.0 - new_spikes)
    return new_spikes, new_membrane, None if rho is None else new_adaptation, alpha, rho, integrated, distance


def _backward(grad_spikes: Tensor, grad_membrane: Tensor, grad_adaptation: Optional[Tensor], alpha: Tensor,
              rho: Optional[Tensor], current: Tensor, membrane: Tensor, adaptation: Tensor, spikes: Tensor,
              integrated: Tensor, distance: Tensor, surrogate: Surrogate, strength: float, subtract: bool,
              state_grads: bool):
    new_spikes = (distance > 0).to(distance.dtype)
    if subtract:
        theta = integrated - distance
        grad_integrated = grad_membrane
        grad_fire = grad_spikes - grad_membrane * theta
        grad_theta = -grad_membrane * new_spikes
    else:
        grad_integrated = grad_membrane * (1.0 - new_spikes)
        grad_fire = grad_spikes - grad_membrane * integrated
        grad_theta = None
    grad_distance = grad_fire * surrogate.derivative(distance)
    grad_integrated = grad_integrated + grad_distance
    grad_theta = -grad_distance if grad_theta is None else grad_theta - grad_distance
    grad_b = strength * grad_theta if grad_adaptation is None else grad_adaptation + strength * grad_theta
    grad_current = grad_integrated * alpha
    grad_z_m = grad_integrated * (current - membrane) * alpha * (1.0 - alpha)
    grad_z_a = grad_u0 = grad_b0 = grad_s0 = None
    if rho is not None:
        grad_z_a = grad_b * (adaptation - spikes) * rho * (1.0 - rho)
    if state_grads:
        grad_u0 = grad_integrated - grad_current
        if rho is None:
            grad_b0 = grad_b
        else:
            grad_b0 = grad_b * rho
            grad_s0 = grad_b - grad_b0
    return grad_z_m, grad_z_a, grad_current, grad_u0, grad_b0, grad_s0


class LTCDynamicsKernels:
    """The forward and backward bodies, compiled at first use (or eager with ``compile=False``)."""

    def __init__(self, compile: bool = True) -> None:
        self.forward = LazyCompiled(_forward, compile=compile, name="fused LTC forward")
        self.backward = LazyCompiled(_backward, compile=compile, name="fused LTC backward")

    @property
    def failed(self) -> bool:
        """Whether compiling either body failed (the layer then takes the exact path)."""
        return self.forward.failed or self.backward.failed


class FusedDynamics:
    """An LTC layer's choice, step by step, between its fused kernels and the exact path.

    ``mode`` is one of :data:`fptt.compiled.FUSED_MODES`: ``False`` never fuses, ``True``
    compiles at the first step, ``"eager"`` runs the fused equations uncompiled, ``"auto"``
    (the layers' default) switches to the compiled kernels after
    :data:`fptt.spec.rules.FUSE_AFTER_STEPS` training steps (steps with gradients enabled).
    After a failed compilation the exact path is used for good.
    """

    def __init__(self, mode: FusedMode, where: str) -> None:
        self.mode = check_fused_mode(mode, where)
        self.kernels: Optional[LTCDynamicsKernels] = LTCDynamicsKernels(compile=mode != "eager") if mode else None
        self.policy = FusePolicy(self.mode)

    def kernels_now(self, spike_fn: object) -> Optional[LTCDynamicsKernels]:
        """The kernels this step runs with, or None for the exact path. The fused backward needs the
        surrogate's derivative: with a spike function that is not a :class:`fptt.neurons.surrogate.Surrogate`
        ``"auto"`` keeps the exact path and ``True``/``"eager"`` refuse it."""
        kernels = self.kernels
        if kernels is None or kernels.failed or torch.compiler.is_compiling():
            return None  # inside a compiled update (fptt.training.captured) the outer compiler fuses the exact path
        if not isinstance(spike_fn, Surrogate):
            if self.mode == "auto":
                return None
            raise TypeError(f"the fused LTC kernels need a fptt.neurons.surrogate.Surrogate spike function (they use its "
                            f"derivative), got {type(spike_fn).__name__}; build the layer with fused=False")
        return kernels if self.policy.use_fused(torch.is_grad_enabled()) else None


def _detached(*tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    return tuple(None if t is None else t.detach() for t in tensors)


def gate_forward(current: Tensor, own: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """z = W [d, x] + c as two ``addmm`` on column views of W (no (B, 2H) concatenation)."""
    width = current.shape[-1]
    return torch.addmm(torch.addmm(bias, own, weight[:, width:].t()), current, weight[:, :width].t())


def gate_weight_grad(grad: Tensor, current: Tensor, own: Tensor) -> Tensor:
    """∂/∂W of W [d, x] + c: g^T [d, x], written straight into the two column blocks of one buffer
    (under ``torch.compile``, which cannot trace ``out=`` views, as one concatenation the compiler fuses)."""
    if torch.compiler.is_compiling():
        return torch.cat((grad.t().mm(current), grad.t().mm(own)), dim=1)
    width = current.shape[-1]
    out = grad.new_empty(grad.shape[-1], width + own.shape[-1])
    torch.mm(grad.t(), current, out=out[:, :width])
    torch.mm(grad.t(), own, out=out[:, width:])
    return out


class _LTCLayerStep(torch.autograd.Function):
    """A whole dense LTC step after the input current as one autograd node: the two gate
    matmuls z_m = W_m [d, u₀] + c_m and z_a = W_a [d, b₀] + c_a, then the fused dynamics.

    Backward: the dynamics' compiled backward gives g_zm, g_za and the direct gradients of
    (d, u₀, b₀, s₀); the gates add ``g_d += g_zm W_m,d + g_za W_a,d``, ``g_u₀ += g_zm W_m,u``,
    ``g_b₀ += g_za W_a,b`` (in place, into the fresh buffers of the compiled backward),
    ``∂W_m = g_zm^T [d, u₀]``, ``∂c_m = Σ_batch g_zm`` (likewise W_a, c_a). Against a node per
    gate plus one for the dynamics this saves two autograd nodes, their saved-tensor bookkeeping,
    and the two additions by which autograd would sum the three gradients of ``d``.
    """

    @staticmethod
    def forward(ctx, current, membrane, adaptation, spikes, w_m, c_m, w_a, c_a,  # type: ignore[override]
                threshold, strength, subtract, surrogate, kernels):
        d, u0, b0, s0, wm, cm, wa, ca = _detached(current, membrane, adaptation, spikes, w_m, c_m, w_a, c_a)
        z_m = gate_forward(d, u0, wm, cm)
        z_a = None if wa is None else gate_forward(d, b0, wa, ca)
        s, u, b, alpha, rho, integrated, distance = kernels.forward(z_m, z_a, d, u0, b0, s0, threshold,
                                                                    strength, subtract)
        # the inputs themselves (not their detached aliases): saving a parameter costs nothing and
        # fptt.memory.SavedTensorMeter recognises it as one
        ctx.save_for_backward(current, membrane, adaptation, spikes, w_m, w_a, alpha, rho, integrated, distance)
        ctx.constants = (surrogate, strength, subtract, kernels)
        return (s, u) if b is None else (s, u, b)

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane, grad_adaptation=None):  # type: ignore[override]
        surrogate, strength, subtract, kernels = ctx.constants
        d, u0, b0, s0, wm, wa, alpha, rho, integrated, distance = _detached(*ctx.saved_tensors)
        needs = ctx.needs_input_grad
        width = d.shape[-1]
        g_zm, g_za, g_d, g_u0, g_b0, g_s0 = kernels.backward(
            *_detached(grad_spikes, grad_membrane, grad_adaptation), alpha, rho, d, u0, b0, s0, integrated,
            distance, surrogate, strength, subtract, any(needs[1:4]))
        if needs[0]:
            g_d.addmm_(g_zm, wm[:, :width])
            if g_za is not None:
                g_d.addmm_(g_za, wa[:, :width])
        if needs[1]:
            g_u0.addmm_(g_zm, wm[:, width:])
        if needs[2] and g_za is not None:
            g_b0.addmm_(g_za, wa[:, width:])
        g_wm = gate_weight_grad(g_zm, d, u0) if needs[4] else None
        g_cm = g_zm.sum(0) if needs[5] else None
        g_wa = gate_weight_grad(g_za, d, b0) if needs[6] and g_za is not None else None
        g_ca = g_za.sum(0) if needs[7] and g_za is not None else None
        return (g_d if needs[0] else None, g_u0 if needs[1] else None, g_b0 if needs[2] else None,
                g_s0 if needs[3] else None, g_wm, g_cm, g_wa, g_ca, None, None, None, None, None)


def ltc_layer_dynamics(current: Tensor, state: NeuronState, membrane_weight: Tensor, membrane_bias: Tensor,
                       adaptation_weight: Optional[Tensor], adaptation_bias: Optional[Tensor], surrogate: Surrogate,
                       kernels: LTCDynamicsKernels, *, baseline_threshold: float, adaptation_strength: float,
                       subtract: bool) -> tuple[Tensor, NeuronState]:
    """The dense LTC step from the input current on (gates without slopes, then the module
    docstring's dynamics) as one autograd node, :class:`_LTCLayerStep`. ``adaptation_weight`` None:
    no ρ gate, b = b₀ passes through. Returns ``(s, NeuronState(u, b, s))``; equals
    :func:`fptt.neurons.functional.ltc_step`'s values and gradients to float rounding."""
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    inputs = (current, membrane, adaptation, spikes, membrane_weight, membrane_bias, adaptation_weight,
              adaptation_bias)
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)):
        z_m = gate_forward(current, membrane, membrane_weight, membrane_bias)
        z_a = None if adaptation_weight is None else gate_forward(current, adaptation, adaptation_weight,
                                                                   adaptation_bias)  # type: ignore[arg-type]
        return ltc_dynamics(z_m, z_a, current, state, surrogate, kernels, baseline_threshold=baseline_threshold,
                            adaptation_strength=adaptation_strength, subtract=subtract)
    outputs = _LTCLayerStep.apply(*inputs, baseline_threshold, adaptation_strength, subtract, surrogate, kernels)
    s, u = outputs[0], outputs[1]
    b = adaptation if adaptation_weight is None else outputs[2]
    return s, NeuronState(u, b, s)


class _LTCDynamics(torch.autograd.Function):
    """Outputs (s, u, b) with adaptation, (s, u) without (b is then the input b₀ itself)."""

    @staticmethod
    def forward(ctx, z_m, z_a, current, membrane, adaptation, spikes, threshold, strength, subtract,  # type: ignore[override]
                surrogate, kernels):
        # detached views: the compiled function sees plain tensors (no autograd metadata to guard on)
        s, u, b, alpha, rho, integrated, distance = kernels.forward(
            *_detached(z_m, z_a, current, membrane, adaptation, spikes), threshold, strength, subtract)
        ctx.save_for_backward(alpha, rho, current, membrane, adaptation, spikes, integrated, distance)
        ctx.constants = (surrogate, strength, subtract, kernels)
        return (s, u) if b is None else (s, u, b)

    @staticmethod
    def backward(ctx, grad_spikes, grad_membrane, grad_adaptation=None):  # type: ignore[override]
        surrogate, strength, subtract, kernels = ctx.constants
        needs = ctx.needs_input_grad
        grads = kernels.backward(*_detached(grad_spikes, grad_membrane, grad_adaptation, *ctx.saved_tensors),
                                 surrogate, strength, subtract, any(needs[3:6]))
        return (*(g if needs[i] else None for i, g in enumerate(grads)), None, None, None, None, None)


def ltc_dynamics(z_m: Tensor, z_a: Optional[Tensor], current: Tensor, state: NeuronState, surrogate: Surrogate,
                 kernels: LTCDynamicsKernels, *, baseline_threshold: float, adaptation_strength: float,
                 subtract: bool) -> tuple[Tensor, NeuronState]:
    """The LTC step after its gate matmuls (module docstring), fused. ``z_m``/``z_a`` are the gate
    pre-activations (slopes applied; ``z_a`` None without adaptation, when b = b₀ passes through).
    Returns ``(s, NeuronState(u, b, s))``."""
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    inputs = (z_m, z_a, current, membrane, adaptation, spikes)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        outputs = _LTCDynamics.apply(*inputs, baseline_threshold, adaptation_strength, subtract, surrogate, kernels)
    else:
        outputs = kernels.forward(*inputs, baseline_threshold, adaptation_strength, subtract)[:3]
    s, u = outputs[0], outputs[1]
    b = adaptation if z_a is None else outputs[2]
    return s, NeuronState(u, b, s)
