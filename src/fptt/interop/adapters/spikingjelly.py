"""SpikingJelly networks under FPTT: single-step or multi-step stateful modules.

SpikingJelly keeps neuron state in the modules (``MemoryModule`` memories such as a LIF node's
``v``). Its ``base.to_functional_forward(network)`` gives the same forward with the memories passed
in and returned explicitly, ``(inputs, states) -> (outputs, new_states)``, without touching the
modules' memories; this adapter steps with it:

* ``init_state``: the memories' reset values (``v_reset``, or the node's ``v_init``), as tensors
  shaped like the state after one step, in the order of ``base.extract_memories(network)`` (a
  reset value of ``None``, e.g. a recurrent container's y_{-1}, stays ``None``: the module
  materialises it at the first step exactly as in its own forward);
* ``step``: one call of the functional forward. A network in single-step mode (``step_mode="s"``)
  gets ``x_t`` (batch, ...); one in multi-step mode (``"m"``) gets the one-step sequence
  ``x_t[None]`` (1, batch, ...) and its output's single step is returned. The neuron equations
  (e.g. the LIF charge H_t = V_{t−1} + (X_t − (V_{t−1} − V_reset)) / τ, fire, reset) are
  SpikingJelly's, with its surrogate.

Because the state is explicit, ``functional.reset_net`` / ``detach_net`` are not needed: the FPTT
window detaches the state it carries.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from .base import AdapterBase, require

__all__ = ["SpikingJellyAdapter"]


class SpikingJellyAdapter(AdapterBase):
    """A SpikingJelly network as a stateful model (see the module docstring).

    Args:
        network: any SpikingJelly network (e.g. ``nn.Sequential(layer.Linear(...), neuron.LIFNode(),
            ...)``) whose outermost step modules all use the same step mode, ``"s"`` or ``"m"``.
        input_shape: features of one time step.
    """

    def __init__(self, network: nn.Module, input_shape: int | Sequence[int]) -> None:
        self._base = require("spikingjelly.activation_based.base", "SpikingJellyAdapter")
        neuron = require("spikingjelly.activation_based.neuron", "SpikingJellyAdapter")
        sequence_only = tuple(getattr(neuron, name) for name in ("NonSpikingBaseNode", "ILCBaseNode")
                              if hasattr(neuron, name))
        for name, module in network.named_modules():
            if sequence_only and isinstance(module, sequence_only):
                raise ValueError(f"{name or 'the network'} ({type(module).__name__}) keeps its state only within one "
                                 "multi-step call (no memories), so stepping it one time step at a time would restart "
                                 "it at every step; SpikingJellyAdapter cannot carry its state")
        modes = self._outer_step_modes(network)
        if len(modes) > 1:
            raise ValueError(f"the network mixes step modes {sorted(modes)}; set one for all, e.g. "
                             "functional.set_step_mode(network, 's')")
        memories = [module for module in network.modules() if isinstance(module, self._base.MemoryModule)]
        if not memories:
            raise ValueError("the network has no SpikingJelly stateful module (MemoryModule), nothing to carry")
        super().__init__(network, input_shape)
        self.multi_step = modes == {"m"}

    def _outer_step_modes(self, module: nn.Module) -> set[str]:
        """The step modes of the outermost SpikingJelly step modules (those that receive the input;
        a container may step its children in another mode, e.g. a recurrent container's child)."""
        if isinstance(module, self._base.StepModule):
            return {module.step_mode}
        return {mode for child in module.children() for mode in self._outer_step_modes(child)}

    def __getstate__(self) -> dict[str, Any]:  # the module object of spikingjelly is not picklable
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_base", None)
        state.pop("_functional", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._base = require("spikingjelly.activation_based.base", "SpikingJellyAdapter")

    def _forward_function(self) -> Callable:
        function = self.__dict__.get("_functional")
        if function is None:
            function = self._base.to_functional_forward(self.network)
            self.__dict__["_functional"] = function
        return function

    def _reset_values(self) -> list[Any]:
        return [module.get_reset_value(name) for module in self.network.modules()
                if isinstance(module, self._base.MemoryModule) for name in module._memories]

    def initial_state(self, template: Tensor) -> tuple:
        """The memories' reset values, broadcast to the shape each memory has after one step."""
        reset_values = self._reset_values()
        _, after_one_step = self._call(template, tuple(reset_values))
        states = []
        for value, shaped in zip(reset_values, after_one_step):
            if isinstance(value, Tensor):
                states.append(value.detach().to(template.dtype).expand_as(shaped).clone())
            elif isinstance(value, numbers.Number) and isinstance(shaped, Tensor):
                states.append(torch.full_like(shaped, float(value)))
            else:  # e.g. None: the module materialises it at its first step, as in its own forward
                states.append(value)
        return tuple(states)

    def _call(self, x: Tensor, states: tuple) -> tuple[Tensor, tuple]:
        inputs = (x.unsqueeze(0),) if self.multi_step else (x,)
        outputs, new_states = self._forward_function()(inputs, states)
        output = outputs[0]
        return (output[0] if self.multi_step else output), tuple(new_states)

    def library_step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        """One step of ``to_functional_forward(network)`` with the carried memories."""
        if not isinstance(state, tuple):
            raise ValueError("state must be the tuple of memories made by init_state(batch)")
        return self._call(x, state)
