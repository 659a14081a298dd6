"""The fused FPTT update (fptt.optim.fused_update) against the exact multi-tensor path of fptt.optim.FPTT."""
from __future__ import annotations

import pickle
from typing import Any, Callable

import pytest
import torch

from fptt.optim import FPTT
from fptt.optim.fused_update import fused_unsupported_reason

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
    assert opt._fused.kernel.compiled, "torch.compile fell back to eager mode"


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
    from fptt.cli import build_parser
    from fptt.run.build import build_optimizer
    from fptt.run.config import FIELD_SECTIONS, resolve_config

    args = build_parser().parse_args(["train", "--task", "add", "--optimizer", "adamax", "--fused"])
    flags = {k: v for k, v in vars(args).items() if k in FIELD_SECTIONS}
    config = resolve_config({}, flags)
    assert config.fused is True
    optimizer = build_optimizer(config, SmallNet())
    assert isinstance(optimizer, FPTT) and optimizer.fused is True and optimizer._fused is not None


@pytest.mark.parametrize("max_batches, expected", [(2, False), (40, True)])
def test_fptt_train_fuses_by_the_planned_length_of_the_run(tmp_path, max_batches: int, expected: bool) -> None:
    """Unset, ``fused`` is resolved when the Trainer starts: on for a run of at least
    FUSE_AFTER_STEPS time steps (here 40 batches x 100 steps), off below; a flag wins; the resolved
    value is what config.json records, so that --resume runs the same path."""
    from fptt.run.config import TrainConfig
    from fptt.run.trainer import Trainer
    from fptt.spec.rules import FUSE_AFTER_STEPS

    assert 2 * 100 < FUSE_AFTER_STEPS <= 40 * 100
    config = TrainConfig.from_dict(dict(task="add", seq_len=100, epochs=1, max_batches=max_batches, batch_size=4,
                                        hidden_sizes=[8]))
    trainer = Trainer(config, tmp_path / "run", log=None)
    assert trainer.config.fused is expected
    assert trainer.model.layers[0].fused is expected and trainer.optimizer.fused is expected
    assert trainer.notes["fused"].startswith(f"{100 * max_batches:,} planned training steps")
    chosen = Trainer(config.updated(fused=not expected), tmp_path / "flag", log=None)
    assert chosen.optimizer.fused is (not expected)


