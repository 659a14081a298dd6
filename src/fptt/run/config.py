"""The run configuration of ``fptt train``: declared sections, one precedence, files.

A :class:`TrainConfig` is the task, the preset and six frozen sections (:class:`NetworkSettings`,
:class:`FPTTSettings`, :class:`TrainingSettings`, :class:`OptimSettings`, :class:`DataSettings`,
:class:`RunSettings`, :class:`ComputeSettings`). Every field is declared once, with its type, help,
choices and check (:func:`fptt.spec.schema.setting`); its name is the name of the library argument it
sets (``baseline_threshold`` of the cells, ``clip_grad_norm`` of :class:`~fptt.FPTT`), so nothing is
renamed on the way to the library. A config is validated when it is made and never changes
(:meth:`TrainConfig.updated` makes a new one); ``config.lr`` reads ``config.optim.lr``.

Precedence (lowest to highest): the declared defaults < the task's values
(``fptt/run/regimes/tasks.json``, for the chosen neuron) < the preset's (``presets.json``) < a config
file (``--config``) < the flags given on the command line (:func:`resolve_config`). Files may be flat
(``lr: 0.01``) or in sections (``[optim] lr = 0.01``); v0.3 names are read through
:mod:`fptt.run.migrate`.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional

from ..spec.rules import (
    TRACE_REQUIREMENTS,
    check_alpha,
    check_beta,
    check_brf_b_offset_init,
    check_brf_omega_init,
    check_clip,
    check_trace_settings,
    check_window,
)
from ..spec.schema import ConfigError, Section, non_negative, positive, setting
from ..spec.vocabulary import (
    CONV_GATES,
    CONV_LAYER_PATTERN,
    DECODINGS,
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
from .migrate import RENAMED, migrate
from .presets import PRESET_NAMES, preset_values, task_neuron, task_values
from .records import CONFIG

__all__ = [
    "TrainConfig", "ConfigError", "CONFIG_FILE", "SECTIONS", "NetworkSettings", "FPTTSettings", "TrainingSettings",
    "OptimSettings", "DataSettings", "RunSettings", "ComputeSettings", "FIELD_SECTIONS", "default_run_dir",
    "save_config", "TASKS", "MODELS", "METHODS", "OPTIMIZERS", "SCHEDULES", "ON_NONFINITE", "load_config_file",
    "resolve_config", "resume_config", "config_text", "RESUMABLE",
]

CONFIG_FILE = CONFIG  # in every run folder: enough to rebuild the model and to resume

# what may change when a run is resumed (anything else would break its exact continuation)
RESUMABLE = frozenset({"threads", "epochs", "max_batches", "max_eval_batches", "eval_batch_size", "device", "plots",
                       "data_dir", "checkpoint_every", "on_nonfinite", "eval_every", "stop_at", "log", "capture",
                       "read_test"})


# ---------------------------------------------------------------------------------- field checks
def _positive_ints(values: tuple) -> None:
    if not values or any(value <= 0 for value in values):
        raise ValueError("must be one or more positive ints")


def _conv_layers(specs: tuple) -> None:
    for spec in specs:
        match = re.match(CONV_LAYER_PATTERN, spec)
        if match is None or int(match.group(2)) % 2 == 0:
            raise ValueError(f"layer {spec!r} is not of the form <channels>c<odd kernel>[p<pool>], e.g. 64c7")


def _mean_std(values: tuple) -> None:
    if len(values) != 2 or values[0] < 1 or values[1] < 0:
        raise ValueError("must be [mean, std] in steps with mean >= 1 and std >= 0")


def _chrono(value: Any) -> None:
    if value != "seq_len" and not value > 2:
        raise ValueError("must be a number > 2 or 'seq_len'")


def _unit_interval(value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError("must lie in (0, 1]")


def _open_unit_interval(value: float) -> None:
    if not 0 < value < 1:
        raise ValueError("must lie in (0, 1)")


def _milestones(values: tuple) -> None:
    if values:
        _positive_ints(values)


def _device(value: str) -> None:
    if value not in ("auto", "cpu", "cuda") and re.fullmatch(r"cuda:[0-9]+", value) is None:
        raise ValueError("must be auto, cpu, cuda or cuda:N")


def _positive_int(value: int) -> None:
    if value <= 0:
        raise ValueError("must be a positive int")


def _non_negative_int(value: int) -> None:
    if value < 0:
        raise ValueError("must be an int >= 0")


# ---------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class NetworkSettings(Section):
    """The network: :class:`~fptt.SpikingRNN` / :class:`~fptt.ConvSNN` and their cells' arguments."""

    name: ClassVar[str] = "network"
    title: ClassVar[str] = "the network (SpikingRNN, ConvSNN and their cells' arguments)"

    neuron: str = setting("ltc", "spiking neuron of the hidden layers, or a non-spiking gru/lstm baseline",
                          choices=MODELS)
    hidden_sizes: tuple[int, ...] = setting((128,), "hidden layer sizes, one int per layer", kind="ints",
                                            check=_positive_ints, nargs="+", metavar="N")
    conv: tuple[str, ...] = setting((), "convolutional LTC layers before the dense ones, e.g. 8c3 16c3 "
                                    "(<channels>c<kernel>[p<pool>]); event tasks only (a ConvSNN)",
                                    kind="strs", check=_conv_layers, nargs="+", metavar="LAYER")
    gate_input: str = setting("sum", "conv LTC gates over d + u (sum, the reference DVS-Gesture model) or [d, u]",
                              choices=CONV_GATES)
    recurrent: bool = setting(True, "recurrent synapses W_r s_{t-1} in the dense spiking layers")
    readout: str = setting("liquid", "readout: leaky liquid, leaky fixed, or linear (no leak)", choices=READOUTS)
    readout_from: str = setting("spikes", "readout input: the last layer's spikes or membrane potential",
                                choices=READOUT_INPUTS)
    norm: str = setting("none", "normalisation of the input currents", choices=NORMS)
    norm_scale: float = setting(1.0, "γ of the layer norm at init (0.1: currents of about ±0.1)", check=positive)
    baseline_threshold: float = setting(0.1, "baseline threshold b_0 (not brf: its threshold is 1)", check=positive)
    adaptation_strength: float = setting(1.8, "threshold adaptation β (0: none; not brf)", check=non_negative)
    fixed_threshold: bool = setting(False, "LTC without the adaptation gate (needs adaptation_strength 0)")
    initial_membrane: str = setting("random", "membrane at t = 0: random U(0, 1) or zero (brf always starts at rest)",
                                    choices=INITIAL_STATES)
    synapse_init: str = setting("xavier", "xavier, or torch_default (one nn.Linear over [x_t, s_{t-1}])",
                                choices=SYNAPSE_INITS)
    gate_slopes: bool = setting(False, "LTC: learnable slopes of the gate sigmoids")
    chrono_tau: Optional[float | str] = setting(
        None, "LTC gate-bias init with time constants ~ U(2, TAU) (seq_len: the sequence length; unset: zero biases)",
        kind="float", words=("seq_len",), check=_chrono, metavar="TAU|seq_len|none")
    surrogate_sigma: float = setting(0.3, "width σ of the multi-Gaussian surrogate spike derivative", check=positive,
                                     metavar="SIGMA")
    tau_membrane_init: Optional[tuple[float, float]] = setting(
        None, "ALIF/LIF: membrane time constants ~ N(MEAN, STD) steps at init (unset: 20 5)", kind="floats",
        check=_mean_std, nargs=2, metavar=("MEAN", "STD"))
    tau_adaptation_init: Optional[tuple[float, float]] = setting(
        None, "ALIF: adaptation time constants ~ N(MEAN, STD) steps at init (unset: 200 25)", kind="floats",
        check=_mean_std, nargs=2, metavar=("MEAN", "STD"))
    omega_init: Optional[tuple[float, float]] = setting(
        None, "BRF: angular frequencies ω ~ U(LO, HI) at init, LO > 0 and HI < 1/dt = 100 (unset: 15 50, the "
        "paper's S-MNIST range)", kind="floats", check=check_brf_omega_init, nargs=2, metavar=("LO", "HI"))
    b_offset_init: Optional[tuple[float, float]] = setting(
        None, "BRF: damping offsets b_off ~ U(LO, HI) at init, 0 <= LO < HI (unset: 0.1 1)", kind="floats",
        check=check_brf_b_offset_init, nargs=2, metavar=("LO", "HI"))


