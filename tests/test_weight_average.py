"""WeightEMA: the moving average of the weights against a plain reference, its swap and its round trip."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fptt import WeightEMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _move(model: nn.Module, step: int) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * (step + 1))


def test_update_follows_the_recursion_of_a_plain_reference():
    model, decay = _model(), 0.8
    ema = WeightEMA(model, decay)
    reference = {name: param.detach().clone() for name, param in model.named_parameters()}  # W_ema = W at the start
    for step in range(4):
        _move(model, step)
        ema.update()
        for name, param in model.named_parameters():
            reference[name] = decay * reference[name] + (1 - decay) * param.detach()
    for name, average in zip(ema.names, ema.averages):
        torch.testing.assert_close(average, reference[name], rtol=1e-6, atol=1e-6)


def test_applied_swaps_in_the_average_and_restores_the_weights_exactly_also_on_error():
    model = _model()
    ema = WeightEMA(model, 0.5)
    _move(model, 0)
    ema.update()
    weights = [param.detach().clone() for param in model.parameters()]
    with ema.applied():
        for param, average in zip(model.parameters(), ema.averages):
            assert torch.equal(param, average)
    with pytest.raises(RuntimeError, match="inside"), ema.applied():
        raise RuntimeError("inside")
    for param, weight in zip(model.parameters(), weights):
        assert torch.equal(param, weight)
    assert not any(torch.equal(a, w) for a, w in zip(ema.averages, weights))  # the average is not the weights


def test_model_state_dict_round_trip_restores_the_averages():
    model = _model()
    ema = WeightEMA(model, 0.9)
    _move(model, 1)
    ema.update()
    saved = ema.model_state_dict(model)
    fresh = WeightEMA(model, 0.9)  # starts at the current weights
    fresh.load_model_state_dict(saved)
    for a, b in zip(ema.averages, fresh.averages):
        assert torch.equal(a, b)
    rebuilt = _model()
    rebuilt.load_state_dict(saved)  # a plain state_dict: what fptt eval --with ema loads
    for param, average in zip(rebuilt.parameters(), ema.averages):
        assert torch.equal(param, average)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1, 1.5])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        WeightEMA(_model(), decay)


def test_a_saved_average_of_another_model_is_refused():
    ema = WeightEMA(_model(), 0.9)
    with pytest.raises(KeyError, match="lacks"):
        ema.load_model_state_dict({})
    other = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).state_dict()
    with pytest.raises(ValueError, match="shape"):
        ema.load_model_state_dict(other)
