"""Pinning tests for the spike functions and their surrogate gradients (SPEC §2, DESIGN "tests")."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import fptt.neurons.surrogate as surrogate_module
from fptt.neurons.surrogate import (
    SURROGATES,
    ArcTan,
    FastSigmoid,
    MultiGaussian,
    Surrogate,
    Triangle,
    get_surrogate,
    heaviside,
)

NAMES = ["multi_gaussian", "fast_sigmoid", "arctan", "triangle"]

# Configured (non-default) objects, so that constants are really used by derivative/primitive.
CONFIGURED = [
    MultiGaussian(sigma=0.5, h=0.2, s=4.0, gamma=1.0),
    FastSigmoid(slope=3.0),
    ArcTan(alpha=0.7),
    Triangle(width=0.6),
]

ALL = [get_surrogate(name) for name in NAMES] + CONFIGURED
ALL_IDS = [f"default-{name}" for name in NAMES] + [f"configured-{s.name}" for s in CONFIGURED]

DTYPES = [torch.float32, torch.float64]


def kinks(spike_fn: Surrogate) -> list[float]:
    """Points where the primitive is only C^1 (finite differences are O(h) wrong right there)."""
    if isinstance(spike_fn, Triangle):
        return [-spike_fn.width, 0.0, spike_fn.width]
    if isinstance(spike_fn, FastSigmoid):
        return [0.0]
    return []


def sample_points(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    grid = torch.linspace(-3.0, 3.0, 241, dtype=torch.float64)
    random = torch.randn(200, generator=generator, dtype=torch.float64) * 1.5
    return torch.cat([grid, random]).to(dtype)


def test_registry_offers_exactly_the_four_spec_surrogates():
    assert sorted(SURROGATES) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_get_surrogate_by_name_returns_the_default_configured_class(name):
    spike_fn = get_surrogate(name)
    assert isinstance(spike_fn, SURROGATES[name])
    assert spike_fn == SURROGATES[name]()
    assert spike_fn.name == name


@pytest.mark.parametrize("spike_fn", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_is_the_heaviside_step_v_greater_than_zero(spike_fn, dtype):
    v = torch.cat([sample_points(dtype), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 5e-8, -5e-8], dtype=dtype)])
    out = spike_fn(v)
    assert out.dtype == dtype
    assert out.shape == v.shape
    torch.testing.assert_close(out, (v > 0).to(dtype), rtol=0, atol=0)
    assert out[-6].item() == 0.0, "H(0) must be 0 (strict inequality)"
    assert set(out.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("spike_fn", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_multiplies_the_incoming_gradient_by_the_surrogate_derivative(spike_fn, dtype):
    v = sample_points(dtype).reshape(-1, 1).repeat(1, 3).requires_grad_(True)
    grad_output = torch.randn(v.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    spike_fn(v).backward(grad_output)
    expected = grad_output * spike_fn.derivative(v.detach())
    torch.testing.assert_close(v.grad, expected)
    assert v.grad.dtype == dtype
    # not trivially zero: the surrogate passes gradient near the threshold
    assert v.grad.abs().max() > 0.01


@pytest.mark.parametrize("spike_fn", ALL, ids=ALL_IDS)
def test_derivative_equals_the_finite_difference_derivative_of_the_primitive(spike_fn):
    v = sample_points(torch.float64)
    away = torch.ones_like(v, dtype=torch.bool)
    for kink in kinks(spike_fn):
        away &= (v - kink).abs() > 1e-3
    v = v[away]
    step = 1e-6
    finite_difference = (spike_fn.primitive(v + step) - spike_fn.primitive(v - step)) / (2 * step)
    torch.testing.assert_close(spike_fn.derivative(v), finite_difference, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spike_fn", ALL, ids=ALL_IDS)
def test_derivative_equals_autograd_derivative_of_the_primitive(spike_fn):
    v = sample_points(torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(spike_fn.primitive(v).sum(), v)
    torch.testing.assert_close(spike_fn.derivative(v.detach()), grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spike_fn", ALL, ids=ALL_IDS)
def test_derivative_is_symmetric_and_peaks_at_the_threshold(spike_fn):
    v = sample_points(torch.float64)
    torch.testing.assert_close(spike_fn.derivative(v), spike_fn.derivative(-v))
    at_zero = spike_fn.derivative(torch.zeros(1, dtype=torch.float64))
    assert (spike_fn.derivative(v) <= at_zero + 1e-12).all()
    assert at_zero.item() > 0


def test_multi_gaussian_defaults_are_the_papers_constants():
    spike_fn = get_surrogate("multi_gaussian")
    assert (spike_fn.sigma, spike_fn.h, spike_fn.s, spike_fn.gamma) == (0.3, 0.15, 6.0, 0.5)
    assert surrogate_module.multi_gaussian == spike_fn


def test_multi_gaussian_derivative_at_zero_equals_the_formula_worked_by_hand():
    sigma, h, s, gamma = 0.3, 0.15, 6.0, 0.5
    root = math.sqrt(2 * math.pi)
    narrow = 1.0 / (root * sigma)  # N(0; 0, σ)
    wide = math.exp(-(sigma**2) / (2 * (s * sigma) ** 2)) / (root * s * sigma)  # N(0; ±σ, sσ)
    expected = gamma * ((1 + h) * narrow - h * wide - h * wide)
    value = get_surrogate("multi_gaussian").derivative(torch.tensor([0.0], dtype=torch.float64)).item()
    assert value == pytest.approx(expected, rel=1e-12)
    assert value == pytest.approx(0.731853, abs=1e-6)  # the number itself, independently of the formula above


def test_multi_gaussian_derivative_has_negative_side_lobes():
    # the paper's surrogate dips below zero away from the threshold (the "wide" Gaussians dominate)
    value = get_surrogate("multi_gaussian").derivative(torch.tensor([1.0], dtype=torch.float64)).item()
    assert value < 0


@pytest.mark.parametrize(
    "spike_fn, value_at_zero",
    [(FastSigmoid(slope=3.0), 1.0), (ArcTan(alpha=0.7), 0.35), (Triangle(width=0.6), 1 / 0.6)],
    ids=["fast_sigmoid", "arctan", "triangle"],
)
def test_simple_surrogates_have_the_documented_peak_value(spike_fn, value_at_zero):
    value = spike_fn.derivative(torch.zeros(1, dtype=torch.float64)).item()
    assert value == pytest.approx(value_at_zero, rel=1e-12)


def test_triangle_derivative_is_zero_outside_its_width():
    spike_fn = Triangle(width=0.6)
    v = torch.tensor([-2.0, -0.61, 0.61, 2.0], dtype=torch.float64)
    assert (spike_fn.derivative(v) == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_float64_gradients_agree(name):
    spike_fn = get_surrogate(name)
    v64 = sample_points(torch.float64).requires_grad_(True)
    v32 = v64.detach().float().requires_grad_(True)
    spike_fn(v64).sum().backward()
    spike_fn(v32).sum().backward()
    assert v32.grad.dtype == torch.float32
    torch.testing.assert_close(v32.grad.double(), v64.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("spike_fn", [get_surrogate(name) for name in NAMES] + [CONFIGURED[0]],
                         ids=NAMES + ["configured-multi_gaussian"])
def test_spike_function_works_under_torch_compile_forward_and_backward(spike_fn):
    def loss_fn(v, weight):
        spikes = spike_fn(v * weight)
        return spikes, (spikes * torch.arange(v.shape[-1], dtype=v.dtype)).sum()

    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=False)
    v = torch.linspace(-2.0, 2.0, 17, dtype=torch.float64)
    weight_eager = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    weight_compiled = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    spikes_eager, loss_eager = loss_fn(v, weight_eager)
    spikes_compiled, loss_compiled = compiled(v, weight_compiled)
    torch.testing.assert_close(spikes_compiled, spikes_eager, rtol=0, atol=0)
    loss_eager.backward()
    loss_compiled.backward()
    assert weight_eager.grad.abs().item() > 0
    torch.testing.assert_close(weight_compiled.grad, weight_eager.grad)


def test_unknown_name_raises_value_error_listing_the_choices():
    with pytest.raises(ValueError) as info:
        get_surrogate("sigmoid_of_doom")
    message = str(info.value)
    assert "sigmoid_of_doom" in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize("spelling", ["Multi_Gaussian", "multi-gaussian", "MULTI-GAUSSIAN"])
def test_names_are_case_and_dash_insensitive(spelling):
    assert get_surrogate(spelling) == MultiGaussian()


def test_none_means_the_default_multi_gaussian():
    assert get_surrogate(None) == MultiGaussian()
    assert get_surrogate() == MultiGaussian()


@pytest.mark.parametrize(
    "name, constants",
    [
        ("multi_gaussian", {"sigma": 0.0}),
        ("multi_gaussian", {"sigma": -0.3}),
        ("multi_gaussian", {"s": 0.0}),
        ("fast_sigmoid", {"slope": 0.0}),
        ("fast_sigmoid", {"slope": -1.0}),
        ("arctan", {"alpha": 0.0}),
        ("triangle", {"width": 0.0}),
        ("triangle", {"width": -1.0}),
        ("triangle", {"slope": 2.0}),  # a constant of another surrogate
        ("arctan", {"sigma": 0.3}),
    ],
)
def test_bad_constants_raise_value_error(name, constants):
    with pytest.raises(ValueError):
        get_surrogate(name, **constants)


@pytest.mark.parametrize("cls, constants", [(MultiGaussian, {"sigma": -1.0}), (FastSigmoid, {"slope": 0.0}),
                                            (ArcTan, {"alpha": -2.0}), (Triangle, {"width": 0.0})])
def test_constructing_a_surrogate_with_bad_constants_raises_value_error(cls, constants):
    with pytest.raises(ValueError):
        cls(**constants)


def test_constants_go_either_to_the_object_or_to_get_surrogate_not_both():
    with pytest.raises(ValueError):
        get_surrogate(FastSigmoid(), slope=3.0)


def test_a_configured_object_is_returned_as_is():
    spike_fn = FastSigmoid(slope=3.0)
    assert get_surrogate(spike_fn) is spike_fn


@pytest.mark.parametrize("bad", [42, 1.5, ["fast_sigmoid"]])
def test_a_spec_of_the_wrong_type_raises_type_error(bad):
    with pytest.raises(TypeError):
        get_surrogate(bad)


@pytest.mark.parametrize("spike_fn", ALL, ids=ALL_IDS)
def test_config_round_trips_through_get_surrogate(spike_fn):
    config = spike_fn.config()
    assert config["name"] == spike_fn.name
    assert {key for key in config if key != "name"} == {field.name for field in dataclasses.fields(spike_fn)}
    rebuilt = get_surrogate(config)
    assert rebuilt == spike_fn
    assert type(rebuilt) is type(spike_fn)
    assert config == spike_fn.config(), "get_surrogate must not consume the caller's dict"


def test_dict_config_with_extra_constants_from_keywords():
    assert get_surrogate({"name": "fast_sigmoid"}, slope=7.0) == FastSigmoid(slope=7.0)
    assert get_surrogate({"slope": 7.0, "name": "fast_sigmoid"}) == FastSigmoid(slope=7.0)


def test_surrogates_are_immutable():
    spike_fn = MultiGaussian()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spike_fn.sigma = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_module_level_instances_are_callable_spike_functions(name):
    spike_fn = getattr(surrogate_module, name)
    assert callable(spike_fn)
    assert spike_fn == get_surrogate(name)
    v = torch.tensor([-1.0, 0.5], requires_grad=True)
    out = spike_fn(v)
    assert out.tolist() == [0.0, 1.0]
    out.sum().backward()
    assert v.grad is not None


def test_spike_function_rejects_non_tensors_and_integer_tensors():
    with pytest.raises(TypeError):
        surrogate_module.multi_gaussian(0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        surrogate_module.multi_gaussian(torch.tensor([1, 0, -1]))


def test_heaviside_helper_keeps_dtype_and_has_no_gradient_path():
    v = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    out = heaviside(v)
    assert out.dtype == torch.float64
    assert out.tolist() == [0.0, 0.0, 1.0]
    assert not out.requires_grad
