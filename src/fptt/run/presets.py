"""Task regimes and named presets, read from the data files in ``fptt/run/regimes/``.

* ``tasks.json``: what ``fptt train --task T`` uses with no other flag, per task;
* ``presets.json``: ``--preset paper``, the reference code's regime and hyperparameters per task.

Each entry holds ``values`` (for every neuron), ``by_neuron`` (the values that depend on the neuron:
the LTC regime of the reference, the ALIF/LIF regime of the SRNN literature, ...) and, where the
task has a network of its own, ``neuron``. The keys are configuration fields
(:mod:`fptt.run.config`). Why each value was chosen, with the measurements: docs/PRESETS.md.
No torch import (``fptt --help`` stays fast).
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping, Optional

__all__ = ["TASK_DEFAULTS", "PRESETS", "PRESET_NAMES", "task_neuron", "task_values", "preset_values"]


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("regimes").joinpath(name).read_text(encoding="utf-8"))


def _values(entry: Mapping[str, Any], neuron: Optional[str]) -> dict[str, Any]:
    """An entry's values for ``neuron`` (default: the entry's own, else ``ltc``), deep-copied."""
    neuron = neuron or entry.get("neuron", "ltc")
    values = {**entry.get("values", {}), **entry.get("by_neuron", {}).get(neuron, {})}
    if "neuron" in entry:
        values["neuron"] = neuron
    return json.loads(json.dumps(values))  # no two callers share a list


def task_neuron(task: str) -> str:
    """The neuron of the task's own network (``ltc`` unless its entry names one)."""
    return str(_load("tasks.json").get(task, {}).get("neuron", "ltc"))


def task_values(task: str, neuron: Optional[str] = None) -> dict[str, Any]:
    """The configuration values of ``task`` for ``neuron`` (a copy; ``{}`` for a task without an
    entry: the schema's defaults)."""
    return _values(_load("tasks.json").get(task, {}), neuron)


def preset_values(name: str, task: str, neuron: Optional[str] = None) -> dict[str, Any]:
    """The configuration values of preset ``name`` for ``task`` and ``neuron`` (a copy). Raises
    ``ValueError`` naming the presets and tasks that exist."""
    presets = _load("presets.json")
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    if task not in presets[name]:
        raise ValueError(f"preset {name!r} has no setting for task {task!r}; it covers {', '.join(presets[name])}")
    return _values(presets[name][task], neuron)


PRESET_NAMES: tuple[str, ...] = tuple(_load("presets.json"))
#: task -> its values for its own network (read-only views of the data file)
TASK_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {task: MappingProxyType(task_values(task)) for task in _load("tasks.json")})
#: preset -> task -> values for the task's own network
PRESETS: Mapping[str, Mapping[str, Mapping[str, Any]]] = MappingProxyType({
    name: MappingProxyType({task: MappingProxyType(preset_values(name, task)) for task in tasks})
    for name, tasks in _load("presets.json").items()})
