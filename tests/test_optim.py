"""Tests for fptt.optim.FPTT, the Forward-Propagation-Through-Time optimizer wrapper."""
from __future__ import annotations

import copy
import io
import math
import warnings
from typing import Any, Callable

import pytest
import torch
from torch import nn

from fptt.optim import FPTT, regularizer

try:
    from reference.fptt_reference import ReferenceFPTT
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.reference.fptt_reference import ReferenceFPTT

DTYPE = torch.float64


class SmallNet(nn.Module):
    """Linear -> GRUCell -> Linear: matrices, biases and a recurrent cell."""

    def __init__(self, dtype: torch.dtype = DTYPE, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(5, 4)
        self.cell = nn.GRUCell(4, 3)
        self.head = nn.Linear(3, 2)
        self.to(dtype)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.cell(torch.tanh(self.inp(x)), h))


def batch(step: int, dtype: torch.dtype = DTYPE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(6, 5, generator=g, dtype=dtype)
    h = torch.randn(6, 3, generator=g, dtype=dtype)
    y = torch.randn(6, 2, generator=g, dtype=dtype)
    return x, h, y


def backward(model: SmallNet, step: int) -> None:
    x, h, y = batch(step, next(model.parameters()).dtype)
    ((model(x, h) - y) ** 2).mean().backward()


def drop_some_grads(model: SmallNet, step: int) -> None:
    """Make some parameters gradient-less at some steps."""
    if step % 3 == 1:
        model.head.bias.grad = None
    if step in (0, 4):
        model.cell.bias_hh.grad = None


INNER: dict[str, tuple[Callable[..., torch.optim.Optimizer], dict[str, Any], dict[str, Any]]] = {
    # kind: (torch class, group-0 hyper-parameters, group-1 overrides)
    "sgd": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}, {"lr": 0.02}),
    "adam": (torch.optim.Adam, {"lr": 1e-2}, {"lr": 3e-2, "betas": (0.8, 0.99)}),
    "adamax": (torch.optim.Adamax, {"lr": 2e-2, "weight_decay": 1e-3}, {"lr": 5e-3}),
}
GROUP1_FPTT = {"fptt_alpha": 0.3, "fptt_beta": 0.7}


def groups_of(model: SmallNet) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    return [*model.inp.parameters(), *model.cell.parameters()], list(model.head.parameters())


def make_fptt(model: SmallNet, kind: str, clip: float | None = None, fused: bool | str = False) -> FPTT:
    cls, hp0, hp1 = INNER[kind]
    g0, g1 = groups_of(model)
    inner = cls([{"params": g0}, {"params": g1, **hp1, **GROUP1_FPTT}], **hp0)
    return FPTT(inner, alpha=0.1, beta=0.5, clip_grad_norm=clip, fused=fused)


def make_reference(model: SmallNet, kind: str, clip: float | None = None) -> ReferenceFPTT:
    _, hp0, hp1 = INNER[kind]
    g0, g1 = groups_of(model)
    return ReferenceFPTT(
        [
            {"params": g0, "alpha": 0.1, "beta": 0.5, **hp0},
            {"params": g1, "alpha": GROUP1_FPTT["fptt_alpha"], "beta": GROUP1_FPTT["fptt_beta"], **hp0, **hp1},
        ],
        kind,
        clip=clip,
    )


def train(model: SmallNet, opt: FPTT, steps: range) -> None:
    for t in steps:
        opt.zero_grad()
        backward(model, t)
        drop_some_grads(model, t)
        opt.step()


