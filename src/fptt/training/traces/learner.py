"""e-prop and OSTL: gradients computed forward in time, written into ``.grad`` for any optimizer.

Both methods train a :class:`~fptt.models.SpikingRNN` of ALIF/LIF layers with a fixed (leaky) or
linear readout of the spikes, without unrolling: the network runs forward once, the eligibility
traces of :mod:`fptt.training.traces.eligibility` follow it, and at every step t that has a loss
ℓ_t = w_t L(v_t, y) the readout error δ_t = ∂ℓ_t/∂v_t (one tiny autograd call on v_t) is turned
into a *learning signal* L_{j,t} for each neuron and added to the gradient, Σ_t L_{j,t} e_{ji,t}.
Every k steps the accumulated gradient (divided like the window loss of the other engines) is
written into ``.grad`` and the usual :class:`~fptt.training.window.WindowUpdate` applies the non-finite
policy, clipping and ``optimizer.step()`` (Adam, Adamax, SGD: the same optimizers as the other
engines). Memory: the traces only, O(n_in·n + n²) per layer and sample, independent of T.

**e-prop** (Bellec et al. 2020, one recurrent layer). With the leaky readout
v_t = k v_{t-1} + (1 − k)(W_o s_t + c_o), the loss at t' depends on the spikes of every t ≤ t'
through the readout's leak; e-prop moves that filter onto the eligibility trace (their F_κ):

.. math::
    \\bar e_{o,ji,t} = k_o \\bar e_{o,ji,t-1} + e_{ji,t},\\qquad
    L_{o,j,t} = δ_{o,t} (1 − k_o) B_{oj},\\qquad
    \\nabla W_{ji} \\mathrel{+}= \\sum_{b,o} L_{o,j,t}\\, \\bar e_{o,ji,t}

with B = W_o (``feedback="symmetric"``) or a fixed random matrix drawn like W_o at init
(``"random"``, random feedback alignment). One filtered trace per output unit because the
readout's decays k_o are learnt per unit (memory ×O; the linear readout, k = 0, needs none).
The approximation is only in the traces: the paths through the recurrent weights W_r are dropped.
**Exact case:** W_r = 0 (or a non-recurrent layer) with symmetric feedback: then the gradient
equals BPTT's (the test checks it in float64, with the leaky readout).

**OSTL** (Bohnstingl et al. 2022, any depth). The gradient is split into a *spatial* part, the
error of step t back-propagated through the layers *at step t only*, and a *temporal* part, the
traces. For the last layer L_{j,t} = Σ_o δ_{o,t} (1 − k_o) W_o[o, j]; one layer down,

.. math:: L^{l-1}_{i,t} = \\sum_j L^l_{j,t}\\, ψ^l_{j,t} (1 − α^l_j)\\, W^l_x[j, i]

(∂s^l_t/∂s^{l-1}_t through the same-step current). The temporal paths that cross layers (layer
l's state at t depending on layer l−1 at t' < t, and the readout's leak) are dropped: that is the
paper's approximation for deep networks. **Exact case:** one layer with W_r = 0 and a linear
readout (the readout's leak crosses layers, so a leaky readout makes it approximate). We keep the
diagonal (per-neuron) temporal Jacobian for recurrent layers as well: exact OSTL with lateral
weights needs RTRL's O(n³) traces per sample, which we do not implement.

**Cost per layer and time step** (n neurons, n_pre = n_in + 1 + n inputs, batch B, O outputs):
traces O(B·n·n_pre) memory and multiply-adds (both methods); e-prop's filtered traces add
O(B·O·n·n_pre) with a leaky readout; the gradient contraction O(B·n·n_pre) per loss step. No
activations are stored: memory is flat in T.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ...models import NetworkState
from ...neurons.cells import ALIF, NEURON_CLASSES, check_step_input
from ...neurons.functional import alif_decay
from ...neurons.readout import READOUT_CLASSES, FixedReadout
from ...spec.rules import check_trace_settings
from ...spec.vocabulary import FEEDBACKS, METHODS, TRACE_METHODS
from .eligibility import ReadoutTraces, SpikingLayerTraces, leaky_filter_

__all__ = ["TraceLearner", "check_trace_model"]


def check_trace_model(model: Any, method: str, feedback: str = "symmetric") -> None:
    """Raise a one-line ``ValueError`` unless ``model`` is a network e-prop/OSTL can train (the
    settings read off the network are checked by :func:`fptt.spec.rules.check_trace_settings`, the same
    rule the run configuration applies)."""
    other = ", ".join(m for m in METHODS if m not in TRACE_METHODS)
    layers = getattr(model, "layers", None)
    if layers is None or not hasattr(model, "readout") or not hasattr(model, "readout_from"):
        raise ValueError(f"method {method!r} trains a fptt.SpikingRNN of ALIF/LIF layers; for other models use {other}")
    neurons = {_registered_name(NEURON_CLASSES, layer) for layer in layers}
    check_trace_settings(
        method, model=next(iter(neurons)) if len(neurons) == 1 else "/".join(sorted(neurons)),
        readout=_registered_name(READOUT_CLASSES, model.readout), readout_from=model.readout_from,
        norm="none" if all(isinstance(layer.input_norm, nn.Identity) for layer in layers) else "layer",
        layers=len(layers), feedback=feedback, distributed=getattr(model, "set_gradient_sync", None) is not None)


def _registered_name(registry: dict[str, type], module: nn.Module) -> str:
    """The registry name of ``module``'s class (``"alif"``, ``"fixed"``, ...), or the class name."""
    for name, cls in registry.items():
        if type(module) is cls:
            return name
    return type(module).__name__


