"""Pinning tests for SpikingRNN and the stateful-model protocol."""
from __future__ import annotations

import pytest
import torch

from fptt import NetworkState, SpikingRNN
from fptt.models.state import state_tensors
from fptt.neurons import ALIF, BRF, LIF, LTC, FixedReadout, LiquidReadout, NeuronState

NEURONS = ["ltc", "alif", "lif", "brf"]


def list_tensors(state):
    return list(state_tensors(state))
READOUTS = ["liquid", "fixed"]


def spiking_input(batch: int, time: int, features: int, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, time, features, generator=generator) * 2).to(dtype)


def make_model(neuron="ltc", readout="liquid", hidden=(6,), seed=0, **options):
    torch.manual_seed(seed)
    return SpikingRNN(3, hidden, 2, neuron=neuron, readout=readout, **options)


def fast_time_constants(model: SpikingRNN) -> None:
    """ALIF/LIF start with τ_m ≈ 20 steps; shorten them so that 30 steps show plenty of spikes. A BRF
    layer integrates δ d_t per step (δ = 0.01, θ = 1): scale its input synapses up instead."""
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer, ALIF):
                layer.tau_membrane.uniform_(2.0, 5.0)
                layer.tau_adaptation.uniform_(5.0, 20.0)
            if isinstance(layer, BRF):
                layer.input_weight.weight.mul_(300.0)


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("hidden", [(5,), (5, 4)], ids=["one-layer", "two-layers"])
def test_forward_equals_stepping_step_from_the_same_initial_state(neuron, readout, hidden):
    model = make_model(neuron, readout, hidden).double()
    fast_time_constants(model)
    x = spiking_input(2, 12, 3, dtype=torch.float64)
    torch.manual_seed(1)
    state = model.init_state(2)
    whole = model(x, state)
    stepped, current = [], state
    for t in range(x.shape[1]):
        output, current = model.step(x[:, t], current)
        stepped.append(output)
    assert whole.shape == (2, 12, 2)
    torch.testing.assert_close(whole, torch.stack(stepped, dim=1), rtol=0, atol=0)
    _, final = model.unroll(x, state)
    for a, b in zip(list_tensors(final), list_tensors(current)):
        assert torch.equal(a, b)


def test_unroll_can_be_split_into_chunks_that_continue_from_the_state():
    model = make_model("ltc", hidden=(5, 4)).double()
    x = spiking_input(2, 10, 3, dtype=torch.float64)
    state = model.init_state(2)
    full, _ = model.unroll(x, state)
    first, middle = model.unroll(x[:, :4], state)
    second, _ = model.unroll(x[:, 4:], middle)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, rtol=0, atol=0)


def test_forward_without_state_starts_from_a_fresh_initial_state():
    model = make_model("ltc", initial_membrane="zero")
    x = spiking_input(2, 5, 3)
    torch.testing.assert_close(model(x), model(x, model.init_state(2)), rtol=0, atol=0)


def test_initial_state_is_a_network_state_of_neuron_states():
    model = make_model("ltc", hidden=(5, 4))
    state = model.init_state(3)
    assert isinstance(state, NetworkState)
    assert len(state.layers) == 2
    assert all(isinstance(layer_state, NeuronState) for layer_state in state.layers)
    assert state.layers[0].membrane.shape == (3, 5)
    assert state.layers[1].membrane.shape == (3, 4)
    assert torch.equal(state.readout, torch.zeros(3, 2))


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("neuron, cls", [("ltc", LTC), ("alif", ALIF), ("lif", LIF), ("brf", BRF)])
def test_multi_layer_networks_chain_layer_sizes(neuron, cls):
    model = SpikingRNN(3, [7, 5, 4], 2, neuron=neuron)
    assert model.hidden_sizes == (7, 5, 4)
    assert [type(layer) for layer in model.layers] == [cls] * 3
    assert [(layer.input_size, layer.hidden_size) for layer in model.layers] == [(3, 7), (7, 5), (5, 4)]
    assert model.readout.input_size == 4 and model.readout.output_size == 2


def test_an_int_hidden_size_means_one_layer():
    model = SpikingRNN(3, 6, 2)
    assert model.hidden_sizes == (6,) and len(model.layers) == 1


