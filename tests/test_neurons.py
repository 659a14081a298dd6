"""Pinning tests for the spiking neurons and readouts against the literal SPEC §2 reference."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fptt.models.state import state_tensors
from fptt.neurons import (
    ALIF,
    BRF,
    LIF,
    LTC,
    NEURON_CLASSES,
    READOUT_CLASSES,
    ALIFParameters,
    FixedReadout,
    LinearReadout,
    LiquidReadout,
    LTCParameters,
    NeuronState,
    alif_step,
    fixed_readout_step,
    get_neuron,
    get_readout,
    lif_step,
    liquid_readout_step,
    ltc_step,
)
from fptt.neurons import cells as cells_module
from fptt.neurons.surrogate import get_surrogate
from tests.reference import neurons_reference as ref

BATCH, INPUT, HIDDEN, STEPS = 2, 3, 4, 20
TOLERANCE = 1e-6
SURROGATE_NAMES = ["multi_gaussian", "fast_sigmoid", "arctan", "triangle"]


# --------------------------------------------------------------------------- helpers


def make_cell(neuron: str, *, reset: str, adaptation_strength: float, initial_membrane: str,
              recurrent: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    options = dict(reset=reset, initial_membrane=initial_membrane, recurrent=recurrent, norm="none")
    if neuron != "lif":
        options["adaptation_strength"] = adaptation_strength
    cell = get_neuron(neuron)(INPUT, HIDDEN, **options).double()
    with torch.no_grad():
        # a non-zero input bias, so that c_x is really exercised
        cell.input_weight.bias.uniform_(-0.3, 0.3)
        if isinstance(cell, LTC):
            cell.membrane_rate.bias.uniform_(-0.5, 0.5)
            cell.adaptation_rate.bias.uniform_(-0.5, 0.5)
        else:
            # short time constants so that 20 steps show membrane and adaptation dynamics
            cell.tau_membrane.uniform_(2.0, 6.0)
            cell.tau_adaptation.uniform_(3.0, 12.0)
    return cell


def reference_step(cell, x, u, b, s):
    """One step of the literal SPEC reference for ``cell`` (lists in, lists out)."""
    recurrent = cell.recurrent_weight.weight.tolist() if cell.recurrent_weight is not None else None
    d = ref.input_current(x, s, cell.input_weight.weight.tolist(), cell.input_weight.bias.tolist(), recurrent)
    if isinstance(cell, LTC):
        return ref.ltc_step(
            d, u, b, s,
            cell.membrane_rate.weight.tolist(), cell.membrane_rate.bias.tolist(),
            cell.adaptation_rate.weight.tolist(), cell.adaptation_rate.bias.tolist(),
            b0=cell.baseline_threshold, beta=cell.adaptation_strength, reset=cell.reset,
        )
    taus = (cell.tau_membrane.tolist(), cell.tau_adaptation.tolist())
    if isinstance(cell, LIF):
        return ref.lif_step(d, u, b, s, *taus, b0=cell.baseline_threshold, reset=cell.reset, dt=cell.dt)
    return ref.alif_step(d, u, b, s, *taus, b0=cell.baseline_threshold, beta=cell.adaptation_strength,
                         reset=cell.reset, dt=cell.dt)


def run_against_reference(cell, *, seed: int = 1, steps: int = STEPS, input_scale: float = 2.0):
    """Step ``cell`` and the reference side by side from the same initial state; each keeps its own
    state. Returns the spike fraction seen (to check that the scenario is not degenerate)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    state = cell.init_state(BATCH)
    u, b, s = (tensor.tolist() for tensor in (state.membrane, state.adaptation, state.spikes))
    spikes_seen = []
    with torch.no_grad():
        for t in range(steps):
            x = (torch.rand(BATCH, INPUT, generator=generator, dtype=torch.float64) * 2 - 0.5) * input_scale
            out, state = cell(x, state)
            u, b, s = reference_step(cell, x.tolist(), u, b, s)
            where = f"step {t}"
            torch.testing.assert_close(state.spikes, torch.tensor(s, dtype=torch.float64), rtol=0, atol=0,
                                       msg=lambda m: f"spikes differ at {where}: {m}")
            torch.testing.assert_close(out, state.spikes, rtol=0, atol=0)
            torch.testing.assert_close(state.membrane, torch.tensor(u, dtype=torch.float64), rtol=0,
                                       atol=TOLERANCE, msg=lambda m: f"membrane differs at {where}: {m}")
            torch.testing.assert_close(state.adaptation, torch.tensor(b, dtype=torch.float64), rtol=0,
                                       atol=TOLERANCE, msg=lambda m: f"adaptation differs at {where}: {m}")
            spikes_seen.append(state.spikes)
    return torch.stack(spikes_seen).mean().item()