class TraceLearner:
    """Runs a :class:`~fptt.models.SpikingRNN` forward and produces its e-prop or OSTL gradient.

    Used by :class:`~fptt.training.window.WindowUpdate` (``gradients=``): :meth:`start` at each sequence,
    :meth:`step` instead of ``model.step``, :meth:`accumulate` for each weighted step loss (it
    must be a function of the returned output only), :meth:`write` at each update.

    Args:
        model: the network (see :func:`check_trace_model`).
        method: ``"eprop"`` or ``"ostl"``.
        feedback: e-prop's B, ``"symmetric"`` (W_o) or ``"random"`` (fixed, drawn with
            ``feedback_seed``: the same matrix in every epoch and after a resume). OSTL: symmetric.
    """

    def __init__(self, model: Any, method: str, *, feedback: str = "symmetric", feedback_seed: int = 0) -> None:
        if method not in TRACE_METHODS:
            raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
        check_trace_model(model, method, feedback)
        self.model = model
        self.method = method
        self.layers: list[ALIF] = list(model.layers)  # type: ignore[arg-type]
        self.readout = model.readout
        self.feedback_matrix: Optional[Tensor] = None
        if feedback == "random":
            weight = self.readout.weight.weight
            generator = torch.Generator().manual_seed(feedback_seed)
            bound = math.sqrt(6.0 / (weight.shape[0] + weight.shape[1]))  # Xavier-uniform, like W_o at init
            matrix = (torch.rand(weight.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            self.feedback_matrix = matrix.to(device=weight.device, dtype=weight.dtype)
        self.layer_traces: list[SpikingLayerTraces] = []
        self.readout_traces: Optional[ReadoutTraces] = None
        self.filtered: Optional[list[Optional[Tensor]]] = None  # e-prop: ē per output (synapses, τ_m, τ_adp)
        self.grads: dict[Tensor, Tensor] = {}
        self._output: Optional[Tensor] = None
        covered = set()
        for layer in self.layers:
            covered |= {id(p) for p in (layer.input_weight.weight, layer.input_weight.bias, layer.tau_membrane)}
            if layer.recurrent_weight is not None:
                covered.add(id(layer.recurrent_weight.weight))
            if isinstance(layer.tau_adaptation, nn.Parameter):
                covered.add(id(layer.tau_adaptation))
        covered |= {id(self.readout.weight.weight), id(self.readout.weight.bias)}
        if isinstance(self.readout, FixedReadout):
            covered.add(id(self.readout.log_tau))
        names = {id(p): name for name, p in model.named_parameters()}
        missing = [names[id(p)] for p in model.parameters() if p.requires_grad and id(p) not in covered]
        if missing:
            raise ValueError(f"method {method!r} has no gradient rule for parameter(s) {missing}; freeze them "
                             "(requires_grad_(False)) or train with another method")

    # ------------------------------------------------------------------ sequence and step
    def start(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        """A new sequence: all traces and the pending gradient start from zero."""
        self.layer_traces = [SpikingLayerTraces(layer, batch_size, device, dtype) for layer in self.layers]
        self.readout_traces = ReadoutTraces(self.readout, batch_size, device, dtype)
        self.filtered = None
        if self.method == "eprop" and isinstance(self.readout, FixedReadout):
            outputs = self.readout.output_size
            traces = self.layer_traces[0]
            shape = (batch_size, outputs, traces.layer.hidden_size)
            self.filtered = [
                torch.zeros(*shape, traces.pre_size, device=device, dtype=dtype),
                torch.zeros(shape, device=device, dtype=dtype),
                torch.zeros(shape, device=device, dtype=dtype) if traces.tau_a is not None else None,
            ]
        self.grads = {}
        self._output = None

    def nbytes(self) -> int:
        """Bytes of every trace held between steps (the method's memory; independent of T)."""
        total = sum(traces.nbytes() for traces in self.layer_traces)
        if self.readout_traces is not None:
            total += self.readout_traces.nbytes()
        total += sum(t.numel() * t.element_size() for t in (self.filtered or []) if t is not None)
        return total

    def step(self, x: Tensor, state: NetworkState) -> tuple[Tensor, NetworkState]:
        """One forward step of the network (no graph) that advances every trace; returns v_t as a
        leaf that requires grad (so a loss on it gives δ_t) and the new state."""
        if not self.layer_traces:
            raise RuntimeError("TraceLearner.start(batch_size, device, dtype) must be called at each sequence start")
        check_step_input(x, self.model.input_size)
        if x.shape[0] != self.layer_traces[0].membrane.shape[0]:
            raise ValueError(f"batch size of input ({x.shape[0]}) and traces ({self.layer_traces[0].membrane.shape[0]}) "
                             "differ; call start(batch_size, ...) at each sequence")
        with torch.no_grad():
            spikes = x
            new_layers = []
            for layer, traces, previous in zip(self.layers, self.layer_traces, state.layers):
                presynaptic = traces.presynaptic(spikes, previous)
                current = layer.input_current(spikes, previous.spikes)
                spikes, new = layer.dynamics(current, previous)
                traces.step(presynaptic, current, previous, new)
                new_layers.append(new)
            readout_current = self.readout.weight(spikes)
            scores, readout_state = self.readout.integrate(readout_current, state.readout)
            assert self.readout_traces is not None
            self.readout_traces.step(spikes, readout_current, state.readout)
            if self.filtered is not None:
                self._filter_eligibility()
        output = scores.detach().requires_grad_(True)
        self._output = output
        return output, NetworkState(tuple(new_layers), readout_state)

    def _filter_eligibility(self) -> None:
        """e-prop's F_κ: ē_o ← k_o ē_o + e for the synapses and the time constants."""
        assert self.filtered is not None and self.readout_traces is not None
        decay = self.readout_traces.decay()
        traces = self.layer_traces[0]
        assert decay is not None and traces.eligibility is not None
        leaky_filter_(self.filtered[0], decay.view(1, -1, 1, 1), traces.eligibility.unsqueeze(1))  # type: ignore[arg-type]
        tau_m, tau_a = traces.time_constant_eligibility()
        leaky_filter_(self.filtered[1], decay.view(1, -1, 1), tau_m.unsqueeze(1))  # type: ignore[arg-type]
        if self.filtered[2] is not None:
            leaky_filter_(self.filtered[2], decay.view(1, -1, 1), tau_a.unsqueeze(1))

    # ------------------------------------------------------------------ gradients
    def accumulate(self, term: Tensor) -> None:
        """Add the gradient of one weighted step loss ``term`` (a function of the last output)."""
        if self._output is None:
            raise RuntimeError("accumulate() needs a step() first")
        (error,) = torch.autograd.grad(term, self._output)
        with torch.no_grad():
            assert self.readout_traces is not None
            self.readout_traces.accumulate(error, self.grads)
            decay = self.readout_traces.decay()
            gain = error if decay is None else error * (1.0 - decay)  # δ_o (1 − k_o)
            if self.method == "eprop":
                self._accumulate_eprop(gain)
            else:
                self._accumulate_ostl(gain)

    def _accumulate_eprop(self, gain: Tensor) -> None:
        traces = self.layer_traces[0]
        feedback = self.readout.weight.weight.detach() if self.feedback_matrix is None else self.feedback_matrix
        signal = gain.unsqueeze(2) * feedback.unsqueeze(0)  # L_{b,o,j}
        if self.filtered is not None:
            synaptic = torch.einsum("boj,boji->ji", signal, self.filtered[0])
            tau_m = torch.einsum("boj,boj->j", signal, self.filtered[1])
            tau_a = None if self.filtered[2] is None else torch.einsum("boj,boj->j", signal, self.filtered[2])
        else:  # linear readout: no filter, L_{b,j} = Σ_o δ_o B_oj
            self._accumulate_layer(traces, signal.sum(1))
            return
        self._add_layer(traces, synaptic, tau_m, tau_a)

    def _accumulate_ostl(self, gain: Tensor) -> None:
        signal = gain @ self.readout.weight.weight.detach()  # ∂ℓ_t/∂s^L_t, spatial path only
        for index in range(len(self.layers) - 1, -1, -1):
            traces = self.layer_traces[index]
            self._accumulate_layer(traces, signal)
            if index > 0:
                layer = traces.layer
                alpha = alif_decay(layer.tau_membrane.detach(), layer.dt)
                assert traces.slope is not None
                signal = (signal * traces.slope * (1.0 - alpha)) @ layer.input_weight.weight.detach()

    def _accumulate_layer(self, traces: SpikingLayerTraces, signal: Tensor) -> None:
        assert traces.eligibility is not None
        synaptic = torch.einsum("bj,bji->ji", signal, traces.eligibility)
        tau_m, tau_a = traces.time_constant_eligibility()
        self._add_layer(traces, synaptic, (signal * tau_m).sum(0), None if tau_a is None else (signal * tau_a).sum(0))

    def _add_layer(self, traces: SpikingLayerTraces, synaptic: Tensor, tau_m: Tensor, tau_a: Optional[Tensor]) -> None:
        for parameter, value in traces.parameter_gradients(synaptic, tau_m, tau_a).items():
            if parameter in self.grads:
                self.grads[parameter].add_(value)
            else:
                self.grads[parameter] = value.clone()

    def write(self, parameters: list[Tensor], divisor: float = 1.0) -> None:
        """Set ``p.grad`` = accumulated gradient / ``divisor`` for ``parameters``; start a new sum."""
        for parameter in parameters:
            value = self.grads.get(parameter)
            if value is None:
                parameter.grad = torch.zeros_like(parameter)
            else:
                parameter.grad = (value / divisor if divisor != 1 else value).reshape(parameter.shape).contiguous()
        self.grads = {}
