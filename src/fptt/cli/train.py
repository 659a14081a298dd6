"""``fptt train``: its flags (every flag is a :class:`~fptt.run.config.TrainConfig` field, given
only when explicit, so that it overrides the config file) and the command."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..spec.rules import FUSE_AFTER_STEPS
from .argtypes import positive_float, positive_int
from .common import EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError, add_common, log_function

__all__ = ["register", "run", "add_train_arguments"]

# flags of `fptt train` that are not TrainConfig fields
_NOT_CONFIG = {"command", "config", "resume", "quiet", "debug", "handler"}


def _chrono(text: str) -> float | str | None:
    """``seq_len``, ``none`` (zero gate biases) or a number > 2 (argparse type of ``--chrono-tau``)."""
    if text == "seq_len":
        return text
    if text == "none":
        return None
    value = positive_float(text)
    if value <= 2:
        raise argparse.ArgumentTypeError(f"must be > 2 or seq_len, got {text}")
    return value



def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from ..run.presets import PRESET_NAMES
    from ..spec.vocabulary import (
        CONV_GATES,
        EVAL_WITH,
        FEEDBACKS,
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
        WEIGHTINGS,
    )

    s = argparse.SUPPRESS  # only flags given explicitly reach the config (they override the file)
    what = parser.add_argument_group("what to train")
    what.add_argument("--task", choices=TASKS, default=s, help="dataset / task (default smnist)")
    what.add_argument("--preset", choices=PRESET_NAMES, default=s,
                      help="the reference code's regime and hyperparameters for the task (docs/PRESETS.md); "
                           "explicit flags still override it")
    what.add_argument("--model", choices=MODELS, default=s,
                      help="spiking neuron of the hidden layers (default ltc), or a non-spiking gru/lstm baseline")
    what.add_argument("--method", choices=METHODS, default=s,
                      help="training method (default fptt; eprop and ostl train alif/lif models)")
    what.add_argument("--feedback", choices=FEEDBACKS, default=s,
                      help="eprop: feedback of the readout error, the readout weights (default) or fixed random")
    what.add_argument("--hidden", type=positive_int, nargs="+", default=s, metavar="N",
                      help="hidden layer sizes, one int per layer (default per task, 128 or 256)")
    what.add_argument("--readout", choices=READOUTS, default=s,
                      help="readout: leaky liquid (default), leaky fixed, or linear (no leak)")
    what.add_argument("--readout-from", choices=READOUT_INPUTS, default=s,
                      help="readout input: last layer's spikes or membrane potential")
    what.add_argument("--norm", choices=NORMS, default=s, help="normalisation of the input currents")
    what.add_argument("--norm-scale", type=positive_float, default=s, help="γ of the layer norm at init (default 1)")
    what.add_argument("--threshold", type=positive_float, default=s, help="baseline threshold b_0 (default 0.1)")
    what.add_argument("--adaptation", type=float, default=s, help="threshold adaptation β (default 1.8; 0: none)")
    what.add_argument("--fixed-threshold", action=argparse.BooleanOptionalAction, default=s,
                      help="LTC without the adaptation gate (needs --adaptation 0)")
    what.add_argument("--initial-state", choices=INITIAL_STATES, default=s,
                      help="membrane at t = 0: random U(0, 1) (default) or zero")
    what.add_argument("--synapse-init", choices=SYNAPSE_INITS, default=s,
                      help="xavier (default) or torch_default (one nn.Linear over [x_t, s_{t-1}])")
    what.add_argument("--gate-slopes", action=argparse.BooleanOptionalAction, default=s,
                      help="learnable slopes of the LTC gate sigmoids")
    what.add_argument("--conv", nargs="+", default=s, metavar="LAYER",
                      help="convolutional LTC layers before the dense ones, e.g. --conv 8c3 16c3 (<channels>c<kernel>"
                           "[p<pool>], 2x2 max pooling by default); event tasks only (a ConvSNN)")
    what.add_argument("--conv-gate", choices=CONV_GATES, default=s,
                      help="conv LTC gates over d + u (sum, the reference DVS-Gesture model; default) or [d, u] (concat)")
    what.add_argument("--recurrent", action=argparse.BooleanOptionalAction, default=s,
                      help="recurrent synapses in the dense spiking layers (default on)")
    what.add_argument("--surrogate-sigma", type=positive_float, default=s, metavar="SIGMA",
                      help="width σ of the multi-Gaussian surrogate spike derivative (default 0.3)")
    what.add_argument("--tau-membrane", type=float, nargs=2, default=s, metavar=("MEAN", "STD"),
                      help="ALIF/LIF: membrane time constants ~ N(MEAN, STD) steps at init (default 20 5)")
    what.add_argument("--tau-adaptation", type=float, nargs=2, default=s, metavar=("MEAN", "STD"),
                      help="ALIF: adaptation time constants ~ N(MEAN, STD) steps at init (default 200 25)")
    what.add_argument("--chrono-tau", type=_chrono, default=s, metavar="TAU|seq_len|none",
                      help="LTC gate-bias init with time constants ~ U(2, TAU) (seq_len: the sequence length; "
                           "none: zero biases)")

    fptt = parser.add_argument_group("FPTT and loss (THEORY.md §3)")
    fptt.add_argument("--alpha", type=positive_float, default=s, help="regularizer strength α (default 0.1)")
    fptt.add_argument("--beta", type=float, default=s, help="running-average rate β_avg in [0, 1] (default 0.5)")
    window = fptt.add_mutually_exclusive_group()
    window.add_argument("--k", type=positive_int, default=s, help="steps per update window (default 1)")
    window.add_argument("--update-points", type=positive_int, default=s,
                        help="updates per sequence instead of --k (the adding task's K)")
    fptt.add_argument("--weighting", choices=WEIGHTINGS, default=s, help="loss weight w_t over steps (default linear)")
    fptt.add_argument("--loss-steps", choices=LOSS_STEPS, default=s,
                      help="steps of a window that enter the loss (default every)")
    fptt.add_argument("--eval-with", choices=EVAL_WITH, default=s,
                      help="FPTT: evaluate with the running average W̄ (default) or the weights W")
    fptt.add_argument("--load-average-each-epoch", action=argparse.BooleanOptionalAction, default=s,
                      help="FPTT: copy W ← W̄ at the end of each epoch (default on for fptt)")
    fptt.add_argument("--reset-lambda", action=argparse.BooleanOptionalAction, default=s,
                      help="FPTT: also zero λ when loading the average (default off)")
    fptt.add_argument("--fused", action=argparse.BooleanOptionalAction, default=s,
                      help="compiled LTC dynamics and FPTT update (torch.compile, same results to float rounding; "
                           f"default: on when the run has >= {FUSE_AFTER_STEPS:,} training steps, which pay back the "
                           "compile; "
                           "falls back to the exact path where compiling is impossible)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=s, help="inner optimizer (default per task)")
    opt.add_argument("--lr", type=positive_float, default=s, help="learning rate (default 3e-3)")
    opt.add_argument("--schedule", choices=SCHEDULES, default=s, help="learning-rate schedule (default per task)")
    opt.add_argument("--schedule-unit", choices=SCHEDULE_UNITS, default=s,
                     help="step the schedule after every epoch (default) or every training batch")
    opt.add_argument("--milestones", type=positive_int, nargs="+", default=s, metavar="EPOCH",
                     help="epochs at which --schedule step multiplies the lr by --gamma")
    opt.add_argument("--gamma", type=positive_float, default=s, help="step schedule factor (default 0.1)")
    opt.add_argument("--epochs", type=positive_int, default=s, help="epochs (default 10)")
    opt.add_argument("--batch-size", type=positive_int, default=s, help="batch size (default 128)")
    opt.add_argument("--clip", type=positive_float, default=s, help="gradient-norm clipping (default none; 1 on MNIST)")
    opt.add_argument("--on-nonfinite", choices=ON_NONFINITE, default=s,
                     help="a NaN/Inf loss or gradient: stop the run naming the batch and time steps (default), "
                          "or skip that update and count it (skipped_updates in metrics.jsonl)")
    opt.add_argument("--seed", type=int, default=s, help="seed of weights, data order and generated data (default 0)")
    opt.add_argument("--device", default=s, help="auto (default), cpu, cuda or cuda:N")
    opt.add_argument("--threads", type=positive_int, default=s,
                     help="torch intra-op threads (default torch's; 1 is often fastest on a busy CPU)")

    data = parser.add_argument_group("data")
    data.add_argument("--seq-len", type=positive_int, default=s, help="adding task: sequence length T (default 200)")
    data.add_argument("--downsample", type=int, choices=(14, 28), default=s,
                      help="MNIST tasks: 14 for 14×14 images (196 steps) instead of 784")
    data.add_argument("--train-samples", type=positive_int, default=s,
                      help="adding task, saccade-mnist: training sequences")
    data.add_argument("--test-samples", type=positive_int, default=s,
                      help="adding task, saccade-mnist: test (held-out) sequences")
    data.add_argument("--validation-samples", type=int, default=s, metavar="N",
                      help="hold N training samples out (a fixed draw) and evaluate on them after each epoch, "
                           "leaving the test split for one final `fptt eval --split test` (default 0: none)")
    data.add_argument("--frames", type=positive_int, default=s, help="event tasks: frames per sample (default 20)")
    data.add_argument("--spatial-factor", type=positive_float, default=s,
                      help="event tasks: frame downsampling in (0, 1] (e.g. 0.25: 128x128 -> 32x32)")
    data.add_argument("--duration-ms", type=positive_float, default=s,
                      help="saccade-mnist: recording length in ms (default 300)")
    data.add_argument("--data-dir", default=s,
                      help="dataset root (default $FPTT_DATA; MNIST tasks fall back to the bundled MNIST-10k)")
    data.add_argument("--fresh-data", action=argparse.BooleanOptionalAction, default=s,
                      help="adding task: draw every training sequence anew (constant memory)")
    data.add_argument("--max-batches", type=positive_int, default=s, help="at most N training batches per epoch")
    data.add_argument("--max-eval-batches", type=positive_int, default=s, help="at most N evaluation batches")
    data.add_argument("--eval-batch-size", type=positive_int, default=s, help="evaluation batch size")

    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE", help="YAML, TOML or JSON file of settings; explicit flags override it")
    run.add_argument("--run-dir", default=s, help="output folder (default runs/<task>-<method>-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    run.add_argument("--checkpoint-every", type=positive_int, default=s, metavar="N",
                     help="also write checkpoint_last.pt every N training batches (a killed run loses at most N "
                          "batches; default: at the end of each epoch only)")
    run.add_argument("--eval-every", type=positive_int, default=s, metavar="N",
                     help="evaluate W and W̄ every N training batches into curve.jsonl (a learning curve)")
    run.add_argument("--stop-at", type=float, default=s, metavar="VALUE",
                     help="stop once the evaluated mse <= VALUE (accuracy >= VALUE); checked at each curve point")
    run.add_argument("--measure-memory", action="store_true", default=s,
                     help="record the peak bytes autograd saves per update (SavedTensorMeter)")
    run.add_argument("--plots", action=argparse.BooleanOptionalAction, default=s,
                     help="write plots/ at the end of the run (default on)")
    run.add_argument("--log", choices=LOGGERS, default=s,
                     help="also write the run's metrics (loss, accuracy/mse, firing rate, lr, memory) to an experiment "
                          "tracker: tensorboard writes RUN_DIR/tensorboard (pip install 'fptt[logging]'); default none")
    run.add_argument("--distributed", action="store_true", default=s,
                     help="data-parallel training over the processes of `torchrun --nproc_per_node=N -m fptt.cli "
                          "train ...` (on by itself under torchrun; see docs/DISTRIBUTED.md)")



def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a spiking network", description=(
        "Train a spiking RNN on a task with FPTT, BPTT, truncated BPTT or naive online gradient. "
        "Writes config.json, metrics.jsonl, checkpoint_{last,best}.pt, summary.json and plots/ to the run folder."))
    add_train_arguments(train)
    add_common(train)
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..run.config import default_run_dir, load_config_file, resolve_config, resume_config, save_config

    flags = {key: value for key, value in vars(args).items() if key not in _NOT_CONFIG}
    if args.resume:
        if args.config:
            raise UsageError("--resume takes the run's saved config; do not pass --config with it")
        run_dir = Path(args.resume)
        config = resume_config(run_dir, {key: value for key, value in flags.items() if key != "run_dir"})
    else:
        file_values = load_config_file(args.config) if args.config else {}
        config = resolve_config(file_values, flags)
        # config.json first, before torch is even imported: a run killed at any later moment can be
        # resumed (from its last checkpoint, or from the beginning if it has none)
        run_dir = Path(config.run_dir or default_run_dir(config))
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 writes the run's files
            save_config(config, run_dir)
    from ..run.trainer import Trainer

    log = log_function(args.quiet)
    trainer = Trainer(config, run_dir, resume=bool(args.resume), progress=(not args.quiet) and sys.stderr.isatty(),
                      log=log)
    finished = False
    try:
        summary = trainer.fit()
        finished = True
    finally:
        if trainer.world_size > 1:
            import torch.distributed as dist

            if finished:  # wait for rank 0's last writes: a rank leaving early can abort gloo peers
                dist.barrier()
            dist.destroy_process_group()
    if summary["interrupted"]:
        return EXIT_TERMINATED if summary.get("stop_signal") == "SIGTERM" else EXIT_INTERRUPTED
    if log and summary["last"] and trainer.is_main:
        last = summary["last"]["eval"]
        score = f"accuracy {last['accuracy']:.4f}" if last.get("accuracy") is not None else f"mse {last['mse']:.4f}"
        log(f"done: {summary['epochs_completed']} epochs, {summary['last']['eval_split']} {score}, "
            f"{summary['wall_seconds']:.1f}s; results in {trainer.run_dir}")
    return 0
