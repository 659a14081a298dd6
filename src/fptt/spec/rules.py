"""The rules on values that the library and the run configuration share, each written once.

No torch import: :class:`~fptt.run.config.TrainConfig` checks itself with these before the library
is loaded. Every check raises ``ValueError`` naming the value (the configuration turns it into a
``ConfigError``) and returns the value normalised.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from .vocabulary import BASELINE_CELLS, METHODS, TRACE_METHODS, TRACE_NEURONS, TRACE_READOUTS

__all__ = ["is_number", "check_alpha", "check_beta", "check_clip", "check_window", "TRACE_REQUIREMENTS",
           "check_trace_settings", "VALIDATION_FRACTION", "VALIDATION_MAX", "validation_count", "BRF_DT",
           "BRF_OMEGA_INIT", "BRF_B_OFFSET_INIT", "check_brf_dt", "check_brf_omega_init", "check_brf_b_offset_init"]


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


def check_window(k: Any, update_points: Any, seq_len: Optional[int] = None, *, method: Optional[str] = None,
                 where: Optional[str] = None) -> None:
    """The update windows (THEORY.md §3.1): ``k`` steps per update or ``update_points`` updates per
    sequence, not both; each a positive int no longer than ``seq_len`` steps (when known; ``where``
    names that length in the message, default "the sequence length (T)"); ``method="online"``
    updates at every step (k = 1)."""
    if k is not None and update_points is not None:
        raise ValueError("give either k (steps per update) or update_points (updates per sequence), not both")
    for name, value in (("k", k), ("update_points", update_points)):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
        if seq_len is not None and value > seq_len:
            raise ValueError(f"{name} ({value}) cannot exceed {where or f'the sequence length ({seq_len})'}")
    if method == "online" and (k not in (None, 1) or update_points is not None):
        raise ValueError("method online updates at every step (k = 1); use tbptt for longer windows")


# the BRF neuron (THEORY.md §2.8): its Euler step δ and the ranges of its initial parameters, those of
# Higuchi et al. (ICML 2024) for S-MNIST; the cell and the configuration both check them here
BRF_DT = 0.01
BRF_OMEGA_INIT = (15.0, 50.0)  # angular frequency ω ~ U(LO, HI)
BRF_B_OFFSET_INIT = (0.1, 1.0)  # damping offset b_off ~ U(LO, HI)


def check_brf_dt(dt: Any, name: str = "dt") -> float:
    """The BRF neuron's Euler step δ: a finite number > 0."""
    if not is_number(dt) or not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"{name} (the BRF Euler step δ) must be a positive finite number, got {dt!r}")
    return float(dt)


def _check_range(values: Any, name: str, lowest: str) -> tuple[float, float]:
    if (not isinstance(values, (tuple, list)) or len(values) != 2 or not all(is_number(v) for v in values)
            or not all(math.isfinite(v) for v in values)):
        raise ValueError(f"{name} must be two finite numbers LO HI, got {values!r}")
    low, high = float(values[0]), float(values[1])
    if not low < high:
        raise ValueError(f"{name} must be LO HI with LO < HI (a uniform range), got {low:g} {high:g}")
    if (lowest == "positive" and not low > 0) or (lowest == "non-negative" and not low >= 0):
        raise ValueError(f"{name} must be {lowest} (LO {'>' if lowest == 'positive' else '>='} 0), "
                         f"got {low:g} {high:g}")
    return low, high


def check_brf_omega_init(values: Any, dt: float = BRF_DT, name: str = "omega_init") -> tuple[float, float]:
    """The BRF angular frequencies' initial range ω ~ U(LO, HI): 0 < LO < HI and δ · HI < 1 (at
    δω ≥ 1 the divergence boundary p(ω) does not exist: no damping keeps the oscillation bounded)."""
    low, high = _check_range(values, name, "positive")
    if not dt * high < 1.0:
        raise ValueError(f"{name}: the largest initial ω ({high:g}) times the Euler step dt ({dt:g}) must be < 1, "
                         f"i.e. ω < 1/dt = {1.0 / dt:g}: beyond it the divergence boundary p(ω) does not exist "
                         "and the oscillation grows without bound")
    return low, high


def check_brf_b_offset_init(values: Any, name: str = "b_offset_init") -> tuple[float, float]:
    """The BRF damping offsets' initial range b_off ~ U(LO, HI): 0 <= LO < HI (b_off = 0 puts a
    neuron on its divergence boundary, undamped while it does not spike)."""
    return _check_range(values, name, "non-negative")


