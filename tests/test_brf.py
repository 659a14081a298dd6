"""The balanced resonate-and-fire neuron (THEORY.md §2.8): its step against the complex-number
equations, its gradients, the divergence boundary, the layer, the configuration and training."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fptt import FPTT, SpikingRNN, evaluate, train_epoch
from fptt.models.state import state_tensors
from fptt.neurons import BRF, BRFParameters, NeuronState, brf_divergence_boundary, brf_step
from fptt.neurons.surrogate import get_surrogate
from fptt.run.build import build_model, build_optimizer, cell_options
from fptt.run.config import ConfigError, resolve_config
from fptt.training.streaming import OnlineLearner
from fptt.training.traces.learner import check_trace_model

D = torch.float64
DT, THETA, GAMMA = 0.01, 1.0, 0.9


def reference_step(current, u, v, q, omega_hat, b_hat, *, dt=DT, theta=THETA, gamma=GAMMA):
    """The paper's update written with complex numbers: u + i v ← (u + i v) + δ((b + iω)(u + i v) + I)."""
    omega, offset = omega_hat.abs(), b_hat.abs()
    boundary = (-1.0 + torch.sqrt(1.0 - (dt * omega) ** 2)) / dt
    damping = boundary - offset - q
    z = torch.complex(u, v)
    z = z + dt * (torch.complex(damping, omega.expand_as(damping)) * z + current)
    spikes = (z.real - theta - q > 0).to(u.dtype)
    return z.real, z.imag, gamma * q + spikes, spikes


def random_case(batch=4, hidden=6, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape, low=0.0, high=1.0):
        return torch.rand(*shape, generator=generator, dtype=D) * (high - low) + low

    omega_hat = uniform(hidden, low=15.0, high=50.0) * torch.where(uniform(hidden) > 0.5, 1.0, -1.0)
    b_hat = uniform(hidden, low=0.1, high=1.0) * torch.where(uniform(hidden) > 0.5, 1.0, -1.0)
    state = NeuronState(uniform(batch, hidden, low=-1, high=1), uniform(batch, hidden), torch.zeros(batch, hidden, dtype=D),
                        uniform(batch, hidden, low=-1, high=1))
    currents = [uniform(batch, hidden, low=-100.0, high=300.0) for _ in range(8)]
    return currents, state, BRFParameters(omega_hat, b_hat)


# --------------------------------------------------------------------------- the step


def test_brf_step_matches_the_complex_number_equations_over_several_steps():
    currents, state, params = random_case()
    spike_fn = get_surrogate("multi_gaussian")
    u, v, q = state.membrane, state.oscillation, state.adaptation
    seen = []
    for t, current in enumerate(currents):
        spikes, state = brf_step(current, state, params, spike_fn)
        u, v, q, expected = reference_step(current, u, v, q, params.omega, params.b_offset)
        torch.testing.assert_close(spikes, expected, rtol=0, atol=0, msg=f"spikes at step {t}")
        torch.testing.assert_close(state.spikes, expected, rtol=0, atol=0)
        torch.testing.assert_close(state.membrane, u, rtol=0, atol=1e-12, msg=f"u at step {t}")
        torch.testing.assert_close(state.oscillation, v, rtol=0, atol=1e-12, msg=f"v at step {t}")
        torch.testing.assert_close(state.adaptation, q, rtol=0, atol=1e-12, msg=f"q at step {t}")
        seen.append(float(spikes.mean()))
    assert 0 < sum(seen) / len(seen) < 1, "the case has spiking and silent neurons"


def test_brf_step_never_mutates_its_inputs_and_needs_the_oscillation():
    currents, state, params = random_case(seed=1)
    before = [t.clone() for t in (currents[0], *state_tensors(state), *params)]
    brf_step(currents[0], state, params, get_surrogate())
    for tensor, kept in zip((currents[0], *state_tensors(state), *params), before):
        assert torch.equal(tensor, kept)
    with pytest.raises(ValueError, match="oscillation"):
        brf_step(currents[0], NeuronState(state.membrane, state.adaptation, state.spikes), params, get_surrogate())
    with pytest.raises(ValueError, match="dt"):
        brf_step(currents[0], state, params, get_surrogate(), dt=0.0)
    with pytest.raises(ValueError, match="refractory_decay"):
        brf_step(currents[0], state, params, get_surrogate(), refractory_decay=1.0)


