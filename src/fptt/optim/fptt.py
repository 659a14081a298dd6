"""Forward Propagation Through Time (FPTT) as a wrapper around any PyTorch optimizer.

FPTT (Kag & Saligrama, "Training Recurrent Neural Networks via Forward Propagation
Through Time", ICML 2021; applied to spiking networks with liquid-time-constant neurons by
Yin, Corradi & Bohté, "Accurate online training of dynamical spiking neural networks
through Forward Propagation Through Time", Nature Machine Intelligence 2023) replaces
back-propagation through the whole sequence by an optimizer update at every time step (or
every ``k`` steps), each computed on a short detached window, plus a *dynamic regularizer*
that ties the online updates together.

For every trainable parameter ``W`` the method keeps a running average ``W̄`` (initialised
to ``W``) and a state ``λ`` (initialised to 0). One update (THEORY.md §3.3–§3.5) is::

    R(W)  = (α/2) ‖W − W̄‖² − ⟨λ, W⟩                      # dynamic regularizer
    ∇    ← ∇ℓ_t + α (W − W̄) − λ                          # = ∇ℓ_t + ∇R(W)
    ∇    ← clip(∇)                                        # optional, total norm
    W    ← inner_optimizer_step(W, ∇)                     # SGD, Adam, Adamax, ...
    λ    ← λ − α (W − W̄)                                  # with the *new* W
    W̄    ← (1 − β) W̄ + β W − (β/α) λ                      # with the *new* W and new λ

The regularizer is equivalent, up to a constant, to FPTT's original form
``(α/2) ‖W − W̄ − ∇ℓ_{t−1}/(2α)‖²``. The order of the post-update (``λ`` first, then ``W̄``
using the freshly updated ``λ``) follows the reference code of Kag & Saligrama and of
Yin et al.

Unlike the papers' code, which builds the regularizer as an autograd expression over all
parameters and back-propagates through it, :class:`FPTT` adds its closed-form gradient
directly to ``.grad`` with grouped ``torch._foreach_*`` kernels (one launch per
(device, dtype) bucket and parameter group), without building an autograd graph and
without host synchronisation.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..compiled import FusePolicy, check_fused_mode
from ..spec.rules import check_alpha, check_beta, check_clip
from .regularizer import _difference

__all__ = ["FPTT"]

_ALPHA_KEY = "fptt_alpha"
_BETA_KEY = "fptt_beta"
_STATE_VERSION = 1

# (params, averages, lambdas, scratch) of one (device, dtype) bucket of one parameter
# group; scratch is a persistent buffer for W − W̄ on CPU (None elsewhere).
_Bucket = tuple[list[Tensor], list[Tensor], list[Tensor], "list[Tensor] | None"]


def _checked(check: Callable[[Any], Any], value: Any, where: str) -> Any:
    """A rule of :mod:`fptt.spec.rules` applied to an FPTT hyperparameter, its error prefixed with ``where``."""
    try:
        return check(value)
    except ValueError as error:
        raise ValueError(f"FPTT{' ' + where if where else ''}: {error}") from None


class FPTT(Optimizer):
    r"""Wrap a ``torch.optim.Optimizer`` so that each ``step()`` is an FPTT update.

    For every parameter :math:`W` the wrapper keeps a running average :math:`\bar W` and a state
    :math:`\lambda` (THEORY §3.3-§3.5). :meth:`step` performs, for every parameter whose ``.grad``
    is not ``None``:

    1. adds the gradient of the dynamic regularizer (see :func:`regularizer`)

       .. math:: R(W) = \tfrac{\alpha}{2}\lVert W - \bar W\rVert^2 - \langle \lambda, W\rangle,
                 \qquad \nabla \leftarrow \nabla \ell_t + \alpha (W - \bar W) - \lambda ;

    2. optionally, ``torch.nn.utils.clip_grad_norm_`` on the *combined* gradient;
    3. one step of the wrapped optimizer;
    4. the post-update, with the updated :math:`W` and, in the second line, the freshly updated
       :math:`\lambda` (the ordering of Kag & Saligrama's and Yin et al.'s reference code):

       .. math:: \lambda \leftarrow \lambda - \alpha (W - \bar W), \qquad
                 \bar W \leftarrow (1 - \beta)\,\bar W + \beta\, W - \tfrac{\beta}{\alpha}\,\lambda .

    Parameters whose ``.grad`` is ``None`` at a step are left entirely alone (no
    regularizer, no inner update, no post-update of ``W̄`` and ``λ``).

    References: S. Kag and V. Saligrama, *Training Recurrent Neural Networks via Forward
    Propagation Through Time*, ICML 2021; B. Yin, F. Corradi and S. M. Bohté, *Accurate
    online training of dynamical spiking neural networks through Forward Propagation
    Through Time*, Nature Machine Intelligence 5, 2023.

    Args:
        optimizer: the wrapped optimizer instance (e.g. ``torch.optim.Adamax``). The wrapper
            shares its ``param_groups`` and ``state`` and never copies them. Optimizers
            that re-evaluate a closure inside ``step`` (LBFGS) and ``maximize=True`` are not
            supported.
        alpha: default ``α > 0`` (regularizer strength). Per parameter group it can be
            overridden with the group key ``"fptt_alpha"``.
        beta: default ``β ∈ [0, 1]`` (running-average rate, β in THEORY.md §3.5); per group
            key ``"fptt_beta"``.
        reset_lambda_on_average: default for :meth:`load_average`: whether copying
            ``W ← W̄`` also zeroes ``λ`` (the original FPTT code for plain RNNs does; the
            SNN code keeps ``λ``).
        clip_grad_norm: if not ``None``, the total norm (2-norm over all parameters being
            updated) of the combined gradient ``∇ℓ + ∇R`` is clipped to this value before
            the inner step, as in THEORY.md §3.4.
        fused: ``True`` runs the regularizer gradient, the inner step and the post-update as one
            compiled pass per parameter (:mod:`fptt.optim.fused_update`; Adam, Adamax and SGD
            only; the first update compiles: 2.5 s with a warm on-disk cache, 13.2 s cold, measured
            on 2 CPU cores by ``fptt bench compile``); ``"auto"`` (default) runs the exact path for the first
            :data:`fptt.spec.rules.FUSE_AFTER_STEPS` updates and the compiled one after, where
            the inner optimizer has a fused kernel (otherwise always the exact path); ``"eager"``
            runs the fused equations without compiling (tests, debugging); ``False`` the exact
            multi-tensor path. Results agree to float rounding, and checkpoints are
            interchangeable. Where ``torch.compile`` cannot run, the exact path is used, with
            one logged line (:mod:`fptt.compiled`).

    Notes:
        * ``W̄`` is allocated at construction as a copy of ``W`` and ``λ`` as zeros; ``W̄``
          is re-synchronised to ``W`` at the first update of each parameter, so loading
          model weights *after* building the optimizer is safe and the result is identical
          to initialising ``W̄`` lazily. Until its first update a parameter's ``W̄`` is, by
          definition, ``W`` (so :meth:`load_average` / :meth:`averaged` leave it alone).
        * :class:`FPTT` is a :class:`torch.optim.Optimizer` subclass (so LR schedulers
          accept it) whose ``param_groups``, ``state`` and ``zero_grad`` are the wrapped
          optimizer's. Changing ``param_groups[i]["lr"]`` changes the inner optimizer's
          learning rate.
        * :meth:`state_dict` returns the inner optimizer's state dict (``"state"`` and
          ``"param_groups"``, the latter holding ``fptt_alpha``/``fptt_beta``) plus an
          ``"fptt"`` entry with ``W̄`` and ``λ`` keyed by the parameter's index across the
          parameter groups, like ``Optimizer.state_dict``. It only contains tensors, dicts,
          lists, numbers, booleans and ``None`` (``torch.load(weights_only=True)`` works).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        alpha: float = 0.1,
        beta: float = 0.5,
        reset_lambda_on_average: bool = False,
        clip_grad_norm: float | None = None,
        fused: bool | str = "auto",
    ) -> None:
        if isinstance(optimizer, FPTT):
            raise TypeError(
                "FPTT: the optimizer is already an FPTT wrapper; wrapping it twice would "
                "add the regularizer twice"
            )
        if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
            name = getattr(optimizer, "__name__", "the class")
            raise TypeError(
                f"FPTT wraps an optimizer *instance*, got the class {name}; "
                f"use FPTT({name}(model.parameters(), lr=...))"
            )
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                "FPTT wraps a torch.optim.Optimizer instance, got "
                f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
            )
        # Deliberately not calling Optimizer.__init__: it would build new param groups.
        # We set up exactly the attributes Optimizer's machinery (step hooks, profiler
        # wrapper, LR schedulers) relies on and delegate the rest to the wrapped optimizer.
        self.optimizer = optimizer
        self._init_hooks()
        self._patch_step_function()
        self.alpha = _checked(check_alpha, alpha, "")
        self.beta = _checked(check_beta, beta, "")
        self.reset_lambda_on_average = bool(reset_lambda_on_average)
        self.clip_grad_norm = _checked(check_clip, clip_grad_norm, "")
        self.fused = check_fused_mode(fused, "FPTT")
        self._fused = self._fused_update(self.fused)
        self._fuse_policy = FusePolicy(self.fused)
        self.defaults = {**optimizer.defaults, _ALPHA_KEY: self.alpha, _BETA_KEY: self.beta}
        # Per-parameter FPTT buffers; keyed by the parameter tensor (identity hash) like
        # Optimizer.state.
        self._fptt_state: dict[Tensor, dict[str, Tensor]] = {}
        # Parameters whose W̄ will be re-synchronised to W at their first update.
        self._pending: set[Tensor] = set()
        self._cache: list[tuple[list[Tensor], int, list[_Bucket]]] | None = None
        for i, group in enumerate(self.optimizer.param_groups):
            self._prepare_group(group, where=f"param_groups[{i}]")
            self._init_params(group["params"])

    # ------------------------------------------------------------------ plumbing
    def _init_hooks(self) -> None:
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()

    def _fused_update(self, fused: bool | str) -> Any:
        """The fused update of ``fused`` (None: the exact path; "auto" without a kernel for the
        inner optimizer falls back to it, ``True``/``"eager"`` then raise the reason)."""
        from .fused_update import FusedUpdate, fused_unsupported_reason

        if not fused or (fused == "auto" and fused_unsupported_reason(self.optimizer) is not None):
            return None
        return FusedUpdate(self.optimizer, compile=fused != "eager")

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The wrapped optimizer's ``param_groups`` (the very same list object)."""
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value
        self._cache = None

    @property  # type: ignore[override]
    def state(self) -> Any:  # type: ignore[override]
        """The wrapped optimizer's per-parameter ``state`` (the very same object)."""
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def fptt_state(self) -> dict[Tensor, dict[str, Tensor]]:
        """Live FPTT buffers: ``{param: {"average": W̄, "lambda": λ}}`` (not copies)."""
        return self._fptt_state

    def __getstate__(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "alpha": self.alpha,
            "beta": self.beta,
            "reset_lambda_on_average": self.reset_lambda_on_average,
            "clip_grad_norm": self.clip_grad_norm,
            "fused": self.fused,
            "defaults": self.defaults,
            "_fptt_state": self._fptt_state,
            "_pending": self._pending,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fused = state.get("fused", False)
        self._fused = self._fused_update(self.fused)
        self._fuse_policy = FusePolicy(self.fused)
        self._init_hooks()
        self._cache = None
        self._patch_step_function()

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        groups = ", ".join(
            f"[{i}] alpha={g.get(_ALPHA_KEY, self.alpha)}, beta={g.get(_BETA_KEY, self.beta)}"
            for i, g in enumerate(self.param_groups)
        )
        return (
            f"{type(self).__name__}(alpha={self.alpha}, beta={self.beta}, "
            f"reset_lambda_on_average={self.reset_lambda_on_average}, "
            f"clip_grad_norm={self.clip_grad_norm}, groups: {groups},\n"
            f"  optimizer=\n{inner}\n)"
        )

    def _prepare_group(self, group: dict[str, Any], where: str) -> None:
        group.setdefault(_ALPHA_KEY, self.alpha)
        group.setdefault(_BETA_KEY, self.beta)
        self._group_hyper(group, where)

    def _group_hyper(self, group: dict[str, Any], where: str) -> tuple[float, float]:
        alpha = group.get(_ALPHA_KEY, self.alpha)
        beta = group.get(_BETA_KEY, self.beta)
        if group.get("maximize", False):
            raise ValueError(
                f"FPTT {where}: maximize=True is not supported (the regularizer assumes "
                "the inner optimizer minimises)"
            )
        # Fast path for the common case; the checks only build messages on failure.
        if type(alpha) is float and type(beta) is float and alpha > 0.0 and 0.0 <= beta <= 1.0 \
                and alpha != math.inf:
            return alpha, beta
        return _checked(check_alpha, alpha, where), _checked(check_beta, beta, where)

    @torch.no_grad()
    def _init_params(self, params: Iterable[Tensor]) -> None:
        for p in params:
            if p in self._fptt_state:
                continue
            self._fptt_state[p] = {
                "average": p.detach().clone(memory_format=torch.preserve_format),
                "lambda": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
            self._pending.add(p)
        self._cache = None

    def _all_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _buckets(self) -> list[tuple[list[Tensor], int, list[_Bucket]]]:
        """Per-group (device, dtype) buckets of (params, W̄, λ); cached between steps."""
        cache = self._cache
        groups = self.param_groups
        if cache is not None and len(cache) == len(groups) and all(
            c[0] is g["params"] and c[1] == len(g["params"]) for c, g in zip(cache, groups)
        ):
            return cache
        cache = []
        for group in groups:
            params = group["params"]
            missing = [p for p in params if p not in self._fptt_state]
            if missing:  # parameters appended to a group behind our back
                self._init_params(missing)
            by_key: dict[tuple[torch.device, torch.dtype], _Bucket] = {}
            for p in params:
                st = self._fptt_state[p]
                scratch: list[Tensor] | None = [] if p.device.type == "cpu" else None
                ps, avs, lms, sc = by_key.setdefault((p.device, p.dtype), ([], [], [], scratch))
                ps.append(p)
                avs.append(st["average"])
                lms.append(st["lambda"])
                if sc is not None:
                    sc.append(torch.empty_like(p, memory_format=torch.preserve_format))
            cache.append((params, len(params), list(by_key.values())))
        self._cache = cache
        return cache

    # ------------------------------------------------------------------ public API
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer and initialise its ``W̄``, ``λ``.

        The group may carry ``"fptt_alpha"`` / ``"fptt_beta"``; otherwise the wrapper's
        defaults are used.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        param_group = dict(param_group)
        where = f"param_groups[{len(self.param_groups)}]"
        self._prepare_group(param_group, where)
        self.optimizer.add_param_group(param_group)
        self._init_params(self.param_groups[-1]["params"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients of all parameters (delegates to the wrapped optimizer)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """One FPTT update (regularizer gradient, optional clipping, inner step, post-update).

        Args:
            closure: optional callable that re-computes the loss (and calls ``backward``);
                evaluated once, with gradients enabled, before the update.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        active: list[tuple[dict[str, Any], float, float, list[Tensor], list[Tensor], list[Tensor], list[Tensor],
                           list[Tensor] | None]] = []
        fused = self._fused
        if fused is not None and (fused.kernel.failed or not self._fuse_policy.use_fused()):
            fused = None
        with torch.no_grad():
            for gi, (group, (_, _, buckets)) in enumerate(zip(self.param_groups, self._buckets())):
                alpha, beta = self._group_hyper(group, f"param_groups[{gi}]")
                for ps, avs, lms, sc in buckets:
                    gs: list[Any] = [p.grad for p in ps]  # Tensor | None until the None entries are dropped
                    if any(g is None for g in gs):
                        keep = [i for i, g in enumerate(gs) if g is not None]
                        if not keep:
                            continue
                        ps = [ps[i] for i in keep]
                        avs = [avs[i] for i in keep]
                        lms = [lms[i] for i in keep]
                        gs = [gs[i] for i in keep]
                        sc = None if sc is None else [sc[i] for i in keep]
                    if self._pending:
                        self._sync_pending(ps, avs)
                    active.append((group, alpha, beta, ps, gs, avs, lms, sc))  # type: ignore[arg-type]

            clip = self.clip_grad_norm is not None
            # 1. ∇ ← ∇ + α (W − W̄) − λ   (inside the fused kernel unless clipping needs it first)
            if fused is None or clip:
                for _, alpha, _, ps, gs, avs, lms, sc in active:
                    diff = _difference(ps, avs, sc)
                    torch._foreach_add_(gs, diff, alpha=alpha)
                    torch._foreach_sub_(gs, lms)

            # 2. optional clipping of the combined gradient (no host sync)
            if clip and active:
                torch.nn.utils.clip_grad_norm_(
                    [p for a in active for p in a[3]], self.clip_grad_norm, foreach=None
                )

            if fused is not None:  # 3 and 4 in one pass per parameter
                for group, alpha, beta, ps, gs, avs, lms, _ in active:
                    fused(group, ps, gs, avs, lms, alpha, beta, regularize=not clip)
                return loss

        # 3. inner optimizer step (it manages its own grad mode)
        self.optimizer.step()

        with torch.no_grad():
            # 4. λ ← λ − α (W − W̄);  W̄ ← W̄ + β (W − W̄) − (β/α) λ   (new W, new λ)
            for _, alpha, beta, ps, _, avs, lms, sc in active:
                diff = _difference(ps, avs, sc)
                torch._foreach_add_(lms, diff, alpha=-alpha)
                if beta != 0.0:
                    torch._foreach_add_(avs, diff, alpha=beta)
                    torch._foreach_add_(avs, lms, alpha=-beta / alpha)
        return loss

    def _sync_pending(self, ps: list[Tensor], avs: list[Tensor]) -> None:
        todo = [i for i, p in enumerate(ps) if p in self._pending]
        if todo:
            torch._foreach_copy_([avs[i] for i in todo], [ps[i] for i in todo])
            for i in todo:
                self._pending.discard(ps[i])

    @torch.no_grad()
    def load_average(self, reset_lambda: bool | None = None) -> None:
        """Copy ``W ← W̄`` into every parameter (the paper's end-of-epoch step, THEORY.md §3.6).

        Args:
            reset_lambda: also zero ``λ``; ``None`` uses the constructor's
                ``reset_lambda_on_average``.
        """
        if reset_lambda is None:
            reset_lambda = self.reset_lambda_on_average
        ps, avs = self._synced_params_and_averages()
        if ps:
            torch._foreach_copy_(ps, avs)
        if reset_lambda:
            lms = [st["lambda"] for st in self._fptt_state.values()]
            if lms:
                torch._foreach_zero_(lms)

    def _synced_params_and_averages(self) -> tuple[list[Tensor], list[Tensor]]:
        ps = [p for p in self._all_params() if p not in self._pending]
        return ps, [self._fptt_state[p]["average"] for p in ps]

    @contextmanager
    def averaged(self) -> Iterator[FPTT]:
        """Context manager: parameters hold ``W̄`` inside the block, their exact old values after.

        Useful to evaluate with the running average without committing to it. The original
        values are restored bit-exactly on exit, also when the block raises.
        """
        ps, avs = self._synced_params_and_averages()
        with torch.no_grad():
            backup = [p.detach().clone(memory_format=torch.preserve_format) for p in ps]
            if ps:
                torch._foreach_copy_(ps, avs)
        try:
            yield self
        finally:
            with torch.no_grad():
                if ps:
                    torch._foreach_copy_(ps, backup)

    def averaged_state_dict(self, model: torch.nn.Module) -> dict[str, Tensor]:
        """``model.state_dict()`` with every parameter this optimizer averages replaced by ``W̄``
        (copies; buffers and parameters it does not hold are the model's own). Save it and load it
        into a fresh model for inference, without the optimizer::

            torch.save(optimizer.averaged_state_dict(model), "model_average.pt")
            fresh.load_state_dict(torch.load("model_average.pt"))
        """
        with self.averaged():
            return {name: value.detach().clone() for name, value in model.state_dict().items()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Inner optimizer's state dict plus an ``"fptt"`` entry holding ``W̄``, ``λ``.

        Layout::

            {"state": ..., "param_groups": [...],      # wrapped optimizer's (groups carry
                                                        #  fptt_alpha / fptt_beta)
             "fptt": {"version": 1,
                      "state": {index: {"average": W̄, "lambda": λ}},
                      "pending": [indices whose W̄ is re-synchronised at first update],
                      "alpha": ..., "beta": ..., "reset_lambda_on_average": ...,
                      "clip_grad_norm": ...}}

        ``index`` is the parameter's position across all parameter groups, as in
        ``Optimizer.state_dict``. Tensors are references, not copies (as in PyTorch).
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        sd = dict(self.optimizer.state_dict())
        params = self._all_params()
        sd["fptt"] = {
            "version": _STATE_VERSION,
            "state": {
                i: {"average": self._fptt_state[p]["average"], "lambda": self._fptt_state[p]["lambda"]}
                for i, p in enumerate(params)
            },
            "pending": [i for i, p in enumerate(params) if p in self._pending],
            "alpha": self.alpha,
            "beta": self.beta,
            "reset_lambda_on_average": self.reset_lambda_on_average,
            "clip_grad_norm": self.clip_grad_norm,
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, sd)
            if result is not None:
                sd = result
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore a state dict produced by :meth:`state_dict` (inner state, groups, W̄, λ)."""
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        if not isinstance(state_dict, dict) or "fptt" not in state_dict:
            raise ValueError(
                "FPTT.load_state_dict: not an FPTT state dict (no 'fptt' entry); a plain "
                "optimizer state dict can be loaded with fptt_optimizer.optimizer.load_state_dict"
            )
        inner_sd = {k: v for k, v in state_dict.items() if k != "fptt"}
        fptt_sd = state_dict["fptt"]
        saved = fptt_sd["state"]
        params = self._all_params()
        if len(saved) != len(params):
            raise ValueError(
                f"FPTT.load_state_dict: the state dict holds FPTT state for {len(saved)} "
                f"parameters but the optimizer has {len(params)}"
            )
        for i, p in enumerate(params):
            if i not in saved:
                raise ValueError(f"FPTT.load_state_dict: no FPTT state for parameter index {i}")
            for key in ("average", "lambda"):
                t = saved[i][key]
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(
                        f"FPTT.load_state_dict: {key} of parameter {i} has shape "
                        f"{tuple(t.shape)}, the parameter has shape {tuple(p.shape)}"
                    )
        # Inner state and param groups (including fptt_alpha / fptt_beta); this may replace
        # the inner optimizer's param_groups list, which our property follows.
        self.optimizer.load_state_dict(inner_sd)
        self._cache = None
        for i, g in enumerate(self.param_groups):
            self._prepare_group(g, where=f"param_groups[{i}]")
        self.alpha = _checked(check_alpha, fptt_sd.get("alpha", self.alpha), "")
        self.beta = _checked(check_beta, fptt_sd.get("beta", self.beta), "")
        self.defaults[_ALPHA_KEY], self.defaults[_BETA_KEY] = self.alpha, self.beta
        self.reset_lambda_on_average = bool(
            fptt_sd.get("reset_lambda_on_average", self.reset_lambda_on_average)
        )
        self.clip_grad_norm = _checked(check_clip, fptt_sd.get("clip_grad_norm", self.clip_grad_norm), "")
        with torch.no_grad():
            for i, p in enumerate(params):
                st = self._fptt_state.get(p)
                if st is None:
                    self._init_params([p])
                    st = self._fptt_state[p]
                st["average"].copy_(saved[i]["average"])
                st["lambda"].copy_(saved[i]["lambda"])
        pending = set(fptt_sd.get("pending", []))
        self._pending = {p for i, p in enumerate(params) if i in pending}
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)
