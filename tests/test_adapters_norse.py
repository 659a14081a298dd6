"""Norse networks under FPTT through fptt.interop.adapters.NorseAdapter, against the real package."""
import pytest
import torch
from torch import nn

norse = pytest.importorskip("norse.torch")

from fptt.interop.adapters import NorseAdapter  # noqa: E402
from fptt.models.state import detach_state  # noqa: E402

from .adapter_checks import (  # noqa: E402
    CLASSES,
    FEATURES,
    check_checkpoint_resume,
    check_stream_learning,
    check_training_reduces_loss,
    check_window_gradients,
)

HIDDEN = 12


def _network(kind: str) -> nn.Module:
    # Norse's default parameters and dt = 1 ms
    cell = {"lif": norse.LIFRecurrentCell, "lsnn": norse.LSNNRecurrentCell}[kind](FEATURES, HIDDEN)
    return norse.SequentialState(cell, nn.Linear(HIDDEN, CLASSES), norse.LICell())


def _maker(kind: str):
    def make(dtype: torch.dtype) -> NorseAdapter:
        torch.manual_seed(5)
        return NorseAdapter(_network(kind), FEATURES).to(dtype)
    return make


class _OwnLoop:
    """The Norse way: ``output, state = network(x_t, state)`` from ``state = None``."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def start(self) -> None:
        self.state = None

    def detach(self) -> None:
        if self.state is not None:
            self.state = [None if s is None else type(s)(*(t.detach() for t in s)) for s in self.state]

    def window(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for t in range(x.shape[1]):
            output, self.state = self.network(x[:, t], self.state)
            outputs.append(output)
        return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("kind", ["lif", "lsnn"])
def test_fptt_windows_through_the_adapter_give_the_gradients_of_norses_own_loop(kind):
    check_window_gradients(_maker(kind), _OwnLoop)


def test_a_short_fptt_run_of_a_lif_recurrent_network_reduces_the_loss():
    check_training_reduces_loss(_maker("lif"))


def test_a_checkpoint_of_an_lsnn_network_resumes_exactly(tmp_path):
    check_checkpoint_resume(_maker("lsnn"), tmp_path / "checkpoint.pt")


def test_a_single_cell_is_stepped_with_its_own_initial_state():
    torch.manual_seed(0)
    cell = norse.LSNNRecurrentCell(FEATURES, HIDDEN)
    adapter = NorseAdapter(cell, FEATURES)
    x = torch.randn(4, FEATURES)
    expected_state = cell.initial_state(x)
    state = adapter.init_state(4)
    assert type(state).__name__ == "LSNNState"
    for got, want in zip(state, expected_state):
        torch.testing.assert_close(got, want.to(got.dtype))
    spikes, new_state = adapter.step(x, state)
    reference_spikes, reference_state = cell(x, None)
    torch.testing.assert_close(spikes, reference_spikes)
    for got, want in zip(detach_state(new_state), reference_state):
        torch.testing.assert_close(got, want.detach())


def test_a_module_that_is_not_a_norse_cell_is_refused():
    with pytest.raises(ValueError, match="neither a norse.torch.SequentialState nor a Norse cell"):
        NorseAdapter(nn.GRUCell(3, 4), 3)
    with pytest.raises(ValueError, match="return_hidden=False"):
        NorseAdapter(norse.SequentialState(norse.LIFRecurrentCell(3, 4), return_hidden=True), 3)


def test_an_online_learner_trains_through_the_adapter():
    check_stream_learning(_maker("lif"))
