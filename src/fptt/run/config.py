"""Run configuration of ``fptt train``: one dataclass, config files, precedence.

Precedence (lowest to highest): the defaults of :class:`TrainConfig`, the task's defaults
(:data:`TASK_DEFAULTS`), a config file (YAML or TOML, ``--config FILE``), then the flags given
explicitly on the command line. The resolved configuration is saved with every run as
``config.json`` and is enough to rebuild the model (``fptt eval``) and to resume (``--resume``).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..spec.rules import TRACE_REQUIREMENTS, check_alpha, check_beta, check_clip, check_trace_settings, check_window
from ..spec.rules import is_number as _is_number
from ..spec.vocabulary import (
    CONV_GATES,
    CONV_LAYER_PATTERN,
    EVAL_WITH,
    FEEDBACKS,
    FIXED_TAU_NEURONS,
    INITIAL_STATES,
    LOGGERS,
    LOSS_STEPS,
    METHODS,
    MODELS,
    NORMS,
    ON_NONFINITE,
    OPTIMIZERS,
    READOUT_INPUTS,
    READOUTS,
    SCHEDULE_UNITS,
    SCHEDULES,
    SYNAPSE_INITS,
    TASKS,
    TRACE_METHODS,
    TRACE_READOUTS,
    WEIGHTINGS,
)
from .presets import PRESET_NAMES, TASK_DEFAULTS, model_defaults, preset_values
from .records import CONFIG

__all__ = [
    "TrainConfig", "ConfigError", "CONFIG_FILE", "default_run_dir", "save_config", "TASKS", "MODELS", "METHODS", "OPTIMIZERS",
    "SCHEDULES", "ON_NONFINITE",
    "TASK_DEFAULTS", "load_config_file", "resolve_config", "resume_config", "RESUMABLE",
]

DEVICES = ("auto", "cpu", "cuda")
CONFIG_FILE = CONFIG  # in every run folder: enough to rebuild the model and to resume


# what may change when a run is resumed (anything else would break its exact continuation)
RESUMABLE = frozenset({"threads", "epochs", "max_batches", "max_eval_batches", "eval_batch_size", "device", "plots",
                       "data_dir", "checkpoint_every", "on_nonfinite", "eval_every", "stop_at", "log"})


class ConfigError(ValueError):
    """A configuration a user can fix: unknown key, bad value, unreadable file."""


@dataclass
class TrainConfig:
    """Everything a training run needs (THEORY.md §3 hyperparameters + data + bookkeeping)."""

    task: str = "smnist"
    model: str = "ltc"
    method: str = "fptt"
    # FPTT (THEORY.md §3)
    alpha: float = 0.1
    beta: float = 0.5
    k: Optional[int] = None
    update_points: Optional[int] = None
    weighting: str = "linear"
    loss_steps: str = "every"
    eval_with: str = "average"
    load_average_each_epoch: Optional[bool] = None  # None: on for fptt, off otherwise
    reset_lambda: bool = False
    # compiled LTC dynamics and FPTT update (fptt.neurons.kernels, fptt.optim.fused_update); None:
    # by the planned run length (fptt.spec.rules.plans_to_fuse), resolved when the Trainer starts
    fused: Optional[bool] = None
    feedback: str = "symmetric"  # e-prop's feedback matrix: the readout weights, or fixed random
    # optimisation
    optimizer: str = "adam"
    lr: float = 3e-3
    schedule: str = "none"
    schedule_unit: str = "epoch"  # step the lr schedule after every "epoch" or every training "batch"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    epochs: int = 10
    batch_size: int = 128
    clip: Optional[float] = None
    on_nonfinite: str = "stop"  # a NaN/Inf loss or gradient: stop the run, or skip that update
    # model (THEORY.md §2, §4; the "Per-task regimes" options are documented in fptt.neurons.cells.LTC)
    hidden: list[int] = field(default_factory=lambda: [128])
    readout: str = "liquid"
    readout_from: str = "spikes"
    norm: str = "none"
    norm_scale: float = 1.0  # γ of the layer norm at init (0.1: currents of about ±0.1)
    threshold: float = 0.1  # b_0, the baseline threshold
    adaptation: float = 1.8  # β (0: no adaptation)
    fixed_threshold: bool = False  # LTC without the ρ gate (needs adaptation 0)
    initial_state: str = "random"  # u_0 ~ U(0, 1) ("random") or 0 ("zero")
    synapse_init: str = "xavier"  # or "torch_default" (one nn.Linear over [x_t, s_{t-1}])
    gate_slopes: bool = False  # learnable slopes of the LTC gate sigmoids
    chrono_tau: Optional[float | str] = None  # LTC gate-bias init: τ ~ U(2, chrono_tau); "seq_len" = T
    surrogate_sigma: float = 0.3  # width σ of the multi-Gaussian surrogate derivative (fptt.neurons.surrogate.MultiGaussian)
    tau_membrane: Optional[list[float]] = None  # ALIF/LIF: τ_m ~ N(mean, std) steps at init (None: N(20, 5))
    tau_adaptation: Optional[list[float]] = None  # ALIF: τ_adp ~ N(mean, std) steps at init (None: N(200, 25))
    preset: Optional[str] = None  # a named regime of fptt.run.presets (recorded; its values are applied)
    recurrent: bool = True  # dense spiking layers get recurrent synapses W_r s_{t-1}
    conv: list[str] = field(default_factory=list)  # conv LTC front end, e.g. ["8c3", "16c3"] (ConvSNN); [] = none
    conv_gate: str = "sum"  # conv LTC gates over d + u (the reference DVS-Gesture model) or "concat" [d, u]
    # data
    seq_len: int = 200
    downsample: Optional[int] = None
    frames: Optional[int] = None  # event tasks: frames per sample (None: the dataset's default, 20)
    spatial_factor: Optional[float] = None  # event tasks: frame downsampling in (0, 1] (None: the dataset's)
    duration_ms: float = 300.0  # saccade-mnist: length of a recording
    train_samples: int = 10_000
    test_samples: int = 1_000
    validation_samples: int = 0  # carve this many training samples out as the per-epoch evaluation split (0: none)
    data_dir: Optional[str] = None
    fresh_data: bool = False  # adding task: a new draw for every training sequence (lazy, constant memory)
    max_batches: Optional[int] = None
    max_eval_batches: Optional[int] = None
    eval_batch_size: Optional[int] = None
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    checkpoint_every: Optional[int] = None  # also save checkpoint_last.pt every N training batches
    eval_every: Optional[int] = None  # evaluate W and W̄ every N training batches (curve.jsonl)
    stop_at: Optional[float] = None  # stop once the evaluated mse <= stop_at (or accuracy >= stop_at)
    run_dir: Optional[str] = None
    measure_memory: bool = False
    plots: bool = True
    log: str = "none"  # also write the metrics to an experiment tracker: "tensorboard" (the logging extra)
    distributed: bool = False  # DDP over the torchrun processes (also on when launched by torchrun)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "config") -> "TrainConfig":
        check_keys(values, where)
        config = cls(**dict(values))
        config.validate()
        return config

    # ------------------------------------------------------------------ derived values
    @property
    def averaging(self) -> bool:
        """Whether W ← W̄ is loaded at the end of each epoch (FPTT only)."""
        if self.method != "fptt":
            return False
        return True if self.load_average_each_epoch is None else bool(self.load_average_each_epoch)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        choices = {
            "task": TASKS, "model": MODELS, "method": METHODS, "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES, "weighting": WEIGHTINGS, "loss_steps": LOSS_STEPS,
            "eval_with": EVAL_WITH, "readout": READOUTS,
            "readout_from": READOUT_INPUTS, "norm": NORMS,
            "on_nonfinite": ON_NONFINITE, "schedule_unit": SCHEDULE_UNITS, "initial_state": INITIAL_STATES,
            "synapse_init": SYNAPSE_INITS,
            "log": LOGGERS,
            "conv_gate": CONV_GATES,
            "feedback": FEEDBACKS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if not (self.device in DEVICES or str(self.device).startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if isinstance(self.hidden, int):
            self.hidden = [self.hidden]
        if not isinstance(self.hidden, list) or not self.hidden or any(
                not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden must be one or more positive ints, got {self.hidden!r}")
        positive_ints = ["epochs", "batch_size", "seq_len", "train_samples", "test_samples"]
        if not isinstance(self.conv, list):
            raise ConfigError(f"conv must be a list of layer specifications like ['8c3', '16c3'], got {self.conv!r}")
        for spec in self.conv:
            if not isinstance(spec, str) or _CONV_LAYER.match(spec) is None or int(_CONV_LAYER.match(spec).group(2)) % 2 == 0:
                raise ConfigError(f"conv layer {spec!r} is not of the form <channels>c<odd kernel>[p<pool>], e.g. 64c7")
        if self.conv and self.readout_from != "spikes":
            raise ConfigError("a conv network reads out the spikes of its last dense layer: readout_from must be spikes")
        if self.conv and self.model != "ltc":
            raise ConfigError(f"conv layers are LTC layers; model must be ltc with conv, got {self.model!r}")
        if self.spatial_factor is not None and not (_is_number(self.spatial_factor) and 0 < self.spatial_factor <= 1):
            raise ConfigError(f"spatial_factor must lie in (0, 1], got {self.spatial_factor!r}")
        if not _is_number(self.duration_ms) or not 0 < self.duration_ms < math.inf:
            raise ConfigError(f"duration_ms must be a positive number, got {self.duration_ms!r}")
        if not isinstance(self.validation_samples, int) or isinstance(self.validation_samples, bool) \
                or self.validation_samples < 0:
            raise ConfigError(f"validation_samples must be an int >= 0, got {self.validation_samples!r}")
        optional_positive_ints = ["frames", "threads", "max_batches", "max_eval_batches", "eval_batch_size",
                                  "checkpoint_every", "eval_every"]
        for key in positive_ints + optional_positive_ints:
            value = getattr(self, key)
            if value is None and key in optional_positive_ints:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key} must be a positive int, got {value!r}")
        # the only task whose length the config fixes is the adding task; for the others the Trainer checks
        _library_rule(check_window, self.k, self.update_points, self.seq_len if self.task == "add" else None,
                      method=self.method, where=f"the sequence length seq_len ({self.seq_len})")
        if self.method in TRACE_METHODS:
            self._validate_trace_method()
        for key in ("lr", "gamma", "threshold", "norm_scale", "surrogate_sigma"):
            value = getattr(self, key)
            if not _is_number(value) or not 0 < value < math.inf:
                raise ConfigError(f"{key} must be a positive finite number, got {value!r}")
        # the library's own rules (fptt.spec.rules), their ValueError turned into ConfigError
        _library_rule(check_alpha, self.alpha, "alpha")
        _library_rule(check_beta, self.beta, "beta")
        _library_rule(check_clip, self.clip, "clip")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        if not _is_number(self.adaptation) or not 0 <= self.adaptation < math.inf:
            raise ConfigError(f"adaptation (β) must be a finite number >= 0, got {self.adaptation!r}")
        if self.fixed_threshold and self.adaptation != 0:
            raise ConfigError("fixed_threshold has no adaptation: set adaptation to 0")
        for key in ("tau_membrane", "tau_adaptation"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 2 and all(
                    _is_number(v) and 0 <= v < math.inf for v in value) and value[0] >= 1):
                raise ConfigError(f"{key} must be [mean, std] in steps with mean >= 1 and std >= 0, got {value!r}")
            if value is not None and self.model not in FIXED_TAU_NEURONS:
                raise ConfigError(f"{key} sets the fixed-but-learnable time constants of ALIF/LIF, not of {self.model}")
        if self.chrono_tau is not None and self.chrono_tau != "seq_len" and not (
                _is_number(self.chrono_tau) and 2 < self.chrono_tau < math.inf):
            raise ConfigError(f"chrono_tau must be a number > 2 or 'seq_len', got {self.chrono_tau!r}")
        if self.stop_at is not None and not (_is_number(self.stop_at) and self.stop_at >= 0):
            raise ConfigError(f"stop_at must be a number >= 0, got {self.stop_at!r}")
        if self.preset is not None and self.preset not in PRESET_NAMES:
            raise ConfigError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        if self.fused is not None and not isinstance(self.fused, bool):
            raise ConfigError(f"fused must be true, false or unset (by the run length), got {self.fused!r}")
        for key in ("reset_lambda", "measure_memory", "plots", "distributed", "fixed_threshold",
                    "gate_slopes", "fresh_data", "recurrent"):
            if not isinstance(getattr(self, key, False), bool):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if self.load_average_each_epoch is not None and not isinstance(self.load_average_each_epoch, bool):
            raise ConfigError(f"load_average_each_epoch must be true, false or unset, got {self.load_average_each_epoch!r}")
        if self.downsample not in (None, 14, 28):
            raise ConfigError(f"downsample must be 14 or 28 (MNIST tasks), got {self.downsample!r}")
        if not isinstance(self.milestones, list) or any(not isinstance(m, int) or m <= 0 for m in self.milestones):
            raise ConfigError(f"milestones must be a list of positive epoch numbers, got {self.milestones!r}")

    def _validate_trace_method(self) -> None:
        """e-prop/OSTL's requirements (:func:`fptt.spec.rules.check_trace_settings`, the rule the learner
        applies to the built network)."""
        _library_rule(check_trace_settings, self.method, model=self.model, readout=self.readout,
                      readout_from=self.readout_from, norm=self.norm, layers=len(self.hidden), feedback=self.feedback,
                      distributed=self.distributed)


def _library_rule(check: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Apply a rule of :mod:`fptt.spec.rules` (or another library validator) to configuration values;
    its ``ValueError`` becomes a :class:`ConfigError`."""
    try:
        return check(*args, **options)
    except ValueError as error:
        raise ConfigError(str(error)) from None


