"""The captured update: one whole window update as one compiled graph.

An update of the window engines (:mod:`fptt.training.window`) runs, in eager PyTorch, hundreds of
small operations: the steps' forward, the loss, the autograd engine's backward, the non-finite
check, clipping, FPTT's regularizer gradient, the inner optimizer's step, the λ and W̄
post-update, the state hand-over. Each is a dispatcher call and, on a GPU, a kernel launch: at
k = 1 the arithmetic is microseconds and the update's time is that overhead. :class:`CapturedUpdate`
writes the update as one function of tensors and hands it to ``torch.compile`` whole, with
``torch.autograd.grad`` inside, so that the forward, the backward and the optimizer become one
graph: fused loops on the CPU (C++), Triton kernels on CUDA, there replayed as one CUDA graph
(``mode="reduce-overhead"``; the optimizer's tensors are marked as static addresses so that the
graph updates them in place). For a window of steps ``t = s, …, e−1`` and every parameter ``W``::

    v_t, state ← model.step(x_t, state)                     # state detached at the window start
    L       = Σ_t w_t L(v_t, y_t) / divisor                  # as WindowUpdate.add / close
    ∇ℓ      = ∂L/∂W                                          # torch.autograd.grad, in the graph
    g       = ∇ℓ + α (W − W̄) − λ                             # FPTT only (THEORY.md §3.3)
    g       ← g · min(1, c / (‖g‖ + 10⁻⁶))                   # optional clipping, total norm
    W       ← inner_step(W, g)                               # Adam, Adamax or SGD (fused_update's equations)
    λ       ← λ − α (W − W̄);  W̄ ← W̄ + β (W − W̄) − (β/α) λ   # FPTT only, new W and new λ

The non-finite policies are those of :class:`~fptt.training.window.WindowUpdate`: ``"stop"``
updates the same on-device flags (no host sync); ``"skip"`` computes one flag (the loss and every
gradient finite) and keeps every tensor at its old value where it is false (``torch.where``), and
the caller reads it, as the eager path does. Bias corrections use the optimizer's step counts on
the device, so nothing syncs with the host inside an update.

The numbers are the eager path's to float rounding (``tests/test_captured.py`` compares both in
float64 over hundreds of updates, with clipping and both policies). The state lives where eager
training keeps it (the parameters, the optimizer's ``state`` under torch's keys, FPTT's W̄ and λ),
so checkpoints, resume, :meth:`fptt.optim.FPTT.averaged` and switching between both paths work
unchanged. The parameters' ``.grad`` is not written.

What is not captured, and runs the eager path instead (one line logged, naming why): a model
wrapped for data parallelism (its all-reduce runs in autograd hooks), the forward-in-time
gradient methods (e-prop, OSTL), BPTT, an inner optimizer other than Adam/Adamax/SGD or with
options their fused kernels lack, a model whose step does not compile into one graph (a host
sync such as ``.item()``, data-dependent Python control flow), and windows without a loss term
(they make no update). A changed shape (the last partial batch, a shorter last window) compiles
one more graph for that shape; nothing is padded or dropped.
"""
from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..compiled import compile_cache_dir
from ..models.state import detach_state, map_state
from ..optim import FPTT
from ..optim.fused_update import _scalar_dtype, fused_unsupported_reason
from ..spec.rules import CAPTURE_AFTER_STEPS
from .batches import LossFn
from .metrics import firing_rate

__all__ = ["CAPTURE_MODES", "WINDOW_METHODS", "CapturedUpdate", "capture_unsupported_reason", "captured_update_for"]

logger = logging.getLogger("fptt")

#: ``False`` never; ``True`` from the first update; ``"auto"`` after :data:`fptt.rules.CAPTURE_AFTER_STEPS`
#: training steps (the rent-then-buy rule of :mod:`fptt.compiled`).
CAPTURE_MODES: tuple[Any, ...] = (False, True, "auto")