@dataclass(frozen=True)
class FPTTSettings(Section):
    """The :class:`~fptt.FPTT` wrapper's arguments and its end-of-epoch average (THEORY.md §3)."""

    name: ClassVar[str] = "fptt"
    title: ClassVar[str] = "FPTT (the optimizer wrapper's arguments, THEORY.md §3)"

    alpha: float = setting(0.1, "regularizer strength α", check=check_alpha)
    beta: float = setting(0.5, "running-average rate β_avg in [0, 1]", check=check_beta)
    reset_lambda_on_average: bool = setting(False, "also zero λ when W ← W̄ is loaded")
    load_average_each_epoch: Optional[bool] = setting(None, "copy W ← W̄ at the end of each epoch (unset: on)",
                                                      kind="bool")
    eval_with: str = setting("average", "evaluate (validation, checkpoint_best, the test read) with the running "
                             "average W̄, the weights W, or ema: an exponential moving average of W over batches "
                             "(any method; ema_decay)", choices=EVAL_WITH)
    ema_decay: float = setting(0.95, "eval_with ema: W_ema ← d·W_ema + (1 − d)·W after every training batch, d in "
                               "(0, 1): a window of about 1/(1 − d) batches", check=_open_unit_interval, metavar="D")


@dataclass(frozen=True)
class TrainingSettings(Section):
    """The engine's arguments (:func:`fptt.train_epoch`)."""

    name: ClassVar[str] = "training"
    title: ClassVar[str] = "training (fptt.train_epoch's arguments)"

    method: str = setting("fptt", "training method (eprop and ostl train alif/lif models)", choices=METHODS)
    k: Optional[int] = setting(None, "steps per update window (unset: 1)", kind="int", check=_positive_int)
    update_points: Optional[int] = setting(None, "updates per sequence instead of k (the adding task's K)",
                                           kind="int", check=_positive_int)
    weighting: str = setting("linear", "loss weight w_t over the steps", choices=WEIGHTINGS)
    decode: str = setting("last", "the class scores of a sequence in every evaluation (validation, checkpoint_best, "
                          "the test read): the final step's output, or mean: log of the mean over the steps of "
                          "its class probabilities, (1/T) Σ_t softmax(y_t) (classification; the training "
                          "accuracy stays the final step's)", choices=DECODINGS)
    loss_steps: str = setting("every", "steps of a window that enter the loss", choices=LOSS_STEPS)
    clip_grad_norm: Optional[float] = setting(None, "gradient-norm clipping (unset: none)", kind="float",
                                              check=check_clip)
    on_nonfinite: str = setting("stop", "a NaN/Inf loss or gradient: stop the run naming the batch and steps, or "
                                "skip that update and count it (skipped_updates in metrics.jsonl)", choices=ON_NONFINITE)
    feedback: str = setting("symmetric", "eprop: feedback of the readout error, the readout weights or fixed random",
                            choices=FEEDBACKS)


