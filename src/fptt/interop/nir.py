"""NIR export and import of LIF and ALIF networks (the Neuromorphic Intermediate Representation).

NIR (the ``nir`` package, ``pip install 'fptt[interop]'``) describes a network as a graph of
continuous-time primitives. The graph written here is read with these **execution semantics**,
those of a clocked simulator: one step of length ``dt`` (graph metadata ``fptt_dt``; time
constants are in the same unit); a feed-forward edge delivers within the step; an edge that
closes a cycle delivers the previous step's value (so W_r sees s_{t-1}); every state starts at 0;
a neuron node integrates τ dv/dt = (v_leak − v) + R I with its summed input I held over the step,
by one of two rules (``discretization``, graph metadata ``fptt_discretization``):

* ``"zoh"`` (default; exact integration): v_t = e^{−dt/τ} v_{t−1} + (1 − e^{−dt/τ}) R I_t, so the
  node's τ is fptt's τ_m (α = exp(−dt/τ_m));
* ``"euler"`` (one forward-Euler step, what Norse's NIR import runs): v_t = v_{t−1} + (dt/τ)
  (R I_t − v_{t−1}), so the node's τ is dt / (1 − α).

Either way the node computes v_t = α v_{t−1} + (1 − α) I_t, fptt's layer (THEORY.md §2.3,
:func:`~fptt.neurons.functional.alif_step`), exactly:

* **input synapses**: ``layer{l}_input`` = ``Affine(W_x, c_x)``;
* **LIF, reset to zero** (u_t = α u_{t−1}(1 − s_{t−1}) + (1 − α) d_t): ``layer{l}_lif`` =
  ``LIF(τ = τ_m, R = 1, v_leak = 0, v_threshold = b_0, v_reset = 0)`` (NIR's LIF resets after the
  spike, which is what the factor (1 − s_{t−1}) does), with ``layer{l}_recurrent`` =
  ``Linear(W_r)`` from its spikes back to its input;
* **LIF, reset by subtraction** (u_t = α u_{t−1} + (1 − α) d_t − b_0 s_{t−1} dt): NIR's LIF node
  cannot subtract, but the subtraction is linear in s_{t−1}, so it joins the recurrent weights:
  ``layer{l}_membrane`` = ``LI(τ_m, 1, 0)``, ``layer{l}_spikes`` = ``Threshold(b_0)`` (s_t = [u_t > b_0],
  fptt's H(v) = [v > 0]) and ``layer{l}_recurrent`` = ``Linear(W_r − diag(b_0 dt / (1 − α)))``;
  ``readout_from="membrane"`` reads the ``LI`` node;
* **readout** ``"fixed"`` (v_t = k v_{t−1} + (1 − k) z_t, k = exp(−1/τ_out)): ``readout_affine`` =
  ``Affine(W_o, c_o)`` then ``readout_li`` = ``LI(τ, 1, 0)`` with the τ of k (τ_out dt for ``zoh``,
  dt / (1 − k) for ``euler``); ``"linear"`` (v_t = W_o x_t + c_o):
  the ``Affine`` alone.

What NIR has no primitive for is refused with the reason (:class:`NIRExportError`), or carried in
node metadata (keys ``fptt_*``) where fptt's import restores it exactly and other NIR tools see
the closest primitive:

* **ALIF**: the adaptive threshold θ_t = b_0 + β b_t, b_t = ρ b_{t−1} + (1 − ρ) s_{t−1}, enters the
  spike condition and (subtractive reset) the product θ_t s_{t−1}: no NIR node computes either.
  The graph holds the layer as the LIF above with threshold b_0, and τ_adp, β in the metadata of
  its spiking node; another NIR tool simulates it as LIF (β = 0).
* the random initial membrane u_0 ~ U(0, 1) (``initial_membrane="random"``): NIR states start at
  0; the option is kept in metadata.
* **LTC** layers (rates α_t, ρ_t computed each step from input and state), the ``liquid`` readout
  (a gate a_t = σ(W [z_t, v_{t−1}] + c)), layer normalisation, and a membrane readout of a
  reset-to-zero LIF layer (NIR's LIF outputs spikes only): refused.

:func:`to_nir` / :func:`from_nir` convert, :func:`write_nir` / :func:`read_nir` go through files
(``nir.write`` / ``nir.read``, HDF5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import SpikingRNN
from ..neurons.cells import BRF, LTC
from ..neurons.functional import alif_decay
from ..neurons.readout import FixedReadout, LinearReadout, LiquidReadout
from ..spec.vocabulary import NIR_DISCRETIZATIONS

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "NIRExportError", "NIRImportError"]


class NIRExportError(ValueError):
    """The model has a part that no NIR primitive computes (the message says which and why)."""


class NIRImportError(ValueError):
    """The graph is not one that fptt can rebuild as a :class:`~fptt.SpikingRNN`."""


def _nir() -> Any:
    try:
        import nir
    except ImportError as error:
        raise ImportError(f"NIR export needs the 'nir' package ({error}); pip install 'fptt[interop]' "
                          "-c constraints/interop.txt") from error
    return nir


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy().copy()


def _check_exportable(model: nn.Module) -> None:
    if not isinstance(model, SpikingRNN):
        raise NIRExportError(f"NIR export takes an fptt SpikingRNN, got {type(model).__name__}; for an snnTorch, "
                             "Norse or SpikingJelly model use that library's own NIR export")
    for index, layer in enumerate(model.layers):
        if isinstance(layer, LTC):
            raise NIRExportError(
                "an LTC network has no NIR encoding: its membrane and adaptation rates α_t = σ(W_m [d_t, u_{t-1}] "
                "+ c_m) and ρ_t are computed at every step from the input and the state, while every NIR neuron "
                "primitive (LIF, CubaLIF, LI, IF) has fixed time constants; export a LIF or ALIF network, or share "
                "the fptt checkpoint (fptt eval --export)")
        if isinstance(layer, BRF):
            raise NIRExportError(
                "a BRF network has no NIR encoding: its neurons are damped oscillators (a complex membrane "
                "u + i v with a learned frequency ω and a refractory threshold), and NIR has no resonator primitive; "
                "share the fptt checkpoint (fptt eval --export)")
        if not isinstance(layer.input_norm, nn.Identity):
            raise NIRExportError(f"layer {index} normalises its input currents (norm='layer'); NIR has no "
                                 "normalisation primitive: export a network trained with norm='none'")
    if isinstance(model.readout, LiquidReadout):
        raise NIRExportError("the liquid readout has no NIR primitive (its leak a_t = σ(W [z_t, v_{t-1}] + c) is "
                             "computed from the state each step); train with readout 'fixed' or 'linear' to export")
    if not isinstance(model.readout, (FixedReadout, LinearReadout)):
        raise NIRExportError(f"readout {type(model.readout).__name__} has no NIR encoding")
    if model.readout_from == "membrane" and model.layers[-1].reset == "zero":
        raise NIRExportError("readout_from='membrane' of a reset-to-zero layer: NIR's LIF node outputs spikes only; "
                             "use reset='subtract' (exported as LI + Threshold, whose membrane is readable)")
    dts = {layer.dt for layer in model.layers}
    if len(dts) != 1:
        raise NIRExportError(f"the layers use different time steps dt {sorted(dts)}; one graph has one dt")


def _node_tau(decay: torch.Tensor, dt: float, discretization: str) -> np.ndarray:
    """The NIR time constant whose one-step integration decays by ``decay`` (= α or k) over ``dt``."""
    tau = -dt / torch.log(decay) if discretization == "zoh" else dt / (1.0 - decay)
    return _array(tau)


def _node_decay(tau: np.ndarray, dt: float, discretization: str) -> torch.Tensor:
    """The one-step decay α of a NIR node's τ (the inverse of :func:`_node_tau`)."""
    tau = torch.from_numpy(np.asarray(tau, dtype=np.float64))
    return torch.exp(-dt / tau) if discretization == "zoh" else 1.0 - dt / tau