#: the methods whose update a captured graph can run (one window of detached steps, autograd's gradient)
WINDOW_METHODS: tuple[str, ...] = ("fptt", "tbptt", "online")

_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s

# Scalars the graph reads or updates in place (step counts, the learning rates, the non-finite
# flags) enter it as 1-element views, never as 0-d tensors: torch 2.13 drops the in-place update
# of a 0-d float64 CPU input of a compiled function (seen: the step count stayed 0), which a
# (1,) view of the same storage does not.


def check_capture_mode(value: Any, where: str) -> Any:
    """``value`` if it is one of :data:`CAPTURE_MODES`, else a ``ValueError`` naming ``where``."""
    if value is True or value is False or value == "auto":
        return value
    raise ValueError(f"{where}: capture must be True, False or 'auto', got {value!r}")


def capture_unsupported_reason(model: nn.Module, optimizer: torch.optim.Optimizer, method: str) -> Optional[str]:
    """``None`` if :class:`CapturedUpdate` can run this model, optimizer and method, else why not
    (the checks that need no compilation; a model that does not compile is found at the first call)."""
    if not hasattr(torch._dynamo.config, "trace_autograd_ops"):
        return f"torch {torch.__version__} cannot trace torch.autograd.grad into a graph (torch >= 2.11 can)"
    if method not in WINDOW_METHODS:
        return f"method={method!r} is not a window method with a captured update (fptt, tbptt, online)"
    if getattr(model, "set_gradient_sync", None) is not None:
        return "a data-parallel model all-reduces its gradients in autograd hooks, which a captured update bypasses"
    inner = optimizer.optimizer if isinstance(optimizer, FPTT) else optimizer
    reason = fused_unsupported_reason(inner)
    if reason is not None:
        return reason
    if any(p.requires_grad and p.device.type not in ("cpu", "cuda") for p in model.parameters()):
        return "parameters on a device other than CPU or CUDA"
    return None


@dataclass(frozen=True)
class _Hyper:
    """The constants of one parameter group, baked into the graph (a change recompiles)."""

    alpha: float  # FPTT's α (unused without FPTT)
    beta: float  # FPTT's β
    beta1: float  # Adam(ax)'s β₁, or SGD's momentum μ
    beta2: float  # Adam(ax)'s β₂, or SGD's dampening d
    eps: float
    weight_decay: float
    decoupled: bool  # Adam's decoupled weight decay
    nesterov: bool


@dataclass(frozen=True)
class _Spec:
    """What the compiled function is specialised on (never a tensor value)."""

    kind: str  # "adam", "adamax", "sgd"
    fptt: bool
    clip: Optional[float]
    skip_nonfinite: bool
    loss_kind: str  # LossFn's: "cross_entropy" or "mse"
    every_step: bool  # loss_steps="every" (else only each window's last step)
    rates: bool  # the model reports firing rates
    hypers: tuple[_Hyper, ...]  # one per parameter group