@dataclass(frozen=True)
class OptimSettings(Section):
    """The inner optimizer, its learning-rate schedule and the run's length."""

    name: ClassVar[str] = "optim"
    title: ClassVar[str] = "optimisation"

    optimizer: str = setting("adam", "inner optimizer", choices=OPTIMIZERS)
    lr: float = setting(3e-3, "learning rate", check=positive)
    schedule: str = setting("none", "learning-rate schedule", choices=SCHEDULES)
    schedule_unit: str = setting("epoch", "step the schedule after every epoch or every training batch",
                                 choices=SCHEDULE_UNITS)
    milestones: tuple[int, ...] = setting((), "epochs (batches with schedule_unit batch) at which the step schedule "
                                          "multiplies the lr by gamma (unset: half and three quarters of the run)",
                                          kind="ints", check=_milestones, nargs="+",
                                          metavar="EPOCH")
    gamma: float = setting(0.1, "step schedule factor", check=positive)
    epochs: int = setting(10, "epochs", check=_positive_int)
    batch_size: int = setting(128, "batch size (per process when distributed)", check=_positive_int)


@dataclass(frozen=True)
class DataSettings(Section):
    """The task's data: the datasets' arguments and how much of them a run reads."""

    name: ClassVar[str] = "data"
    title: ClassVar[str] = "data"

    seq_len: int = setting(200, "adding task: sequence length T", check=_positive_int)
    downsample: Optional[int] = setting(None, "MNIST tasks: 14 for 14×14 images (196 steps) instead of 784",
                                        kind="int", choices=(14, 28))
    num_frames: Optional[int] = setting(None, "event tasks: frames per sample (unset: the dataset's, 20)", kind="int",
                                        check=_positive_int)
    spatial_factor: Optional[float] = setting(None, "event tasks: frame downsampling in (0, 1] "
                                              "(e.g. 0.25: 128x128 -> 32x32)", kind="float", check=_unit_interval)
    duration_ms: float = setting(300.0, "saccade-mnist: recording length in ms", check=positive)
    train_samples: int = setting(10_000, "adding task, saccade-mnist: training sequences", check=_positive_int)
    test_samples: int = setting(1_000, "adding task, saccade-mnist: test (held-out) sequences", check=_positive_int)
    validation_samples: int | str = setting("auto", "training samples held out (a fixed draw) to evaluate on after "
                                            "each epoch and to choose checkpoint_best by; the test split is read "
                                            "once, after the last epoch (auto: 10 % of the training data, at most "
                                            "1,000; 0: none, no per-epoch evaluation)",
                                            kind="int", words=("auto",), check=_non_negative_int, metavar="N")
    data_dir: Optional[str] = setting(None, "dataset root (unset: $FPTT_DATA; MNIST tasks fall back to the bundled "
                                      "MNIST-10k)", kind="str")
    fresh_data: bool = setting(False, "adding task: draw every training sequence anew (constant memory)")
    max_batches: Optional[int] = setting(None, "at most N training batches per epoch", kind="int", check=_positive_int)
    max_eval_batches: Optional[int] = setting(None, "at most N evaluation batches", kind="int", check=_positive_int)
    eval_batch_size: Optional[int] = setting(None, "evaluation batch size (unset: max(batch_size, 256))", kind="int",
                                             check=_positive_int)


