"""SpikingJelly networks under FPTT through fptt.interop.adapters.SpikingJellyAdapter, against the real package."""
import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly.activation_based.base")
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402

from fptt.interop.adapters import SpikingJellyAdapter  # noqa: E402

from .adapter_checks import (  # noqa: E402
    CLASSES,
    FEATURES,
    check_checkpoint_resume,
    check_stream_learning,
    check_training_reduces_loss,
    check_window_gradients,
)

HIDDEN = 12


def _network(step_mode: str) -> nn.Module:
    if step_mode == "m-recurrent":  # a recurrent container: its feedback memory y_{-1} starts as None
        network = nn.Sequential(layer.Linear(FEATURES, HIDDEN),
                                layer.LinearRecurrentContainer(neuron.LIFNode(tau=2.0), HIDDEN, HIDDEN),
                                layer.Linear(HIDDEN, CLASSES))
        functional.set_step_mode(network, "m")
        return network
    network = nn.Sequential(layer.Linear(FEATURES, HIDDEN), neuron.LIFNode(tau=2.0, detach_reset=True),
                            layer.Linear(HIDDEN, HIDDEN), neuron.ParametricLIFNode(init_tau=3.0),
                            layer.Linear(HIDDEN, CLASSES))
    functional.set_step_mode(network, step_mode)
    return network


def _maker(step_mode: str):
    def make(dtype: torch.dtype) -> SpikingJellyAdapter:
        torch.manual_seed(2)
        return SpikingJellyAdapter(_network(step_mode), FEATURES).to(dtype)
    return make


class _OwnForward:
    """The SpikingJelly way: memories inside the modules, ``reset_net`` for a new sequence, the
    memories detached at a window boundary (as ``detach_net`` does, but out of place: its in-place
    ``detach_()`` fails on the recurrent container's memory, a view); a multi-step network takes
    the whole window at once."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.multi_step = network[0].step_mode == "m"

    def start(self) -> None:
        functional.reset_net(self.network)

    def detach(self) -> None:
        for module in self.network.modules():
            if isinstance(module, base.MemoryModule):
                for name, value in module._memories.items():
                    if isinstance(value, torch.Tensor):
                        module._memories[name] = value.detach()

    def window(self, x: torch.Tensor) -> torch.Tensor:
        if self.multi_step:
            return self.network(x.transpose(0, 1)).transpose(0, 1)  # (T, B, C) in SpikingJelly
        return torch.stack([self.network(x[:, t]) for t in range(x.shape[1])], dim=1)


@pytest.mark.parametrize("step_mode", ["s", "m", "m-recurrent"])
def test_fptt_windows_through_the_adapter_give_the_gradients_of_spikingjellys_own_forward(step_mode):
    check_window_gradients(_maker(step_mode), _OwnForward)


def test_a_short_fptt_run_of_a_single_step_network_reduces_the_loss():
    check_training_reduces_loss(_maker("s"))


def test_a_checkpoint_of_a_multi_step_network_resumes_exactly(tmp_path):
    check_checkpoint_resume(_maker("m"), tmp_path / "checkpoint.pt")


def test_the_adapter_leaves_the_modules_memories_untouched():
    adapter = _maker("s")(torch.float32)
    state = adapter.init_state(3)
    assert [tuple(t.shape) for t in state] == [(3, HIDDEN), (3, HIDDEN)]
    assert all(float(t.abs().sum()) == 0 for t in state)  # v_reset = 0
    _, state = adapter.step(torch.randn(3, FEATURES), state)
    assert adapter.network[1].v == 0.0 and adapter.network[3].v == 0.0  # still the reset values
    assert state[0].requires_grad


def test_mixed_step_modes_and_sequence_only_nodes_are_refused():
    network = _network("s")
    network[3].step_mode = "m"
    with pytest.raises(ValueError, match="mixes step modes"):
        SpikingJellyAdapter(network, FEATURES)
    readout = nn.Sequential(layer.Linear(FEATURES, CLASSES, step_mode="m"), neuron.NonSpikingLIFNode())
    with pytest.raises(ValueError, match="NonSpikingLIFNode.*restart"):
        SpikingJellyAdapter(readout, FEATURES)


def test_an_online_learner_trains_through_the_adapter():
    check_stream_learning(_maker("m-recurrent"))
