"""Tree utilities over recurrent states.

A *state* is what a stateful model carries from one time step to the next: a tensor, or a
(nested) tuple / NamedTuple / list / dict of tensors (``None`` leaves are allowed). Engines never
look inside a state; they only map functions over its tensor leaves with :func:`map_state`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

__all__ = ["map_state", "detach_state", "state_to", "state_tensors", "select_batch"]

State = Any


def map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply ``fn`` to every tensor leaf of ``state``, rebuilding the same container types."""
    if isinstance(state, Tensor):
        return fn(state)
    if state is None or isinstance(state, (int, float, bool, str)):
        return state
    if isinstance(state, tuple):
        items = [map_state(fn, item) for item in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    if isinstance(state, list):
        return [map_state(fn, item) for item in state]
    if isinstance(state, dict):
        return {key: map_state(fn, value) for key, value in state.items()}
    raise TypeError(
        f"a state must be a tensor or a nested tuple/list/dict of tensors, found {type(state).__name__}"
    )


def state_tensors(state: State) -> Iterator[Tensor]:
    """Iterate over the tensor leaves of ``state`` (depth first, container order)."""
    if isinstance(state, Tensor):
        yield state
    elif isinstance(state, (tuple, list)):
        for item in state:
            yield from state_tensors(item)
    elif isinstance(state, dict):
        for value in state.values():
            yield from state_tensors(value)


def detach_state(state: State) -> State:
    """Cut the autograd history of every tensor in ``state`` (the start of an FPTT window)."""
    return map_state(Tensor.detach, state)


def state_to(state: State, device: Optional[torch.device | str] = None, dtype: Optional[torch.dtype] = None) -> State:
    """Move every tensor of ``state`` to ``device`` and (floating tensors only) to ``dtype``."""

    def move(tensor: Tensor) -> Tensor:
        target_dtype = dtype if (dtype is not None and tensor.is_floating_point()) else None
        return tensor.to(device=device, dtype=target_dtype)

    return map_state(move, state)


def select_batch(mask: Tensor, new: State, old: State) -> State:
    """Per batch row, take ``new`` where ``mask`` is true and ``old`` elsewhere (batch = axis 0)."""
    flat_new = list(state_tensors(new))
    iterator = iter(flat_new)

    def pick(old_tensor: Tensor) -> Tensor:
        new_tensor = next(iterator)
        shape = (-1,) + (1,) * (old_tensor.dim() - 1)
        return torch.where(mask.view(shape), new_tensor, old_tensor)

    return map_state(pick, old)