@pytest.mark.parametrize("readout, cls", [("liquid", LiquidReadout), ("fixed", FixedReadout)])
def test_readout_is_selected_by_name(readout, cls):
    assert isinstance(SpikingRNN(3, 6, 2, readout=readout).readout, cls)


def test_neuron_options_reach_every_layer():
    model = SpikingRNN(3, [4, 4], 2, neuron="alif", reset="zero", surrogate="triangle", baseline_threshold=0.3)
    for layer in model.layers:
        assert layer.reset == "zero"
        assert layer.spike_fn.name == "triangle"
        assert layer.baseline_threshold == 0.3


def test_a_deeper_layer_receives_the_spikes_of_the_layer_below():
    model = make_model("ltc", hidden=(5, 4))
    x = spiking_input(2, 3, 3)
    state = model.init_state(2)
    received = []
    handle = model.layers[1].register_forward_hook(lambda module, args, output: received.append(args[0]))
    try:
        _, new_state = model.step(x[:, 0], state)
    finally:
        handle.remove()
    assert torch.equal(received[0], new_state.layers[0].spikes)


# --------------------------------------------------------------------------- gradients


GRADIENT_CASES = [(neuron, readout) for neuron in NEURONS for readout in READOUTS]


def _loss_after_thirty_steps(model):
    x = spiking_input(4, 30, 3, seed=2)
    state = model.init_state(4)
    outputs, final = model.unroll(x, state)
    return outputs.pow(2).mean() + outputs[:, -1].sum(), outputs, final, x, state


@pytest.mark.parametrize("neuron, readout", GRADIENT_CASES, ids=[f"{n}-{r}" for n, r in GRADIENT_CASES])
def test_gradients_reach_every_parameter(neuron, readout):
    model = make_model(neuron, readout, hidden=(6, 5), seed=3)
    fast_time_constants(model)
    loss, outputs, _, x, state = _loss_after_thirty_steps(model)
    # the network really spikes in every layer (otherwise recurrent weights could not get gradient)
    rates, current = [], state
    with torch.no_grad():
        for t in range(x.shape[1]):
            _, current = model.step(x[:, t], current)
            rates.append(torch.stack(SpikingRNN.firing_rates(current)))
    assert (torch.stack(rates).mean(0) > 0).all()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} has no gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_lif_keeps_its_unused_adaptation_time_constant_out_of_the_parameters():
    model = make_model("lif", "liquid", hidden=(6, 5), seed=3)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("tau_adaptation") for name in names)
    assert "layers.0.tau_adaptation" in dict(model.named_buffers())


# --------------------------------------------------------------------------- determinism & dtypes


@pytest.mark.parametrize("neuron", NEURONS)
def test_runs_are_deterministic_under_a_fixed_seed(neuron):
    def model_and_input(seed):
        torch.manual_seed(seed)
        model = SpikingRNN(3, [5, 4], 2, neuron=neuron)
        fast_time_constants(model)  # a silent network's scores are all zero, whatever the seed
        return model, torch.rand(2, 8, 3) * 2

    def run():
        model, x = model_and_input(123)
        return model(x)

    first, second = run(), run()
    assert torch.equal(first, second)
    model, x = model_and_input(124)
    assert not torch.equal(first, model(x))


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("readout", READOUTS)
def test_model_works_in_float64(neuron, readout):
    model = make_model(neuron, readout).double()
    x = spiking_input(2, 6, 3, dtype=torch.float64)
    state = model.init_state(2)
    assert all(t.dtype == torch.float64 for t in list_tensors(state))
    outputs = model(x)
    assert outputs.dtype == torch.float64 and outputs.shape == (2, 6, 2)
    outputs.sum().backward()
    assert all(p.grad.dtype == torch.float64 for p in model.parameters() if p.grad is not None)


def test_init_state_honours_device_and_dtype_arguments():
    model = make_model("alif", hidden=(5, 4))
    state = model.init_state(2, dtype=torch.float64)
    leaves = list_tensors(state)
    assert len(leaves) == 2 * 3 + 1
    assert all(t.dtype == torch.float64 for t in leaves)
    meta = model.init_state(2, device="meta")
    assert all(t.device.type == "meta" for t in list_tensors(meta))
    assert all(t.dtype == torch.float32 for t in list_tensors(model.init_state(2)))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(2, 3), r"\(batch, time, 3\)"),
        (torch.rand(2, 5, 4), r"\(batch, time, 3\)"),
        (torch.rand(2, 5, 3, 1), r"\(batch, time, 3\)"),
        (torch.ones(2, 5, 3, dtype=torch.long), "floating"),
    ],
    ids=["2-D", "wrong-feature-count", "4-D", "integer-dtype"],
)
def test_forward_rejects_bad_inputs_with_a_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        make_model()(bad)