CASES = [
    (neuron, reset, beta, initial)
    for neuron in ("ltc", "alif", "lif")
    for reset in ("zero", "subtract")
    for beta in ((0.0,) if neuron == "lif" else (1.8, 0.0))
    for initial in ("random", "zero")
]


def case_id(case):
    neuron, reset, beta, initial = case
    return f"{neuron}-reset_{reset}-beta_{beta}-u0_{initial}"


# --------------------------------------------------------------------------- reference equivalence


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_cell_steps_reproduce_the_literal_spec_reference_over_many_steps(case):
    neuron, reset, beta, initial = case
    cell = make_cell(neuron, reset=reset, adaptation_strength=beta, initial_membrane=initial)
    rate = run_against_reference(cell)
    assert 0.05 < rate < 0.95, f"degenerate scenario (spike fraction {rate}); the comparison would be weak"


@pytest.mark.parametrize("neuron", ["ltc", "alif", "lif"])
def test_feedforward_cells_reproduce_the_reference_without_recurrent_weights(neuron):
    cell = make_cell(neuron, reset="zero", adaptation_strength=0.0 if neuron == "lif" else 1.8,
                     initial_membrane="random", recurrent=False)
    assert cell.recurrent_weight is None
    rate = run_against_reference(cell, seed=3)
    assert 0.05 < rate < 0.95


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_ltc_matches_the_reference_for_other_random_weights_and_inputs(seed):
    cell = make_cell("ltc", reset="zero", adaptation_strength=1.8, initial_membrane="random", seed=seed)
    with torch.no_grad():
        for layer in (cell.membrane_rate, cell.adaptation_rate):
            layer.weight.mul_(3.0)  # make α_t and ρ_t vary strongly from step to step
    run_against_reference(cell, seed=seed)


def _ltc_step_threshold_before_adaptation(current, state, params, spike_fn, *, baseline_threshold=0.1,
                                          adaptation_strength=1.8, reset="zero", kernels=None):
    """Mutant: θ computed from b_{t-1} (adaptation updated after the threshold)."""
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    alpha = torch.sigmoid(torch.nn.functional.linear(torch.cat((current, membrane), -1),
                                                     params.membrane_weight, params.membrane_bias))
    rho = torch.sigmoid(torch.nn.functional.linear(torch.cat((current, adaptation), -1),
                                                   params.adaptation_weight, params.adaptation_bias))
    threshold = baseline_threshold + adaptation_strength * adaptation
    adaptation = rho * adaptation + (1 - rho) * spikes
    membrane = membrane + alpha * (current - membrane)
    spikes = spike_fn(membrane - threshold)
    membrane = membrane * (1 - spikes) if reset == "zero" else membrane - threshold * spikes
    return spikes, NeuronState(membrane, adaptation, spikes)


def _ltc_step_reset_deferred_to_next_step(current, state, params, spike_fn, *, baseline_threshold=0.1,
                                          adaptation_strength=1.8, reset="zero", kernels=None):
    """Mutant: the LTC reset acts on u_{t-1} through s_{t-1} (the ALIF convention), not on u_t."""
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    membrane = membrane * (1 - spikes)
    alpha = torch.sigmoid(torch.nn.functional.linear(torch.cat((current, membrane), -1),
                                                     params.membrane_weight, params.membrane_bias))
    rho = torch.sigmoid(torch.nn.functional.linear(torch.cat((current, adaptation), -1),
                                                   params.adaptation_weight, params.adaptation_bias))
    adaptation = rho * adaptation + (1 - rho) * spikes
    threshold = baseline_threshold + adaptation_strength * adaptation
    membrane = membrane + alpha * (current - membrane)
    spikes = spike_fn(membrane - threshold)
    return spikes, NeuronState(membrane, adaptation, spikes)


def _alif_step_threshold_before_adaptation(current, state, params, spike_fn, *, baseline_threshold=0.1,
                                           adaptation_strength=1.8, reset="subtract", dt=1.0):
    membrane, adaptation, spikes = state.membrane, state.adaptation, state.spikes
    alpha = torch.exp(-dt / params.tau_membrane)
    rho = torch.exp(-dt / params.tau_adaptation)
    threshold = baseline_threshold + adaptation_strength * adaptation
    adaptation = rho * adaptation + (1 - rho) * spikes
    membrane = alpha * membrane + (1 - alpha) * current - threshold * spikes * dt
    spikes = spike_fn(membrane - threshold)
    return spikes, NeuronState(membrane, adaptation, spikes)