# --------------------------------------------------------------------------- trajectory
@pytest.mark.parametrize("fused", [False, "eager"], ids=["exact", "fused"])
@pytest.mark.parametrize("clip", [None, 0.05], ids=["no-clip", "clip"])
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamax"])
def test_trajectory_matches_the_plain_loop_reference(kind: str, clip: float | None, fused: bool | str) -> None:
    model, ref_model = SmallNet(), SmallNet()
    opt = make_fptt(model, kind, clip, fused)
    ref = make_reference(ref_model, kind, clip)
    for t in range(10):
        for m in (model, ref_model):
            m.zero_grad(set_to_none=True)
            backward(m, t)
            drop_some_grads(m, t)
        opt.step()
        ref.step()
        for p, q in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(opt.fptt_state[p]["average"], ref.avg[id(q)], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(opt.fptt_state[p]["lambda"], ref.lam[id(q)], rtol=1e-6, atol=1e-6)
    # the regularizer really moved things: λ is non-zero, W̄ differs from W
    assert any(opt.fptt_state[p]["lambda"].abs().max() > 0 for p in model.parameters())


# --------------------------------------------------------------------------- regularizer gradient
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradient_added_to_grad_equals_autograd_gradient_of_the_regularizer(dtype: torch.dtype) -> None:
    model = SmallNet(dtype)
    opt = make_fptt(model, "adam")
    train(model, opt, range(4))  # W̄ ≠ W and λ ≠ 0 from here on
    opt.param_groups[0]["fptt_alpha"] = 0.25  # group keys are read at every step

    captured: dict[nn.Parameter, torch.Tensor] = {}

    def capture(inner: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for p in model.parameters():
            captured[p] = p.grad.clone()

    handle = opt.optimizer.register_step_pre_hook(capture)
    opt.zero_grad()
    backward(model, 99)
    loss_grads = {p: p.grad.clone() for p in model.parameters()}
    params = list(model.parameters())
    alphas = [g.get("fptt_alpha") for g in opt.param_groups for _ in g["params"]]
    order = [p for g in opt.param_groups for p in g["params"]]
    avgs = [opt.fptt_state[p]["average"].clone() for p in order]
    lams = [opt.fptt_state[p]["lambda"].clone() for p in order]
    reg = regularizer(order, avgs, lams, alphas)
    reg_grads = torch.autograd.grad(reg, order)
    opt.step()
    handle.remove()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for p, rg in zip(order, reg_grads):
        torch.testing.assert_close(captured[p], loss_grads[p] + rg, rtol=tol, atol=tol)
    assert len(captured) == len(params)


def test_regularizer_function_matches_its_definition() -> None:
    w = torch.tensor([1.0, 2.0], dtype=DTYPE, requires_grad=True)
    w_bar = torch.tensor([0.5, 1.0], dtype=DTYPE)
    lam = torch.tensor([0.2, -0.1], dtype=DTYPE)
    value = regularizer([w], [w_bar], [lam], 0.4)
    expected = 0.2 * (0.25 + 1.0) - (0.2 * 1.0 - 0.1 * 2.0)
    assert value.item() == pytest.approx(expected)
    (grad,) = torch.autograd.grad(value, w)
    torch.testing.assert_close(grad, 0.4 * (w - w_bar).detach() - lam)
    with pytest.raises(ValueError, match="same length"):
        regularizer([w], [w_bar, w_bar], [lam], 0.1)


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamax"])
def test_state_dict_round_trip_resumes_bit_identically(kind: str) -> None:
    straight = SmallNet()
    opt = make_fptt(straight, kind, clip=0.5)
    train(straight, opt, range(10))

    first = SmallNet()
    opt1 = make_fptt(first, kind, clip=0.5)
    train(first, opt1, range(5))
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optim": opt1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    resumed = SmallNet(seed=123)  # different initial weights, overwritten by the checkpoint
    opt2 = make_fptt(resumed, kind, clip=None)
    resumed.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.clip_grad_norm == 0.5
    assert opt2.param_groups[1]["fptt_alpha"] == GROUP1_FPTT["fptt_alpha"]
    train(resumed, opt2, range(5, 10))

    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
        for key in ("average", "lambda"):
            assert torch.equal(opt.fptt_state[p][key], opt2.fptt_state[q][key])
    for (_, s), (_, r) in zip(opt.state.items(), opt2.state.items()):
        for key in s:
            assert torch.equal(torch.as_tensor(s[key]), torch.as_tensor(r[key]))


def test_state_dict_keys_fptt_state_by_parameter_index_like_torch() -> None:
    model = SmallNet()
    opt = make_fptt(model, "adam")
    train(model, opt, range(2))
    sd = opt.state_dict()
    order = [p for g in opt.param_groups for p in g["params"]]
    assert sorted(sd["fptt"]["state"]) == list(range(len(order)))
    assert set(sd["state"]) <= set(range(len(order)))
    for i, p in enumerate(order):
        assert sd["fptt"]["state"][i]["average"] is opt.fptt_state[p]["average"]
    assert [g["fptt_beta"] for g in sd["param_groups"]] == [0.5, GROUP1_FPTT["fptt_beta"]]


def test_loading_a_state_dict_with_the_wrong_shapes_or_without_fptt_state_fails_clearly() -> None:
    model = SmallNet()
    opt = make_fptt(model, "sgd")
    with pytest.raises(ValueError, match="not an FPTT state dict"):
        opt.load_state_dict(opt.optimizer.state_dict())
    sd = opt.state_dict()
    sd["fptt"]["state"][0] = {"average": torch.zeros(7), "lambda": torch.zeros(7)}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(sd)


def test_loading_model_weights_after_wrapping_equals_wrapping_after_loading() -> None:
    source = SmallNet(seed=7)
    early = SmallNet()
    opt_early = make_fptt(early, "adam")  # W̄ allocated from the old weights ...
    early.load_state_dict(source.state_dict())  # ... then the weights change
    late = SmallNet()
    late.load_state_dict(source.state_dict())
    opt_late = make_fptt(late, "adam")
    train(early, opt_early, range(6))
    train(late, opt_late, range(6))
    for p, q in zip(early.parameters(), late.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt_early.fptt_state[p]["average"], opt_late.fptt_state[q]["average"])


# --------------------------------------------------------------------------- averages
@pytest.mark.parametrize(
    "reset_default, reset_arg, expect_zero",
    [(False, None, False), (True, None, True), (False, True, True), (True, False, False)],
)
def test_load_average_copies_the_running_average_into_the_parameters(
    reset_default: bool, reset_arg: bool | None, expect_zero: bool
) -> None:
    model = SmallNet()
    opt = make_fptt(model, "adamax")
    opt.reset_lambda_on_average = reset_default
    train(model, opt, range(5))
    avgs = {p: opt.fptt_state[p]["average"].clone() for p in model.parameters()}
    lams = {p: opt.fptt_state[p]["lambda"].clone() for p in model.parameters()}
    assert any(not torch.equal(p, avgs[p]) for p in model.parameters())
    opt.load_average(reset_lambda=reset_arg)
    for p in model.parameters():
        assert torch.equal(p.detach(), avgs[p])
        assert torch.equal(opt.fptt_state[p]["average"], avgs[p])
        lam = opt.fptt_state[p]["lambda"]
        assert torch.equal(lam, torch.zeros_like(lam)) if expect_zero else torch.equal(lam, lams[p])


def test_averaged_context_swaps_in_the_average_and_restores_parameters_exactly() -> None:
    model = SmallNet()
    opt = make_fptt(model, "adam")
    train(model, opt, range(5))
    before = {p: p.detach().clone() for p in model.parameters()}
    x, h, _ = batch(0)
    with opt.averaged():
        for p in model.parameters():
            assert torch.equal(p.detach(), opt.fptt_state[p]["average"])
        out_avg = model(x, h)
    for p in model.parameters():
        assert torch.equal(p.detach(), before[p])
    assert not torch.equal(out_avg, model(x, h))
    with pytest.raises(RuntimeError, match="boom"), opt.averaged():
        raise RuntimeError("boom")
    for p in model.parameters():
        assert torch.equal(p.detach(), before[p])


def test_averaged_evaluation_equals_evaluation_after_load_average() -> None:
    model = SmallNet()
    opt = make_fptt(model, "sgd")
    train(model, opt, range(4))
    x, h, _ = batch(3)
    with torch.no_grad(), opt.averaged():
        inside = model(x, h)
    opt.load_average()
    with torch.no_grad():
        assert torch.equal(inside, model(x, h))


# --------------------------------------------------------------------------- LR schedulers
@pytest.mark.parametrize(
    "make_scheduler, expected_lrs",
    [
        (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), [0.1, 0.1, 0.05, 0.05, 0.025]),
        (
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4),
            [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)],
        ),
    ],
    ids=["StepLR", "CosineAnnealingLR"],
)
def test_lr_schedulers_drive_the_inner_learning_rate_without_warnings(
    make_scheduler: Callable[[torch.optim.Optimizer], Any], expected_lrs: list[float]
) -> None:
    model = SmallNet()
    inner = torch.optim.Adamax(model.parameters(), lr=0.1)
    opt = FPTT(inner)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = make_scheduler(opt)
        seen = []
        for epoch in range(5):
            seen.append(inner.param_groups[0]["lr"])
            opt.zero_grad()
            backward(model, epoch)
            opt.step()
            sched.step()
    assert seen == pytest.approx(expected_lrs)


