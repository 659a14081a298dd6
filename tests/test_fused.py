"""The fused FPTT update (fptt.fused) against the exact multi-tensor path of fptt.optim.FPTT."""
from __future__ import annotations

import pickle
from typing import Any, Callable

import pytest
import torch

from fptt.fused import fused_unsupported_reason
from fptt.optim import FPTT

try:
    from test_optim import SmallNet, backward, drop_some_grads, groups_of
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.test_optim import SmallNet, backward, drop_some_grads, groups_of

TOL = dict(rtol=1e-12, atol=1e-12)  # float64: equal up to rounding

INNER: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda params: torch.optim.Adam(params, lr=1e-2, weight_decay=1e-2, decoupled_weight_decay=True),
    "adamax": lambda params: torch.optim.Adamax(params, lr=2e-2, betas=(0.8, 0.99), weight_decay=1e-3),
    "sgd": lambda params: torch.optim.SGD(params, lr=5e-2),
    "sgd_momentum": lambda params: torch.optim.SGD(params, lr=5e-2, momentum=0.9, dampening=0.2, weight_decay=1e-3),
    "sgd_nesterov": lambda params: torch.optim.SGD(params, lr=5e-2, momentum=0.9, nesterov=True),
}


def make(kind: str, fused: bool | str, clip: float | None = None) -> tuple[SmallNet, FPTT]:
    model = SmallNet()
    g0, g1 = groups_of(model)
    inner = INNER[kind]([{"params": g0}, {"params": g1, "fptt_alpha": 0.3, "fptt_beta": 0.7}])
    return model, FPTT(inner, alpha=0.1, beta=0.5, clip_grad_norm=clip, fused=fused)


def run(model: SmallNet, opt: FPTT, steps: range) -> None:
    for t in steps:
        opt.zero_grad()
        backward(model, t)
        drop_some_grads(model, t)
        if t == 6:  # a schedule changes the learning rate mid-run
            for group in opt.param_groups:
                group["lr"] *= 0.5
        opt.step()


def assert_same_state(model: SmallNet, opt: FPTT, ref_model: SmallNet, ref: FPTT) -> None:
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, **TOL)
        torch.testing.assert_close(opt.fptt_state[p]["average"], ref.fptt_state[q]["average"], **TOL)
        torch.testing.assert_close(opt.fptt_state[p]["lambda"], ref.fptt_state[q]["lambda"], **TOL)
        inner, inner_ref = opt.state[p], ref.state[q]
        assert set(inner) == set(inner_ref)
        for key in inner:
            torch.testing.assert_close(inner[key], inner_ref[key], **TOL)


@pytest.mark.parametrize("clip", [None, 0.05], ids=["no-clip", "clip"])
@pytest.mark.parametrize("kind", sorted(INNER))
def test_fused_update_equals_the_exact_path_in_float64(kind: str, clip: float | None) -> None:
    ref_model, ref = make(kind, False, clip)
    model, opt = make(kind, "eager", clip)
    run(ref_model, ref, range(12))
    run(model, opt, range(12))
    assert_same_state(model, opt, ref_model, ref)
    assert any(opt.fptt_state[p]["lambda"].abs().max() > 0 for p in model.parameters())


def test_compiled_fused_update_equals_the_exact_path() -> None:
    ref_model, ref = make("adamax", False)
    model, opt = make("adamax", True)
    run(ref_model, ref, range(8))
    run(model, opt, range(8))
    assert_same_state(model, opt, ref_model, ref)
    assert opt._fused._kernel is not opt._fused._eager, "torch.compile fell back to eager mode"


@pytest.mark.parametrize("first, second", [(False, "eager"), ("eager", False)])
def test_checkpoints_are_interchangeable_between_fused_and_exact(first: bool | str, second: bool | str) -> None:
    model, opt = make("adam", first)
    run(model, opt, range(5))
    resumed_model, resumed = make("adam", second)
    resumed_model.load_state_dict(model.state_dict())
    resumed.load_state_dict(pickle.loads(pickle.dumps(opt.state_dict())))
    run(model, opt, range(5, 10))
    run(resumed_model, resumed, range(5, 10))
    assert_same_state(resumed_model, resumed, model, opt)


def test_fused_update_leaves_the_loss_gradient_in_grad_without_clipping() -> None:
    model, opt = make("adamax", "eager")
    run(model, opt, range(3))
    opt.zero_grad()
    backward(model, 3)
    before = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, g in zip(model.parameters(), before):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


def test_fused_optimizer_pickles_and_keeps_its_mode() -> None:
    model, opt = make("sgd_momentum", "eager")
    run(model, opt, range(3))
    copy = pickle.loads(pickle.dumps(opt))
    assert copy.fused == "eager" and copy._fused is not None


@pytest.mark.parametrize("inner, message", [
    (lambda ps: torch.optim.RMSprop(ps, lr=1e-3), "RMSprop has no fused FPTT kernel"),
    (lambda ps: torch.optim.Adam(ps, lr=1e-3, amsgrad=True), "amsgrad=True"),
    (lambda ps: torch.optim.Adam(ps, lr=torch.tensor(1e-3)), "tensor learning rate"),
])
def test_unsupported_inner_optimizers_are_refused_with_the_reason(inner: Callable[..., Any], message: str) -> None:
    model = SmallNet()
    with pytest.raises(ValueError, match=message):
        FPTT(inner(model.parameters()), fused=True)
    assert fused_unsupported_reason(torch.optim.Adamax(model.parameters())) is None


@pytest.mark.parametrize("fused", ["yes", 1, "compile"])
def test_an_unknown_fused_mode_is_refused(fused: Any) -> None:
    with pytest.raises(ValueError, match="fused must be one of"):
        FPTT(torch.optim.Adam(SmallNet().parameters()), fused=fused)


def test_the_fused_flag_reaches_the_optimizer_the_trainer_builds() -> None:
    from fptt.build import build_optimizer
    from fptt.cli import build_parser
    from fptt.config import resolve_config

    args = build_parser().parse_args(["train", "--task", "add", "--optimizer", "adamax", "--fused"])
    flags = {k: v for k, v in vars(args).items() if k in resolve_config().__dataclass_fields__}
    config = resolve_config({}, flags)
    assert config.fused is True
    optimizer = build_optimizer(config, SmallNet())
    assert isinstance(optimizer, FPTT) and optimizer.fused is True and optimizer._fused is not None
