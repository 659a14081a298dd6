"""The *stateful-model protocol*: what every engine needs of a model, and the one check of it.

Axis convention (the whole library): sequences are **batch first**, ``(batch, time, features)``;
one time step is ``(batch, features)``.

Stateful-model protocol (what the training engines need, and all they need)::

    state = model.init_state(batch_size, device=None, dtype=None)
    output_t, state = model.step(x_t, state)          # one time step
    outputs = model(x)                                  # (B, T, C) -> (B, T, O)

A state is a tensor or a nested tuple/NamedTuple of tensors; engines only map over it
(:mod:`fptt.models.state`). Any ``nn.Module`` with these methods can be trained by every engine.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

__all__ = ["StatefulModel", "check_stateful_model", "check_first_step", "unroll_steps", "check_sequence_input", "layer_widths"]


@runtime_checkable
class StatefulModel(Protocol):
    """What every engine needs of a model (the module docstring); ``nn.Module`` subclasses with
    these two methods satisfy it."""

    def init_state(self, batch_size: int, device: Optional[torch.device | str] = None,
                   dtype: Optional[torch.dtype] = None) -> Any: ...

    def step(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]: ...


def check_first_step(model: Any, x_t: Tensor, state: Any) -> None:
    """``model.check_step(x_t, state)`` when the model has one (fptt's models do; a user's model
    may not): the input and state checks, made once per batch or stream segment so that
    ``model.step`` runs without them."""
    check = getattr(model, "check_step", None)
    if check is not None:
        check(x_t, state)


def check_stateful_model(model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` has callable ``init_state`` and ``step`` (the one check,
    made once by every engine and learner when it is given a model)."""
    for name in ("init_state", "step"):
        if not callable(getattr(model, name, None)):
            raise TypeError(
                f"{type(model).__name__} does not implement the stateful-model protocol: missing {name}(); "
                "see fptt.models for init_state(batch, device, dtype) and step(x_t, state)"
            )


def layer_widths(hidden_sizes: int | Sequence[int]) -> list[int]:
    """``hidden_sizes`` as a list of layer widths (an int is one layer); ``ValueError`` unless all positive ints."""
    sizes = [hidden_sizes] if isinstance(hidden_sizes, int) else list(hidden_sizes)
    if not sizes or any((not isinstance(size, int)) or size <= 0 for size in sizes):
        raise ValueError(f"hidden_sizes must be one or more positive ints, got {hidden_sizes!r}")
    return sizes


def unroll_steps(model: StatefulModel, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
    """Step a stateful model over ``x`` (batch, time, ...) from ``state`` (``model.init_state`` if
    None): the outputs stacked on the time axis and the final state. Keeps the graph of every step
    (what BPTT differentiates)."""
    if state is None:
        state = model.init_state(x.shape[0], x.device, x.dtype)
    outputs = []
    for t in range(x.shape[1]):
        output, state = model.step(x[:, t], state)
        outputs.append(output)
    return torch.stack(outputs, dim=1), state


def check_sequence_input(x: Tensor, features: int, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` is a floating ``(batch, time, features)`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != features:
        raise ValueError(
            f"{name} must have shape (batch, time, {features}) (batch first), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}; convert with .float()")
