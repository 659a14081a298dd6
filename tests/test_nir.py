"""NIR export/import of LIF and ALIF networks (fptt.interop.nir) with the real ``nir`` package."""
import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from fptt import SpikingRNN  # noqa: E402
from fptt.interop.nir import NIRExportError, NIRImportError, from_nir, read_nir, to_nir, write_nir  # noqa: E402

from .reference.nir_simulator import simulate  # noqa: E402


def _model(neuron="lif", reset="subtract", readout="fixed", readout_from="spikes", initial="zero", seed=0, **options):
    torch.manual_seed(seed)
    model = SpikingRNN(3, [10, 8], 4, neuron=neuron, readout=readout, readout_from=readout_from, reset=reset,
                       initial_membrane=initial, **options).double()
    with torch.no_grad():  # varied time constants and readouts, so that a mixed-up neuron would show
        for layer in model.layers:
            layer.tau_membrane.uniform_(2.0, 12.0)
        if readout == "fixed":
            model.readout.log_tau.uniform_(0.5, 2.5)
    return model


def _run(model, x, seed=0):
    """Scores (B, T, O) and the spikes of every layer (B, T, H) of ``model`` on ``x``."""
    torch.manual_seed(seed)
    state = model.init_state(x.shape[0])
    scores, spikes = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            score, state = model.step(x[:, t], state)
            scores.append(score)
            spikes.append(torch.cat([layer.spikes for layer in state.layers], dim=-1))
    return torch.stack(scores, 1), torch.stack(spikes, 1)