def test_stepping_the_scheduler_before_the_optimizer_is_still_detected() -> None:
    model = SmallNet()
    opt = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    with pytest.warns(UserWarning, match="optimizer.step"):
        sched.step()


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("alpha", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_or_non_finite_alpha_is_rejected(alpha: float) -> None:
    model = SmallNet()
    with pytest.raises(ValueError, match="alpha"):
        FPTT(torch.optim.SGD(model.parameters(), lr=0.1), alpha=alpha)
    opt = FPTT(torch.optim.SGD(model.inp.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="alpha"):
        opt.add_param_group({"params": list(model.head.parameters()), "fptt_alpha": alpha})


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_beta_outside_the_unit_interval_is_rejected(beta: float) -> None:
    model = SmallNet()
    with pytest.raises(ValueError, match="beta"):
        FPTT(torch.optim.SGD(model.parameters(), lr=0.1), beta=beta)
    opt = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    opt.param_groups[0]["fptt_beta"] = beta  # edited after construction: caught at step
    backward(model, 0)
    with pytest.raises(ValueError, match=r"param_groups\[0\].*beta"):
        opt.step()


@pytest.mark.parametrize(
    "not_an_optimizer",
    [lambda m: m, lambda m: list(m.parameters()), lambda m: torch.optim.Adam, lambda m: None],
    ids=["module", "parameter-list", "optimizer-class", "None"],
)
def test_wrapping_something_that_is_not_an_optimizer_instance_raises_type_error(
    not_an_optimizer: Callable[[nn.Module], Any],
) -> None:
    with pytest.raises(TypeError, match="FPTT wraps"):
        FPTT(not_an_optimizer(SmallNet()))


def test_wrapping_an_fptt_wrapper_twice_is_rejected() -> None:
    opt = FPTT(torch.optim.SGD(SmallNet().parameters(), lr=0.1))
    with pytest.raises(TypeError, match="already an FPTT"):
        FPTT(opt)


@pytest.mark.parametrize("clip", [0.0, -1.0, float("inf")])
def test_invalid_clip_norm_is_rejected(clip: float) -> None:
    with pytest.raises(ValueError, match="clip_grad_norm"):
        FPTT(torch.optim.SGD(SmallNet().parameters(), lr=0.1), clip_grad_norm=clip)


# --------------------------------------------------------------------------- clipping
def test_gradient_clipping_applies_to_the_combined_gradient() -> None:
    w = nn.Parameter(torch.zeros(4, dtype=DTYPE))
    opt = FPTT(torch.optim.SGD([w], lr=1.0), alpha=1.0, beta=0.0, clip_grad_norm=0.5)
    opt.fptt_state[w]["average"].copy_(torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=DTYPE))
    opt.fptt_state[w]["lambda"].copy_(torch.tensor([0.0, 4.0, 0.0, 0.0], dtype=DTYPE))
    opt._pending.clear()  # use the state set above as is
    w.grad = torch.tensor([0.0, 0.0, 0.3, 0.0], dtype=DTYPE)  # ‖∇ℓ‖ = 0.3 < clip
    # combined gradient: ∇ℓ + α(W − W̄) − λ = (-3, -4, 0.3, 0), norm ≈ 5.009 > clip
    combined = torch.tensor([-3.0, -4.0, 0.3, 0.0], dtype=DTYPE)
    opt.step()
    expected_grad = combined * 0.5 / (combined.norm() + 1e-6)
    torch.testing.assert_close(w.grad, expected_grad)
    torch.testing.assert_close(w.detach(), -expected_grad)  # SGD, lr = 1, from W = 0


def test_without_clipping_the_combined_gradient_is_used_unscaled() -> None:
    w = nn.Parameter(torch.zeros(2, dtype=DTYPE))
    opt = FPTT(torch.optim.SGD([w], lr=1.0), alpha=1.0)
    opt.fptt_state[w]["lambda"].fill_(100.0)
    w.grad = torch.zeros(2, dtype=DTYPE)
    opt.step()
    torch.testing.assert_close(w.grad, torch.full((2,), -100.0, dtype=DTYPE))


# --------------------------------------------------------------------------- mechanics
def test_step_builds_no_autograd_graph() -> None:
    model = SmallNet()
    opt = make_fptt(model, "adam", clip=1.0)
    with torch.enable_grad():
        train(model, opt, range(3))
    for p in model.parameters():
        assert p.is_leaf and p.requires_grad
        assert p.grad.grad_fn is None and not p.grad.requires_grad
        for buf in opt.fptt_state[p].values():
            assert buf.grad_fn is None and not buf.requires_grad


def test_parameters_without_gradient_are_left_entirely_alone() -> None:
    model = SmallNet()
    opt = make_fptt(model, "adam")
    train(model, opt, range(3))
    frozen = model.head.weight
    snapshot = (frozen.detach().clone(), {k: v.clone() for k, v in opt.fptt_state[frozen].items()})
    inner_state = {k: v.clone() for k, v in opt.state[frozen].items()}
    for t in range(3, 6):
        opt.zero_grad()
        backward(model, t)
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen.detach(), snapshot[0])
    for key, value in snapshot[1].items():
        assert torch.equal(opt.fptt_state[frozen][key], value)
    for key, value in inner_state.items():
        assert torch.equal(opt.state[frozen][key], value)


