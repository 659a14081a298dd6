"""Learning from a stream: one time step in, a prediction out, an FPTT update every k steps.

:class:`OnlineLearner` drives any stateful model (:mod:`fptt.models`) over a batch of endless
streams. It is stream bookkeeping (live state, per-stream reset, ring buffer of losses, exact
``state_dict``) around the same :class:`~fptt.training.window.WindowUpdate` that the batch engines use:
the state is detached at every window boundary (every ``k`` steps), the loss of the targets given
inside the window is accumulated and, at the window's end, back-propagated through that window
only, with the same non-finite policy (stop | skip), clipping and DDP gradient sync as
:func:`fptt.training.engine.train_epoch`. Nothing grows with the number of steps seen: the autograd graph
spans at most one window and the loss history is a bounded ring buffer.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from ..models.protocol import check_first_step, check_stateful_model
from ..models.state import map_state, select_batch, state_tensors
from .batches import LossFn
from .window import WindowUpdate

__all__ = ["OnlineLearner"]

LossSpec = Union[str, Callable[[Tensor, Tensor], Tensor]]


def _resolve_loss(loss: LossSpec) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if loss in ("cross_entropy", "mse"):
        return LossFn(loss)  # the engines' definition of L(v_t, y_t)
    raise ValueError(f"unknown loss {loss!r}; choose 'cross_entropy', 'mse' or pass a callable")


class OnlineLearner:
    """Train ``model`` online on ``batch_size`` parallel streams.

    Args:
        model: a stateful model (``init_state(batch, device, dtype)``, ``step(x_t, state)``).
        optimizer: :class:`~fptt.optim.FPTT` (or any optimizer for the naive online baseline).
        loss: ``"cross_entropy"``, ``"mse"`` or ``callable(output, target) -> scalar``.
        k: steps per window (an update at the end of each window that saw at least one target).
        batch_size: number of parallel streams.
        clip_grad_norm: total-norm clipping for plain optimizers (for FPTT set it on the wrapper).
        history: length of the ring buffer of per-update losses (``learner.history``).
        on_nonfinite: ``"stop"`` (default: a NaN/Inf window loss raises ``FloatingPointError``
            naming the stream step) or ``"skip"`` (that update is dropped and counted in
            ``learner.skipped``), as in :func:`fptt.training.engine.train_epoch`.

    Under DDP (a :class:`~fptt.training.distributed.DistributedModel`) every rank closes every window with
    one all-reduce; a rank that saw no target in a window contributes a zero gradient.

    ``observe(x_t, y_t=None, target_mask=None)`` consumes one step ``x_t`` (streams, features) and
    returns the detached prediction; ``y_t`` (optional) is a target for that step and
    ``target_mask`` (streams,) selects which streams' targets count.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        loss: LossSpec = "cross_entropy",
        k: int = 1,
        batch_size: int = 1,
        clip_grad_norm: Optional[float] = None,
        history: int = 1000,
        device: Optional[torch.device | str] = None,
        dtype: Optional[torch.dtype] = None,
        on_nonfinite: str = "stop",
    ) -> None:
        check_stateful_model(model)
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if history <= 0:
            raise ValueError(f"history must be positive, got {history}")
        self.window = WindowUpdate(model, optimizer, clip_grad_norm=clip_grad_norm, on_nonfinite=on_nonfinite)
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = _resolve_loss(loss)
        self.k = k
        self.batch_size = batch_size
        self.clip_grad_norm = clip_grad_norm
        parameter = next(model.parameters())
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = dtype or parameter.dtype
        self.state = model.init_state(batch_size, device=self.device, dtype=self.dtype)
        self.history: deque[float] = deque(maxlen=history)
        self.steps = 0
        self._updates_before = 0  # updates restored from a state_dict
        self._window_targets = 0
        self._steps_in_window = 0

    @property
    def updates(self) -> int:
        """Updates applied so far (a resumed learner counts those before the checkpoint)."""
        return self._updates_before + self.window.updates

    @property
    def skipped(self) -> int:
        """Updates dropped for a NaN/Inf (``on_nonfinite="skip"``)."""
        return self.window.skipped

    @property
    def at_window_boundary(self) -> bool:
        """True when no partial window is pending (a checkpoint taken now resumes exactly)."""
        return self._steps_in_window == 0

    def observe(self, x_t: Tensor, y_t: Optional[Tensor] = None, target_mask: Optional[Tensor] = None,
                weight: float = 1.0) -> Tensor:
        """Consume one time step; returns the model's output for it (detached).

        With a target ``y_t`` the step adds ``weight · L(v_t, y_t)`` to the current window's loss
        (only for the streams in ``target_mask``, if given); the window's update uses the mean over
        its steps with targets. ``weight`` plays the role of the batch engines' w_t, e.g.
        ``(p + 1) / P`` at position p of a P-step item, so that late, informed predictions count more."""
        if not weight >= 0.0:
            raise ValueError(f"weight must be a non-negative number, got {weight!r}")
        if x_t.dim() != 2 or x_t.shape[0] != self.batch_size:
            raise ValueError(f"x_t must have shape ({self.batch_size}, features), got {tuple(x_t.shape)}")
        x_t = x_t.to(self.device, self.dtype)
        if self._steps_in_window == 0:  # a window is the stream's segment: checked once, stepped unchecked
            check_first_step(self.model, x_t, self.state)
            self.state = self.window.begin(self.state)
        self.model.train()
        last = self._steps_in_window == self.k - 1
        output, self.state = self.window.step(x_t, self.state, sync=last)
        if y_t is not None:
            y_t = y_t.to(self.device)
            if target_mask is not None:
                target_mask = target_mask.to(self.device, torch.bool)
                if target_mask.shape != (self.batch_size,):
                    raise ValueError(f"target_mask must have shape ({self.batch_size},), got {tuple(target_mask.shape)}")
                step_loss = self.loss_fn(output[target_mask], y_t[target_mask]) if bool(target_mask.any()) else None
            else:
                step_loss = self.loss_fn(output, y_t)
            if step_loss is not None and weight != 1.0:
                step_loss = weight * step_loss
            if step_loss is not None:
                self.window.add(step_loss)
                self._window_targets += 1
        self.steps += 1
        self._steps_in_window += 1
        if self._steps_in_window == self.k:
            self._close_window()
        return output.detach()

    def _close_window(self) -> None:
        applied = self.window.close(max(self._window_targets, 1))
        self._window_targets = 0
        self._steps_in_window = 0
        if self.window.first_nonfinite() is not None:
            raise FloatingPointError(
                f"non-finite loss in the update of stream time steps {self.steps - self.k}..{self.steps - 1} "
                f"(counted from 0); {self.window.nonfinite_remedy()}")
        if applied:
            self.history.append(float(self.window.last_loss))  # type: ignore[arg-type]  # set by an applied update

    def reset_streams(self, mask: Tensor) -> None:
        """Restart the state of the streams where ``mask`` (streams,) is true; others are untouched."""
        mask = torch.as_tensor(mask, device=self.device, dtype=torch.bool)
        if mask.shape != (self.batch_size,):
            raise ValueError(f"mask must have shape ({self.batch_size},), got {tuple(mask.shape)}")
        fresh = self.model.init_state(self.batch_size, device=self.device, dtype=self.dtype)
        self.state = select_batch(mask, fresh, self.state)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer (FPTT's W̄ and λ included),
        live network state, counters, loss history and the RNG states of the CPU and (CUDA) of the
        learner's device, where the initial membranes of reset streams are drawn. Only at a window
        boundary: a pending window's graph cannot be saved, and dropping it would lose data."""
        if not self.at_window_boundary:
            raise RuntimeError(
                f"the learner is {self._steps_in_window} step(s) into a {self.k}-step window; "
                "save at a window boundary (learner.at_window_boundary) so no pending loss is lost"
            )
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # a flat list of tensors, so the file loads with torch.load(weights_only=True)
            "network_state": [tensor.detach().clone() for tensor in state_tensors(self.state)],
            "steps": self.steps,
            "updates": self.updates,
            "skipped": self.skipped,
            "history": list(self.history),
            "rng": torch.get_rng_state(),
            "device_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        saved = list(state["network_state"])
        if len(saved) != len(list(state_tensors(self.state))):
            raise ValueError("the saved network state does not match this model's state structure")
        leaves = iter(saved)
        self.state = map_state(lambda _template: next(leaves).to(self.device), self.state)
        self.steps = int(state["steps"])
        self._updates_before = int(state["updates"]) - self.window.updates
        self.window.skipped = int(state.get("skipped", 0))
        self.history.clear()
        self.history.extend(state["history"])
        torch.set_rng_state(state["rng"])
        if self.device.type == "cuda" and state.get("device_rng") is not None:
            torch.cuda.set_rng_state(state["device_rng"], self.device)
        self.window.loss, self._window_targets, self._steps_in_window = None, 0, 0
