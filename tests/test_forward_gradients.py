"""e-prop and OSTL (fptt.training.traces.eligibility, fptt.training.traces.learner): exact where the papers' derivations
are exact, traces equal to an independent autograd Jacobian, memory flat in T, errors a user can act on."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fptt.memory import SavedTensorMeter, per_update
from fptt.models import SpikingRNN
from fptt.run.config import ConfigError, TrainConfig
from fptt.training.engine import train_epoch
from fptt.training.traces.eligibility import SpikingLayerTraces
from fptt.training.traces.learner import TraceLearner

B, I, T, O = 4, 3, 15, 2


def _network(neuron="alif", readout="fixed", reset=None, hidden=(6,), zero_recurrent=True, seed=1):
    torch.manual_seed(seed)
    options = {} if reset is None else {"reset": reset}
    model = SpikingRNN(I, list(hidden), O, neuron=neuron, readout=readout, **options).double()
    if zero_recurrent:
        for layer in model.layers:
            torch.nn.init.zeros_(layer.recurrent_weight.weight)
    return model


def _data(seed=2):
    generator = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(B, T, I, generator=generator, dtype=torch.float64)
    y = torch.randint(0, O, (B,), generator=generator)
    return x, y


def _weight(t):
    return (t + 1) / T  # the engine's default "linear" weighting


def _bptt_gradients(model, x, y):
    parameters = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(5)
    outputs, _ = model.unroll(x, model.init_state(B, dtype=torch.float64))
    loss = sum(_weight(t) * F.cross_entropy(outputs[:, t], y) for t in range(T)) / T
    return dict(zip(parameters, torch.autograd.grad(loss, parameters)))


def _trace_gradients(model, x, y, method, feedback="symmetric"):
    parameters = [p for p in model.parameters() if p.requires_grad]
    learner = TraceLearner(model, method, feedback=feedback)
    learner.start(B, torch.device("cpu"), torch.float64)
    torch.manual_seed(5)
    state = model.init_state(B, dtype=torch.float64)
    spikes = 0.0
    for t in range(T):
        output, state = learner.step(x[:, t], state)
        spikes += float(state.layers[0].spikes.sum())
        learner.accumulate(_weight(t) * F.cross_entropy(output, y))
    learner.write(parameters, T)
    assert spikes > 0, "the test network must spike, or the surrogate paths are not exercised"
    return {p: p.grad.clone() for p in parameters}


def _max_relative_error(model, ours, reference):
    names = {p: name for name, p in model.named_parameters()}
    return {names[p]: float((ours[p] - g).abs().max() / g.abs().max().clamp_min(1e-300)) for p, g in reference.items()}


@pytest.mark.parametrize("neuron", ["alif", "lif"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("readout", ["fixed", "linear"])
def test_eprop_equals_bptt_when_no_recurrent_weight_is_in_the_learning_signal_path(neuron, reset, readout):
    # W_r = 0: the only paths e-prop drops (through W_r s_{t-1}) carry nothing; the readout's leak
    # is handled exactly by filtering the traces with the readout's decays k_o (Bellec's F_κ)
    model = _network(neuron, readout, reset)
    x, y = _data()
    reference = _bptt_gradients(model, x, y)
    errors = _max_relative_error(model, _trace_gradients(model, x, y, "eprop"), reference)
    assert max(errors.values()) < 1e-12, errors


def test_eprop_is_exact_with_another_time_step_and_without_recurrent_synapses():
    torch.manual_seed(1)
    model = SpikingRNN(I, [6], O, neuron="alif", readout="fixed", dt=0.5, tau_membrane_init=(4.0, 1.0),
                       tau_adaptation_init=(20.0, 5.0)).double()
    torch.nn.init.zeros_(model.layers[0].recurrent_weight.weight)
    x, y = _data()
    errors = _max_relative_error(model, _trace_gradients(model, x, y, "eprop"), _bptt_gradients(model, x, y))
    assert max(errors.values()) < 1e-12, errors
    model = SpikingRNN(I, [6], O, neuron="alif", readout="linear", recurrent=False).double()
    errors = _max_relative_error(model, _trace_gradients(model, x, y, "ostl"), _bptt_gradients(model, x, y))
    assert max(errors.values()) < 1e-12, errors


def test_ostl_equals_bptt_for_one_layer_with_a_linear_readout():
    model = _network("alif", "linear")
    x, y = _data()
    errors = _max_relative_error(model, _trace_gradients(model, x, y, "ostl"), _bptt_gradients(model, x, y))
    assert max(errors.values()) < 1e-12, errors


def test_approximations_differ_from_bptt_where_the_papers_say_they_do():
    x, y = _data()
    # e-prop with recurrent weights: the learning signal ignores W_r's paths
    model = _network("alif", "fixed", zero_recurrent=False)
    errors = _max_relative_error(model, _trace_gradients(model, x, y, "eprop"), _bptt_gradients(model, x, y))
    assert errors["layers.0.input_weight.weight"] > 1e-3
    assert errors["readout.weight.weight"] < 1e-12  # the readout's own gradient stays exact
    # OSTL, two layers: the last layer is exact (the spatial path), the first is not (cross-layer
    # temporal terms dropped, the paper's approximation for deep networks)
    model = _network("alif", "linear", hidden=(6, 5))
    errors = _max_relative_error(model, _trace_gradients(model, x, y, "ostl"), _bptt_gradients(model, x, y))
    assert errors["layers.1.input_weight.weight"] < 1e-12 and errors["layers.1.tau_adaptation"] < 1e-12
    assert errors["layers.0.input_weight.weight"] > 1e-3
    # random feedback: not the gradient, but deterministic in its seed
    model = _network("alif", "fixed")
    first = _trace_gradients(model, x, y, "eprop", feedback="random")
    second = _trace_gradients(model, x, y, "eprop", feedback="random")
    weight = model.layers[0].input_weight.weight
    assert torch.equal(first[weight], second[weight])
    assert not torch.allclose(first[weight], _bptt_gradients(model, x, y)[weight])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_traces_equal_the_jacobian_of_each_neuron_own_dynamics_computed_by_autograd(reset):
    # reference: unroll with the recurrent input detached (only the neuron's own paths remain) and
    # take d u_{b,j,t} / d W[j, :] and d b_{b,j,t} / d W[j, :] row by row with autograd; the traces
    # must equal it at every step, with W_r != 0
    torch.manual_seed(3)
    model = SpikingRNN(I, [4], O, neuron="alif", readout="fixed", reset=reset).double()
    layer = model.layers[0]
    x, _ = _data()
    batch = 2
    state = layer.init_state(batch, dtype=torch.float64)
    traces = SpikingLayerTraces(layer, batch, torch.device("cpu"), torch.float64)
    weights = [layer.input_weight.weight, layer.input_weight.bias, layer.recurrent_weight.weight]
    graph_state = state
    for t in range(8):
        inputs = x[:batch, t]
        with torch.no_grad():
            presynaptic = traces.presynaptic(inputs, state)
            current = layer.input_current(inputs, state.spikes)
            _, new = layer.dynamics(current, state)
            traces.step(presynaptic, current, state, new)
            state = new
        detached_spikes = graph_state.spikes.detach()
        graph_current = layer.input_current(inputs, detached_spikes)
        _, graph_state = layer.dynamics(graph_current, graph_state)
        torch.testing.assert_close(graph_state.membrane, state.membrane, rtol=0, atol=1e-12)
        for b in range(batch):
            for j in range(layer.hidden_size):
                for which, trace in (("membrane", traces.membrane), ("adaptation", traces.adaptation)):
                    value = getattr(graph_state, which)[b, j]
                    grads = torch.autograd.grad(value, weights, retain_graph=True, allow_unused=True)
                    row = torch.cat([torch.zeros(I) if grads[0] is None else grads[0][j],
                                     torch.zeros(1) if grads[1] is None else grads[1][j].reshape(1),
                                     torch.zeros(4) if grads[2] is None else grads[2][j]]).double()
                    torch.testing.assert_close(trace[b, j], row, rtol=1e-10, atol=1e-12)


def _engine_run(model, method, seq_len, k=None, meter=None):
    torch.manual_seed(7)
    x = torch.randn(8, seq_len, I, dtype=torch.float64)
    y = torch.randint(0, O, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    if meter is None:
        return train_epoch(model, [(x, y)], optimizer, method=method, k=k)
    with per_update(optimizer, meter):  # meter.peak: the largest graph one update kept
        return train_epoch(model, [(x, y)], optimizer, method=method, k=k)


def test_an_eprop_update_per_sequence_through_the_engine_equals_a_bptt_update():
    model = _network("alif", "fixed")
    twin = copy.deepcopy(model)
    _engine_run(model, "eprop", 12, k=12)
    _engine_run(twin, "bptt", 12)
    for (name, ours), theirs in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("method", ["eprop", "ostl"])
def test_memory_is_flat_in_the_sequence_length(method):
    used = []
    for seq_len in (10, 80):
        model = _network("alif", "fixed", zero_recurrent=False)
        meter = SavedTensorMeter()
        metrics = _engine_run(model, method, seq_len, meter=meter)
        assert metrics.updates == seq_len  # k = 1: an update per step
        used.append((metrics.extra["trace_bytes"], meter.peak))
    (traces_short, saved_short), (traces_long, saved_long) = used
    assert traces_short == traces_long > 0
    # autograd keeps only the loss of one step (for δ_t), never the unrolled network
    assert saved_long == saved_short < 1024
    bptt = SavedTensorMeter()
    _engine_run(_network("alif", "fixed", zero_recurrent=False), "bptt", 80, meter=bptt)
    assert bptt.peak > 100 * saved_long  # what BPTT keeps for the same 80 steps


def test_eprop_and_ostl_refuse_models_they_have_no_derivation_for():
    with pytest.raises(ValueError, match="ALIF or LIF.*fptt, bptt, tbptt, online"):
        TraceLearner(SpikingRNN(I, [4], O, neuron="ltc", readout="fixed"), "eprop")
    with pytest.raises(ValueError, match="readout 'fixed' or 'linear'"):
        TraceLearner(SpikingRNN(I, [4], O, neuron="alif"), "ostl")
    with pytest.raises(ValueError, match="use method 'ostl'"):
        TraceLearner(SpikingRNN(I, [4, 4], O, neuron="alif", readout="fixed"), "eprop")
    with pytest.raises(ValueError, match="norm='none'"):
        TraceLearner(SpikingRNN(I, [4], O, neuron="alif", readout="fixed", norm="layer"), "eprop")
    with pytest.raises(ValueError, match="feedback='random' is e-prop's"):
        TraceLearner(SpikingRNN(I, [4], O, neuron="alif", readout="fixed"), "ostl", feedback="random")
    model = SpikingRNN(I, [4], O, neuron="alif", readout="fixed")
    learner = TraceLearner(model, "eprop")
    with pytest.raises(RuntimeError, match="start"):
        learner.step(torch.zeros(2, I), model.init_state(2))
    learner.start(2, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="batch size"):
        learner.step(torch.zeros(3, I), model.init_state(3))
    model.readout.log_tau.requires_grad_(False)
    model.register_parameter("extra", torch.nn.Parameter(torch.zeros(1)))
    with pytest.raises(ValueError, match="no gradient rule for parameter.*extra"):
        TraceLearner(model, "eprop")


def test_the_configuration_names_the_methods_an_ltc_model_can_use():
    with pytest.raises(ConfigError, match="ltc model trains with fptt, bptt, tbptt, online"):
        TrainConfig.from_dict(dict(task="add", model="ltc", method="eprop"))
    with pytest.raises(ConfigError, match="--readout fixed or linear"):
        TrainConfig.from_dict(dict(task="add", model="alif", method="ostl", readout="liquid"))
    TrainConfig.from_dict(dict(task="add", model="alif", method="eprop", readout="fixed", feedback="random"))


def test_fptt_train_runs_eprop_from_the_command_line(tmp_path):
    from fptt.cli import main

    run_dir = tmp_path / "run"
    flags = ["train", "--task", "add", "--seq-len", "20", "--model", "alif", "--readout", "fixed", "--readout-from", "spikes",
             "--adaptation",
             "1.8", "--no-fixed-threshold", "--chrono-tau", "none", "--synapse-init", "xavier", "--method", "eprop",
             "--hidden", "8", "--batch-size", "4", "--max-batches", "2", "--test-samples", "8", "--quiet",
             "--no-plots", "--run-dir", str(run_dir)]
    assert main(flags) in (0, None)
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "eprop" and summary["trace_bytes"] > 0
    assert summary["last"]["train"]["updates"] == 2 * 10  # the adding task's 10 update points per sequence


def test_eprop_requirements_replace_conflicting_task_defaults_but_never_explicit_values(monkeypatch):
    """The membrane readout of a task's defaults gives way to e-prop's requirement (the user never
    chose it); the same value given as a flag or in a config file is refused."""
    from fptt.run import config as config_module
    from fptt.run.config import ConfigError, resolve_config

    task_values = config_module.task_values
    monkeypatch.setattr(config_module, "task_values", lambda task, neuron=None: {
        **task_values(task, neuron), "readout": "liquid", "readout_from": "membrane", "norm": "layer"})
    config = resolve_config({}, {"task": "add", "model": "alif", "method": "eprop"})
    assert (config.readout, config.readout_from, config.norm) == ("fixed", "spikes", "none")
    kept = resolve_config({}, {"task": "add", "model": "alif", "method": "ostl", "readout": "linear"})
    assert kept.readout == "linear"
    with pytest.raises(ConfigError, match="readout_from='spikes'"):
        resolve_config({}, {"task": "add", "model": "alif", "method": "eprop", "readout_from": "membrane"})
    with pytest.raises(ConfigError, match="norm='none'"):
        resolve_config({"norm": "layer"}, {"task": "add", "model": "alif", "method": "eprop"})


def test_add_task_with_alif_and_eprop_resolves_without_readout_flags():
    from fptt.run.config import resolve_config

    config = resolve_config({}, {"task": "add", "model": "alif", "method": "eprop"})
    assert config.readout_from == "spikes" and config.readout in ("fixed", "linear")
