"""Norse networks under FPTT: a Norse cell or a ``SequentialState`` of cells and layers.

Norse already keeps state outside its modules (``module(x_t, state) -> (y_t, new_state)``, states
are NamedTuples such as ``LIFState(z, v, i)`` and ``LSNNState(z, v, i, b)``); this adapter only
supplies the two protocol methods:

* ``init_state``: each stateful module's own ``initial_state(input)`` (what Norse uses when it is
  given ``state=None``), for a zero input of the right shape;
* ``step``: ``module(x_t, state)``, the Norse forward itself (for a ``SequentialState``, a fresh
  list is passed each step, because Norse writes the new layer states into the list it is given).

So every equation (e.g. the LIF step dv = dt τ_mem⁻¹ ((v_leak − v) + i), di = −dt τ_syn⁻¹ i, with
the recurrent input W_r z_{t−1} of ``LIFRecurrentCell``) and every parameter (``dt``, ``p``) is
Norse's.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from .base import AdapterBase, require

__all__ = ["NorseAdapter"]


class NorseAdapter(AdapterBase):
    """A Norse cell or ``SequentialState`` as a stateful model (see the module docstring).

    Args:
        network: ``norse.torch.SequentialState`` (stateless layers such as ``nn.Linear`` and Norse
            cells, e.g. ``LIFRecurrentCell``, ``LSNNRecurrentCell``, ``LICell``), or one Norse cell.
        input_shape: features of one time step.

    The output is the network's own output at each step (e.g. the voltage of a final ``LICell``
    readout, or the spikes of a final spiking cell).
    """

    def __init__(self, network: nn.Module, input_shape: int | Sequence[int]) -> None:
        norse = require("norse.torch", "NorseAdapter")
        self._sequential = isinstance(network, norse.SequentialState)
        if self._sequential and network.return_hidden:
            raise ValueError("SequentialState(return_hidden=True) returns every layer's output; build it with "
                             "return_hidden=False so that each step returns the network's output")
        if self._sequential:
            for index, (module, stateful) in enumerate(zip(network, network.stateful_layers)):
                if stateful and not callable(getattr(module, "initial_state", None)):
                    raise ValueError(f"layer {index} ({type(module).__name__}) is stateful but has no "
                                     "initial_state(input); NorseAdapter needs Norse cells (SNNCell/SNNRecurrentCell)")
        elif not callable(getattr(network, "initial_state", None)):
            raise ValueError(f"{type(network).__name__} is neither a norse.torch.SequentialState nor a Norse cell "
                             "with initial_state(input) (e.g. LIFRecurrentCell, LSNNRecurrentCell)")
        super().__init__(network, input_shape)

    def initial_state(self, template: Tensor) -> Any:
        """Each stateful module's ``initial_state`` for its input (``None`` for stateless layers)."""
        if not self._sequential:
            return self.network.initial_state(template)
        states = []
        x = template
        for module, stateful in zip(self.network, self.network.stateful_layers):
            if stateful:
                state = module.initial_state(x)
                x, _ = module(x, state)
                states.append(state)
            else:
                x = module(x)
                states.append(None)
        return tuple(states)

    def library_step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """``network(x_t, state)``; a ``SequentialState`` gets a fresh list (it writes into it)."""
        if not self._sequential:
            return self.network(x, state)
        if not isinstance(state, (tuple, list)) or len(state) != len(self.network):
            raise ValueError(f"state must hold one entry per layer ({len(self.network)}); use init_state(batch)")
        output, new_state = self.network(x, list(state))
        return output, tuple(new_state)