def test_check_step_rejects_bad_inputs_and_mismatched_states():
    """The checks of one step (made once per batch by the engines; model.step runs unchecked)."""
    model = make_model(hidden=(5, 4))
    state = model.init_state(2)
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        model.check_step(torch.rand(2, 1, 3), state)
    with pytest.raises(ValueError, match="floating"):
        model.check_step(torch.ones(2, 3, dtype=torch.int32), state)
    with pytest.raises(ValueError, match="batch size"):
        model.check_step(torch.rand(3, 3), state)
    with pytest.raises(ValueError, match="init_state"):
        model.check_step(torch.rand(2, 3), NetworkState(state.layers[:1], state.readout))
    with pytest.raises(ValueError, match="init_state"):
        model.check_step(torch.rand(2, 3), tuple(state))


def test_unknown_neuron_raises_value_error_listing_the_choices():
    with pytest.raises(ValueError) as info:
        SpikingRNN(3, 4, 2, neuron="gru")
    assert all(name in str(info.value) for name in NEURONS)


def test_unknown_readout_raises_value_error_listing_the_choices():
    with pytest.raises(ValueError) as info:
        SpikingRNN(3, 4, 2, readout="softmax")
    assert all(name in str(info.value) for name in READOUTS)


def test_unknown_surrogate_raises_value_error():
    with pytest.raises(ValueError, match="multi_gaussian"):
        SpikingRNN(3, 4, 2, surrogate="relu")


@pytest.mark.parametrize("hidden", [[], 0, -3, [4, 0], [4, 2.5], (4, "8")], ids=repr)
def test_bad_hidden_sizes_raise_value_error(hidden):
    with pytest.raises(ValueError, match="hidden_sizes"):
        SpikingRNN(3, hidden, 2)


@pytest.mark.parametrize("sizes", [(0, 2), (3, 0)])
def test_non_positive_input_or_output_size_raises_value_error(sizes):
    with pytest.raises(ValueError):
        SpikingRNN(sizes[0], 4, sizes[1])


@pytest.mark.parametrize("neuron", NEURONS)
def test_bad_reset_raises_value_error(neuron):
    with pytest.raises(ValueError, match="reset"):
        SpikingRNN(3, 4, 2, neuron=neuron, reset="hard")


# --------------------------------------------------------------------------- monitoring


def test_firing_rates_and_spike_counts_have_one_entry_per_layer_with_the_documented_shapes():
    model = make_model("ltc", hidden=(5, 4))
    _, state = model.unroll(spiking_input(3, 4, 3), model.init_state(3))
    rates = SpikingRNN.firing_rates(state)
    counts = model.spike_counts(state)
    assert len(rates) == len(counts) == 2
    assert all(rate.shape == () for rate in rates)
    assert [count.shape for count in counts] == [(3,), (3,)]
    for rate, count, layer_state, size in zip(rates, counts, state.layers, (5, 4)):
        assert torch.equal(count, layer_state.spikes.sum(-1))
        torch.testing.assert_close(rate, count.sum() / (3 * size))
        assert 0 <= rate.item() <= 1


def test_engines_check_the_step_once_per_batch_and_step_runs_unchecked(monkeypatch):
    from torch.utils.data import DataLoader, TensorDataset

    from fptt import FPTT, train_epoch

    model = make_model()
    calls = []
    original = type(model).check_step
    monkeypatch.setattr(type(model), "check_step", lambda self, x, state: calls.append(x.shape) or original(self, x, state))
    x = torch.rand(8, 5, 3)
    loader = DataLoader(TensorDataset(x, torch.randint(0, 2, (8,))), batch_size=4)
    train_epoch(model, loader, FPTT(torch.optim.SGD(model.parameters(), lr=0.01)), method="fptt", k=1)
    assert len(calls) == 2  # two batches of five steps: one check each
    calls.clear()
    state = model.init_state(4)
    model.step(x[:4, 0], state)
    assert calls == []