def test_brf_step_gradients_match_finite_differences_through_three_steps():
    currents, state, params = random_case(batch=2, hidden=3, seed=2)
    inputs = [currents[0] / 100.0, state.membrane + 1.0, state.oscillation, state.adaptation, params.omega,
              params.b_offset]
    inputs = [tensor.clone().requires_grad_(True) for tensor in inputs]

    def smooth(x):  # a smooth spike function: the check is about the oscillator and refractory algebra
        return torch.sigmoid(4.0 * x)

    def unrolled(current, u, v, q, omega_hat, b_hat):
        step_state = NeuronState(u, q, torch.zeros_like(u), v)
        for scale in (100.0, -50.0, 200.0):  # q feeds back into b_t and the threshold from step 2 on
            _, step_state = brf_step(scale * current, step_state, BRFParameters(omega_hat, b_hat), smooth)
        return step_state.membrane, step_state.oscillation, step_state.adaptation, step_state.spikes

    assert torch.autograd.gradcheck(unrolled, inputs, eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- the divergence boundary


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dt", [0.01, 0.004])
def test_the_divergence_boundary_puts_the_free_oscillation_on_the_unit_circle(dtype, dt):
    omega = torch.linspace(0.0, 0.995 / dt, 500, dtype=dtype)
    boundary = brf_divergence_boundary(omega, dt)
    eigenvalue = 1.0 + dt * torch.complex(boundary, omega)  # of (u, v) ← (u, v) + δ((p + iω)(u + iv))
    assert float((eigenvalue.abs() - 1.0).abs().max()) < 1e-6
    for offset in (1e-3, 0.1, 1.0, 10.0):  # b_off > 0 damps: strictly inside the unit circle
        damped = 1.0 + dt * torch.complex(boundary - offset, omega)
        assert bool((damped.abs() < 1.0).all())


def test_on_the_boundary_the_neurons_free_oscillation_keeps_its_amplitude_and_a_damped_one_decays():
    hidden = 5
    omega_hat = torch.linspace(15.0, 95.0, hidden, dtype=D)
    free = BRFParameters(omega_hat, torch.zeros(hidden, dtype=D))
    damped = BRFParameters(omega_hat, torch.full((hidden,), 0.5, dtype=D))
    start = NeuronState(torch.ones(1, hidden, dtype=D), torch.zeros(1, hidden, dtype=D),
                        torch.zeros(1, hidden, dtype=D), torch.zeros(1, hidden, dtype=D))
    zero = torch.zeros(1, hidden, dtype=D)
    free_state, damped_state = start, start
    for _ in range(1000):  # θ out of reach: no spike, no refractory term
        _, free_state = brf_step(zero, free_state, free, get_surrogate(), baseline_threshold=1e9)
        _, damped_state = brf_step(zero, damped_state, damped, get_surrogate(), baseline_threshold=1e9)
    amplitude = torch.complex(free_state.membrane, free_state.oscillation).abs()
    torch.testing.assert_close(amplitude, torch.ones_like(amplitude), rtol=0, atol=1e-6)
    assert float(free_state.membrane.std()) > 0.1, "it did oscillate"
    damped_amplitude = torch.complex(damped_state.membrane, damped_state.oscillation).abs()
    eigenvalue = 1.0 + 0.01 * torch.complex(brf_divergence_boundary(omega_hat, 0.01) - 0.5, omega_hat)
    torch.testing.assert_close(damped_amplitude[0], eigenvalue.abs() ** 1000, rtol=1e-9, atol=0)
    assert bool((damped_amplitude < 0.25).all())  # the damping weakens as δω → 1: √(1 − (δω)²) → 0


def test_a_frequency_beyond_one_over_dt_gives_a_finite_boundary_and_gradient_not_nan():
    omega = torch.tensor([50.0, 100.0, 150.0], dtype=D, requires_grad=True)
    boundary = brf_divergence_boundary(omega, 0.01)
    assert bool(torch.isfinite(boundary).all())
    torch.testing.assert_close(boundary[1:], torch.full((2,), -100.0, dtype=D), rtol=0, atol=1e-5)  # ≈ −1/δ
    (grad,) = torch.autograd.grad(boundary.sum(), omega)
    assert bool(torch.isfinite(grad).all()) and float(grad[0]) < 0 and float(grad[2]) == 0.0


# --------------------------------------------------------------------------- the layer


def test_the_layer_draws_its_parameters_in_the_given_ranges_and_starts_at_rest():
    torch.manual_seed(0)
    cell = BRF(3, 400)
    assert float(cell.omega.detach().min()) >= 15.0 and float(cell.omega.detach().max()) <= 50.0
    assert float(cell.b_offset.detach().min()) >= 0.1 and float(cell.b_offset.detach().max()) <= 1.0
    assert (cell.dt, cell.baseline_threshold, cell.refractory_decay) == (0.01, 1.0, 0.9)
    assert {name for name, _ in cell.named_parameters()} >= {"omega", "b_offset"}
    other = BRF(3, 400, omega_init=(2.0, 3.0), b_offset_init=(0.0, 0.01), dt=0.2, baseline_threshold=0.5)
    assert float(other.omega.detach().min()) >= 2.0 and float(other.omega.detach().max()) <= 3.0
    assert float(other.b_offset.detach().max()) <= 0.01 and other.baseline_threshold == 0.5
    state = cell.init_state(2, dtype=D)
    assert [name for name in state._fields] == ["membrane", "adaptation", "spikes", "oscillation"]
    assert all(t.shape == (2, 400) and t.dtype == D and not t.any() for t in state_tensors(state))
    assert len(list(state_tensors(state))) == 4
    assert len({t.data_ptr() for t in state_tensors(state)}) == 4, "four tensors, not one aliased four times"


@pytest.mark.parametrize("options, match", [
    (dict(omega_init=(50.0, 15.0)), "LO < HI"),
    (dict(omega_init=(0.0, 15.0)), "positive"),
    (dict(omega_init=(15.0, 100.0)), r"1/dt = 100"),
    (dict(omega_init=(1.0, 30.0), dt=0.05), r"1/dt = 20"),
    (dict(b_offset_init=(-0.1, 1.0)), "non-negative"),
    (dict(b_offset_init=(1.0,)), "two finite numbers"),
    (dict(dt=0.0), "Euler step"),
    (dict(refractory_decay=1.0), "refractory_decay"),
    (dict(reset="zero"), "no reset option"),
    (dict(adaptation_strength=1.8), "no adaptation strength"),
    (dict(initial_membrane="random"), "starts at rest"),
])
def test_the_layer_refuses_bad_options_with_clear_errors(options, match):
    with pytest.raises(ValueError, match=match):
        BRF(3, 4, **options)


def test_a_brf_network_trains_in_float64_and_every_parameter_gets_a_gradient():
    torch.manual_seed(3)
    model = SpikingRNN(3, [6, 5], 2, neuron="brf").double()
    with torch.no_grad():  # strong enough input that both layers spike within 30 steps
        for layer in model.layers:
            layer.input_weight.weight.mul_(300.0)
    x = torch.rand(4, 30, 3, dtype=D)
    outputs, final = model.unroll(x)
    rates = []
    state = model.init_state(4)
    with torch.no_grad():
        for t in range(30):
            _, state = model.step(x[:, t], state)
            rates.append(torch.stack(SpikingRNN.firing_rates(state)))
    assert (torch.stack(rates).mean(0) > 0).all()
    (outputs.pow(2).mean() + outputs[:, -1].sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        assert bool(torch.isfinite(parameter.grad).all()), name


# --------------------------------------------------------------------------- configuration


def _config(**values):
    return resolve_config({}, {"task": "mnist1d", "neuron": "brf", "hidden_sizes": [8], **values})


def test_the_configuration_builds_a_brf_network_with_its_options():
    config = _config(omega_init=[20, 30], b_offset_init=[0.0, 0.5])
    assert cell_options(config)["omega_init"] == (20.0, 30.0)
    assert "baseline_threshold" not in cell_options(config) and "initial_membrane" not in cell_options(config)
    torch.manual_seed(0)
    model = build_model(config, 1, 10)
    assert isinstance(model, SpikingRNN) and all(isinstance(layer, BRF) for layer in model.layers)
    layer = model.layers[0]
    assert float(layer.omega.detach().min()) >= 20.0 and float(layer.omega.detach().max()) <= 30.0
    assert float(layer.b_offset.detach().max()) <= 0.5 and layer.baseline_threshold == 1.0
    default = build_model(_config(), 1, 10).layers[0]
    assert float(default.omega.detach().min()) >= 15.0 and float(default.omega.detach().max()) <= 50.0


@pytest.mark.parametrize("values, match", [
    (dict(omega_init=[50, 15]), "omega_init must be LO HI with LO < HI"),
    (dict(omega_init=[15, 120]), r"omega_init: .*1/dt = 100"),
    (dict(b_offset_init=[-1, 1]), "b_offset_init must be non-negative"),
    (dict(baseline_threshold=0.5), "baseline_threshold is not an option of the BRF neuron"),
    (dict(adaptation_strength=0.0), "adaptation_strength is not an option of the BRF neuron"),
    (dict(tau_membrane_init=[3, 1]), "tau_membrane_init sets the fixed-but-learnable time constants"),
    (dict(gate_slopes=True), "gate_slopes is an option of the LTC neuron, not of brf"),
    (dict(method="eprop"), "method eprop needs ALIF or LIF layers.*brf"),
    (dict(method="ostl"), "method ostl needs ALIF or LIF layers.*brf"),
])
def test_bad_brf_configurations_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        _config(**values)


@pytest.mark.parametrize("neuron", ["ltc", "alif", "lif"])
def test_other_neurons_refuse_the_brf_options(neuron):
    with pytest.raises(ConfigError, match=f"omega_init sets the initial parameters of the BRF neuron, not of {neuron}"):
        resolve_config({}, {"task": "mnist1d", "neuron": neuron, "omega_init": [15, 50]})
    with pytest.raises(ConfigError, match="b_offset_init sets the initial parameters of the BRF neuron"):
        resolve_config({}, {"task": "mnist1d", "neuron": neuron, "b_offset_init": [0.1, 1]})


def test_eprop_refuses_a_brf_network_built_by_hand():
    model = SpikingRNN(3, 8, 2, neuron="brf", readout="fixed")
    with pytest.raises(ValueError, match="method eprop needs ALIF or LIF layers.*brf.*eligibility traces"):
        check_trace_model(model, "eprop")


def test_nir_export_refuses_a_brf_network():
    pytest.importorskip("nir")
    from fptt.interop.nir import NIRExportError, to_nir

    with pytest.raises(NIRExportError, match="BRF network has no NIR encoding"):
        to_nir(SpikingRNN(3, 8, 2, neuron="brf", readout="fixed"))


# --------------------------------------------------------------------------- training


def _batch(seed=0, batch=6, steps=20):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, steps, 1, generator=generator) * 4, torch.randint(0, 10, (batch,), generator=generator)


@pytest.mark.parametrize("method", ["fptt", "bptt"])
def test_a_few_updates_change_the_loss_and_keep_everything_finite(method):
    torch.set_num_threads(1)
    config = _config(method=method, lr=0.01, fused=False)
    torch.manual_seed(0)
    model = build_model(config, 1, 10)
    optimizer = build_optimizer(config, model)
    assert isinstance(optimizer, FPTT) == (method == "fptt")
    batches = [_batch(seed) for seed in range(3)]
    before = evaluate(model, batches[:1]).loss
    omega = model.layers[0].omega.detach().clone()
    metrics = train_epoch(model, batches, optimizer, method=method, k=5 if method == "fptt" else None)
    assert metrics.updates == (12 if method == "fptt" else 3)
    after = evaluate(model, batches[:1]).loss
    assert after != before and torch.isfinite(torch.tensor([before, after])).all()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert not torch.equal(model.layers[0].omega, omega), "ω is learned"


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # as tests/test_captured.py: the loss weights too
    yield
    torch.set_default_dtype(previous)


@pytest.mark.slow
def test_the_captured_update_trains_a_brf_network_as_the_eager_one_does(float64):
    import copy

    from fptt.training.captured import captured_update_for

    torch.manual_seed(0)
    model = SpikingRNN(3, 12, 5, neuron="brf", readout="fixed").double()
    with torch.no_grad():
        model.layers[0].input_weight.weight.mul_(300.0)
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.rand(4, 10, 3, generator=generator, dtype=D), torch.randint(0, 5, (4,), generator=generator))
               for _ in range(3)]
    eager_optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), fused=False)
    captured_optimizer = FPTT(torch.optim.Adam(twin.parameters(), lr=1e-2), fused=False)
    eager = train_epoch(model, batches, eager_optimizer, method="fptt", k=2)
    captured = train_epoch(twin, batches, captured_optimizer, method="fptt", k=2, capture=True)
    assert captured_update_for(twin, captured_optimizer, True, "fptt").failed is None  # it really ran captured
    assert eager.firing_rate and captured.loss == pytest.approx(eager.loss, rel=1e-10)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(b.detach(), a.detach(), rtol=0, atol=1e-10)