class CapturedUpdate:
    """One window update of ``model`` with ``optimizer`` as one compiled graph (module docstring).

    Built by :func:`captured_update_for`, which keeps one per (optimizer, model) so that the
    compiled graph and the ``"auto"`` step count live as long as the training does.

    Args:
        model: a stateful model (``init_state``, ``step``).
        optimizer: :class:`~fptt.optim.FPTT` around Adam/Adamax/SGD, or one of those plain.
        mode: one of :data:`CAPTURE_MODES`.
        clip_grad_norm: total-norm clipping for a plain optimizer (FPTT's own is read from it).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, mode: Any = "auto", *,
                 clip_grad_norm: Optional[float] = None, after: int = CAPTURE_AFTER_STEPS) -> None:
        self.model = model
        self.optimizer = optimizer
        self.mode = check_capture_mode(mode, "CapturedUpdate")
        self.after = int(after)
        self.steps = 0  # training steps seen while "auto" waited
        self.clip_grad_norm = clip_grad_norm
        self.failed: Optional[str] = None  # why the compiled update could not run (then never again)
        self._compiled: Optional[Callable[..., Any]] = None
        self._spec: Optional[_Spec] = None
        self._lrs: list[Tensor] = []
        self._views: dict[int, Tensor] = {}

    # ------------------------------------------------------------------ the policy
    def use(self, steps: int) -> bool:
        """Whether the next window (``steps`` time steps) runs captured; counts steps for ``"auto"``."""
        if self.mode is False or self.failed is not None:
            return False
        if self.mode == "auto" and self.steps < self.after:
            self.steps += steps
            return False
        return True

    def give_up(self, reason: str) -> None:
        """Run the eager path from now on, logging ``reason`` once."""
        if self.failed is None:
            self.failed = reason
            logger.warning("fptt: the captured update is off for this run (%s); training goes on with the "
                           "eager update", reason)

    # ------------------------------------------------------------------ one window
    def __call__(self, inputs: Sequence[Tensor], targets: Sequence[Tensor], weights: Tensor, state: Any,
                 loss_kind: str, every_step: bool, divisor: int,
                 finite_flags: Optional[tuple[Tensor, Tensor]]) -> Optional[tuple[Tensor, Any, Tensor, Tensor]]:
        """Run one window: ``(last output, next state, Σ firing rates, applied)``, or ``None`` when this
        update runs eagerly: for good when the compiled update cannot run (:attr:`failed` says why),
        once when the optimizer's state must first be created by its own step (SGD's momentum).

        ``weights`` holds w_t of the window's steps (a tensor, so that no value recompiles);
        ``finite_flags`` are WindowUpdate's ``(all_finite, finite_prefix)`` for ``"stop"``, else None.
        """
        tensors = self._gather()
        if tensors is None:
            return None
        flags = None if finite_flags is None else (self._scalar_view(finite_flags[0]),
                                                   self._scalar_view(finite_flags[1]))
        spec = self._current_spec(loss_kind, every_step, finite_flags is None)
        if self._compiled is None or spec != self._spec:
            self._spec = spec
            self._compiled = self._compile(spec)
        lrs = self._learning_rates(weights.device)
        cuda = weights.device.type == "cuda"
        try:
            if cuda:
                torch.compiler.cudagraph_mark_step_begin()
            with torch._dynamo.config.patch(trace_autograd_ops=True):  # backward inside the graph
                output, state, rate, applied = self._compiled(list(inputs), list(targets), weights, state, divisor,
                                                              lrs, tensors, flags)
        except Exception as error:  # a graph break, an unsupported operation, a compiler failure
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            self.give_up(f"{type(error).__name__}: {first_line}")
            return None
        if cuda:  # a CUDA graph's outputs are overwritten by its next replay: keep copies of what outlives it
            output, state = output.clone(), map_state(torch.Tensor.clone, state)
        return output, state, rate, applied

    def _scalar_view(self, scalar: Tensor) -> Tensor:
        """The (1,) view of a 0-d tensor that the graph reads or updates, the same view object at
        every call (a CUDA graph's static inputs are marked on the object)."""
        view = self._views.get(id(scalar))
        if view is None or view._base is not scalar:
            view = self._views[id(scalar)] = scalar.view(1)
        return view

    def _current_spec(self, loss_kind: str, every_step: bool, skip_nonfinite: bool) -> _Spec:
        inner = self.optimizer.optimizer if isinstance(self.optimizer, FPTT) else self.optimizer
        kind = {torch.optim.Adam: "adam", torch.optim.Adamax: "adamax", torch.optim.SGD: "sgd"}[type(inner)]
        hypers = []
        for group in inner.param_groups:
            if kind == "sgd":
                beta1, beta2, eps = float(group["momentum"]), float(group["dampening"]), 0.0
            else:
                beta1, beta2 = (float(b) for b in group["betas"])
                eps = float(group["eps"])
            hypers.append(_Hyper(alpha=float(group.get("fptt_alpha", 0.0)), beta=float(group.get("fptt_beta", 0.0)),
                                 beta1=beta1, beta2=beta2, eps=eps, weight_decay=float(group["weight_decay"]),
                                 decoupled=bool(group.get("decoupled_weight_decay", False)),
                                 nesterov=bool(group.get("nesterov", False))))
        fptt = isinstance(self.optimizer, FPTT)
        clip = self.optimizer.clip_grad_norm if isinstance(self.optimizer, FPTT) else self.clip_grad_norm
        return _Spec(kind=kind, fptt=fptt, clip=clip, skip_nonfinite=skip_nonfinite, loss_kind=loss_kind,
                     every_step=every_step, rates=hasattr(self.model, "firing_rates"), hypers=tuple(hypers))

    def _learning_rates(self, device: torch.device) -> list[Tensor]:
        """One device scalar per group holding its current lr (refilled only when a scheduler changed it)."""
        groups = self.optimizer.param_groups
        if len(self._lrs) != len(groups) or any(t.device != device for t in self._lrs):
            self._lrs = [torch.tensor([float(g["lr"])], dtype=torch.float64, device=device) for g in groups]
            self._lr_values = [float(g["lr"]) for g in groups]
        for i, group in enumerate(groups):
            if float(group["lr"]) != self._lr_values[i]:
                self._lrs[i].fill_(float(group["lr"]))
                self._lr_values[i] = float(group["lr"])
        return self._lrs

    def _gather(self) -> Optional[list[list[list[Tensor]]]]:
        """Per group: [params, averages, lambdas, first moments, second moments, steps]. Creates the
        optimizer's state as torch does at its first step; ``None`` when an update must run eagerly
        first (an SGD momentum buffer torch has not created yet: its first step differs)."""
        fptt = self.optimizer if isinstance(self.optimizer, FPTT) else None
        inner = fptt.optimizer if fptt is not None else self.optimizer
        kind = type(inner)
        groups = []
        for group in inner.param_groups:
            params = [p for p in group["params"] if p.requires_grad]
            if fptt is not None:
                if fptt._pending:
                    with torch.no_grad():
                        fptt._sync_pending(params, [fptt._fptt_state[p]["average"] for p in params])
                averages = [fptt._fptt_state[p]["average"] for p in params]
                lambdas = [fptt._fptt_state[p]["lambda"] for p in params]
            else:
                averages, lambdas = [], []
            first: list[Tensor] = []
            second: list[Tensor] = []
            steps: list[Tensor] = []
            for p in params:
                st = inner.state[p]
                if kind is torch.optim.SGD:
                    if float(group["momentum"]) != 0.0:
                        if st.get("momentum_buffer") is None:
                            return None
                        first.append(st["momentum_buffer"])
                    continue
                if len(st) == 0:
                    st["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_inf" if kind is torch.optim.Adamax else "exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                if st["step"].device != p.device:  # on the device, so that the graph needs no host
                    st["step"] = st["step"].to(p.device)
                first.append(st["exp_avg"])
                second.append(st["exp_inf" if kind is torch.optim.Adamax else "exp_avg_sq"])
                steps.append(self._scalar_view(st["step"]))  # a 1-element view: see the note on scalars at the top
            groups.append([params, averages, lambdas, first, second, steps])
        return groups

    def _compile(self, spec: _Spec) -> Callable[..., Any]:
        model = self.model
        update = _window_update_function(model, spec)
        compile_cache_dir()
        cuda = any(p.device.type == "cuda" for p in model.parameters())
        if cuda:  # the optimizer's tensors are updated in place by the replayed CUDA graph
            for group in self._gather() or []:
                for tensors in group[1:]:
                    for tensor in tensors:
                        torch._dynamo.mark_static_address(tensor)
            for view in self._views.values():  # step counts and the non-finite flags
                torch._dynamo.mark_static_address(view)
        # a code object of its own: Dynamo keeps its compiled graphs (and its recompile limit) per code
        # object, so every CapturedUpdate gets its own cache instead of sharing one with all the others
        update = types.FunctionType(update.__code__.replace(), update.__globals__, update.__name__,
                                    update.__defaults__, update.__closure__)
        return torch.compile(update, fullgraph=True, dynamic=False, mode="reduce-overhead" if cuda else None)


def _window_update_function(model: nn.Module, spec: _Spec) -> Callable[..., Any]:
    """The update of one window as a function of tensors only (what ``torch.compile`` captures)."""
    loss_fn = LossFn(spec.loss_kind)

    def update(inputs: list[Tensor], targets: list[Tensor], weights: Tensor, state: Any, divisor: int,
               lrs: list[Tensor], groups: list[list[list[Tensor]]],
               finite_flags: Optional[tuple[Tensor, Tensor]]) -> tuple[Tensor, Any, Tensor, Tensor]:
        state = detach_state(state)
        loss: Optional[Tensor] = None
        rate = weights.new_zeros(())
        output = inputs[0]
        last = len(inputs) - 1
        for i, x_t in enumerate(inputs):
            output, state = model.step(x_t, state)
            if spec.rates:
                value = firing_rate(model, state)
                if value is not None:
                    rate = rate + value.to(rate.dtype)
            if spec.every_step or i == last:
                term = weights[i] * loss_fn(output, targets[i])
                loss = term if loss is None else loss + term
        assert loss is not None
        if divisor != 1:
            loss = loss / divisor
        state = detach_state(state)
        output = output.detach()
        loss_value = loss.detach()
        params = [p for group in groups for p in group[0]]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            applied = _apply(spec, groups, grads, lrs, loss_value, finite_flags)
        return output, state, rate, applied

    return update


def _apply(spec: _Spec, groups: list[list[list[Tensor]]], grads: Sequence[Optional[Tensor]], lrs: list[Tensor],
           loss: Tensor, finite_flags: Optional[tuple[Tensor, Tensor]]) -> Tensor:
    """The non-finite policy, the regularizer gradient, clipping, the inner step and the post-update,
    in place on the gathered tensors. Returns whether the update was applied (a bool tensor)."""
    ok = torch.isfinite(loss)
    if finite_flags is not None:  # "stop": WindowUpdate's flags, as in its close()
        all_finite, prefix = finite_flags
        prefix.add_(all_finite.mul_(ok.to(all_finite.dtype)))
    combined: list[list[Optional[Tensor]]] = []
    offset = 0
    for hyper, (params, averages, lambdas, *_rest) in zip(spec.hypers, groups):
        mine = list(grads[offset:offset + len(params)])
        offset += len(params)
        if spec.fptt:
            mine = [None if g is None else g + hyper.alpha * (w - a) - lam
                    for g, w, a, lam in zip(mine, params, averages, lambdas)]
        combined.append(mine)
    present = [g for mine in combined for g in mine if g is not None]
    if spec.skip_nonfinite:  # as _loss_and_gradients_finite: the loss and each gradient's sum
        ok = ok & torch.isfinite(torch.stack([g.sum() for g in grads if g is not None])).all()
    if spec.clip is not None and present:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))
        scale = torch.clamp(spec.clip / (norm + _CLIP_EPS), max=1.0)
        combined = [[None if g is None else g * scale for g in mine] for mine in combined]
    for hyper, lr, mine, tensors in zip(spec.hypers, lrs, combined, groups):
        _update_group(spec, hyper, lr, mine, tensors, ok if spec.skip_nonfinite else None)
    return ok