@dataclass(frozen=True)
class RunSettings(Section):
    """The run's bookkeeping: seed, folder, checkpoints, learning curve, plots, tracker."""

    name: ClassVar[str] = "run"
    title: ClassVar[str] = "run"

    seed: int = setting(0, "seed of weights, data order and generated data")
    run_dir: Optional[str] = setting(None, "output folder (unset: runs/<task>-<method>-<timestamp>)", kind="str")
    checkpoint_every: Optional[int] = setting(None, "also write checkpoint_last.pt every N training batches (a killed "
                                              "run loses at most N batches; unset: at the end of each epoch only)",
                                              kind="int", check=_positive_int, metavar="N")
    eval_every: Optional[int] = setting(None, "evaluate W and W̄ every N training batches into curve.jsonl",
                                        kind="int", check=_positive_int, metavar="N")
    stop_at: Optional[float] = setting(None, "stop once the evaluated mse <= VALUE (accuracy >= VALUE)", kind="float",
                                       check=non_negative, metavar="VALUE")
    read_test: bool = setting(True, "score the final weights on the test split once, after the last epoch "
                              "(--no-read-test for tuning runs: the test split is never loaded, summary.json "
                              "records test null and test_reads.json stays absent)")
    measure_memory: bool = setting(False, "record the peak bytes autograd saves per update (SavedTensorMeter)")
    plots: bool = setting(True, "write plots/ at the end of the run")
    log: str = setting("none", "also write the metrics to an experiment tracker: tensorboard writes "
                       "RUN_DIR/tensorboard (pip install 'fptt[logging]')", choices=LOGGERS)


