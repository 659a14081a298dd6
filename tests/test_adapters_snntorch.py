"""snnTorch stacks under FPTT through fptt.interop.adapters.SnnTorchAdapter, against the real package."""
import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")

from fptt.interop.adapters import SnnTorchAdapter  # noqa: E402

from .adapter_checks import (  # noqa: E402
    CLASSES,
    FEATURES,
    check_checkpoint_resume,
    check_stream_learning,
    check_training_reduces_loss,
    check_window_gradients,
)

HIDDEN = 12


def _stack(kind: str) -> nn.Sequential:
    if kind == "leaky":
        return nn.Sequential(nn.Linear(FEATURES, HIDDEN), snn.Leaky(beta=0.85), nn.Linear(HIDDEN, CLASSES),
                             snn.Leaky(beta=0.9, reset_mechanism="none"))
    if kind == "rleaky":
        return nn.Sequential(nn.Linear(FEATURES, HIDDEN), snn.RLeaky(beta=0.85, linear_features=HIDDEN),
                             nn.Linear(HIDDEN, CLASSES), snn.Leaky(beta=0.9, reset_mechanism="none"))
    if kind == "rsynaptic":
        return nn.Sequential(nn.Linear(FEATURES, HIDDEN), snn.RSynaptic(alpha=0.7, beta=0.85, linear_features=HIDDEN,
                                                                        learn_beta=True),
                             nn.Linear(HIDDEN, CLASSES), snn.Synaptic(alpha=0.5, beta=0.9, reset_mechanism="none"))
    raise ValueError(kind)


def _maker(kind: str):
    def make(dtype: torch.dtype) -> SnnTorchAdapter:
        torch.manual_seed(11)
        return SnnTorchAdapter(_stack(kind), FEATURES).to(dtype)
    return make


class _OwnLoop:
    """The snnTorch way: call each neuron with its state, keep the states in local variables."""

    def __init__(self, network: nn.Sequential) -> None:
        self.network = network

    def start(self) -> None:
        self.states = {}
        for index, module in enumerate(self.network):
            if isinstance(module, snn.RSynaptic):
                self.states[index] = module.init_rsynaptic()
            elif isinstance(module, snn.Synaptic):
                self.states[index] = module.init_synaptic()
            elif isinstance(module, snn.RLeaky):
                self.states[index] = module.init_rleaky()
            elif isinstance(module, snn.Leaky):
                self.states[index] = (module.init_leaky(),)

    def detach(self) -> None:
        self.states = {i: tuple(s.detach() for s in state) for i, state in self.states.items()}

    def window(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for t in range(x.shape[1]):
            h = x[:, t]
            for index, module in enumerate(self.network):
                if index not in self.states:
                    h = module(h)
                    continue
                spk, *rest = module(h, *self.states[index])
                self.states[index] = (spk, *rest) if isinstance(module, (snn.RLeaky, snn.RSynaptic)) else tuple(rest)
                h, mem = spk, rest[-1]
            outputs.append(mem)
        return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("kind", ["leaky", "rleaky", "rsynaptic"])
def test_fptt_windows_through_the_adapter_give_the_gradients_of_snntorchs_own_loop(kind):
    # float32: snnTorch's spike functions return float32 spikes whatever the membrane's dtype
    check_window_gradients(_maker(kind), _OwnLoop, dtype=torch.float32)


def test_a_short_fptt_run_of_an_rleaky_stack_reduces_the_loss():
    check_training_reduces_loss(_maker("rleaky"))


def test_a_checkpoint_of_an_rsynaptic_stack_resumes_exactly(tmp_path):
    check_checkpoint_resume(_maker("rsynaptic"), tmp_path / "checkpoint.pt")


def test_unsupported_neurons_and_init_hidden_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="init_hidden=False"):
        SnnTorchAdapter(nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.9, init_hidden=True)), 3)
    with pytest.raises(ValueError, match="does not support"):
        SnnTorchAdapter(nn.Sequential(nn.Linear(3, 4), snn.Alpha(alpha=0.9, beta=0.8)), 3)
    with pytest.raises(ValueError, match="no snnTorch neuron"):
        SnnTorchAdapter(nn.Sequential(nn.Linear(3, 4)), 3)
    adapter = SnnTorchAdapter(_stack("leaky"), FEATURES)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        adapter.step(torch.zeros(2, 4), adapter.init_state(2))


def test_the_initial_state_is_snntorchs_zeros_and_no_module_keeps_a_graph():
    adapter = SnnTorchAdapter(_stack("rsynaptic"), FEATURES)
    state = adapter.init_state(5)
    assert [type(s).__name__ for s in state] == ["RSynapticState", "SynapticState"]
    assert state[0].mem.shape == (5, HIDDEN) and state[1].mem.shape == (5, CLASSES)
    assert all(float(t.abs().sum()) == 0 for layer in state for t in layer)
    output, state = adapter.step(torch.randn(5, FEATURES), state)
    assert output.requires_grad and state[0].mem.requires_grad
    assert all(not module.mem.requires_grad for module in adapter.network if hasattr(module, "mem"))


def test_an_online_learner_trains_through_the_adapter():
    check_stream_learning(_maker("rleaky"))
