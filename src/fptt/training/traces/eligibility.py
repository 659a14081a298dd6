"""Eligibility traces: the *temporal* part of the forward-in-time gradients of e-prop and OSTL.

Both e-prop (Bellec et al., Nat. Commun. 11, 3625, 2020) and OSTL (Bohnstingl et al., IEEE TNNLS
2022) split the gradient of a recurrent spiking layer into a part computed forward in time from
quantities local to each synapse (the eligibility trace, here) and a learning signal that carries
the error of the current step (:mod:`fptt.training.traces.learner`). This module holds the traces of the
ALIF/LIF layer (:func:`fptt.neurons.functional.alif_step`, THEORY.md §2.3) and of the fixed and linear
readouts, with the equations they implement.

**Hidden state and its Jacobian.** A neuron j of an ALIF layer has the hidden state
h_t = (u_t, b_t); its spike s_t = H(u_t − θ_t), θ_t = b_0 + β b_t, is a function of h_t. With
ψ_t = H'(u_t − θ_t), the layer's surrogate derivative (the same one autograd uses), the neuron's
own dynamics (THEORY.md §2.3, ``dt`` the step, α = exp(−dt/τ_m), ρ = exp(−dt/τ_adp)) give the per-neuron
2×2 Jacobian J_t = ∂h_t/∂h_{t-1} (everything elementwise over (batch, neuron)):

.. math::
    \\partial b_t/\\partial b_{t-1} &= ρ − (1−ρ) β ψ_{t-1},\\qquad
    \\partial b_t/\\partial u_{t-1} = (1−ρ) ψ_{t-1}\\\\
    \\text{reset="subtract"}:\\ \\partial u_t/\\partial u_{t-1} &= α − dt\\,θ_t ψ_{t-1}
        − dt\\,β s_{t-1} \\partial b_t/\\partial u_{t-1},\\quad
    \\partial u_t/\\partial b_{t-1} = dt\\,θ_t β ψ_{t-1} − dt\\,β s_{t-1} \\partial b_t/\\partial b_{t-1}\\\\
    \\text{reset="zero"}:\\ \\partial u_t/\\partial u_{t-1} &= α (1 − s_{t-1}) − α u_{t-1} ψ_{t-1},\\quad
    \\partial u_t/\\partial b_{t-1} = α u_{t-1} β ψ_{t-1}

(ψ_0 = 0: the initial spikes are a constant). These are the *intra-neuron* paths, through the
neuron's own reset and adaptation. The paths through the recurrent current W_r s_{t-1} (other
neurons, and the diagonal of W_r) are left out: that is the approximation both methods make.
Bellec et al. also drop the reset's derivative; we keep it, so that the traces are the exact
sensitivities of the neuron's own dynamics (and the exact cases of the tests hold).

**Traces.** For the synapses of neuron j, with presynaptic vector
p_t = [x_t, 1, s_{t-1}] (input, bias, recurrent spikes; W = [W_x | c_x | W_r]), the eligibility
vector ε_{ji,t} = (ε^u, ε^b) = d h_{j,t} / d W_{ji} through the neuron's own dynamics obeys

.. math::
    ε^u_{ji,t} &= \\tfrac{\\partial u_t}{\\partial u_{t-1}} ε^u_{ji,t-1}
                 + \\tfrac{\\partial u_t}{\\partial b_{t-1}} ε^b_{ji,t-1} + (1 − α_j) p_{i,t}\\\\
    ε^b_{ji,t} &= \\tfrac{\\partial b_t}{\\partial u_{t-1}} ε^u_{ji,t-1}
                 + \\tfrac{\\partial b_t}{\\partial b_{t-1}} ε^b_{ji,t-1}

and the eligibility trace is e_{ji,t} = ∂s_{j,t}/∂h_{j,t} · ε_{ji,t} = ψ_{j,t} (ε^u − β ε^b).
The learnable time constants have per-neuron traces of the same recurrence with the direct terms

.. math::
    \\text{τ}_m:\\ \\partial u_t/\\partial α · dα/dτ_m,\\quad
        \\partial u_t/\\partial α = u_{t-1} − d_t\\ (\\text{subtract}),\\ u_{t-1}(1 − s_{t-1}) − d_t\\ (\\text{zero}),
        \\quad dα/dτ_m = α\\,dt/τ_m^2\\\\
    \\text{τ}_{adp}:\\ \\partial b_t/\\partial ρ = b_{t-1} − s_{t-1},\\quad
        \\partial u_t/\\partial ρ = −dt\\,β s_{t-1}(b_{t-1} − s_{t-1})\\ (\\text{subtract}),\\ 0\\ (\\text{zero}),
        \\quad dρ/dτ_{adp} = ρ\\,dt/τ_{adp}^2

(zero where τ is held at its floor dt/100). With β = 0 (LIF) ε^b never reaches the spike and is
not kept.

**Memory** per layer: ε^u and ε^b, each (batch, n, n_in + 1 + n) — O(n_in·n + n²) per sample,
independent of T — plus O(n) for the time constants.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ...neurons.cells import ALIF
from ...neurons.functional import alif_decay, alif_min_tau
from ...neurons.readout import FixedReadout, LinearReadout, Readout
from ...neurons.types import NeuronState

__all__ = ["SpikingLayerTraces", "ReadoutTraces", "leaky_filter_"]


def leaky_filter_(filtered: Tensor, decay: Tensor, value: Tensor) -> Tensor:
    """In place: F ← k F + value (the low-pass filter of e-prop's readout, F_κ in Bellec et al.)."""
    return filtered.mul_(decay).add_(value)


class SpikingLayerTraces:
    """The eligibility traces of one :class:`~fptt.neurons.cells.ALIF` (or LIF) layer for a batch.

    Call :meth:`step` once per time step, after the layer's forward step, with the quantities of
    that step; :attr:`eligibility` then holds e_{ji,t} (batch, n, n_pre) and :meth:`time_constant_eligibility`
    the per-neuron e of τ_m and τ_adp. Gradients are assembled by :meth:`parameter_gradients`.
    """

    def __init__(self, layer: ALIF, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        self.layer = layer
        hidden = layer.hidden_size
        self.recurrent = layer.recurrent_weight is not None
        self.pre_size = layer.input_size + 1 + (hidden if self.recurrent else 0)
        self.adaptive = layer.adaptation_strength != 0.0
        self.learn_tau_adaptation = isinstance(layer.tau_adaptation, torch.nn.Parameter) and self.adaptive
        shape = (batch_size, hidden, self.pre_size)
        self.membrane = torch.zeros(shape, device=device, dtype=dtype)  # ε^u
        self.adaptation = torch.zeros(shape, device=device, dtype=dtype) if self.adaptive else None  # ε^b
        zeros = lambda: torch.zeros(batch_size, hidden, device=device, dtype=dtype)  # noqa: E731
        # per-neuron traces of (u, b) with respect to τ_m and τ_adp
        self.tau_m = [zeros(), zeros() if self.adaptive else None]
        self.tau_a = [zeros(), zeros()] if self.learn_tau_adaptation else None
        self.previous_slope = zeros()  # ψ_{t-1} (0 at the start of a sequence)
        self.eligibility: Optional[Tensor] = None  # e_t, (batch, n, n_pre)
        self.slope: Optional[Tensor] = None  # ψ_t

    def nbytes(self) -> int:
        """Bytes held by the traces (what e-prop/OSTL keep instead of BPTT's activations)."""
        tensors = [self.membrane, self.adaptation, self.previous_slope, self.eligibility, *self.tau_m,
                   *(self.tau_a or [])]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def presynaptic(self, x: Tensor, previous: NeuronState) -> Tensor:
        """p_t = [x_t, 1, s_{t-1}] (batch, n_pre): the inputs that W = [W_x | c_x | W_r] multiplies."""
        parts = [x, torch.ones_like(x[:, :1])]
        if self.recurrent:
            parts.append(previous.spikes)
        return torch.cat(parts, dim=1)

    def step(self, presynaptic: Tensor, current: Tensor, previous: NeuronState, new: NeuronState) -> None:
        """Advance the traces from t−1 to t (module docstring) and set e_t = ψ_t (ε^u − β ε^b)."""
        layer = self.layer
        dt = layer.dt
        beta = layer.adaptation_strength
        floor = alif_min_tau(dt)  # below it the clamp holds τ, and ∂α/∂τ = 0
        tau_m = layer.tau_membrane.detach()
        alpha = alif_decay(tau_m, dt)
        tau_a = layer.tau_adaptation.detach()
        rho = alif_decay(tau_a, dt)
        u_prev, b_prev, s_prev = previous.membrane, previous.adaptation, previous.spikes
        psi_prev = self.previous_slope
        # per-neuron Jacobian ∂h_t/∂h_{t-1} (intra-neuron paths only)
        db_db = rho - (1.0 - rho) * beta * psi_prev
        db_du = (1.0 - rho) * psi_prev
        if layer.reset == "subtract":
            threshold = layer.baseline_threshold + beta * new.adaptation
            du_du = alpha - dt * threshold * psi_prev - dt * beta * s_prev * db_du
            du_db = dt * beta * threshold * psi_prev - dt * beta * s_prev * db_db
            du_dalpha = u_prev - current
            du_drho = -dt * beta * s_prev * (b_prev - s_prev)
        else:
            du_du = alpha * (1.0 - s_prev) - alpha * u_prev * psi_prev
            du_db = alpha * beta * u_prev * psi_prev
            du_dalpha = u_prev * (1.0 - s_prev) - current
            du_drho = torch.zeros_like(u_prev)
        drive = (1.0 - alpha).expand_as(u_prev)  # ∂u_t/∂d_t
        # synaptic traces (batch, n, n_pre)
        direct = drive.unsqueeze(2) * presynaptic.unsqueeze(1)
        if self.adaptive:
            assert self.adaptation is not None
            membrane = du_du.unsqueeze(2) * self.membrane + du_db.unsqueeze(2) * self.adaptation + direct
            self.adaptation = db_du.unsqueeze(2) * self.membrane + db_db.unsqueeze(2) * self.adaptation
            self.membrane = membrane
        else:
            self.membrane = du_du.unsqueeze(2) * self.membrane + direct
        # time-constant traces (batch, n): the same recurrence, their own direct terms
        dalpha_dtau = torch.where(tau_m > floor, alpha * dt / tau_m ** 2, torch.zeros_like(tau_m))
        self.tau_m = self._advance(self.tau_m, du_du, du_db, db_du, db_db, du_dalpha * dalpha_dtau, None)
        if self.tau_a is not None:
            drho_dtau = torch.where(tau_a > floor, rho * dt / tau_a ** 2, torch.zeros_like(tau_a))
            self.tau_a = self._advance(self.tau_a, du_du, du_db, db_du, db_db, du_drho * drho_dtau,
                                       (b_prev - s_prev) * drho_dtau)
        # eligibility e_t = ∂s_t/∂h_t · ε_t with the surrogate derivative of this step
        threshold_t = layer.baseline_threshold + beta * new.adaptation
        slope = layer.spike_fn.derivative(new.membrane - threshold_t)
        self.slope = slope
        self.previous_slope = slope
        membrane_part = self.membrane if self.adaptation is None else self.membrane - beta * self.adaptation
        self.eligibility = slope.unsqueeze(2) * membrane_part

    def _advance(self, traces: list, du_du: Tensor, du_db: Tensor, db_du: Tensor, db_db: Tensor,
                 direct_u: Tensor, direct_b: Optional[Tensor]) -> list:
        eu, eb = traces
        if eb is None:
            return [du_du * eu + direct_u, None]
        new_u = du_du * eu + du_db * eb + direct_u
        new_b = db_du * eu + db_db * eb + (0.0 if direct_b is None else direct_b)
        return [new_u, new_b]

    def time_constant_eligibility(self) -> tuple[Tensor, Optional[Tensor]]:
        """(e of τ_m, e of τ_adp or None), each (batch, n): ψ_t (ε^u − β ε^b) of their traces."""
        assert self.slope is not None
        beta = self.layer.adaptation_strength

        def spike(traces: list) -> Tensor:
            eu, eb = traces
            return self.slope * (eu if eb is None else eu - beta * eb)

        return spike(self.tau_m), None if self.tau_a is None else spike(self.tau_a)

    def parameter_gradients(self, synaptic: Tensor, tau_m: Tensor, tau_a: Optional[Tensor]) -> dict:
        """Split the accumulated synaptic gradient (n, n_pre) into W_x, c_x, W_r; map to parameters."""
        layer = self.layer
        n_in = layer.input_size
        grads = {layer.input_weight.weight: synaptic[:, :n_in], layer.input_weight.bias: synaptic[:, n_in],
                 layer.tau_membrane: tau_m}
        if self.recurrent:
            grads[layer.recurrent_weight.weight] = synaptic[:, n_in + 1:]
        if self.learn_tau_adaptation:
            assert tau_a is not None
            grads[layer.tau_adaptation] = tau_a
        return grads


class ReadoutTraces:
    """Exact forward sensitivities of a fixed or linear readout's parameters (its own state is
    the only recurrence: v_t = k v_{t-1} + (1 − k) z_t, z_t = W_o s_t + c_o, k = exp(−1/τ_out)):

    .. math::
        P^W_{oj,t} &= k_o P^W_{oj,t-1} + (1 − k_o) s_{j,t},\\qquad
        P^c_{o,t} = k_o P^c_{o,t-1} + (1 − k_o)\\\\
        P^k_{o,t} &= k_o P^k_{o,t-1} + v_{o,t-1} − z_{o,t},\\qquad dk/d\\log τ_{out} = −k \\ln k

    so that dℓ_t/dW_o = δ_t P^W_t with δ_t = ∂ℓ_t/∂v_t (likewise c_o, log τ_out). The linear
    readout (v_t = z_t) has P^W_t = s_t, P^c_t = 1. Memory (batch, O, n).
    """

    def __init__(self, readout: Readout, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        self.readout = readout
        self.leaky = isinstance(readout, FixedReadout)
        if not self.leaky and not isinstance(readout, LinearReadout):
            raise TypeError(f"eligibility traces need a fixed or linear readout, got {type(readout).__name__}")
        shape = (batch_size, readout.output_size)
        self.weight = torch.zeros(*shape, readout.input_size, device=device, dtype=dtype)
        self.bias = torch.zeros(shape, device=device, dtype=dtype)
        self.decay_trace = torch.zeros(shape, device=device, dtype=dtype) if self.leaky else None

    def decay(self) -> Optional[Tensor]:
        """k (O,), or None for the linear readout."""
        return self.readout.decay.detach() if self.leaky else None

    def nbytes(self) -> int:
        tensors = [self.weight, self.bias, self.decay_trace]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def step(self, spikes: Tensor, current: Tensor, previous: Tensor) -> None:
        """Advance P from t−1 to t; ``current`` is z_t, ``previous`` is v_{t-1}."""
        decay = self.decay()
        if decay is None:
            self.weight = spikes.unsqueeze(1).expand_as(self.weight)
            self.bias = torch.ones_like(self.bias)
            return
        leaky_filter_(self.weight, decay.unsqueeze(1), (1.0 - decay).unsqueeze(1) * spikes.unsqueeze(1))
        leaky_filter_(self.bias, decay, (1.0 - decay).expand_as(self.bias))
        assert self.decay_trace is not None
        leaky_filter_(self.decay_trace, decay, previous - current)

    def accumulate(self, error: Tensor, grads: dict) -> None:
        """Add δ_t · P_t (``error`` = δ_t, (batch, O)) to ``grads`` (parameter → tensor)."""
        readout = self.readout
        _add(grads, readout.weight.weight, torch.einsum("bo,boj->oj", error, self.weight))
        _add(grads, readout.weight.bias, (error * self.bias).sum(0))
        if self.leaky:
            decay = readout.decay.detach()
            assert self.decay_trace is not None
            _add(grads, readout.log_tau,  # type: ignore[arg-type]  # a fixed readout's parameter
                 (error * self.decay_trace).sum(0) * (-decay * torch.log(decay)))


def _add(grads: dict, parameter: Tensor, value: Tensor) -> None:
    if parameter in grads:
        grads[parameter].add_(value)
    else:
        grads[parameter] = value.clone()