def test_param_groups_and_state_are_the_wrapped_optimizers_objects() -> None:
    model = SmallNet()
    opt = make_fptt(model, "adam")
    assert opt.param_groups is opt.optimizer.param_groups
    assert opt.state is opt.optimizer.state
    assert isinstance(opt, torch.optim.Optimizer)
    opt.load_state_dict(opt.state_dict())  # replaces the inner list; we must follow it
    assert opt.param_groups is opt.optimizer.param_groups
    assert opt.state is opt.optimizer.state


def test_add_param_group_initialises_average_and_lambda_with_group_hyperparameters() -> None:
    model = SmallNet()
    opt = FPTT(torch.optim.SGD(model.inp.parameters(), lr=0.1), alpha=0.2, beta=0.4)
    opt.add_param_group({"params": list(model.head.parameters()), "fptt_alpha": 0.9})
    assert opt.param_groups[1]["fptt_alpha"] == 0.9 and opt.param_groups[1]["fptt_beta"] == 0.4
    for p in model.head.parameters():
        assert torch.equal(opt.fptt_state[p]["average"], p.detach())
        assert torch.equal(opt.fptt_state[p]["lambda"], torch.zeros_like(p))
    opt.zero_grad()
    x, h, y = batch(0)
    ((model.head(torch.tanh(model.inp(x))[:, :3]) - y) ** 2).sum().backward()
    opt.step()
    for p in model.head.parameters():  # now part of the FPTT update
        assert opt.fptt_state[p]["lambda"].abs().sum() > 0