@dataclass(frozen=True)
class ComputeSettings(Section):
    """Where and how the arithmetic runs: device, threads, compiled kernels, processes."""

    name: ClassVar[str] = "compute"
    title: ClassVar[str] = "compute"

    device: str = setting("auto", "auto, cpu, cuda or cuda:N", check=_device)
    threads: Optional[int] = setting(None, "torch intra-op threads (unset: torch's; 1 is often fastest on a busy CPU)",
                                     kind="int", check=_positive_int)
    fused: bool | str = setting("auto", "compiled LTC dynamics and FPTT update (torch.compile, same results to float "
                                "rounding; auto: on when the run plans enough training steps to pay back the compile, "
                                "fptt.spec.rules.plans_to_fuse; resolved before config.json is written)",
                                kind="bool", words=("auto",))
    capture: bool | str = setting("auto", "the captured update: forward, backward and optimizer of each window as one "
                                  "compiled graph, a CUDA graph on a GPU (fptt, tbptt, online with adam, adamax or sgd; "
                                  "same results to float rounding; the eager update, with one logged line, where it "
                                  "cannot run; auto: on when the run plans enough training steps to pay back the "
                                  "compile, fptt.spec.rules.plans_to_capture; resolved before config.json is written)",
                                  kind="bool", words=("auto",))
    distributed: bool = setting(False, "data-parallel training over the processes of `torchrun --nproc_per_node=N -m "
                                "fptt.cli train ...` (on by itself under torchrun; docs/DISTRIBUTED.md)")


#: the sections of a :class:`TrainConfig`, in file order
SECTIONS: tuple[type[Section], ...] = (NetworkSettings, FPTTSettings, TrainingSettings, OptimSettings, DataSettings,
                                       RunSettings, ComputeSettings)
#: field name -> the section that holds it (names are unique over the sections)
FIELD_SECTIONS: dict[str, str] = {name: section.name for section in SECTIONS for name in section.settings()}
_TOP = ("task", "preset")
_LTC_ONLY = ("fixed_threshold", "gate_slopes", "chrono_tau")
_FIXED_TAU_ONLY = ("tau_membrane_init", "tau_adaptation_init")
_BRF_ONLY = ("omega_init", "b_offset_init")
_NOT_BRF = ("baseline_threshold", "adaptation_strength")  # BRF: θ = 1 and q enters with weight 1


