"""Adapters: recurrent models of other SNN libraries behind the stateful-model protocol.

Each adapter wraps a model built with its library, unchanged, and gives it the two methods the
engines need (:mod:`fptt.models`)::

    state = adapter.init_state(batch_size, device=None, dtype=None)   # the library's initial state
    output_t, state = adapter.step(x_t, state)                          # the library's own forward

The state is carried *explicitly*, outside the wrapped modules (no ``init_hidden``, no module
memories), so the FPTT window can detach it at its start and a checkpoint of ``state_dict`` plus
the optimizer resumes exactly.

* :class:`SnnTorchAdapter` -- an ``nn.Sequential`` of snnTorch ``Leaky``, ``Synaptic``, ``RLeaky``,
  ``RSynaptic`` neurons (``init_hidden=False``) and stateless layers;
* :class:`NorseAdapter` -- a Norse cell (``LIFRecurrentCell``, ``LSNNRecurrentCell``, any
  ``SNNCell`` / ``SNNRecurrentCell``) or a ``SequentialState``;
* :class:`SpikingJellyAdapter` -- a SpikingJelly network of single-step (``step_mode="s"``) or
  multi-step (``"m"``) stateful modules.

The libraries are optional (``pip install 'fptt[interop]'``); each adapter imports its library when
it is constructed and says how to install it when it is missing. docs/INTEROP.md lists what each
adapter supports and what it does not.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["SnnTorchAdapter", "NorseAdapter", "SpikingJellyAdapter", "AdapterBase"]

_EXPORTS = {
    "AdapterBase": "base",
    "SnnTorchAdapter": "snntorch",
    "NorseAdapter": "norse",
    "SpikingJellyAdapter": "spikingjelly",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fptt.interop.adapters' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
