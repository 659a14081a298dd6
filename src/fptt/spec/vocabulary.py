"""Every named choice of the library, defined once (no torch import: the command line builds its
parser from these without loading the library).

The registries that implement them are keyed by these names and check it at import:
:data:`fptt.neurons.NEURON_CLASSES` (``NEURONS``), :data:`fptt.neurons.READOUT_CLASSES` (``READOUTS``),
:func:`fptt.data.get_dataset` (``TASKS``); the engines and :class:`~fptt.run.config.TrainConfig`
validate against the tuples here.
"""
from __future__ import annotations

__all__ = ["TASKS", "EVENT_TASKS", "NEURONS", "BASELINE_CELLS", "MODELS", "READOUTS", "READOUT_INPUTS", "NORMS", "SYNAPSE_INITS",
           "INITIAL_STATES", "RESETS", "METHODS", "TRACE_METHODS", "FIXED_TAU_NEURONS", "TRACE_NEURONS", "TRACE_READOUTS",
           "FEEDBACKS", "WEIGHTINGS", "DECODINGS", "LOSSES",
           "LOSS_STEPS", "ON_NONFINITE", "OPTIMIZERS", "SCHEDULES", "SCHEDULE_UNITS", "EVAL_WITH", "EXPORT_FORMATS",
           "NIR_DISCRETIZATIONS", "LOGGERS", "CONV_GATES", "CONV_LAYER_PATTERN", "SPLITS", "EVAL_SPLITS", "CHECKPOINTS",
           "BENCHMARKS",
           "check_registry"]

TASKS = ("add", "smnist", "psmnist", "mnist1d", "shd", "dvsgesture", "dvscifar10", "nmnist", "saccade-mnist")
EVENT_TASKS = ("dvsgesture", "dvscifar10", "nmnist", "saccade-mnist")  # items are binned event frames
NEURONS = ("ltc", "alif", "lif", "brf")
BASELINE_CELLS = ("gru", "lstm")  # non-spiking recurrent baselines (fptt.baselines)
MODELS = NEURONS + BASELINE_CELLS  # what `fptt train --neuron` takes
READOUTS = ("liquid", "fixed", "linear")
READOUT_INPUTS = ("spikes", "membrane")
NORMS = ("none", "layer")
SYNAPSE_INITS = ("xavier", "torch_default")
INITIAL_STATES = ("random", "zero")
RESETS = ("zero", "subtract")
METHODS = ("fptt", "bptt", "tbptt", "online", "eprop", "ostl")
# methods whose gradient is computed forward in time by eligibility traces (fptt.training.traces.learner):
# they train ALIF/LIF layers with a fixed or linear readout of the spikes, without a layer norm
TRACE_METHODS = ("eprop", "ostl")
FIXED_TAU_NEURONS = ("alif", "lif")  # fixed-but-learnable per-neuron time constants (--tau-membrane)
TRACE_NEURONS = FIXED_TAU_NEURONS
TRACE_READOUTS = ("fixed", "linear")
FEEDBACKS = ("symmetric", "random")  # e-prop's feedback matrix B: W_o, or fixed random
WEIGHTINGS = ("linear", "uniform", "last")
# the class scores of a sequence at evaluation (fptt.training.engine.evaluate): the final step's output, or
# the mean over the steps of its class probabilities
DECODINGS = ("last", "mean")
LOSSES = ("auto", "cross_entropy", "mse")
LOSS_STEPS = ("every", "window_end")
ON_NONFINITE = ("stop", "skip")
OPTIMIZERS = ("adam", "adamax", "sgd")
SCHEDULES = ("none", "step", "cosine")
SCHEDULE_UNITS = ("epoch", "batch")
EVAL_WITH = ("average", "weights", "ema")
EXPORT_FORMATS = ("nir", "state_dict")  # fptt export --format
NIR_DISCRETIZATIONS = ("zoh", "euler")  # how the exported NIR time constants are to be integrated
LOGGERS = ("none", "tensorboard")  # fptt train --log
CONV_GATES = ("sum", "concat")  # conv LTC gates over d + u (the reference) or [d, u]
SPLITS = ("train", "test", "heldout")  # a dataset's splits (heldout: the bundled MNIST-10k's 2,000 images)
EVAL_SPLITS = ("train", "validation", "test", "heldout")  # fptt eval --split (validation: carved from train)
CHECKPOINTS = ("last", "best")  # which checkpoint of a run folder (fptt eval/export --which)
BENCHMARKS = ("memory", "speed", "peers", "throughput", "compile")  # fptt bench: modules of fptt.bench
# a conv LTC layer: "<channels>c<kernel>[p<pool>]" (e.g. "64c7", "32c3p1"); parsed by fptt.neurons.conv
CONV_LAYER_PATTERN = r"^([1-9][0-9]*)c([1-9][0-9]*)(?:p([1-9][0-9]*))?$"


def check_registry(kind: str, registered: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Raise ``RuntimeError`` if a registry's keys differ from its vocabulary (a library defect)."""
    if tuple(registered) != tuple(names):
        raise RuntimeError(f"the {kind} registry {tuple(registered)} differs from fptt.spec.vocabulary {tuple(names)}")