def to_nir(model: SpikingRNN, discretization: str = "zoh") -> Any:
    """The :class:`nir.NIRGraph` of a LIF/ALIF :class:`~fptt.SpikingRNN` (see the module docstring);
    ``discretization`` (``"zoh"`` or ``"euler"``) is the integration rule the graph's time constants
    are written for."""
    nir = _nir()
    if discretization not in NIR_DISCRETIZATIONS:
        raise ValueError(f"discretization must be one of {', '.join(NIR_DISCRETIZATIONS)}, got {discretization!r}")
    _check_exportable(model)
    dt = float(model.layers[0].dt)
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([model.input_size])})}
    edges: list[tuple[str, str]] = []
    source = "input"
    membrane_source = None
    for index, layer in enumerate(model.layers):
        prefix = f"layer{index}"
        size = layer.hidden_size
        decay = alif_decay(layer.tau_membrane.detach().to(torch.float64), dt)
        nodes[f"{prefix}_input"] = nir.Affine(weight=_array(layer.input_weight.weight),
                                              bias=_array(layer.input_weight.bias))
        edges.append((source, f"{prefix}_input"))
        metadata = {"fptt_neuron": "alif" if layer.adaptation_strength else "lif", "fptt_reset": layer.reset,
                    "fptt_initial_membrane": layer.initial_membrane,
                    "fptt_surrogate": type(layer.spike_fn).__name__}
        if layer.adaptation_strength:
            metadata.update(fptt_adaptation_strength=float(layer.adaptation_strength),
                            fptt_tau_adaptation=_array(layer.tau_adaptation),
                            fptt_note="adaptive threshold b_0 + beta b_t (no NIR primitive): fptt.interop.nir restores it "
                                      "from these keys; other NIR tools simulate this layer as LIF")
        threshold = np.full(size, layer.baseline_threshold)
        zeros, ones = np.zeros(size), np.ones(size)
        recurrent = (layer.recurrent_weight.weight.detach().to(torch.float64) if layer.recurrent_weight is not None
                     else torch.zeros(size, size, dtype=torch.float64))
        if layer.reset == "zero":
            integrator = spikes = f"{prefix}_lif"
            nodes[spikes] = nir.LIF(tau=_node_tau(decay, dt, discretization), r=ones, v_leak=zeros,
                                    v_threshold=threshold, v_reset=zeros.copy(), metadata=metadata)
            recurrent_needed = layer.recurrent_weight is not None
        else:
            integrator, spikes = f"{prefix}_membrane", f"{prefix}_spikes"
            nodes[integrator] = nir.LI(tau=_node_tau(decay, dt, discretization), r=ones, v_leak=zeros)
            nodes[spikes] = nir.Threshold(threshold=threshold, metadata=metadata)
            edges.append((integrator, spikes))
            recurrent = recurrent - torch.diag(layer.baseline_threshold * dt / (1.0 - decay))
            recurrent_needed = True
        edges.append((f"{prefix}_input", integrator))
        if recurrent_needed:
            nodes[f"{prefix}_recurrent"] = nir.Linear(weight=recurrent.numpy().copy())
            edges += [(spikes, f"{prefix}_recurrent"), (f"{prefix}_recurrent", integrator)]
        source, membrane_source = spikes, integrator
    readout = model.readout
    nodes["readout_affine"] = nir.Affine(weight=_array(readout.weight.weight), bias=_array(readout.weight.bias))
    edges.append((membrane_source if model.readout_from == "membrane" else source, "readout_affine"))
    last = "readout_affine"
    if isinstance(readout, FixedReadout):
        decay = torch.exp(-1.0 / torch.exp(readout.log_tau.detach().to(torch.float64)))  # k = exp(-1/τ_out)
        size = model.output_size
        nodes["readout_li"] = nir.LI(tau=_node_tau(decay, dt, discretization), r=np.ones(size),
                                     v_leak=np.zeros(size))
        edges.append(("readout_affine", "readout_li"))
        last = "readout_li"
    nodes["output"] = nir.Output(output_type={"output": np.array([model.output_size])})
    edges.append((last, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"fptt_dt": dt, "fptt_readout_from": model.readout_from,
                                                             "fptt_discretization": discretization})
    return graph