def _input(steps=30):
    return torch.randn(4, steps, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 2


LIF_CASES = [
    dict(reset="zero", readout="fixed"),
    dict(reset="subtract", readout="fixed"),
    dict(reset="subtract", readout="linear", readout_from="membrane"),
    dict(reset="zero", readout="linear", dt=0.5),
]


@pytest.mark.parametrize("discretization", ["zoh", "euler"])
@pytest.mark.parametrize("case", LIF_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_the_graphs_nir_primitives_alone_compute_the_lif_network(case, discretization):
    """A plain NIR simulator (no fptt code, no metadata) gives fptt's scores on the exported graph,
    integrating the time constants by the rule they were written for."""
    model = _model(**case)
    x = _input()
    scores, spikes = _run(model, x)
    assert 0.02 < float(spikes.mean()) < 0.9, "the test needs spikes"
    graph = to_nir(model, discretization)
    simulated = simulate(graph, x.numpy(), dt=case.get("dt", 1.0), discretization=discretization)
    np.testing.assert_allclose(simulated, scores.numpy(), rtol=1e-9, atol=1e-9)
    other = "euler" if discretization == "zoh" else "zoh"  # the rule matters: the other one differs
    assert not np.allclose(simulate(graph, x.numpy(), dt=case.get("dt", 1.0), discretization=other), scores.numpy())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch's, inside Norse's importer
def test_norse_runs_an_exported_lif_network_with_the_same_outputs():
    """Norse's own NIR import (forward-Euler LIF boxes) of a graph written for "euler" gives fptt's
    scores step for step: the graph is usable outside fptt."""
    norse = pytest.importorskip("norse.torch")
    model = _model(reset="zero", readout="linear").float()
    x = _input().float()
    scores, spikes = _run(model, x)
    assert float(spikes.mean()) > 0.02
    network = norse.from_nir(to_nir(model, "euler"), dt=1.0)
    state, outputs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            output, state = network(x[:, t], state)
            outputs.append(output)
    torch.testing.assert_close(torch.stack(outputs, 1), scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", LIF_CASES + [dict(neuron="alif", reset="subtract", initial="random"),
                                              dict(neuron="alif", reset="zero", readout="linear"),
                                              dict(neuron="alif", reset="subtract", discretization="euler")],
                         ids=lambda c: "-".join(str(v) for v in c.values()))
def test_a_network_written_to_a_nir_file_and_read_back_gives_the_same_spikes(case, tmp_path):
    case = dict(case)
    discretization = case.pop("discretization", "zoh")
    model = _model(**case)
    x = _input()
    scores, spikes = _run(model, x)
    assert float(spikes.mean()) > 0.02
    path = write_nir(model, tmp_path / "network.nir", discretization)
    torch.manual_seed(123)  # the rebuilt model starts from other random weights, replaced by the file's
    restored = read_nir(path)
    assert type(restored.layers[0]) is type(model.layers[0])
    again, again_spikes = _run(restored, x)
    assert torch.equal(again_spikes, spikes)
    torch.testing.assert_close(again, scores, rtol=1e-12, atol=1e-12)
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        if not (name.endswith("tau_adaptation") and case.get("neuron", "lif") == "lif"):  # unused by LIF (β = 0)
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def test_alif_adaptation_is_carried_in_metadata_and_changes_the_spikes():
    model = _model(neuron="alif", reset="subtract")
    graph = to_nir(model)
    metadata = graph.nodes["layer0_spikes"].metadata
    assert metadata["fptt_neuron"] == "alif" and metadata["fptt_adaptation_strength"] == 1.8
    np.testing.assert_array_equal(metadata["fptt_tau_adaptation"], model.layers[0].tau_adaptation.detach().numpy())
    # other NIR tools see the LIF part only: the primitives alone do not give the ALIF's spikes
    x = _input()
    scores, _ = _run(model, x)
    assert not np.allclose(simulate(graph, x.numpy()), scores.numpy())


def test_an_ltc_network_cannot_be_exported_and_the_message_says_why():
    model = SpikingRNN(3, 8, 2, neuron="ltc", readout="fixed")
    with pytest.raises(NIRExportError, match="LTC network has no NIR encoding.*fixed time constants"):
        to_nir(model)


@pytest.mark.parametrize("options, message", [
    (dict(readout="liquid"), "liquid readout has no NIR primitive"),
    (dict(norm="layer"), "normalis"),
    (dict(reset="zero", readout_from="membrane"), "outputs spikes only"),
])
def test_parts_without_a_nir_primitive_are_refused(options, message):
    torch.manual_seed(0)
    model = SpikingRNN(3, 8, 2, neuron="lif", **{"readout": "fixed", **options})
    with pytest.raises(NIRExportError, match=message):
        to_nir(model)


def test_a_graph_that_is_not_an_fptt_network_is_refused():
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                                   nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
    with pytest.raises(NIRImportError, match="layer0_input"):
        from_nir(graph)


def test_fptt_export_writes_the_averaged_weights_of_a_run_as_nir(tmp_path, capsys):
    from fptt.cli import main
    from fptt.run.checkpoint import load_checkpoint

    from .test_tracking import _train

    run = tmp_path / "run"
    _train(run, model="lif", chrono_tau=None, readout="fixed", initial_state="zero", load_average_each_epoch=False)
    assert main(["export", str(run), "--format", "nir", "--quiet"]) == 0
    path = run / "export" / "model.nir"
    assert capsys.readouterr().out.strip() == str(path)
    restored = read_nir(path)
    checkpoint = load_checkpoint(run / "checkpoint_last.pt")
    average, weights = checkpoint["model_average"], checkpoint["model"]
    assert any(not torch.equal(average[name], weights[name]) for name in average)  # W̄ ≠ W after training
    for name, value in restored.state_dict().items():
        if name.endswith("tau_adaptation"):  # a buffer that LIF (β = 0) never reads; not exported
            continue
        torch.testing.assert_close(value, average[name].double(), rtol=1e-6, atol=1e-6, msg=name)

    ltc = tmp_path / "ltc"
    _train(ltc, epochs=1)
    assert main(["export", str(ltc), "--format", "nir"]) == 2
    assert "LTC network has no NIR encoding" in capsys.readouterr().err
