"""One training window: the update unit shared by the batch engines and the stream learner.

FPTT, truncated BPTT and naive online gradient all train by *windows* (THEORY.md §3): the network
state is detached at the window's start, the weighted step losses ℓ_t = w_t L(v_t, y_t) of the
window are summed, and at the window's end one update is made::

    state ← detach(state)                                   # begin(): gradients stop here
    for t in window: v_t, state = model.step(x_t, state)    # step(): DDP syncs only the last step
                     loss += w_t L(v_t, y_t)                # add()
    loss ← loss / divisor; backward()                       # close(): one backward per window,
    non-finite policy; clip (plain optimizers); optimizer.step()   #   one optimizer step

:class:`WindowUpdate` owns that sequence, so :func:`fptt.training.engine.train_epoch` and
:class:`fptt.training.streaming.OnlineLearner` cannot drift apart. Its policies:

* **Non-finite values** (``on_nonfinite``). ``"stop"``: every update is applied, and an on-device
  flag records whether each window loss was finite (no host sync per update). The caller reads it
  with :meth:`WindowUpdate.first_nonfinite` (the batch engine once per batch, the stream after each
  update) and raises, naming the update. ``"skip"``: after the backward pass, the loss and every
  gradient are checked (one host sync). An update with a NaN/Inf is dropped and counted in
  :attr:`skipped`.
* **Clipping.** For a plain optimizer, ``clip_grad_norm`` clips the total gradient norm before
  the step. For :class:`~fptt.optim.FPTT`, the wrapper clips the *combined* gradient (loss +
  regulariser, THEORY.md §3.4), so the value belongs on the wrapper and a second one is refused here.
* **Gradients computed forward in time** (``gradients=``, e-prop and OSTL,
  :class:`~fptt.training.traces.learner.TraceLearner`). The source runs each step itself (advancing its
  eligibility traces), turns each added step loss into its gradient contribution at once, and at
  :meth:`close` writes the window's gradient into ``.grad`` instead of ``backward()``; the
  non-finite policy, clipping and the optimizer step are the same as for every other method.
* **Data parallelism.** With a :class:`~fptt.training.distributed.DistributedModel`, only the last step of
  the window runs DDP's synchronising forward, so the window's single backward all-reduces every
  gradient once. Every rank must take part in that all-reduce: a window that ran a synchronising
  step but has no loss on this rank back-propagates ``0 · Σ output`` (a zero gradient) instead
  of skipping it. The non-finite verdict is agreed too, by one all-reduce (MIN) of a flag per
  check: a loss that is NaN/Inf on one rank only (its gradient may stay finite, as for an Inf
  loss) makes every rank skip that update (``"skip"``: one flag per update) or raise naming the
  same update (``"stop"``: the pair (all finite, updates before the first bad one) per check).
  Without it, that rank alone would stop or skip, and the others would hang in their next
  all-reduce or drift apart.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..models.state import detach_state
from ..optim import FPTT
from ..spec.rules import check_clip
from ..spec.vocabulary import ON_NONFINITE

__all__ = ["WindowUpdate"]


class WindowUpdate:
    """Accumulates one window's loss and closes it with one update (see the module docstring).

    Args:
        model: a stateful model (``init_state``, ``step``); ``set_gradient_sync`` is used if present.
        optimizer: any optimizer; :class:`~fptt.optim.FPTT` for the paper's method.
        clip_grad_norm: total-norm clipping for plain optimizers (for FPTT set it on the wrapper).
        on_nonfinite: ``"stop"`` or ``"skip"``.
        gradients: a forward-in-time gradient source (:class:`~fptt.training.traces.learner.TraceLearner`)
            used instead of autograd through the window; None for the back-propagating methods.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 clip_grad_norm: Optional[float] = None, on_nonfinite: str = "stop",
                 gradients: Optional[Any] = None) -> None:
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        if clip_grad_norm is not None:
            if isinstance(optimizer, FPTT):
                raise ValueError(
                    "with an FPTT optimizer set clipping on the wrapper, FPTT(..., clip_grad_norm=c), so that it "
                    "clips the combined gradient (loss + regularizer) as in THEORY.md §3"
                )
            clip_grad_norm = check_clip(clip_grad_norm)
        self.model = model
        self.optimizer = optimizer
        self.clip_grad_norm = clip_grad_norm
        self.skip_nonfinite = on_nonfinite == "skip"
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.gradients = gradients
        self._set_sync: Optional[Callable[[bool], None]] = getattr(model, "set_gradient_sync", None)
        self.updates = 0  # applied updates
        self.skipped = 0  # updates dropped for a NaN/Inf (on_nonfinite="skip")
        self.loss: Optional[Tensor] = None  # the open window's summed loss
        self.last_loss: Optional[Tensor] = None  # the last applied window loss (detached)
        self._synced_output: Optional[Tensor] = None
        # on_nonfinite="stop": all_finite stays 1 while every window loss since the last check was
        # finite; finite_prefix counts the updates before the first that was not (read lazily)
        self._all_finite: Optional[Tensor] = None
        self._finite_prefix: Optional[Tensor] = None
        self._checked_updates = 0

    @property
    def distributed(self) -> bool:
        return self._set_sync is not None

    def start_sequence(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        """A new sequence begins (a forward-in-time gradient source resets its traces)."""
        if self.gradients is not None:
            self.gradients.start(batch_size, device, dtype)

    def begin(self, state: Any) -> Any:
        """Open a window: the state, detached (gradients never flow back past this point)."""
        self.loss = None
        self._synced_output = None
        return detach_state(state)

    def step(self, x_t: Tensor, state: Any, *, sync: bool = False) -> tuple[Tensor, Any]:
        """One time step of the model. ``sync``: this step is the window's last before a backward
        (DDP prepares its all-reduce on it; ignored for single-process models)."""
        if self.gradients is not None:
            return self.gradients.step(x_t, state)
        if self._set_sync is not None:
            self._set_sync(sync)
        output, state = self.model.step(x_t, state)
        if sync and self._set_sync is not None:
            self._synced_output = output
        return output, state

    def add(self, term: Tensor) -> None:
        """Add one weighted step loss w_t L(v_t, y_t) to the open window."""
        if self.gradients is not None:  # its gradient now, while the traces are those of step t
            self.gradients.accumulate(term)
            term = term.detach()
        self.loss = term if self.loss is None else self.loss + term

    def close(self, divisor: int = 1) -> bool:
        """Close the window: back-propagate ``loss / divisor``, apply the non-finite policy, clip
        and step. Returns whether an update was applied (False: no loss, or skipped)."""
        loss = self.loss
        self.loss = None
        if loss is None:
            if self._synced_output is None:
                return False
            loss = 0.0 * self._synced_output.sum()  # take part in the other ranks' all-reduce
        elif divisor != 1:
            loss = loss / divisor
        self._synced_output = None
        self.optimizer.zero_grad(set_to_none=True)
        if self.gradients is not None:
            self.gradients.write(self.parameters, divisor)
        else:
            loss.backward()
        if self.skip_nonfinite:
            if not bool(self._agreed(_finite_flag(loss, self.parameters))):
                self.optimizer.zero_grad(set_to_none=True)
                self.skipped += 1
                return False
        else:
            if self._all_finite is None:
                self._all_finite = torch.ones((), dtype=loss.dtype, device=loss.device)
                self._finite_prefix = torch.zeros((), dtype=loss.dtype, device=loss.device)
            # two scalar kernels per update, no host sync (read by first_nonfinite)
            self._finite_prefix.add_(self._all_finite.mul_(torch.isfinite(loss.detach())))
            self._checked_updates += 1
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_grad_norm)
        self.optimizer.step()
        self.updates += 1
        self.last_loss = loss.detach()
        return True

    def nonfinite_remedy(self) -> str:
        """The advice a non-finite error ends with. Gradient clipping is advised only where none is set
        (here or, for FPTT, on the wrapper, never both): a clip cannot scale a gradient that overflowed,
        since its norm ‖∇‖ is Inf, its scale c / ‖∇‖ is 0, and 0 · Inf = NaN."""
        clip = self.optimizer.clip_grad_norm if isinstance(self.optimizer, FPTT) else self.clip_grad_norm
        if clip is None:
            return "lower the learning rate, enable gradient clipping, or train with on_nonfinite='skip'"
        return (f"lower the learning rate or train with on_nonfinite='skip' (the gradient is clipped at norm {clip:g} "
                "already, and a clip cannot scale a gradient that overflowed to Inf)")

    def finite_flags(self, like: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """``on_nonfinite="stop"``: the on-device flags ``(all_finite, finite_prefix)`` that an update
        advances (a captured update does it inside its graph; created here on first use); ``"skip"``: None."""
        if self.skip_nonfinite:
            return None
        if self._all_finite is None or self._finite_prefix is None:
            self._all_finite = torch.ones((), dtype=like.dtype, device=like.device)
            self._finite_prefix = torch.zeros((), dtype=like.dtype, device=like.device)
        return self._all_finite, self._finite_prefix

    def count_captured(self, applied: Tensor) -> bool:
        """Record an update made by :class:`~fptt.training.captured.CapturedUpdate`; with ``"skip"``,
        read whether it was applied (one host sync, as the eager path's check)."""
        self.loss = None
        self._synced_output = None
        if self.skip_nonfinite and not bool(applied):
            self.skipped += 1
            return False
        if not self.skip_nonfinite:
            self._checked_updates += 1
        self.updates += 1
        return True

    def _agreed(self, flags: Tensor) -> Tensor:
        """``flags`` reduced with MIN over all ranks (one all-reduce) under DDP; as given otherwise."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                flags = flags.clone()
                dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        return flags

    def first_nonfinite(self) -> Optional[int]:
        """``on_nonfinite="stop"``: the index (0-based, counted since the previous call) of the first
        applied update whose loss was NaN/Inf, or None; resets the count. One host sync."""
        if self._all_finite is None or self._finite_prefix is None or self._checked_updates == 0:
            return None
        # all ranks: finite only if finite everywhere, and the earliest bad update of any rank
        all_finite, finite_prefix = self._agreed(torch.stack([self._all_finite, self._finite_prefix])).tolist()
        first = int(finite_prefix) if not all_finite else None
        self._all_finite.fill_(1)
        self._finite_prefix.zero_()
        self._checked_updates = 0
        return first


def _finite_flag(loss: Tensor, parameters: Sequence[Tensor]) -> Tensor:
    """1.0 when the loss and every gradient are finite, else 0.0 (a device scalar, not read here)."""
    values = [loss.detach().reshape(())] + [p.grad.detach().sum() for p in parameters if p.grad is not None]
    return torch.isfinite(torch.stack([v.to(values[0].dtype) for v in values])).all().to(loss.dtype)
