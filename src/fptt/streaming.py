"""Learning from a stream: one time step in, a prediction out, an FPTT update every k steps.

:class:`OnlineLearner` drives any stateful model (:mod:`fptt.models`) over a batch of endless
streams. It holds the live network state, detaches it at every window boundary (every ``k``
steps), accumulates the loss of the targets it is given inside the window and, at the window's
end, back-propagates through that window only and steps the optimizer (an :class:`~fptt.optim.FPTT`
for the paper's method, or any plain optimizer for the naive online baseline). Nothing grows
with the number of steps seen: the autograd graph spans at most one window and the loss history
is a bounded ring buffer.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .state import detach_state, map_state, select_batch, state_tensors

__all__ = ["OnlineLearner"]

LossSpec = Union[str, Callable[[Tensor, Tensor], Tensor]]


def _resolve_loss(loss: LossSpec) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return F.cross_entropy
    if loss == "mse":
        return lambda output, target: F.mse_loss(output, target.reshape(output.shape).to(output.dtype))
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
    ) -> None:
        for name in ("init_state", "step"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"{type(model).__name__} lacks {name}(): it does not speak the stateful-model protocol")
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if history <= 0:
            raise ValueError(f"history must be positive, got {history}")
        from .optim import FPTT

        if clip_grad_norm is not None and isinstance(optimizer, FPTT):
            raise ValueError("set clipping on the FPTT wrapper (FPTT(..., clip_grad_norm=c)) so it clips the combined gradient")
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
        self.updates = 0
        self._window_loss: Optional[Tensor] = None
        self._window_targets = 0
        self._steps_in_window = 0

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
        if self._steps_in_window == 0:
            self.state = detach_state(self.state)
        self.model.train()
        output, self.state = self.model.step(x_t.to(self.device, self.dtype), self.state)
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
                self._window_loss = step_loss if self._window_loss is None else self._window_loss + step_loss
                self._window_targets += 1
        self.steps += 1
        self._steps_in_window += 1
        if self._steps_in_window == self.k:
            self._close_window()
        return output.detach()

    def _close_window(self) -> None:
        if self._window_loss is not None:
            loss = self._window_loss / self._window_targets
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"non-finite loss at stream step {self.steps}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            self.optimizer.step()
            self.updates += 1
            self.history.append(float(loss.detach()))
        self._window_loss = None
        self._window_targets = 0
        self._steps_in_window = 0

    def reset_streams(self, mask: Tensor) -> None:
        """Restart the state of the streams where ``mask`` (streams,) is true; others are untouched."""
        mask = torch.as_tensor(mask, device=self.device, dtype=torch.bool)
        if mask.shape != (self.batch_size,):
            raise ValueError(f"mask must have shape ({self.batch_size},), got {tuple(mask.shape)}")
        fresh = self.model.init_state(self.batch_size, device=self.device, dtype=self.dtype)
        self.state = select_batch(mask, fresh, self.state)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer (FPTT's W̄ and λ included),
        live network state, counters, loss history and the CPU RNG state. Only at a window
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
            "history": list(self.history),
            "rng": torch.get_rng_state(),
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
        self.updates = int(state["updates"])
        self.history.clear()
        self.history.extend(state["history"])
        torch.set_rng_state(state["rng"])
        self._window_loss, self._window_targets, self._steps_in_window = None, 0, 0
