"""Old configurations in today's names: the one table of renamed keys.

Up to v0.3, a run's ``config.json`` (and config files, and the flags) was flat, with names of its own
for eleven library arguments (``threshold`` for the cells' ``baseline_threshold``, ``clip`` for
``clip_grad_norm``, ...) and ``fused: null`` before the trainer chose. :func:`migrate` maps such a
mapping onto today's field names; the schema (:mod:`fptt.run.config`) then places each field in its
section. Nothing else is renamed anywhere: the builders pass the fields to the library as they are.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["RENAMED", "migrate"]

#: v0.3 key -> today's field (the library's argument name)
RENAMED: Mapping[str, str] = {
    "model": "neuron",
    "hidden": "hidden_sizes",
    "conv_gate": "gate_input",
    "threshold": "baseline_threshold",
    "adaptation": "adaptation_strength",
    "initial_state": "initial_membrane",
    "tau_membrane": "tau_membrane_init",
    "tau_adaptation": "tau_adaptation_init",
    "reset_lambda": "reset_lambda_on_average",
    "clip": "clip_grad_norm",
    "frames": "num_frames",
}


def migrate(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (flat; old or current names) in current names; ``fused: null`` (v0.3: not yet
    chosen) becomes ``"auto"``. A key given under both its old and its new name is an error (the
    two could disagree)."""
    for key in values:
        if key in RENAMED and RENAMED[key] in values:
            raise ValueError(f"{key!r} and {RENAMED[key]!r} are the same setting ({key!r} is its old name): give one")
    migrated = {RENAMED.get(key, key): value for key, value in values.items()}
    if "fused" in migrated and migrated["fused"] is None:
        migrated["fused"] = "auto"
    return migrated
