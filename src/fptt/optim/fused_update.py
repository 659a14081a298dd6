"""Fused FPTT updates: the regularizer gradient, the inner optimizer's step and the λ/W̄
post-update of :class:`fptt.optim.FPTT` in one pass over each parameter.

The exact path of :class:`~fptt.optim.FPTT` runs the three stages of an update as separate
multi-tensor (``torch._foreach_*``) kernels: 4 passes for the regularizer gradient, 6-8 for the
inner Adam/Adamax step, 5 for the post-update, each reading and writing every parameter-sized
buffer again. Inside a training step the parameters are out of cache by the time the update runs,
so the passes cost memory traffic. Here each stage is written once per parameter as plain tensor
expressions (a *kernel*) and compiled by ``torch.compile``, which fuses them into one loop per
parameter. For one parameter ``W`` with gradient ``∇ℓ`` the kernels compute (THEORY.md §3.3–§3.5)::

    g  = ∇ℓ + α (W − W̄) − λ                       # regularizer gradient (when not pre-applied)
    W  ← inner_step(W, g)                          # Adam, Adamax or SGD, torch.optim's equations
    D  = W − W̄                                     # with the new W
    λ  ← λ − α D
    W̄  ← W̄ + β D − (β/α) λ                         # with the new λ

and the inner steps, with bias corrections computed on the host in double precision as
``torch.optim`` does (t = the parameter's step count after this update):

* Adam: ``m ← m + (1−β₁)(g − m)``, ``v ← β₂ v + (1−β₂) g²``,
  ``W ← W − (lr/(1−β₁ᵗ)) m / (√v / √(1−β₂ᵗ) + ε)`` (L2 weight decay adds ``wd·W`` to ``g``;
  decoupled weight decay first scales ``W ← (1 − lr·wd) W``);
* Adamax: ``m ← m + (1−β₁)(g − m)``, ``u ← max(β₂ u, |g| + ε)``, ``W ← W − (lr/(1−β₁ᵗ)) m / u``;
* SGD: ``b ← μ b + (1−d) g`` (``b ← g`` at the first step), ``g ← g + μ b`` (Nesterov) or
  ``g ← b``, ``W ← W − lr g`` (no momentum: ``W ← W − lr g``).

The inner optimizer's state (``step``, ``exp_avg``, ``exp_avg_sq``, ``exp_inf``,
``momentum_buffer``) lives in its own ``state`` under torch's keys, so checkpoints are
interchangeable between the fused and the exact path. Results equal the exact path to float
rounding (the compiler may contract ``a·b + c`` into one rounding); ``tests/test_fused.py``
compares both in float64. One difference is visible: the fused update does not write the combined
gradient back into ``W.grad`` (it keeps ``∇ℓ``), unless clipping is on, which needs it.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.optim import SGD, Adam, Adamax, Optimizer

from ..compiled import LazyCompiled

__all__ = ["FusedUpdate", "fused_unsupported_reason"]

_ONE = torch.tensor(1.0)

Kernel = Callable[..., None]


def _post_update(w: Tensor, average: Tensor, lam: Tensor, alpha: float, beta: float) -> None:
    """λ ← λ − α (W − W̄), then W̄ ← W̄ + β (W − W̄) − (β/α) λ (new W, new λ)."""
    difference = w - average
    lam.sub_(alpha * difference)
    if beta != 0.0:
        average.add_(beta * difference - (beta / alpha) * lam)


def _combined(w: Tensor, grad: Tensor, average: Tensor, lam: Tensor, alpha: float, regularize: bool) -> Tensor:
    """∇ℓ + α (W − W̄) − λ, or ∇ℓ unchanged when the regularizer was already added (clipping)."""
    return grad + alpha * (w - average) - lam if regularize else grad


def _adam_kernel(params: list[Tensor], grads: list[Tensor], averages: list[Tensor], lambdas: list[Tensor],
                 first: list[Tensor], second: list[Tensor], scalars: Tensor, alpha: float, beta: float,
                 beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
                 regularize: bool) -> None:
    """FPTT + Adam for a list of parameters; ``scalars[i] = (lr, lr/(1−β₁ᵗ), √(1−β₂ᵗ))``."""
    for i, (w, grad, average, lam, m, v) in enumerate(zip(params, grads, averages, lambdas, first, second)):
        g = _combined(w, grad, average, lam, alpha, regularize)
        if weight_decay != 0.0:
            if decoupled:
                w.mul_(1.0 - scalars[i, 0] * weight_decay)
            else:
                g = g + weight_decay * w
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        w.sub_(scalars[i, 1] * m / (v.sqrt() / scalars[i, 2] + eps))
        _post_update(w, average, lam, alpha, beta)


def _adamax_kernel(params: list[Tensor], grads: list[Tensor], averages: list[Tensor], lambdas: list[Tensor],
                   first: list[Tensor], second: list[Tensor], scalars: Tensor, alpha: float, beta: float,
                   beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
                   regularize: bool) -> None:
    """FPTT + Adamax for a list of parameters; ``scalars[i] = (lr, lr/(1−β₁ᵗ), unused)``."""
    for i, (w, grad, average, lam, m, u) in enumerate(zip(params, grads, averages, lambdas, first, second)):
        g = _combined(w, grad, average, lam, alpha, regularize)
        if weight_decay != 0.0:
            g = g + weight_decay * w
        m.lerp_(g, 1.0 - beta1)
        u.copy_(torch.maximum(u * beta2, g.abs() + eps))
        w.sub_(scalars[i, 1] * m / u)
        _post_update(w, average, lam, alpha, beta)


def _sgd_kernel(params: list[Tensor], grads: list[Tensor], averages: list[Tensor], lambdas: list[Tensor],
                buffers: list[Tensor], scalars: Tensor, alpha: float, beta: float, momentum: float,
                nesterov: bool, weight_decay: float, regularize: bool) -> None:
    """FPTT + SGD; ``scalars[i] = (lr, μ or 0 at the first step, 1−d or 1 at the first step)``."""
    for i, (w, grad, average, lam) in enumerate(zip(params, grads, averages, lambdas)):
        g = _combined(w, grad, average, lam, alpha, regularize)
        if weight_decay != 0.0:
            g = g + weight_decay * w
        if momentum != 0.0:
            buffer = buffers[i]
            buffer.mul_(scalars[i, 1]).add_(scalars[i, 2] * g)
            g = g + momentum * buffer if nesterov else buffer
        w.sub_(scalars[i, 0] * g)
        _post_update(w, average, lam, alpha, beta)


_KERNELS: dict[type, Kernel] = {Adam: _adam_kernel, Adamax: _adamax_kernel, SGD: _sgd_kernel}


def _group_unsupported_reason(group: dict[str, Any], where: str) -> Optional[str]:
    for flag in ("amsgrad", "differentiable", "capturable", "fused", "maximize"):
        if group.get(flag):
            return f"{where} sets {flag}=True, which the fused FPTT kernel does not implement"
    if not isinstance(group["lr"], (float, int)):
        return f"{where} has a tensor learning rate"
    return None


def fused_unsupported_reason(optimizer: Optimizer) -> Optional[str]:
    """``None`` if :class:`FusedUpdate` implements ``optimizer``'s exact equations, else why not.

    Supported: ``torch.optim.Adam`` (not amsgrad), ``Adamax`` and ``SGD`` (momentum, dampening,
    Nesterov, weight decay), real floating parameters, not ``differentiable``/``capturable``/
    ``fused`` (those flags select other code paths of torch).
    """
    kind = type(optimizer)
    if kind not in _KERNELS:
        return f"{kind.__name__} has no fused FPTT kernel (fused: Adam, Adamax, SGD)"
    for i, group in enumerate(optimizer.param_groups):
        reason = _group_unsupported_reason(group, f"param_groups[{i}]")
        if reason is not None:
            return reason
        for p in group["params"]:
            if p.is_complex() or not p.is_floating_point():
                return f"param_groups[{i}] holds a {p.dtype} parameter"
    return None


class FusedUpdate:
    """The fused stages 1, 3 and 4 of :meth:`fptt.optim.FPTT.step` for one inner optimizer.

    Args:
        optimizer: the wrapped ``Adam``, ``Adamax`` or ``SGD`` (checked by
            :func:`fused_unsupported_reason`).
        compile: run the kernels through ``torch.compile`` (``True``, one compilation per
            parameter layout and dtype, a few seconds on the first update) or eagerly (the same
            equations, one kernel launch per operation: for tests and debugging). If compilation
            fails (no C++ compiler, an unsupported backend) that update runs eagerly and
            :class:`~fptt.optim.FPTT` takes the exact path from then on
            (:class:`fptt.compiled.LazyCompiled`).
    """

    def __init__(self, optimizer: Optimizer, compile: bool = True) -> None:
        reason = fused_unsupported_reason(optimizer)
        if reason is not None:
            raise ValueError(f"FPTT(fused=...): {reason}; use fused=False")
        self.optimizer = optimizer
        self.kind = type(optimizer)
        self.kernel = LazyCompiled(_KERNELS[self.kind], compile=compile, name="FPTT(fused=True)")

    def __call__(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], averages: list[Tensor],
                 lambdas: list[Tensor], alpha: float, beta: float, regularize: bool) -> None:
        """Update one (device, dtype) bucket of one parameter group in place."""
        reason = _group_unsupported_reason(group, "a parameter group")
        if reason is not None:  # a flag changed after construction
            raise ValueError(f"FPTT(fused=...): {reason}")
        state = self.optimizer.state
        if self.kind is SGD:
            args = self._sgd_arguments(group, params, grads, state)
            kwargs = dict(alpha=alpha, beta=beta, momentum=float(group["momentum"]),
                          nesterov=bool(group["nesterov"]), weight_decay=float(group["weight_decay"]),
                          regularize=regularize)
        else:
            args = self._adam_arguments(group, params, state)
            beta1, beta2 = (float(b) for b in group["betas"])
            kwargs = dict(alpha=alpha, beta=beta, beta1=beta1, beta2=beta2, eps=float(group["eps"]),
                          weight_decay=float(group["weight_decay"]),
                          decoupled=bool(group.get("decoupled_weight_decay", False)), regularize=regularize)
        self.kernel(params, grads, averages, lambdas, *args, **kwargs)

    def _adam_arguments(self, group: dict[str, Any], params: list[Tensor], state: Any) -> tuple:
        """Lazily create torch's state entries, advance the step counts, and return
        ``(first moments, second moments, scalars)`` with the bias corrections of this step."""
        second_key = "exp_inf" if self.kind is Adamax else "exp_avg_sq"
        beta1, beta2 = (float(b) for b in group["betas"])
        lr = float(group["lr"])
        for p in params:
            st = state[p]
            if len(st) == 0:
                st["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st[second_key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        steps = [state[p]["step"] for p in params]
        torch._foreach_add_(steps, _ONE, alpha=1.0)  # one kernel for all counts, as torch.optim does on CPU
        rows = [(lr, lr / (1.0 - beta1 ** t), math.sqrt(1.0 - beta2 ** t)) for t in (float(s) for s in steps)]
        first = [state[p]["exp_avg"] for p in params]
        second = [state[p][second_key] for p in params]
        return first, second, _scalars(rows, params[0])

    def _sgd_arguments(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                       state: Any) -> tuple:
        """``(momentum buffers, scalars)``; a missing buffer starts at zero with the first-step
        coefficients (0, 1), so that ``b = 0·0 + 1·g = g`` as in torch (no buffers without momentum)."""
        lr = float(group["lr"])
        momentum, dampening = float(group["momentum"]), float(group["dampening"])
        buffers, rows = [], []
        for p in params:
            if momentum == 0.0:
                rows.append((lr, 0.0, 0.0))
                continue
            st = state[p]
            if st.get("momentum_buffer") is None:
                st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                rows.append((lr, 0.0, 1.0))
            else:
                rows.append((lr, momentum, 1.0 - dampening))
            buffers.append(st["momentum_buffer"])
        return buffers, _scalars(rows, params[0])


def _scalars(rows: list[tuple[float, float, float]], like: Tensor) -> Tensor:
    """Per-parameter host scalars as one (n, 3) tensor (a tensor, so that a changing learning
    rate or step count does not recompile the kernel)."""
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives its step counts (float32, or float64 when that is the default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
