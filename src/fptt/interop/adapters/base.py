"""What every adapter shares: input checks, device/dtype resolution, the initial-state template,
and the whole-sequence forward built from :meth:`step`."""
from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from ...models import unroll_steps
from ...models.state import state_to

__all__ = ["AdapterBase", "require"]


def require(package: str, adapter: str) -> ModuleType:
    """Import ``package`` or raise an ``ImportError`` that says how to install it."""
    try:
        return import_module(package)
    except ImportError as error:
        raise ImportError(
            f"{adapter} needs the {package!r} package, which is not installed ({error}); install the "
            f"interop extra with torch held at your version: pip install 'fptt[interop]' -c constraints/interop.txt"
        ) from error


def _shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not shape or any((not isinstance(size, int)) or size <= 0 for size in shape):
        raise ValueError(f"input_shape must be a positive int or a tuple of positive ints (the features of one "
                         f"time step, without the batch axis), got {input_shape!r}")
    return shape


class AdapterBase(nn.Module):
    """A wrapped library network ``self.network`` that speaks the stateful-model protocol.

    Subclasses implement :meth:`initial_state` (the library's own initial state for a zero input
    of the right shape) and :meth:`library_step` (one step of the library's own forward with the
    state passed explicitly).

    Args:
        network: the library model, used as it is (its parameters are this module's).
        input_shape: the features of one time step, without the batch axis (an int for vectors).
    """

    def __init__(self, network: nn.Module, input_shape: int | Sequence[int]) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"{type(self).__name__} wraps an nn.Module, got {type(network).__name__}")
        self.network = network
        self.input_shape = _shape(input_shape)

    # ---------------------------------------------------------------- to implement
    def initial_state(self, template: Tensor) -> Any:
        """The library's initial state for the input ``template`` (zeros, ``(batch, *input_shape)``)."""
        raise NotImplementedError

    def library_step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step of the library's forward: ``(output_t, new_state)``, ``state`` not mutated."""
        raise NotImplementedError

    # ---------------------------------------------------------------- protocol
    def _reference(self) -> Optional[Tensor]:
        for tensor in self.network.parameters():
            return tensor
        for tensor in self.network.buffers():
            return tensor
        return None

    def init_state(self, batch_size: int, device: Optional[torch.device | str] = None,
                   dtype: Optional[torch.dtype] = None) -> Any:
        """The library's initial state for ``batch_size`` sequences, on the parameters' device and
        dtype unless given (floating leaves are cast to ``dtype``)."""
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        reference = self._reference()
        device = device if device is not None else (reference.device if reference is not None else None)
        dtype = dtype if dtype is not None else (reference.dtype if reference is not None and
                                                 reference.is_floating_point() else torch.get_default_dtype())
        template = torch.zeros((batch_size, *self.input_shape), device=device, dtype=dtype)
        with torch.no_grad():
            state = self.initial_state(template)
        return state_to(state, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step: ``x`` ``(batch, *input_shape)`` -> (output_t, new state)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != len(self.input_shape) + 1:
            raise ValueError(f"input must have shape (batch, {', '.join(map(str, self.input_shape))}) for one time "
                             f"step, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got {x.dtype}; convert with .float()")
        return self.library_step(x, state)

    def unroll(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """A whole sequence ``x`` ``(batch, time, *input_shape)`` -> outputs (batch, time, ...), final state."""
        if not isinstance(x, Tensor) or x.dim() != len(self.input_shape) + 2:
            raise ValueError(f"input must have shape (batch, time, {', '.join(map(str, self.input_shape))}) "
                             f"(batch first), got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        return unroll_steps(self, x, state)

    def forward(self, x: Tensor, state: Any = None) -> Tensor:
        """Outputs for every step: ``(batch, time, *input_shape)`` -> (batch, time, ...)."""
        return self.unroll(x, state)[0]
