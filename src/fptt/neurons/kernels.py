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

from ..compiled import LazyCompiled
from ..surrogate import Surrogate
from .types import NeuronState

__all__ = ["ltc_dynamics", "LTCDynamicsKernels"]


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


def _detached(*tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    return tuple(None if t is None else t.detach() for t in tensors)


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
    membrane, adaptation, spikes = state
    inputs = (z_m, z_a, current, membrane, adaptation, spikes)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        outputs = _LTCDynamics.apply(*inputs, baseline_threshold, adaptation_strength, subtract, surrogate, kernels)
    else:
        outputs = kernels.forward(*inputs, baseline_threshold, adaptation_strength, subtract)[:3]
    s, u = outputs[0], outputs[1]
    b = adaptation if z_a is None else outputs[2]
    return s, NeuronState(u, b, s)
