"""Classification support: the GRU/LSTM baselines, the validation split, the per-model regimes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fptt import FPTT, evaluate, train_epoch
from fptt.models.baselines import RecurrentBaseline
from fptt.run.build import (
    build_dataset,
    build_model,
    default_eval_split,
    final_split,
    resolve_validation,
    validation_indices,
)
from fptt.run.config import ConfigError, TrainConfig


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_matches_torch_recurrent_layer(cell):
    """Two stacked cells stepped by the protocol give nn.GRU/nn.LSTM's outputs with the same weights."""
    torch.manual_seed(0)
    model = RecurrentBaseline(3, [5, 4], 2, cell=cell).double()
    reference = (nn.GRU if cell == "gru" else nn.LSTM)(3, 5, batch_first=True).double()
    second = (nn.GRU if cell == "gru" else nn.LSTM)(5, 4, batch_first=True).double()
    for layer, torch_layer in zip(model.layers, (reference, second)):
        torch_layer.weight_ih_l0.data.copy_(layer.weight_ih)
        torch_layer.weight_hh_l0.data.copy_(layer.weight_hh)
        torch_layer.bias_ih_l0.data.copy_(layer.bias_ih)
        torch_layer.bias_hh_l0.data.copy_(layer.bias_hh)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    expected = model.readout(second(reference(x)[0])[0])
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


def test_init_state_shapes_and_bad_arguments():
    gru = RecurrentBaseline(2, 6, 3, cell="gru")
    assert [h.shape for h in gru.init_state(4)] == [torch.Size([4, 6])]
    lstm = RecurrentBaseline(2, [6, 5], 3, cell="lstm")
    assert [tuple(t.shape for t in layer) for layer in lstm.init_state(4)] == [((4, 6), (4, 6)), ((4, 5), (4, 5))]
    with pytest.raises(ValueError, match="cell must be one of"):
        RecurrentBaseline(2, 6, 3, cell="rnn")
    with pytest.raises(ValueError, match="hidden_sizes"):
        RecurrentBaseline(2, [], 3)
    with pytest.raises(ValueError, match="batch, time, 2"):
        gru(torch.randn(4, 2))


def _sign_task(samples: int = 256, steps: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Class = whether the sum of the sequence is positive (needs memory of every step)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(samples, steps, 1, generator=generator)
    return x, (x.sum(dim=(1, 2)) > 0).long()


@pytest.mark.parametrize("method,k,cell", [("fptt", 1, "gru"), ("bptt", None, "gru"), ("tbptt", 4, "gru"),
                                           ("online", 1, "gru"), ("fptt", 1, "lstm"), ("bptt", None, "lstm")])
def test_every_back_propagating_engine_trains_the_baselines(method, k, cell):
    torch.manual_seed(0)
    x, y = _sign_task()
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)]
    model = RecurrentBaseline(1, 16, 2, cell=cell)
    inner = torch.optim.Adam(model.parameters(), lr=1e-2)
    optimizer = FPTT(inner, alpha=0.1) if method == "fptt" else inner
    before = evaluate(model, batches).loss
    for _ in range(4):
        train_epoch(model, batches, optimizer, method=method, k=k, weighting="last" if method == "bptt" else "linear")
    assert evaluate(model, batches).loss < before


def test_build_model_and_trace_methods_refused():
    model = build_model(TrainConfig.from_dict(dict(task="mnist1d", model="lstm", hidden=[8])), 1, 10)
    assert isinstance(model, RecurrentBaseline) and model.cell == "lstm"
    with pytest.raises(ConfigError, match="not a spiking network"):
        TrainConfig.from_dict(dict(task="mnist1d", model="gru", method="eprop", readout="fixed"))


def test_validation_indices_partition_the_training_set_with_one_fixed_draw():
    train, validation = validation_indices(100, 20)
    assert len(validation) == 20 and sorted(train + validation) == list(range(100))
    assert validation_indices(100, 20) == (train, validation)  # independent of any global seed
    for bad in (0, 100, 101):
        with pytest.raises(ConfigError, match="validation_samples"):
            validation_indices(100, bad)