def test_zero_grad_and_closure_behave_like_a_torch_optimizer() -> None:
    model = SmallNet()
    opt = make_fptt(model, "sgd")
    x, h, y = batch(0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((model(x, h) - y) ** 2).mean()
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():  # the closure still runs with gradients enabled
        loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.grad_fn is not None
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    backward(model, 1)
    opt.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


def test_step_hooks_registered_on_the_wrapper_run() -> None:
    model = SmallNet()
    opt = make_fptt(model, "sgd")
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    backward(model, 0)
    opt.step()
    assert calls == ["pre", "post"]


def test_deepcopy_gives_an_independent_working_wrapper() -> None:
    model = SmallNet()
    opt = make_fptt(model, "adam")
    train(model, opt, range(2))
    model2, opt2 = copy.deepcopy((model, opt))
    train(model, opt, range(2, 4))
    train(model2, opt2, range(2, 4))
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q) and p is not q
        assert torch.equal(opt.fptt_state[p]["average"], opt2.fptt_state[q]["average"])


def test_repr_shows_fptt_hyperparameters_and_the_inner_optimizer() -> None:
    text = repr(make_fptt(SmallNet(), "adamax"))
    assert text.startswith("FPTT(alpha=0.1, beta=0.5")
    assert "Adamax" in text and "alpha=0.3" in text


def test_scratch_and_allocating_differences_are_bit_identical() -> None:
    from fptt.optim.regularizer import _difference

    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(7, 3, generator=g), torch.randn(5, generator=g)]
    avs = [p + 1e-3 * torch.randn(p.shape, generator=g) for p in ps]
    scratch = [torch.empty_like(p) for p in ps]
    for a, b in zip(_difference(ps, avs, None), _difference(ps, avs, scratch)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_parameters_keep_state_in_their_own_dtype(dtype: torch.dtype) -> None:
    model = SmallNet(dtype)
    opt = make_fptt(model, "adamax")
    train(model, opt, range(3))
    for p in model.parameters():
        assert torch.isfinite(p).all()
        for buf in opt.fptt_state[p].values():
            assert buf.dtype == dtype and buf.shape == p.shape
