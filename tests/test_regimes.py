"""The per-task regime options of SPEC §2 ("Per-task regimes"): each against its equation."""
from __future__ import annotations

import math

import pytest
import torch

from fptt import SpikingRNN
from fptt.neurons import LTC, LinearReadout, LTCParameters, NeuronState, ltc_step
from fptt.neurons.surrogate import get_surrogate

INPUT, HIDDEN, BATCH, STEPS = 3, 5, 4, 30


def _run(cell: LTC, inputs: torch.Tensor) -> list[NeuronState]:
    state = cell.init_state(inputs.shape[1], dtype=inputs.dtype)
    states = []
    for x in inputs:
        _, state = cell(x, state)
        states.append(state)
    return states


def _inputs(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(STEPS, BATCH, INPUT, generator=generator, dtype=torch.float64) * 3 - 0.5


def test_fixed_threshold_ltc_has_no_adaptation_gate_and_spikes_at_the_baseline_threshold():
    torch.manual_seed(0)
    fixed = LTC(INPUT, HIDDEN, fixed_threshold=True, adaptation_strength=0.0, baseline_threshold=0.5,
                initial_membrane="zero").double()
    assert fixed.adaptation_rate is None
    assert not any("adaptation_rate" in name for name, _ in fixed.named_parameters())
    gated = LTC(INPUT, HIDDEN, adaptation_strength=0.0, baseline_threshold=0.5, initial_membrane="zero").double()
    gated.load_state_dict(fixed.state_dict(), strict=False)  # same W_x, W_r, W_m; an unused ρ gate
    spikes = 0.0
    for a, b in zip(_run(fixed, _inputs()), _run(gated, _inputs())):
        torch.testing.assert_close(a.membrane, b.membrane)
        torch.testing.assert_close(a.spikes, b.spikes)
        assert torch.equal(a.adaptation, torch.full_like(a.adaptation, 0.5)), "b keeps its initial value"
        spikes += float(a.spikes.detach().sum())
    assert spikes > 0, "the scenario must spike for the comparison to mean something"


def test_fixed_threshold_refuses_adaptation():
    with pytest.raises(ValueError, match="adaptation_strength=0"):
        LTC(INPUT, HIDDEN, fixed_threshold=True, adaptation_strength=1.8)
    params = LTCParameters(torch.zeros(HIDDEN, 2 * HIDDEN), torch.zeros(HIDDEN), None, None)
    state = NeuronState(*(torch.zeros(BATCH, HIDDEN) for _ in range(3)))
    with pytest.raises(ValueError, match="must be 0"):
        ltc_step(torch.zeros(BATCH, HIDDEN), state, params, get_surrogate("multi_gaussian"), adaptation_strength=1.8)


def test_gate_slopes_scale_the_gate_pre_activation():
    """σ(k (W z + c)) = σ((k W) z + k c): a cell with slopes k equals one without, weights scaled by k."""
    torch.manual_seed(1)
    sloped = LTC(INPUT, HIDDEN, gate_slopes=True).double()
    assert sloped.membrane_slope.shape == () and float(sloped.membrane_slope.detach()) == 1.0
    with torch.no_grad():
        sloped.membrane_slope.fill_(1.7)
        sloped.adaptation_slope.fill_(0.6)
    plain = LTC(INPUT, HIDDEN).double()
    plain.load_state_dict({k: v for k, v in sloped.state_dict().items() if "slope" not in k})
    with torch.no_grad():
        for layer, slope in ((plain.membrane_rate, 1.7), (plain.adaptation_rate, 0.6)):
            layer.weight.mul_(slope)
            layer.bias.mul_(slope)
    torch.manual_seed(5)
    a = _run(sloped, _inputs(2))
    torch.manual_seed(5)
    b = _run(plain, _inputs(2))
    for x, y in zip(a, b):
        for p, q in zip(x, y):
            torch.testing.assert_close(p, q)


def test_ltc_step_gradients_with_slopes_and_without_adaptation_gate_match_finite_differences():
    generator = torch.Generator().manual_seed(3)

    def rand(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale).requires_grad_()

    current, membrane = rand(BATCH, HIDDEN), rand(BATCH, HIDDEN)
    state = NeuronState(membrane, torch.full((BATCH, HIDDEN), 0.1, dtype=torch.float64),
                        torch.zeros(BATCH, HIDDEN, dtype=torch.float64))
    weight, bias, slope = rand(HIDDEN, 2 * HIDDEN, scale=0.5), rand(HIDDEN), rand((), scale=2.0)
    smooth = torch.sigmoid  # a smooth spike function: the check is about the gate and membrane algebra

    def membrane_after(current, membrane, weight, bias, slope):
        params = LTCParameters(weight, bias, None, None, membrane_slope=slope)
        start = NeuronState(membrane, state.adaptation, state.spikes)
        return ltc_step(current, start, params, smooth, baseline_threshold=0.5, adaptation_strength=0.0)[1].membrane

    assert torch.autograd.gradcheck(membrane_after, (current, membrane, weight, bias, slope))


@pytest.mark.parametrize("tau_max", [10.0, 1000.0])
def test_chrono_init_spreads_the_initial_time_constants_up_to_tau_max(tau_max):
    torch.manual_seed(0)
    cell = LTC(INPUT, 400, chrono_tau=tau_max)
    membrane_rate = torch.sigmoid(cell.membrane_rate.bias.detach())  # α for a zero gate input
    adaptation_decay = torch.sigmoid(cell.adaptation_rate.bias.detach())  # ρ
    tau_membrane, tau_adaptation = 1 / membrane_rate, 1 / (1 - adaptation_decay)
    for tau in (tau_membrane, tau_adaptation):
        assert float(tau.min()) >= 2.0 - 1e-4 and float(tau.max()) <= tau_max * (1 + 1e-4)
        assert float(tau.mean()) == pytest.approx((2 + tau_max) / 2, rel=0.15), "uniform in [2, τ_max]"
    assert torch.equal(LTC(INPUT, 4).membrane_rate.bias.detach(), torch.zeros(4)), "off by default"
    with pytest.raises(ValueError, match="chrono_tau"):
        LTC(INPUT, HIDDEN, chrono_tau=2.0)


def test_torch_default_synapses_are_one_linear_layer_over_input_and_spikes():
    torch.manual_seed(0)
    cell = LTC(INPUT, 64, synapse_init="torch_default")
    bound = 1 / math.sqrt(INPUT + 64)
    for tensor in (cell.input_weight.weight, cell.input_weight.bias, cell.recurrent_weight.weight):
        assert bound >= float(tensor.detach().abs().max()) > 0.9 * bound
    # a plain nn.Linear over [x, s] with the same weights computes the same current
    joint = torch.nn.Linear(INPUT + 64, 64)
    with torch.no_grad():
        joint.weight.copy_(torch.cat((cell.input_weight.weight, cell.recurrent_weight.weight), dim=1))
        joint.bias.copy_(cell.input_weight.bias)
    x, s = torch.rand(BATCH, INPUT), (torch.rand(BATCH, 64) > 0.5).float()
    torch.testing.assert_close(cell.input_current(x, s), joint(torch.cat((x, s), dim=1)))
    with pytest.raises(ValueError, match="synapse_init"):
        LTC(INPUT, HIDDEN, synapse_init="he")


def test_scaled_layer_norm_gives_currents_of_the_chosen_size_in_every_mode():
    torch.manual_seed(0)
    cell = LTC(INPUT, 256, norm="layer", norm_scale=0.1)
    x, s = torch.rand(BATCH, INPUT), (torch.rand(BATCH, 256) < 0.03).float()
    current = cell.input_current(x, s)
    # two normalised terms of std 0.1 each (input, recurrent)
    assert float(current.detach().std(dim=-1).mean()) == pytest.approx(0.1 * math.sqrt(2), rel=0.2)
    cell.eval()
    torch.testing.assert_close(cell.input_current(x, s), current)  # no running statistics
    torch.testing.assert_close(cell.input_current(x[:1], s[:1]), current[:1])  # batch of one: a stream
    with pytest.raises(ValueError, match="norm_scale"):
        LTC(INPUT, HIDDEN, norm_scale=0.0)


def test_linear_readout_reads_the_current_step_only():
    torch.manual_seed(0)
    readout = LinearReadout(HIDDEN, 1)
    first, second = torch.rand(BATCH, HIDDEN), torch.rand(BATCH, HIDDEN)
    state = readout.init_state(BATCH)
    v1, state = readout(first, state)
    v2, state = readout(second, state)
    torch.testing.assert_close(v2, readout.weight(second))  # v_t = W_o x_t + c_o, no leak
    torch.testing.assert_close(v1, readout.weight(first))
    assert float(readout.weight.bias.detach().abs().max()) > 0, "PyTorch's default bias init, as the reference"


def test_the_adding_task_regime_builds_a_quiet_network_that_holds_an_analog_membrane():
    """SPEC §2 table: neurons essentially silent at init; the readout is linear in the final membrane."""
    torch.manual_seed(0)
    model = SpikingRNN(2, 128, 1, readout="linear", readout_from="membrane", baseline_threshold=0.5,
                       adaptation_strength=0.0, fixed_threshold=True, initial_membrane="zero",
                       synapse_init="torch_default", chrono_tau=200.0)
    x = torch.stack((torch.rand(16, 200), torch.zeros(16, 200)), dim=-1)
    state = model.init_state(16)
    assert all(float(t.abs().sum()) == 0 for t in state.layers[0][:1])  # u_0 = 0
    rates = []
    with torch.no_grad():
        for t in range(200):
            out, state = model.step(x[:, t], state)
            rates.append(float(state.layers[0].spikes.mean()))
    assert sum(rates) / len(rates) < 0.01
    torch.testing.assert_close(out, model.readout.weight(state.layers[0].membrane))