@pytest.mark.slow
def test_without_a_cpp_compiler_fptt_train_says_so_in_one_line_and_trains(tmp_path) -> None:
    """The real failure, end to end: a compiler that does not exist, an empty compile cache."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "fptt.cli", "train", "--task", "add", "--seq-len", "10",
                           "--max-batches", "2", "--epochs", "1", "--batch-size", "8", "--hidden", "8", "--fused",
                           "--run-dir", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "torch.compile is unavailable" in line]
    assert len(lines) == 1 and "C++ compiler" in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- fused LTC dynamics
from fptt.models import SpikingRNN  # noqa: E402
from fptt.models.state import state_tensors  # noqa: E402
from fptt.neurons.functional import LTCParameters, NeuronState, ltc_step  # noqa: E402
from fptt.neurons.kernels import LTCDynamicsKernels  # noqa: E402
from fptt.neurons.surrogate import get_surrogate  # noqa: E402

D = torch.float64


def ltc_inputs(adaptive: bool, slopes: bool, seed: int = 0) -> tuple[torch.Tensor, NeuronState, LTCParameters]:
    g = torch.Generator().manual_seed(seed)
    batch, hidden = 5, 7

    def leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g, dtype=D)).requires_grad_()

    current = leaf(batch, hidden)
    state = NeuronState(leaf(batch, hidden, scale=0.5), (0.1 + torch.rand(batch, hidden, generator=g, dtype=D)).requires_grad_(),
                        (torch.rand(batch, hidden, generator=g, dtype=D) > 0.6).to(D).requires_grad_())
    params = LTCParameters(leaf(hidden, 2 * hidden, scale=0.5), leaf(hidden),
                           leaf(hidden, 2 * hidden, scale=0.5) if adaptive else None, leaf(hidden) if adaptive else None,
                           leaf(1) if slopes else None, leaf(1) if slopes and adaptive else None)
    return current, state, params


def leaves(current: torch.Tensor, state: NeuronState, params: LTCParameters) -> list[torch.Tensor]:
    return [t for t in (current, *state, *params) if t is not None]


@pytest.mark.parametrize("surrogate", ["multi_gaussian", "fast_sigmoid"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("adaptive, slopes", [(True, False), (True, True), (False, False), (False, True)])
def test_fused_ltc_dynamics_equal_the_plain_step_values_and_gradients(adaptive: bool, slopes: bool, reset: str,
                                                                      surrogate: str) -> None:
    spike_fn = get_surrogate(surrogate)
    strength = 1.8 if adaptive else 0.0
    outputs = []
    for kernels in (None, LTCDynamicsKernels(compile=False)):
        current, state, params = ltc_inputs(adaptive, slopes)
        spikes, new = ltc_step(current, state, params, spike_fn, baseline_threshold=0.1,
                               adaptation_strength=strength, reset=reset, kernels=kernels)
        g = torch.Generator().manual_seed(9)
        loss = sum((torch.randn(t.shape, generator=g, dtype=D) * t).sum() for t in (spikes, *state_tensors(new)))
        inputs = leaves(current, state, params)
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        outputs.append(([spikes, *state_tensors(new)], grads))
    (values, grads), (fused_values, fused_grads) = outputs
    for a, b in zip(values, fused_values):
        torch.testing.assert_close(b, a, **TOL)
    for a, b in zip(grads, fused_grads):
        if a is None:
            assert b is None or not b.abs().any()
        else:
            torch.testing.assert_close(b, a, **TOL)
    assert any(g is not None and g.abs().max() > 0 for g in grads[4:])  # parameters got gradients


def test_fused_ltc_without_gradients_gives_the_same_step() -> None:
    current, state, params = ltc_inputs(True, False)
    with torch.no_grad():
        plain = ltc_step(current, state, params, get_surrogate("multi_gaussian"))
        fused = ltc_step(current, state, params, get_surrogate("multi_gaussian"), kernels=LTCDynamicsKernels(False))
    for a, b in zip((plain[0], *plain[1]), (fused[0], *fused[1])):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize("method", ["fptt", "bptt"])
def test_a_compiled_fused_network_trains_like_the_plain_one(method: str) -> None:
    from fptt.training.engine import train_epoch

    data = [(torch.rand(4, 6, 3, dtype=D), torch.randint(0, 2, (4,)))]
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = SpikingRNN(3, [6, 6], 2, fused=fused).to(D)
        inner = torch.optim.Adamax(model.parameters(), lr=1e-2)
        opt = FPTT(inner, fused=fused) if method == "fptt" else inner
        train_epoch(model, data * 3, opt, method=method, k=2)
        models.append(model)
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(b, a, **TOL)
    assert models[1].layers[0].fusion.kernels.backward.compiled
    pickle.loads(pickle.dumps(models[1]))  # compiled callables are dropped and rebuilt on use


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_an_ltc_cell_with_fused_dynamics_matches_the_plain_reference_loop(reset: str) -> None:
    try:
        from test_neurons import make_cell, run_against_reference
    except ImportError:  # pragma: no cover - tests/ imported as a package
        from tests.test_neurons import make_cell, run_against_reference

    from fptt.neurons.kernels import FusedDynamics

    cell = make_cell("ltc", reset=reset, adaptation_strength=1.8, initial_membrane="random")
    cell.fusion = FusedDynamics("eager", "LTC")
    assert cell.fusion.kernels_now(cell.spike_fn) is not None
    assert run_against_reference(cell) > 0.01


def _break_the_compiler(monkeypatch) -> None:
    def broken(fn, **options):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler\nsecond line")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr("fptt.compiled._reported_failure", False)


def test_a_failed_compilation_logs_one_line_and_runs_the_same_function_eagerly(monkeypatch, caplog) -> None:
    from fptt.compiled import LazyCompiled

    _break_the_compiler(monkeypatch)
    double = LazyCompiled(lambda t: 2 * t, name="double")
    triple = LazyCompiled(lambda t: 3 * t, name="triple")
    with caplog.at_level("WARNING", logger="fptt"):
        assert double(torch.ones(2)).tolist() == [2.0, 2.0]
        assert triple(torch.ones(1)).tolist() == [3.0]  # a second failure is not reported again
        assert double(torch.ones(1)).tolist() == [2.0]
    assert double.failed and not double.compiled and triple.failed
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("fptt: torch.compile is unavailable here (RuntimeError: no C++ compiler)")


@pytest.mark.parametrize("fused", [True, "auto"])
def test_without_a_compiler_the_fused_paths_fall_back_to_the_exact_ones(monkeypatch, fused: bool | str) -> None:
    """Same network, data and seed: where compiling fails, training equals the exact path's, and
    both the optimizer and the LTC layers stay on the exact path afterwards."""
    from fptt.training.engine import train_epoch

    _break_the_compiler(monkeypatch)
    data = [(torch.rand(4, 5, 3, dtype=D), torch.randint(0, 2, (4,)))]
    models, opts = [], []
    for mode in (False, fused):
        torch.manual_seed(0)
        model = SpikingRNN(3, [6], 2, fused=mode).to(D)
        opt = FPTT(torch.optim.Adamax(model.parameters(), lr=1e-2), fused=mode)
        for layer in model.layers:
            layer.fusion.policy.after = 2
        opt._fuse_policy.after = 2
        train_epoch(model, data * 2, opt, method="fptt", k=1)
        models.append(model)
        opts.append(opt)
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(b, a, **TOL)
    assert opts[1]._fused.kernel.failed and models[1].layers[0].fusion.kernels.failed
    assert models[1].layers[0].fusion.kernels_now(models[1].layers[0].spike_fn) is None


def test_auto_runs_the_exact_path_first_then_the_compiled_one() -> None:
    from fptt.compiled import FusePolicy

    policy = FusePolicy("auto", after=3)
    assert [policy.use_fused() for _ in range(5)] == [False, False, False, True, True]
    evaluation = FusePolicy("auto", after=1)
    assert [evaluation.use_fused(training=False) for _ in range(3)] == [False] * 3  # not counted
    assert evaluation.use_fused() is False and evaluation.use_fused(training=False) is True
    assert FusePolicy(True).use_fused() and not FusePolicy(False).use_fused() and FusePolicy("eager").use_fused()


def test_auto_is_the_default_and_switches_the_optimizer_and_the_layers(monkeypatch) -> None:
    from fptt.training.engine import train_epoch

    model = SpikingRNN(3, [6], 2).to(D)
    opt = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2))
    assert opt.fused == "auto" and model.layers[0].fused == "auto" and opt._fused is not None
    calls = []
    original = type(opt._fused).__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(opt._fused), "__call__", counting)
    opt._fuse_policy.after = model.layers[0].fusion.policy.after = 4
    model.layers[0].fusion.kernels = LTCDynamicsKernels(compile=False)
    opt._fused.kernel.eager = True
    train_epoch(model, [(torch.rand(2, 6, 3, dtype=D), torch.randint(0, 2, (2,)))], opt, method="fptt", k=1)
    assert len(calls) == 2  # updates 5 and 6 of 6
    layer = model.layers[0]
    assert layer.fusion.policy.steps == 4 and layer.fusion.kernels_now(layer.spike_fn) is not None
    assert layer.fusion.kernels_now(torch.sigmoid) is None  # "auto" keeps the exact path for a plain function
    layer.fusion.mode = True
    with pytest.raises(TypeError, match="need a fptt.neurons.surrogate.Surrogate"):  # True/"eager" refuse it
        layer.fusion.kernels_now(torch.sigmoid)
    # an inner optimizer without a fused kernel: "auto" stays exact, True refuses
    assert FPTT(torch.optim.RMSprop(model.parameters()))._fused is None


def test_the_compile_cache_lives_under_the_user_cache_unless_torch_is_told(monkeypatch, tmp_path) -> None:
    from fptt.compiled import compile_cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("FPTT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache_dir() == tmp_path / "xdg" / "fptt" / "torchinductor"
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    assert cache_dir() == str(tmp_path / "xdg" / "fptt" / "torchinductor")  # torch reads the same place
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"
    # torch writes its own default into the environment when torch._inductor is imported (torch.optim
    # does): that one is not the user's choice
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    assert compile_cache_dir() == tmp_path / "xdg" / "fptt" / "torchinductor"
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("FPTT_CACHE_DIR", str(tmp_path / "project"))
    assert compile_cache_dir() == tmp_path / "project" / "torchinductor"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_paths_on_cuda_match_the_exact_paths() -> None:
    from fptt.training.engine import train_epoch

    data = [(torch.rand(8, 12, 3, device="cuda"), torch.randint(0, 2, (8,), device="cuda"))]
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = SpikingRNN(3, 32, 2, fused=fused).cuda()
        opt = FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), fused=fused)
        train_epoch(model, data * 2, opt, method="fptt", k=1)
        models.append(model)
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_a_conv_ltc_layer_with_fused_dynamics_equals_the_plain_one() -> None:
    from fptt.neurons.conv import ConvLTC

    results = []
    for fused in (False, "eager"):
        torch.manual_seed(0)
        layer = ConvLTC(2, "4c3", (6, 6), fused=fused).to(D)
        x = torch.rand(3, 2, 6, 6, dtype=D)
        state = layer.init_state(3)
        outputs = []
        for _ in range(3):
            spikes, state = layer(x, state)
            outputs.append(spikes.sum() + state.membrane.pow(2).sum() + state.adaptation.sum())
        grads = torch.autograd.grad(sum(outputs), list(layer.parameters()))
        results.append((state, grads))
    (state, grads), (fused_state, fused_grads) = results
    for a, b in zip((*state_tensors(state), *grads), (*state_tensors(fused_state), *fused_grads)):
        torch.testing.assert_close(b, a, **TOL)
    assert state.spikes.any()