def _keep(ok: Optional[Tensor], new: Tensor, old: Tensor) -> None:
    """``old ← new`` (where ``ok``, with the skip policy)."""
    old.copy_(new if ok is None else torch.where(ok, new, old))


def _update_group(spec: _Spec, hyper: _Hyper, lr: Tensor, grads: list[Optional[Tensor]],
                  tensors: list[list[Tensor]], ok: Optional[Tensor]) -> None:
    """Inner step and FPTT post-update of one parameter group (:mod:`fptt.optim.fused_update`'s
    equations, with the bias corrections from the step counts on the device)."""
    params, averages, lambdas, first, second, steps = tensors
    moment = 0
    for i, (w, g) in enumerate(zip(params, grads)):
        if spec.kind == "sgd":
            has_buffer = hyper.beta1 != 0.0
            index = moment
            moment += has_buffer
            if g is None:
                continue
            if hyper.weight_decay != 0.0:
                g = g + hyper.weight_decay * w
            if has_buffer:
                buffer = first[index]
                new_buffer = hyper.beta1 * buffer + (1.0 - hyper.beta2) * g
                _keep(ok, new_buffer, buffer)
                g = g + hyper.beta1 * new_buffer if hyper.nesterov else new_buffer
            new_w = w - lr.to(w.dtype) * g
        else:
            if g is None:
                continue
            step = steps[i]
            new_step = step + 1
            _keep(ok, new_step, step)
            lr_t = lr.to(new_step.dtype)
            m, second_moment = first[i], second[i]
            if hyper.weight_decay != 0.0:
                if spec.kind == "adam" and hyper.decoupled:
                    w_decayed = w * (1.0 - (lr_t * hyper.weight_decay).to(w.dtype))
                else:
                    w_decayed = w
                    g = g + hyper.weight_decay * w
            else:
                w_decayed = w
            new_m = torch.lerp(m, g, 1.0 - hyper.beta1)
            step_size = (lr_t / (1.0 - hyper.beta1 ** new_step)).to(w.dtype)
            if spec.kind == "adam":
                new_v = hyper.beta2 * second_moment + (1.0 - hyper.beta2) * g * g
                root = torch.sqrt(1.0 - hyper.beta2 ** new_step).to(w.dtype)
                new_w = w_decayed - step_size * new_m / (new_v.sqrt() / root + hyper.eps)
            else:
                new_v = torch.maximum(second_moment * hyper.beta2, g.abs() + hyper.eps)
                new_w = w_decayed - step_size * new_m / new_v
            _keep(ok, new_m, m)
            _keep(ok, new_v, second_moment)
        if spec.fptt:
            difference = new_w - averages[i]
            new_lambda = lambdas[i] - hyper.alpha * difference
            if hyper.beta != 0.0:
                _keep(ok, averages[i] + hyper.beta * difference - (hyper.beta / hyper.alpha) * new_lambda, averages[i])
            _keep(ok, new_lambda, lambdas[i])
        _keep(ok, new_w, w)


def captured_update_for(model: nn.Module, optimizer: torch.optim.Optimizer, mode: Any, method: str,
                        clip_grad_norm: Optional[float] = None) -> Optional[CapturedUpdate]:
    """The :class:`CapturedUpdate` of this (optimizer, model), kept on the optimizer across epochs
    (so that its graph is compiled once and ``"auto"`` counts the whole run), or ``None`` with
    ``mode=False`` or where the update cannot be captured (logged once, naming why)."""
    mode = check_capture_mode(mode, "train_epoch")
    if mode is False:
        return None
    registry: dict[int, CapturedUpdate] = optimizer.__dict__.setdefault("_fptt_captured", {})
    captured = registry.get(id(model))
    if captured is None or captured.model is not model:
        captured = CapturedUpdate(model, optimizer, mode, clip_grad_norm=clip_grad_norm)
        registry[id(model)] = captured
        reason = capture_unsupported_reason(model, optimizer, method)
        if reason is not None:
            captured.give_up(reason)
    captured.mode = mode
    captured.clip_grad_norm = clip_grad_norm
    return None if captured.failed is not None else captured