# ---------------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs: the task, a preset's name (recorded) and the sections.

    Made by :meth:`from_dict` (flat or sectioned values) or :func:`resolve_config` (with the task's
    values and the preset); validated when made. Any field reads flat: ``config.lr`` is
    ``config.optim.lr``."""

    task: str = "smnist"
    preset: Optional[str] = None
    network: NetworkSettings = field(default_factory=NetworkSettings)
    fptt: FPTTSettings = field(default_factory=FPTTSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    data: DataSettings = field(default_factory=DataSettings)
    run: RunSettings = field(default_factory=RunSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.preset is not None and self.preset not in PRESET_NAMES:
            raise ConfigError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        for rule in _RULES:
            try:
                rule(self)
            except ConfigError:
                raise
            except ValueError as error:  # a rule of fptt.spec.rules
                raise ConfigError(str(error)) from None

    def __getattr__(self, name: str) -> Any:
        section = FIELD_SECTIONS.get(name)
        if section is None and name in RENAMED:  # a v0.3 name, read for scripts written against it
            warnings.warn(f"TrainConfig.{name} is now TrainConfig.{RENAMED[name]} (the library's name); the old "
                          "name will go", DeprecationWarning, stacklevel=2)
            name, section = RENAMED[name], FIELD_SECTIONS[RENAMED[name]]
        if section is None:
            raise AttributeError(f"TrainConfig has no field {name!r}")
        return getattr(getattr(self, section), name)

    # ------------------------------------------------------------------ making and writing
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "config") -> TrainConfig:
        """The config of ``values``: flat (``{"lr": 0.01}``), in sections (``{"optim": {"lr": 0.01}}``)
        or both, in current or v0.3 names (:mod:`fptt.run.migrate`); every field not given takes its
        declared default."""
        flat = flatten(values, where)
        sections: dict[str, Any] = {section.name: section(**{key: flat[key] for key in section.settings() if key in flat})
                    for section in SECTIONS}
        top: dict[str, Any] = {key: flat[key] for key in _TOP if key in flat}
        return cls(**top, **sections)

    def to_dict(self) -> dict[str, Any]:
        """``{"task", "preset", "network": {...}, ...}``: what ``config.json`` holds and
        :meth:`from_dict` reads back."""
        return {"task": self.task, "preset": self.preset,
                **{section.name: getattr(self, section.name).to_dict() for section in SECTIONS}}

    def to_flat_dict(self) -> dict[str, Any]:
        """Every field by its name, without the sections."""
        return {"task": self.task, "preset": self.preset,
                **{key: value for section in SECTIONS for key, value in getattr(self, section.name).to_dict().items()}}

    def updated(self, **changes: Any) -> TrainConfig:
        """A new config with ``changes`` (flat field names), validated; this one is left as it is."""
        return TrainConfig.from_dict({**self.to_flat_dict(), **changes})

    # ------------------------------------------------------------------ derived values
    @property
    def averaging(self) -> bool:
        """Whether W ← W̄ is loaded at the end of each epoch (FPTT only)."""
        if self.training.method != "fptt":
            return False
        return self.fptt.load_average_each_epoch is not False


# ---------------------------------------------------------------------------------- rules across fields
def _rule_conv(config: TrainConfig) -> None:
    net = config.network
    if net.conv and net.readout_from != "spikes":
        raise ConfigError("a conv network reads out the spikes of its last dense layer: readout_from must be spikes")
    if net.conv and net.neuron != "ltc":
        raise ConfigError(f"conv layers are LTC layers; neuron must be ltc with conv, got {net.neuron!r}")


def _rule_neuron_options(config: TrainConfig) -> None:
    net = config.network
    if net.fixed_threshold and net.adaptation_strength != 0:
        raise ConfigError("fixed_threshold has no adaptation: set adaptation_strength to 0")
    if net.neuron in MODELS and net.neuron != "ltc":
        given = [key for key in _LTC_ONLY if getattr(net, key) not in (None, False)]
        if given:
            raise ConfigError(f"{given[0]} is an option of the LTC neuron, not of {net.neuron}")
    if net.neuron not in FIXED_TAU_NEURONS:
        given = [key for key in _FIXED_TAU_ONLY if getattr(net, key) is not None]
        if given:
            raise ConfigError(f"{given[0]} sets the fixed-but-learnable time constants of ALIF/LIF, not of {net.neuron}")
    if net.neuron != "brf":
        given = [key for key in _BRF_ONLY if getattr(net, key) is not None]
        if given:
            raise ConfigError(f"{given[0]} sets the initial parameters of the BRF neuron, not of {net.neuron}")
    else:
        given = [key for key in _NOT_BRF if getattr(net, key) != getattr(NetworkSettings, key)]
        if given:
            raise ConfigError(f"{given[0]} is not an option of the BRF neuron: its threshold is θ + q_(t-1) with "
                              "θ = 1 and its refractory variable q added with weight 1 (THEORY.md §2.8); leave "
                              f"{given[0]} unset")


def _rule_window(config: TrainConfig) -> None:
    """k / update_points: the only task whose length the config fixes is the adding task; for the
    others the trainer checks the data's length (:func:`fptt.run.build.check_datasets`)."""
    seq_len = config.data.seq_len if config.task == "add" else None
    check_window(config.training.k, config.training.update_points, seq_len, method=config.training.method,
                 where=f"the sequence length seq_len ({config.data.seq_len})")