def _text(value: Any) -> Any:
    return value.decode("utf8") if isinstance(value, bytes) else value


def _number(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def _node(graph: Any, name: str, kind: str) -> Any:
    node = graph.nodes.get(name)
    if node is None or type(node).__name__ != kind:
        found = "missing" if node is None else type(node).__name__
        raise NIRImportError(f"node {name!r} should be a NIR {kind} ({found}); fptt imports the LIF/ALIF graphs that "
                             "fptt.interop.nir.to_nir writes (see docs/INTEROP.md)")
    return node


def _uniform(values: np.ndarray, what: str) -> float:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.allclose(values, values[0], rtol=0, atol=0):
        raise NIRImportError(f"{what} differs between neurons; fptt's layers have one value per layer")
    return float(values[0])


def from_nir(graph: Any) -> SpikingRNN:
    """Rebuild the :class:`~fptt.SpikingRNN` of a graph written by :func:`to_nir` (weights, time
    constants, thresholds, reset, adaptation and the options kept in metadata)."""
    metadata = {key: _text(value) for key, value in (graph.metadata or {}).items()}
    dt = _number(metadata.get("fptt_dt", 1.0))
    discretization = str(metadata.get("fptt_discretization", "zoh"))
    if discretization not in NIR_DISCRETIZATIONS:
        raise NIRImportError(f"unknown fptt_discretization {discretization!r}; expected one of {NIR_DISCRETIZATIONS}")
    readout_from = str(metadata.get("fptt_readout_from", "spikes"))
    layers: list[dict[str, Any]] = []
    while f"layer{len(layers)}_input" in graph.nodes:
        prefix = f"layer{len(layers)}"
        affine = _node(graph, f"{prefix}_input", "Affine")
        if f"{prefix}_lif" in graph.nodes:
            neuron = _node(graph, f"{prefix}_lif", "LIF")
            tau, threshold, reset = neuron.tau, neuron.v_threshold, "zero"
            if np.any(np.asarray(neuron.v_reset) != 0) or np.any(np.asarray(neuron.v_leak) != 0):
                raise NIRImportError(f"{prefix}_lif: fptt's LIF resets to 0 and leaks to 0 (v_reset = v_leak = 0)")
            resistance = neuron.r
        else:
            membrane = _node(graph, f"{prefix}_membrane", "LI")
            neuron = _node(graph, f"{prefix}_spikes", "Threshold")
            tau, threshold, reset, resistance = membrane.tau, neuron.threshold, "subtract", membrane.r
            if np.any(np.asarray(membrane.v_leak) != 0):
                raise NIRImportError(f"{prefix}_membrane: fptt's membrane leaks to 0 (v_leak = 0)")
        if np.any(np.asarray(resistance) != 1):
            raise NIRImportError(f"{prefix}: fptt's neurons have R = 1 (fold R into the input weights)")
        meta = {key: _text(value) for key, value in (neuron.metadata or {}).items()}
        recurrent = graph.nodes.get(f"{prefix}_recurrent")
        layers.append(dict(affine=affine, tau=np.asarray(tau, dtype=np.float64), reset=reset,
                           threshold=_uniform(threshold, f"{prefix}: the threshold"), meta=meta,
                           recurrent=None if recurrent is None else np.asarray(recurrent.weight, dtype=np.float64)))
    if not layers:
        raise NIRImportError("the graph has no node 'layer0_input': fptt imports the LIF/ALIF graphs that "
                             "fptt.interop.nir.to_nir writes (see docs/INTEROP.md)")
    readout_affine = _node(graph, "readout_affine", "Affine")
    readout = "fixed" if "readout_li" in graph.nodes else "linear"
    if len({layer["reset"] for layer in layers}) != 1 or len({layer["threshold"] for layer in layers}) != 1:
        raise NIRImportError("the layers differ in reset or threshold; fptt's SpikingRNN uses one setting for all")
    first = layers[0]["meta"]
    adaptive = str(first.get("fptt_neuron", "lif")) == "alif"
    neuron_options: dict[str, Any] = dict(reset=layers[0]["reset"], baseline_threshold=layers[0]["threshold"],
                                          initial_membrane=str(first.get("fptt_initial_membrane", "zero")), dt=dt,
                                          recurrent=all(layer["recurrent"] is not None for layer in layers)
                                          or layers[0]["reset"] == "subtract")
    if adaptive:
        neuron_options["adaptation_strength"] = _number(first["fptt_adaptation_strength"])
    sizes = [int(layer["affine"].weight.shape[0]) for layer in layers]
    input_size = int(layers[0]["affine"].weight.shape[1])
    output_size = int(readout_affine.weight.shape[0])
    model = SpikingRNN(input_size, sizes, output_size, neuron="alif" if adaptive else "lif", readout=readout,
                       readout_from=readout_from, **neuron_options).to(torch.float64)
    with torch.no_grad():
        for layer, saved in zip(model.layers, layers):
            layer.input_weight.weight.copy_(torch.from_numpy(np.asarray(saved["affine"].weight, dtype=np.float64)))
            layer.input_weight.bias.copy_(torch.from_numpy(np.asarray(saved["affine"].bias, dtype=np.float64)))
            decay = _node_decay(saved["tau"], dt, discretization)
            layer.tau_membrane.copy_(-dt / torch.log(decay))  # α = exp(-dt / τ_m)
            if layer.recurrent_weight is not None:
                weight = torch.from_numpy(saved["recurrent"])
                if saved["reset"] == "subtract":  # undo the folded reset: W_r = W' + diag(b_0 dt / (1 - α))
                    weight = weight + torch.diag(saved["threshold"] * dt / (1.0 - decay))
                layer.recurrent_weight.weight.copy_(weight)
            if adaptive:
                layer.tau_adaptation.copy_(torch.from_numpy(np.asarray(saved["meta"]["fptt_tau_adaptation"],
                                                                       dtype=np.float64)))
        model.readout.weight.weight.copy_(torch.from_numpy(np.asarray(readout_affine.weight, dtype=np.float64)))
        model.readout.weight.bias.copy_(torch.from_numpy(np.asarray(readout_affine.bias, dtype=np.float64)))
        if readout == "fixed":
            decay = _node_decay(_node(graph, "readout_li", "LI").tau, dt, discretization)
            model.readout.log_tau.copy_(torch.log(-1.0 / torch.log(decay)))  # k = exp(-1/τ_out)
    return model


def write_nir(model: nn.Module, path: str | Path, discretization: str = "zoh") -> Path:
    """Export ``model`` with :func:`to_nir` and write it with ``nir.write`` (HDF5) to ``path``."""
    nir = _nir()
    graph = to_nir(model, discretization)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


def read_nir(path: str | Path) -> SpikingRNN:
    """Read a NIR file (``nir.read``) and rebuild the model with :func:`from_nir` (float64)."""
    nir = _nir()
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file not found: {path}")
    return from_nir(nir.read(str(path)))

