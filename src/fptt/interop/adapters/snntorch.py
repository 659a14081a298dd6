"""snnTorch networks under FPTT: an ``nn.Sequential`` of snnTorch neurons and stateless layers.

Supported neurons, built with ``init_hidden=False`` (the default), and the state this adapter
carries for each (the arguments of the neuron's own ``forward`` after the input, in its order):

=============  =========================  ==========================================
neuron         state                      snnTorch's step (β decay, θ threshold)
=============  =========================  ==========================================
``Leaky``      ``LeakyState(mem)``        U_t = β U_{t-1} + I_t − R_t θ
``Synaptic``   ``SynapticState(syn, mem)``  I^syn_t = α I^syn_{t-1} + I_t; U_t = β U_{t-1} + I^syn_t − R_t θ
``RLeaky``     ``RLeakyState(spk, mem)``  U_t = β U_{t-1} + I_t + V(S_{t-1}) − R_t θ
``RSynaptic``  ``RSynapticState(spk, syn, mem)``  the synaptic form with the recurrent term V(S_{t-1})
=============  =========================  ==========================================

(R_t the reset of snnTorch's ``reset_mechanism``; S_t = H(U_t − θ) with snnTorch's surrogate.)
Each step calls the neuron's own ``forward(input, *state)``, so every equation, surrogate and
option is snnTorch's. The neurons also write the last step into their non-persistent ``spk`` /
``syn`` / ``mem`` buffers; the adapter detaches those copies after each step, so that no module
holds an autograd graph past the step (the values the adapter carries keep theirs).

The initial state is snnTorch's: zeros shaped like the neuron's input.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from .base import AdapterBase, require

__all__ = ["SnnTorchAdapter", "LeakyState", "SynapticState", "RLeakyState", "RSynapticState"]


class LeakyState(NamedTuple):
    mem: Tensor


class SynapticState(NamedTuple):
    syn: Tensor
    mem: Tensor


class RLeakyState(NamedTuple):
    spk: Tensor
    mem: Tensor


class RSynapticState(NamedTuple):
    spk: Tensor
    syn: Tensor
    mem: Tensor


_STATES = {"Leaky": LeakyState, "Synaptic": SynapticState, "RLeaky": RLeakyState, "RSynaptic": RSynapticState}


class SnnTorchAdapter(AdapterBase):
    """An snnTorch ``nn.Sequential`` as a stateful model (see the module docstring).

    Args:
        network: ``nn.Sequential`` (or a list of modules) of snnTorch ``Leaky``, ``Synaptic``,
            ``RLeaky``, ``RSynaptic`` neurons with ``init_hidden=False`` and stateless layers
            (``nn.Linear``, ``nn.Dropout``, ``nn.Flatten``, ...).
        input_shape: features of one time step (an int, or a tuple for images).
        output: when the last module is a neuron: ``"membrane"`` (default; the membrane potential
            as class scores, as snnTorch's tutorials train) or ``"spikes"``. When the last module is
            a stateless layer, its output is the output.
    """

    def __init__(self, network: nn.Sequential | Sequence[nn.Module], input_shape: int | Sequence[int],
                 output: str = "membrane") -> None:
        snntorch = require("snntorch", "SnnTorchAdapter")
        if not isinstance(network, nn.Sequential):
            network = nn.Sequential(*network)
        if output not in ("membrane", "spikes"):
            raise ValueError(f"output must be 'membrane' or 'spikes', got {output!r}")
        kinds: list[Optional[str]] = []
        for index, module in enumerate(network):
            if isinstance(module, snntorch.SpikingNeuron):
                # the most derived supported class (a user's subclass of Leaky is a Leaky)
                name = next((kind for kind in ("RSynaptic", "RLeaky", "Synaptic", "Leaky")
                             if isinstance(module, getattr(snntorch, kind))), None)
                if name is None:
                    raise ValueError(f"layer {index} is snntorch.{type(module).__name__}, which SnnTorchAdapter does "
                                     f"not support; supported neurons: {', '.join(_STATES)}")
                if module.init_hidden:
                    raise ValueError(f"layer {index} ({type(module).__name__}) was built with init_hidden=True; "
                                     "build it with init_hidden=False: the adapter carries the state explicitly")
                kinds.append(name)
            else:
                kinds.append(None)
        if not any(kinds):
            raise ValueError("the network has no snnTorch neuron (Leaky, Synaptic, RLeaky, RSynaptic)")
        super().__init__(network, input_shape)
        self.output = output
        self._kinds = tuple(kinds)

    def initial_state(self, template: Tensor) -> tuple:
        """Zeros shaped like each neuron's input (snnTorch's own initial state)."""
        states = []
        x = template
        for module, kind in zip(self.network, self._kinds):
            if kind is None:
                x = module(x)
                continue
            fields = _STATES[kind]._fields
            states.append(_STATES[kind](*(torch.zeros_like(x) for _ in fields)))
        return tuple(states)

    def library_step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        """One step through the stack: each neuron's ``forward(input, *its_state)``."""
        if not isinstance(state, tuple) or len(state) != sum(kind is not None for kind in self._kinds):
            raise ValueError("state must be the tuple of neuron states made by init_state(batch)")
        new_states = []
        layer_states = iter(state)
        membrane: Optional[Tensor] = None
        for module, kind in zip(self.network, self._kinds):
            if kind is None:
                x, membrane = module(x), None
                continue
            spikes, *rest = module(x, *next(layer_states))
            state_type = _STATES[kind]
            new_states.append(state_type(spikes, *rest) if "spk" in state_type._fields else state_type(*rest))
            for buffer in ("spk", "syn", "mem"):  # snnTorch's own copy: no graph past this step
                value = getattr(module, buffer, None)
                if isinstance(value, Tensor):
                    setattr(module, buffer, value.detach())
            x, membrane = spikes, rest[-1]
        output = membrane if (membrane is not None and self.output == "membrane") else x
        return output, tuple(new_states)