def _rule_trace_method(config: TrainConfig) -> None:
    """e-prop/OSTL's requirements (the rule the learner applies to the built network)."""
    if config.training.method in TRACE_METHODS:
        net = config.network
        check_trace_settings(config.training.method, model=net.neuron, readout=net.readout,
                             readout_from=net.readout_from, norm=net.norm, layers=len(net.hidden_sizes),
                             feedback=config.training.feedback, distributed=config.compute.distributed)


def _rule_decode(config: TrainConfig) -> None:
    if config.training.decode != "mean":
        return
    if config.task == "add":
        raise ConfigError("decode mean averages class probabilities over the steps; the adding task is a regression "
                          "(its score is the final step's output): leave decode at last")
    if config.training.weighting == "last":
        raise ConfigError("decode mean averages the predictions of every step, but weighting last trains only the "
                          "final step's: use decode last, or a weighting that trains every step (uniform, linear)")


_RULES: tuple[Callable[[TrainConfig], None], ...] = (_rule_conv, _rule_neuron_options, _rule_window,
                                                     _rule_trace_method, _rule_decode)


# ---------------------------------------------------------------------------------- keys and files
def flatten(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` as one flat mapping of current field names: sections unwrapped (a key under the
    wrong section is an error), old names migrated, unknown keys refused naming the nearest field."""
    flat: dict[str, Any] = {}
    try:
        for key, value in migrate(values).items():
            if key in _SECTION_BY_NAME and isinstance(value, Mapping):
                inner = migrate(value)
                stray = [name for name in inner if FIELD_SECTIONS.get(name) != key]
                if stray:
                    raise ConfigError(f"unknown config key {key}.{stray[0]} in {where}{_hint(stray[0])}")
                flat.update(inner)
            else:
                flat[key] = value
    except ConfigError:
        raise
    except ValueError as error:  # a key under its old and its new name
        raise ConfigError(f"{error} (in {where})") from None
    for key in flat:
        if key not in FIELD_SECTIONS and key not in _TOP:
            raise ConfigError(f"unknown config key {key!r} in {where}{_hint(key)}")
    return flat


_SECTION_BY_NAME = {section.name: section for section in SECTIONS}
CONFIG_KEYS: tuple[str, ...] = (*_TOP, *FIELD_SECTIONS)


def _hint(key: str) -> str:
    section = FIELD_SECTIONS.get(str(key))
    if section:
        return f" (it belongs to [{section}])"
    bare = str(key).replace("-", "").replace("_", "")
    near = [name for name in CONFIG_KEYS if name.replace("_", "") == bare]
    return f" (did you mean {near[0]!r}?)" if near else ""


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<task>-<method>-<timestamp>``."""
    from datetime import datetime

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.training.method}-{stamp}"


def config_text(config: TrainConfig) -> str:
    """The JSON text of ``config`` in sections: ``config.json``, ``--print-config``; ``--config``
    reads it back."""
    def line(key: str, value: Any, indent: str) -> str:
        return f"{indent}{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"

    lines = []
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            inner = ",\n".join(line(name, item, "    ") for name, item in value.items())
            lines.append(f'  {json.dumps(key)}: {{\n{inner}\n  }}')
        else:
            lines.append(line(key, value, "  "))
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save_config(config: TrainConfig, run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/config.json`` atomically."""
    from .files import write_text_atomic

    return write_text_atomic(Path(run_dir) / CONFIG_FILE, config_text(config))


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file into a flat dict of current
    field names (sections unwrapped, v0.3 names migrated, unknown keys refused).

    Keys may use dashes or underscores (``batch-size`` = ``batch_size``). A ``[train]`` table /
    ``train:`` mapping, if it is the only top-level key, is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    values = _parse_file(path)
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return flatten(_underscored(values), str(path))


def _underscored(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).replace("-", "_"): _underscored(value) if isinstance(value, Mapping) else value
            for key, value in values.items()}


def _parse_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # pragma: no cover - Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            try:
                import yaml  # type: ignore[import-untyped, unused-ignore]
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
    return values


# ---------------------------------------------------------------------------------- precedence
_WINDOW_KEYS = ("k", "update_points")


def resolve_config(file_values: Optional[Mapping[str, Any]] = None,
                   flag_values: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Defaults < the task's values < the preset's < ``file_values`` < ``flag_values``, validated.

    The task's and the preset's values are those for the chosen neuron (the task's own unless the
    file or the flags name one). Two rules on the lower layers, never on the user's values: a window
    (``k`` / ``update_points``) given by the file or the flags replaces the task's or the preset's
    window, as does ``method="online"`` (which updates at every step); and for e-prop/OSTL the
    method's requirements (:data:`fptt.spec.rules.TRACE_REQUIREMENTS`) replace task and preset
    values that conflict with them; ``weighting="last"`` (only the final step is trained) replaces a
    task's or preset's ``decode="mean"`` with ``"last"``. A user's value that conflicts with the method
    (or ``decode="mean"`` with ``weighting="last"``) is a :class:`ConfigError` naming the key."""
    user = {**flatten(file_values or {}, "config file"), **flatten(flag_values or {}, "command line")}
    task = user.get("task", TrainConfig.task)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    neuron = user.get("neuron", task_neuron(task))
    lower = task_values(task, neuron)
    if user.get("preset") is not None:
        try:
            lower.update(preset_values(user["preset"], task, neuron))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    method = user.get("method", lower.get("method", TrainingSettings.method))
    if method == "online" or any(key in user for key in _WINDOW_KEYS):
        for key in _WINDOW_KEYS:
            lower.pop(key, None)
    if method in TRACE_METHODS:
        for key, required in TRACE_REQUIREMENTS.items():
            allowed = TRACE_READOUTS if key == "readout" else (required,)
            if lower.get(key, getattr(NetworkSettings, key)) not in allowed:
                lower[key] = required
    if user.get("weighting") == "last" and "decode" not in user:
        lower.pop("decode", None)
    return TrainConfig.from_dict({**lower, **user, "task": task})


def resume_config(run_dir: str | os.PathLike, changes: Mapping[str, Any]) -> TrainConfig:
    """The saved configuration of the run in ``run_dir`` (migrated when it is a v0.3 one), with
    ``changes`` to the fields that may change on resume (:data:`RESUMABLE`); :class:`ConfigError` for
    a folder that is not a run folder or a change to any other field."""
    saved = Path(run_dir) / CONFIG
    if not saved.is_file():
        raise ConfigError(f"cannot resume: {saved} not found (is {run_dir} a run folder of `fptt train`?)")
    fixed = sorted(key for key in changes if key not in RESUMABLE)
    if fixed:
        raise ConfigError(f"--resume continues the saved run exactly; these flags cannot change: "
                          f"{', '.join('--' + key.replace('_', '-') for key in fixed)}")
    config = TrainConfig.from_dict(json.loads(saved.read_text()), where=str(saved))
    return config.updated(**changes) if changes else config


def section_fields() -> list[tuple[type[Section], dict[str, Any]]]:
    """Each section with its declared settings (for the command line's parser and the docs)."""
    return [(section, section.settings()) for section in SECTIONS]


__all__ += ["flatten", "section_fields", "CONFIG_KEYS"]