# what e-prop and OSTL need of a network (their traces exist for ALIF/LIF layers read out through a
# fixed or linear readout of the spikes, without a layer norm); the configuration also uses these
# values in place of task defaults and presets that conflict with them (never in place of the user's)
TRACE_REQUIREMENTS: dict[str, Any] = {"readout": TRACE_READOUTS[0], "readout_from": "spikes", "norm": "none"}


def check_trace_settings(method: str, *, model: str, readout: str, readout_from: str, norm: str, layers: int,
                         feedback: str = "symmetric", distributed: bool = False) -> None:
    """What e-prop/OSTL (``method``) can train: the settings of a configuration, or those read off a
    built network (:func:`fptt.training.traces.learner.check_trace_model`)."""
    if model not in TRACE_NEURONS:
        others = ", ".join(m for m in METHODS if m not in TRACE_METHODS)
        why = ("is not a spiking network" if model in BASELINE_CELLS
               else f"neuron's liquid gates have no {method} derivation" if model == "ltc"
               else f"neuron has no {method} eligibility traces in fptt (they are derived for ALIF/LIF)")
        raise ValueError(f"method {method} needs ALIF or LIF layers (--neuron {' or '.join(TRACE_NEURONS)}): the {model} "
                         f"model {why}; a {model} model trains with {others}")
    if readout not in TRACE_READOUTS:
        raise ValueError(f"method {method} needs readout {' or '.join(repr(r) for r in TRACE_READOUTS)} "
                         f"(--readout {' or '.join(TRACE_READOUTS)}), got {readout!r}")
    if readout_from != "spikes":
        raise ValueError(f"method {method} needs readout_from='spikes' (--readout-from spikes), got {readout_from!r}")
    if norm != "none":
        raise ValueError(f"method {method} needs norm='none' (--norm none): a layer norm couples the neurons of a layer")
    if method == "eprop" and layers != 1:
        raise ValueError(f"method 'eprop' trains one recurrent layer (Bellec et al.), got {layers}: "
                         "use method 'ostl' for deeper networks")
    if method == "ostl" and feedback != "symmetric":
        raise ValueError("OSTL back-propagates the error through the layers (symmetric); feedback='random' is e-prop's")
    if distributed:
        raise ValueError(f"method {method} does not run distributed (its gradients bypass DDP's all-reduce)")


#: Training steps after which ``fused="auto"`` switches to the compiled kernels (:mod:`fptt.compiled`):
#: the warm-cache compile time over the saving per step (the measurement: docs/PERFORMANCE.md, "Fast by default").
FUSE_AFTER_STEPS = 3000


def plans_to_fuse(planned_steps: int) -> bool:
    """The rule of ``fused="auto"`` for a run of known length: compile when it has at least
    :data:`FUSE_AFTER_STEPS` training steps (time steps summed over every batch of every epoch)."""
    return planned_steps >= FUSE_AFTER_STEPS


#: Training steps after which ``capture="auto"`` switches to the captured update
#: (:mod:`fptt.training.captured`): its warm-cache compile time over the time it saves per step, both
#: measured (benchmarks/results/captured/cpu_step.md).
CAPTURE_AFTER_STEPS = 5000


def plans_to_capture(planned_steps: int) -> bool:
    """The rule of ``capture="auto"`` for a run of known length: capture when it has at least
    :data:`CAPTURE_AFTER_STEPS` training steps."""
    return planned_steps >= CAPTURE_AFTER_STEPS


# the validation split (docs/USAGE.md "Validation and test"): what a run selects on is carved from its
# training data; the test split is read once, after the last epoch
VALIDATION_FRACTION = 0.1
VALIDATION_MAX = 1000
VALIDATION_MIN_TRAIN = 10  # smaller training sets hold nothing out


def validation_count(setting: Any, train_size: int) -> int:
    """The number of training samples held out for validation: ``setting`` itself when it is an int
    (0: none), and for ``"auto"`` ``min(VALIDATION_MAX, max(1, round(VALIDATION_FRACTION · n)))``
    of a training set of ``n`` samples (none below :data:`VALIDATION_MIN_TRAIN` samples)."""
    if setting == "auto":
        if train_size < VALIDATION_MIN_TRAIN:
            return 0
        return min(VALIDATION_MAX, max(1, round(VALIDATION_FRACTION * train_size)))
    if not isinstance(setting, int) or isinstance(setting, bool) or setting < 0:
        raise ValueError(f"validation_samples must be 'auto' or an int >= 0, got {setting!r}")
    return setting