_CONV_LAYER = re.compile(CONV_LAYER_PATTERN)
CONFIG_KEYS = tuple(f.name for f in fields(TrainConfig))

# Task defaults and presets live in fptt.run.presets (THEORY.md §4).


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<task>-<method>-<timestamp>``."""
    from datetime import datetime

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.method}-{stamp}"


def save_config(config: TrainConfig, run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/config.json`` atomically (the first file of a run: with it, ``--resume``
    can always restart or continue the run)."""
    from .files import write_text_atomic

    return write_text_atomic(Path(run_dir) / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def check_keys(values: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` for the first key that is not a configuration field."""
    for key in values:
        if key not in CONFIG_KEYS:
            hint = ""
            near = [name for name in CONFIG_KEYS if name.replace("_", "") == str(key).replace("-", "").replace("_", "")]
            if near:
                hint = f" (did you mean {near[0]!r}?)"
            raise ConfigError(f"unknown config key {key!r} in {where}{hint}")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file into a flat dict.

    Keys may use dashes or underscores (``batch-size`` = ``batch_size``). A ``[train]`` table /
    ``train:`` mapping, if it is the only top-level key, is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            try:
                import yaml
            except ImportError as error:  # pragma: no cover - pyyaml is in the config extra
                raise ConfigError("reading YAML config files needs pyyaml: pip install 'fptt[config]'") from error
            values = yaml.safe_load(text) or {}
    except ConfigError:
        raise
    except Exception as error:  # a parse error of any of the three formats
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"cannot parse config file {path}: {message}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(values).__name__}")
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    normalised = {str(key).replace("-", "_"): value for key, value in values.items()}
    check_keys(normalised, str(path))
    return normalised


_WINDOW_KEYS = ("k", "update_points")


def resolve_config(file_values: Optional[Mapping[str, Any]] = None,
                   flag_values: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Defaults < task defaults (for a model other than the task's LTC network: without the LTC-only
    keys and with the model's regime, :func:`~fptt.run.presets.model_defaults`) < preset (``preset``
    from the file or the flags) < config file < explicit flags; validated. Window settings (``k``,
    ``update_points``) that come from the task defaults or a preset are dropped for
    ``method="online"`` (which updates at every step) and when the file or the flags give either of
    them, so that every method runs on a task's defaults.
    For e-prop/OSTL, the method's requirements (:data:`fptt.spec.rules.TRACE_REQUIREMENTS`) replace the
    task defaults and preset values that conflict with them; a value from the file or the flags is
    never replaced (a conflicting one is a :class:`ConfigError`)."""
    file_values = dict(file_values or {})
    flag_values = dict(flag_values or {})
    check_keys(flag_values, "command line")
    task = flag_values.get("task", file_values.get("task", TrainConfig.task))
    preset = flag_values.get("preset", file_values.get("preset"))
    model = flag_values.get("model", file_values.get("model", TASK_DEFAULTS.get(task, {}).get("model", TrainConfig.model)))
    defaults: dict[str, Any] = model_defaults(TASK_DEFAULTS.get(task, {}), model, task)
    if preset is not None:
        try:
            defaults.update(model_defaults(preset_values(preset, task), model, task))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    method = flag_values.get("method", file_values.get("method", defaults.get("method", TrainConfig.method)))
    if method in TRACE_METHODS:  # the method's requirements replace conflicting defaults (never the user's values)
        for key, required in TRACE_REQUIREMENTS.items():
            allowed = TRACE_READOUTS if key == "readout" else (required,)
            if defaults.get(key, getattr(TrainConfig, key)) not in allowed:
                defaults[key] = required
    explicit_window = any(key in file_values or key in flag_values for key in _WINDOW_KEYS)
    if method == "online" or explicit_window:  # a window given by the user replaces the default one
        for key in _WINDOW_KEYS:
            defaults.pop(key, None)
    values: dict[str, Any] = {}
    values.update(defaults)
    values.update(file_values)
    values.update(flag_values)
    if values.get("task") is None:
        values["task"] = task
    if isinstance(values.get("hidden"), int):
        values["hidden"] = [values["hidden"]]
    try:
        return TrainConfig.from_dict(values)
    except TypeError as error:  # wrong type for a field
        raise ConfigError(str(error)) from None


def resume_config(run_dir: str | os.PathLike, changes: Mapping[str, Any]) -> TrainConfig:
    """The saved configuration of the run in ``run_dir``, with ``changes`` to the fields that may
    change on resume (:data:`RESUMABLE`); :class:`ConfigError` for a folder that is not a run
    folder or a change to any other field."""
    saved = Path(run_dir) / CONFIG
    if not saved.is_file():
        raise ConfigError(f"cannot resume: {saved} not found (is {run_dir} a run folder of `fptt train`?)")
    fixed = sorted(key for key in changes if key not in RESUMABLE)
    if fixed:
        raise ConfigError(f"--resume continues the saved run exactly; these flags cannot change: "
                          f"{', '.join('--' + key.replace('_', '-') for key in fixed)}")
    values = json.loads(saved.read_text())
    values.update(changes)
    return TrainConfig.from_dict(values, where=str(saved))