@pytest.mark.parametrize(
    "neuron, target, mutant",
    [
        ("ltc", "ltc_step", _ltc_step_threshold_before_adaptation),
        ("ltc", "ltc_step", _ltc_step_reset_deferred_to_next_step),
        ("alif", "alif_step", _alif_step_threshold_before_adaptation),
    ],
    ids=["ltc-threshold-before-adaptation", "ltc-reset-deferred-to-next-step", "alif-threshold-before-adaptation"],
)
def test_the_reference_comparison_catches_plausible_implementation_mistakes(neuron, target, mutant, monkeypatch):
    cell = make_cell(neuron, reset="zero" if neuron == "ltc" else "subtract", adaptation_strength=1.8,
                     initial_membrane="random")
    run_against_reference(cell)  # the genuine implementation passes ...
    monkeypatch.setattr(cells_module, target, mutant)
    with pytest.raises(AssertionError):  # ... and the mutant is caught
        run_against_reference(cell)


# --------------------------------------------------------------------------- readouts


def run_readout_against_reference(readout, *, steps: int = STEPS, seed: int = 5):
    generator = torch.Generator().manual_seed(seed)
    membrane = readout.init_state(BATCH)
    assert torch.equal(membrane, torch.zeros(BATCH, readout.output_size, dtype=torch.float64))
    v = membrane.tolist()
    with torch.no_grad():
        for t in range(steps):
            spikes = (torch.rand(BATCH, readout.input_size, generator=generator) < 0.4).double()
            scores, membrane = readout(spikes, membrane)
            z = ref.readout_current(spikes.tolist(), readout.weight.weight.tolist(), readout.weight.bias.tolist())
            if isinstance(readout, FixedReadout):
                tau = [math.exp(value) for value in readout.log_tau.tolist()]
                v = ref.fixed_readout_step(z, v, tau)
            else:
                v = ref.liquid_readout_step(z, v, readout.rate.weight.tolist(), readout.rate.bias.tolist())
            torch.testing.assert_close(scores, torch.tensor(v, dtype=torch.float64), rtol=0, atol=TOLERANCE,
                                       msg=lambda m: f"readout differs at step {t}: {m}")
            assert scores is membrane or torch.equal(scores, membrane)


@pytest.mark.parametrize("kind", ["fixed", "liquid"])
def test_readout_reproduces_the_literal_spec_reference(kind):
    torch.manual_seed(0)
    readout = get_readout(kind)(HIDDEN, 3).double()
    with torch.no_grad():
        readout.weight.bias.uniform_(-0.5, 0.5)
        if kind == "fixed":
            readout.log_tau.copy_(torch.log(torch.tensor([2.0, 5.0, 20.0])))
        else:
            readout.rate.bias.uniform_(-0.5, 0.5)
    run_readout_against_reference(readout)


def test_fixed_readout_decay_is_exp_of_minus_one_over_tau_init():
    readout = FixedReadout(4, 3, tau_init=7.0)
    torch.testing.assert_close(readout.decay, torch.full((3,), math.exp(-1 / 7.0)))


def test_readout_registry_and_unknown_name():
    assert {"liquid": LiquidReadout, "fixed": FixedReadout, "linear": LinearReadout} == READOUT_CLASSES
    with pytest.raises(ValueError, match="liquid"):
        get_readout("softmax")


@pytest.mark.parametrize("sizes", [(0, 3), (3, 0)])
def test_readout_rejects_non_positive_sizes(sizes):
    with pytest.raises(ValueError):
        LiquidReadout(*sizes)


def test_fixed_readout_rejects_non_positive_tau():
    with pytest.raises(ValueError):
        FixedReadout(4, 3, tau_init=0.0)


# --------------------------------------------------------------------------- pure functions


def random_neuron_inputs(kind: str, batch: int, hidden: int, seed: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, low=-1.0, high=1.0):
        return torch.rand(*shape, generator=generator, dtype=dtype) * (high - low) + low

    current = rand(batch, hidden, low=-2, high=3)
    state = NeuronState(rand(batch, hidden, low=-1, high=2), rand(batch, hidden, low=0, high=1),
                        (rand(batch, hidden) > 0).to(dtype))
    if kind == "ltc":
        params = LTCParameters(rand(hidden, 2 * hidden), rand(hidden), rand(hidden, 2 * hidden), rand(hidden))
    else:
        params = ALIFParameters(rand(hidden, low=1, high=30), rand(hidden, low=1, high=300))
    return current, state, params