def test_validation_split_of_a_task():
    config = TrainConfig.from_dict(dict(task="add", seq_len=5, train_samples=40, test_samples=8, validation_samples=10))
    assert default_eval_split(config) == "validation" and final_split(config) == "test"
    train, validation = build_dataset(config, "train"), build_dataset(config, "validation")
    assert (len(train), len(validation)) == (30, 10)
    full = build_dataset(TrainConfig.from_dict(dict(task="add", seq_len=5, train_samples=40, test_samples=8)), "train")
    _, held = validation_indices(40, 10)
    torch.testing.assert_close(validation[0][0], full[held[0]][0])
    with pytest.raises(ConfigError, match="validation_samples"):
        build_dataset(TrainConfig.from_dict(dict(task="add", seq_len=5, validation_samples=0)), "validation")
    # auto (the default): 10 % of the training set, the same fixed draw
    auto = TrainConfig.from_dict(dict(task="add", seq_len=5, train_samples=40, test_samples=8))
    assert auto.validation_samples == "auto" and len(build_dataset(auto, "validation")) == 4
    assert resolve_validation(auto).validation_samples == 4 and len(build_dataset(auto, "train")) == 36
    with pytest.raises(ConfigError, match="validation_samples must be an int"):
        TrainConfig.from_dict(dict(validation_samples=-1))


def test_a_model_other_than_the_tasks_gets_its_own_regime():
    """The adding task's own network is an LTC one: --neuron alif takes the task's ALIF regime
    (tasks.json's by_neuron: no LTC-only options, the SRNN threshold); an explicit flag still wins;
    the result builds."""
    from fptt.run.config import NetworkSettings, resolve_config

    ltc = resolve_config({}, {"task": "add"})
    assert ltc.fixed_threshold and ltc.baseline_threshold == 0.5
    alif = resolve_config({}, {"task": "add", "neuron": "alif"})
    assert alif.baseline_threshold == 0.01 and alif.readout == "fixed" and not alif.fixed_threshold
    assert alif.chrono_tau is None and alif.initial_membrane == NetworkSettings.initial_membrane
    assert (alif.gate_slopes, alif.fixed_threshold) == (NetworkSettings.gate_slopes, NetworkSettings.fixed_threshold)
    assert alif.lr == ltc.lr and alif.update_points == ltc.update_points  # the task's own settings stay
    assert resolve_config({}, {"task": "add", "neuron": "alif", "baseline_threshold": 0.2}).baseline_threshold == 0.2
    paper = resolve_config({}, {"task": "smnist", "model": "lif", "preset": "paper"})  # "model": the v0.3 name
    assert paper.adaptation_strength == 0.0 and not paper.gate_slopes and paper.hidden_sizes == (256, 256)
    build_model(paper, 1, 10)
    gru = resolve_config({}, {"task": "smnist", "neuron": "gru"})
    assert gru.optimizer == resolve_config({}, {"task": "smnist"}).optimizer
    assert isinstance(build_model(gru, 1, 10), RecurrentBaseline)
    with pytest.raises(ConfigError, match="gate_slopes is an option of the LTC neuron"):
        resolve_config({}, {"task": "add", "neuron": "alif", "gate_slopes": True})


def test_alif_time_constants_and_surrogate_width_from_the_config():
    torch.manual_seed(0)
    config = TrainConfig.from_dict(dict(task="mnist1d", model="alif", hidden=[400], tau_membrane=[3.0, 0.5],
                         tau_adaptation=[40.0, 1.0], surrogate_sigma=0.05))
    pass  # validated when made
    layer = build_model(config, 1, 10).layers[0]
    assert abs(float(layer.tau_membrane.detach().mean()) - 3.0) < 0.1
    assert abs(float(layer.tau_adaptation.detach().mean()) - 40.0) < 0.2
    assert layer.spike_fn.sigma == 0.05
    with pytest.raises(ConfigError, match="not of ltc"):
        TrainConfig.from_dict(dict(model="ltc", tau_membrane=[3.0, 1.0]))
    with pytest.raises(ConfigError, match=r"\[mean, std\]"):
        TrainConfig.from_dict(dict(model="alif", tau_membrane=[0.5, 1.0]))
    with pytest.raises(ConfigError, match="surrogate_sigma"):
        TrainConfig.from_dict(dict(surrogate_sigma=0.0))


def test_task_specific_model_regime_and_trace_methods_taking_the_fixed_readout():
    from fptt.run.config import resolve_config

    alif = resolve_config({}, {"task": "mnist1d", "model": "alif"})
    assert alif.tau_membrane_init == (3.0, 1.0) and alif.readout == "liquid" and alif.lr == 1e-2
    assert alif.weighting == "uniform"  # the task's own default stays
    eprop = resolve_config({}, {"task": "mnist1d", "model": "alif", "method": "eprop"})
    assert eprop.readout == "fixed" and eprop.tau_membrane_init == (3.0, 1.0)
    assert resolve_config({}, {"task": "smnist", "model": "alif"}).tau_membrane_init is None  # only where measured
