"""The rules on values that the library and the run configuration share, each written once.

No torch import: :class:`~fptt.run.config.TrainConfig` checks itself with these before the library
is loaded. Every check raises ``ValueError`` naming the value (the configuration turns it into a
``ConfigError``) and returns the value normalised.
"""
from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["is_number", "check_alpha", "check_beta", "check_clip"]


def is_number(value: Any) -> bool:
    """An int or a float, but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """FPTT's regularizer strength α: a finite number > 0 (THEORY.md §3)."""
    if not is_number(alpha) or not (alpha > 0.0 and math.isfinite(alpha)):
        raise ValueError(f"{name} must be a positive finite number, got {alpha!r} "
                         "(it divides β/α in the running-average update)")
    return float(alpha)


def check_beta(beta: Any, name: str = "beta") -> float:
    """FPTT's running-average rate β: a number in [0, 1] (THEORY.md §3)."""
    if not is_number(beta) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {beta!r}")
    return float(beta)


def check_clip(clip: Any, name: str = "clip_grad_norm") -> Optional[float]:
    """A total-norm gradient clip: ``None`` (no clipping) or a finite number > 0."""
    if clip is None:
        return None
    if not is_number(clip) or not (clip > 0.0 and math.isfinite(clip)):
        raise ValueError(f"{name} must be a positive finite number, got {clip!r} (or None: no clipping)")
    return float(clip)