STEP_FUNCTIONS = {"ltc": ltc_step, "alif": alif_step, "lif": lif_step}


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(sorted(STEP_FUNCTIONS)),
    batch=st.integers(1, 4),
    hidden=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    surrogate=st.sampled_from(SURROGATE_NAMES),
    reset=st.sampled_from(["zero", "subtract"]),
)
def test_pure_steps_give_binary_spikes_keep_shapes_and_never_mutate_their_inputs(
    kind, batch, hidden, seed, surrogate, reset
):
    current, state, params = random_neuron_inputs(kind, batch, hidden, seed)
    params_given = [t for t in params if t is not None]  # LTC's optional gate slopes are None here
    before = (current.clone(), [t.clone() for t in state_tensors(state)], [t.clone() for t in params_given])
    spikes, new_state = STEP_FUNCTIONS[kind](current, state, params, get_surrogate(surrogate), reset=reset)
    assert isinstance(new_state, NeuronState)
    assert spikes.shape == (batch, hidden)
    assert spikes.dtype == current.dtype
    for tensor in state_tensors(new_state):
        assert tensor.shape == (batch, hidden)
    assert torch.equal(spikes, new_state.spikes)
    assert ((spikes == 0) | (spikes == 1)).all()
    assert torch.equal(current, before[0])
    for old, kept in zip(state_tensors(state), before[1]):
        assert torch.equal(old, kept)
    for old, kept in zip(params_given, before[2]):
        assert torch.equal(old, kept)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["fixed", "liquid"]), batch=st.integers(1, 4), outputs=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_pure_readout_steps_keep_shapes_and_never_mutate_their_inputs(kind, batch, outputs, seed):
    generator = torch.Generator().manual_seed(seed)
    current = torch.randn(batch, outputs, generator=generator, dtype=torch.float64)
    membrane = torch.randn(batch, outputs, generator=generator, dtype=torch.float64)
    if kind == "fixed":
        extra = (torch.rand(outputs, generator=generator, dtype=torch.float64),)
        step = fixed_readout_step
    else:
        extra = (torch.randn(outputs, 2 * outputs, generator=generator, dtype=torch.float64),
                 torch.randn(outputs, generator=generator, dtype=torch.float64))
        step = liquid_readout_step
    before = [t.clone() for t in (current, membrane, *extra)]
    scores, new_membrane = step(current, membrane, *extra)
    assert scores.shape == new_membrane.shape == (batch, outputs)
    assert torch.equal(scores, new_membrane)
    for tensor, kept in zip((current, membrane, *extra), before):
        assert torch.equal(tensor, kept)
    # a leaky integrator moves between v_{t-1} and z_t: it is a convex combination of the two
    low, high = torch.minimum(current, membrane), torch.maximum(current, membrane)
    assert (scores >= low - 1e-12).all() and (scores <= high + 1e-12).all()