def _streams(steps: int, streams: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(steps, streams, 2, generator=generator) * 200, torch.randint(0, 4, (steps, streams),
                                                                                    generator=generator)


def _learner(seed: int = 0) -> OnlineLearner:
    torch.manual_seed(seed)
    model = SpikingRNN(2, 12, 4, neuron="brf")
    optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), fused=False)
    return OnlineLearner(model, optimizer, loss="cross_entropy", k=1, batch_size=3, history=50)


def test_reset_streams_restarts_only_the_masked_streams_of_every_brf_state_field():
    learner = _learner()
    xs, ys = _streams(20)
    for t in range(20):
        learner.observe(xs[t], ys[t])
    before = learner.state.layers[0]
    assert before.oscillation is not None and before.oscillation.abs().sum() > 0
    learner.reset_streams(torch.tensor([False, True, False]))
    after = learner.state.layers[0]
    assert isinstance(after, NeuronState) and after.oscillation is not None
    for old, new in zip(state_tensors(before), state_tensors(after)):
        assert torch.equal(new[0], old[0]) and torch.equal(new[2], old[2])
        assert not new[1].any()  # at rest


def test_a_brf_learner_state_round_trip_continues_identically():
    xs, ys = _streams(40)
    reference = _learner(seed=3)
    for t in range(40):
        expected = reference.observe(xs[t], ys[t])
    first = _learner(seed=3)
    for t in range(20):
        first.observe(xs[t], ys[t])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = _learner(seed=99)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(resumed.state.layers[0].oscillation, first.state.layers[0].oscillation, rtol=0, atol=0)
    for t in range(20, 40):
        output = resumed.observe(xs[t], ys[t])
    assert torch.equal(output, expected)


# --------------------------------------------------------------------------- the command line


def _fptt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    source = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "fptt.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_fptt_train_neuron_brf_runs_through_the_cli_and_resumes(tmp_path):
    pytest.importorskip("mnist1d")
    run = tmp_path / "brf"
    done = _fptt("train", "--task", "mnist1d", "--neuron", "brf", "--hidden", "16", "--epochs", "1", "--max-batches",
                 "3", "--max-eval-batches", "1", "--validation-samples", "50", "--threads", "1", "--quiet", "--no-plots",
                 "--omega-init", "20", "40", "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["network"]["neuron"] == "brf" and config["network"]["omega_init"] == [20.0, 40.0]
    checkpoint = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert {"layers.0.omega", "layers.0.b_offset"} <= set(checkpoint["model"])
    resumed = _fptt("train", "--resume", str(run), "--epochs", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["train"]["batches"] == 3 for row in rows)
    refused = _fptt("train", "--task", "mnist1d", "--neuron", "brf", "--omega-init", "15", "120", "--quiet")
    assert refused.returncode == 2 and "1/dt = 100" in refused.stderr