@settings(max_examples=20, deadline=None)
@given(neuron=st.sampled_from(["ltc", "alif", "lif", "brf"]), batch=st.integers(1, 3), inputs=st.integers(1, 4),
       hidden=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_cells_keep_shapes_and_emit_binary_spikes(neuron, batch, inputs, hidden, seed):
    torch.manual_seed(seed)
    cell = get_neuron(neuron)(inputs, hidden)
    state = cell.init_state(batch)
    for _ in range(3):
        x = torch.randn(batch, inputs) * 3
        before = [t.clone() for t in state_tensors(state)]
        spikes, new_state = cell(x, state)
        for old, kept in zip(state_tensors(state), before):
            assert torch.equal(old, kept)
        assert spikes.shape == (batch, hidden)
        assert ((spikes == 0) | (spikes == 1)).all()
        assert all(tensor.shape == (batch, hidden) for tensor in state_tensors(new_state))
        state = new_state


def test_lif_step_ignores_adaptation_for_its_threshold():
    current, state, params = random_neuron_inputs("alif", 3, 5, seed=0)
    spike_fn = get_surrogate("multi_gaussian")
    spikes_a, new_a = lif_step(current, state, params, spike_fn)
    other = NeuronState(state.membrane, state.adaptation * 10 + 5, state.spikes)
    spikes_b, new_b = lif_step(current, other, params, spike_fn)
    assert torch.equal(spikes_a, spikes_b)
    assert torch.equal(new_a.membrane, new_b.membrane)
    # and it is ALIF with β = 0
    spikes_c, new_c = alif_step(current, state, params, spike_fn, adaptation_strength=0.0)
    assert torch.equal(spikes_a, spikes_c) and torch.equal(new_a.membrane, new_c.membrane)


@pytest.mark.parametrize("kind", sorted(STEP_FUNCTIONS))
def test_surrogate_gradient_flows_from_spikes_to_the_input_current(kind):
    current, state, params = random_neuron_inputs(kind, 3, 4, seed=2)
    current.requires_grad_(True)
    spikes, _ = STEP_FUNCTIONS[kind](current, state, params, get_surrogate("fast_sigmoid", slope=1.0))
    spikes.sum().backward()
    assert current.grad is not None and current.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", sorted(STEP_FUNCTIONS))
def test_pure_steps_reject_an_unknown_reset(kind):
    current, state, params = random_neuron_inputs(kind, 1, 2, seed=0)
    with pytest.raises(ValueError, match="reset"):
        STEP_FUNCTIONS[kind](current, state, params, get_surrogate(), reset="hard")


# --------------------------------------------------------------------------- cells: construction & state


def test_neuron_registry_and_unknown_name():
    assert NEURON_CLASSES == {"ltc": LTC, "alif": ALIF, "lif": LIF, "brf": BRF}
    assert get_neuron("LTC") is LTC
    with pytest.raises(ValueError) as info:
        get_neuron("gru")
    for name in ("ltc", "alif", "lif"):
        assert name in str(info.value)


def test_default_resets_and_adaptation_follow_the_spec():
    assert LTC(2, 3).reset == "zero"
    assert ALIF(2, 3).reset == "subtract"
    assert LIF(2, 3).reset == "subtract"
    assert LTC(2, 3).adaptation_strength == 1.8 and ALIF(2, 3).adaptation_strength == 1.8
    assert LIF(2, 3).adaptation_strength == 0.0
    assert LTC(2, 3).baseline_threshold == 0.1


@pytest.mark.parametrize(
    "cls, options",
    [
        (LTC, {"reset": "hard"}),
        (ALIF, {"reset": "hard"}),
        (LTC, {"adaptation_strength": -1.0}),
        (LTC, {"initial_membrane": "ones"}),
        (LTC, {"norm": "batch"}),
        (LIF, {"adaptation_strength": 1.8}),
        (ALIF, {"dt": 0.0}),
        (LTC, {"surrogate": "nope"}),
    ],
)
def test_cells_reject_bad_options_with_value_error(cls, options):
    with pytest.raises(ValueError):
        cls(3, 4, **options)


@pytest.mark.parametrize("sizes", [(0, 4), (3, 0), (-1, 4)])
@pytest.mark.parametrize("cls", [LTC, ALIF, LIF])
def test_cells_reject_non_positive_sizes(cls, sizes):
    with pytest.raises(ValueError):
        cls(*sizes)


@pytest.mark.parametrize("cls", [LTC, ALIF, LIF])
def test_cells_reject_wrongly_shaped_or_integer_step_inputs(cls):
    cell = cls(3, 4)
    for bad in (torch.randn(2, 5), torch.randn(2, 1, 3), torch.randn(3)):
        with pytest.raises(ValueError, match=r"\(batch, 3\)"):
            cell.check_input(bad)
    with pytest.raises(ValueError, match="floating"):
        cell.check_input(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("cls", [LTC, ALIF, LIF])
def test_initial_state_follows_the_spec(cls):
    torch.manual_seed(0)
    cell = cls(3, 50, baseline_threshold=0.2) if cls is not LIF else cls(3, 50, baseline_threshold=0.2)
    membrane, adaptation, spikes, oscillation = cell.init_state(4)
    assert oscillation is None  # the BRF neuron's v only
    assert membrane.shape == adaptation.shape == spikes.shape == (4, 50)
    assert (membrane >= 0).all() and (membrane < 1).all() and membrane.std() > 0.1  # u ~ U(0, 1)
    assert torch.equal(adaptation, torch.full((4, 50), 0.2))  # b = b_0
    assert torch.equal(spikes, torch.zeros(4, 50))
    zero = cls(3, 50, initial_membrane="zero").init_state(2)
    assert torch.equal(zero.membrane, torch.zeros(2, 50))


def test_init_state_honours_device_and_dtype_and_rejects_empty_batches():
    cell = LTC(3, 4)
    state = cell.init_state(2, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in state_tensors(state))
    meta = cell.init_state(2, device="meta")
    assert all(t.device.type == "meta" for t in state_tensors(meta))
    assert all(t.dtype == torch.float64 for t in state_tensors(cell.double().init_state(1)))
    with pytest.raises(ValueError):
        cell.init_state(0)


def test_layer_norm_option_changes_the_current_but_keeps_shapes():
    torch.manual_seed(0)
    cell = LTC(3, 4, norm="layer")
    assert isinstance(cell.input_norm, torch.nn.LayerNorm)
    spikes, state = cell(torch.randn(2, 3), cell.init_state(2))
    assert spikes.shape == (2, 4)
