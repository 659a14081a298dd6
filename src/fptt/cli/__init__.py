"""The ``fptt`` command line: ``train``, ``eval``, ``export``, ``compare``, ``bench``, ``stream`` and ``demo``
(see docs/CLI.md).

Built on :mod:`argparse` (standard library, no dependency). Heavy imports (torch, the trainer,
matplotlib) happen inside the commands so that ``fptt --help`` and argument errors are instant.
Errors a user can act on (unknown config key, dataset not found, CUDA absent, ...) print one
line on stderr and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped by SIGTERM after saving a checkpoint

# flags of `fptt train` that are not TrainConfig fields
_NOT_CONFIG = {"command", "config", "resume", "quiet", "debug", "handler"}
# what may change when resuming a run (everything else would break exact continuation)
_RESUMABLE = {"threads", "epochs", "max_batches", "max_eval_batches", "eval_batch_size", "device", "plots", "data_dir",
              "checkpoint_every", "on_nonfinite", "eval_every", "stop_at", "log"}


def _chrono(text: str) -> float | str | None:
    """``seq_len``, ``none`` (zero gate biases) or a number > 2 (argparse type of ``--chrono-tau``)."""
    if text == "seq_len":
        return text
    if text == "none":
        return None
    value = _positive_float(text)
    if value <= 2:
        raise argparse.ArgumentTypeError(f"must be > 2 or seq_len, got {text}")
    return value


class UsageError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from ..vocabulary import (CONV_GATES, EVAL_WITH, FEEDBACKS, INITIAL_STATES, LOGGERS, METHODS, MODELS, NORMS, OPTIMIZERS, READOUTS, SCHEDULE_UNITS,
                             SCHEDULES, SYNAPSE_INITS, TASKS, WEIGHTINGS)
    from ..run.presets import PRESET_NAMES

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
    what.add_argument("--hidden", type=_positive_int, nargs="+", default=s, metavar="N",
                      help="hidden layer sizes, one int per layer (default per task, 128 or 256)")
    what.add_argument("--readout", choices=READOUTS, default=s,
                      help="readout: leaky liquid (default), leaky fixed, or linear (no leak)")
    what.add_argument("--readout-from", choices=("spikes", "membrane"), default=s,
                      help="readout input: last layer's spikes or membrane potential")
    what.add_argument("--norm", choices=NORMS, default=s, help="normalisation of the input currents")
    what.add_argument("--norm-scale", type=_positive_float, default=s, help="γ of the layer norm at init (default 1)")
    what.add_argument("--threshold", type=_positive_float, default=s, help="baseline threshold b_0 (default 0.1)")
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
    what.add_argument("--surrogate-sigma", type=_positive_float, default=s, metavar="SIGMA",
                      help="width σ of the multi-Gaussian surrogate spike derivative (default 0.3)")
    what.add_argument("--tau-membrane", type=float, nargs=2, default=s, metavar=("MEAN", "STD"),
                      help="ALIF/LIF: membrane time constants ~ N(MEAN, STD) steps at init (default 20 5)")
    what.add_argument("--tau-adaptation", type=float, nargs=2, default=s, metavar=("MEAN", "STD"),
                      help="ALIF: adaptation time constants ~ N(MEAN, STD) steps at init (default 200 25)")
    what.add_argument("--chrono-tau", type=_chrono, default=s, metavar="TAU|seq_len|none",
                      help="LTC gate-bias init with time constants ~ U(2, TAU) (seq_len: the sequence length; "
                           "none: zero biases)")

    fptt = parser.add_argument_group("FPTT and loss (SPEC §3)")
    fptt.add_argument("--alpha", type=_positive_float, default=s, help="regularizer strength α (default 0.1)")
    fptt.add_argument("--beta", type=float, default=s, help="running-average rate β_avg in [0, 1] (default 0.5)")
    window = fptt.add_mutually_exclusive_group()
    window.add_argument("--k", type=_positive_int, default=s, help="steps per update window (default 1)")
    window.add_argument("--update-points", type=_positive_int, default=s,
                        help="updates per sequence instead of --k (the adding task's K)")
    fptt.add_argument("--weighting", choices=WEIGHTINGS, default=s, help="loss weight w_t over steps (default linear)")
    fptt.add_argument("--loss-steps", choices=("every", "window_end"), default=s,
                      help="steps of a window that enter the loss (default every)")
    fptt.add_argument("--eval-with", choices=EVAL_WITH, default=s,
                      help="FPTT: evaluate with the running average W̄ (default) or the weights W")
    fptt.add_argument("--load-average-each-epoch", action=argparse.BooleanOptionalAction, default=s,
                      help="FPTT: copy W ← W̄ at the end of each epoch (default on for fptt)")
    fptt.add_argument("--reset-lambda", action=argparse.BooleanOptionalAction, default=s,
                      help="FPTT: also zero λ when loading the average (default off)")
    fptt.add_argument("--fused", action=argparse.BooleanOptionalAction, default=s,
                      help="FPTT: regularizer, inner step and post-update as one compiled pass per parameter "
                           "(torch.compile; the first update compiles for a few seconds; default off)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=s, help="inner optimizer (default per task)")
    opt.add_argument("--lr", type=_positive_float, default=s, help="learning rate (default 3e-3)")
    opt.add_argument("--schedule", choices=SCHEDULES, default=s, help="learning-rate schedule (default per task)")
    opt.add_argument("--schedule-unit", choices=SCHEDULE_UNITS, default=s,
                     help="step the schedule after every epoch (default) or every training batch")
    opt.add_argument("--milestones", type=_positive_int, nargs="+", default=s, metavar="EPOCH",
                     help="epochs at which --schedule step multiplies the lr by --gamma")
    opt.add_argument("--gamma", type=_positive_float, default=s, help="step schedule factor (default 0.1)")
    opt.add_argument("--epochs", type=_positive_int, default=s, help="epochs (default 10)")
    opt.add_argument("--batch-size", type=_positive_int, default=s, help="batch size (default 128)")
    opt.add_argument("--clip", type=_positive_float, default=s, help="gradient-norm clipping (default none; 1 on MNIST)")
    opt.add_argument("--on-nonfinite", choices=("stop", "skip"), default=s,
                     help="a NaN/Inf loss or gradient: stop the run naming the batch and time steps (default), "
                          "or skip that update and count it (skipped_updates in metrics.jsonl)")
    opt.add_argument("--seed", type=int, default=s, help="seed of weights, data order and generated data (default 0)")
    opt.add_argument("--device", default=s, help="auto (default), cpu, cuda or cuda:N")
    opt.add_argument("--threads", type=_positive_int, default=s,
                     help="torch intra-op threads (default torch's; 1 is often fastest on a busy CPU)")

    data = parser.add_argument_group("data")
    data.add_argument("--seq-len", type=_positive_int, default=s, help="adding task: sequence length T (default 200)")
    data.add_argument("--downsample", type=int, choices=(14, 28), default=s,
                      help="MNIST tasks: 14 for 14×14 images (196 steps) instead of 784")
    data.add_argument("--train-samples", type=_positive_int, default=s,
                      help="adding task, saccade-mnist: training sequences")
    data.add_argument("--test-samples", type=_positive_int, default=s,
                      help="adding task, saccade-mnist: test (held-out) sequences")
    data.add_argument("--validation-samples", type=int, default=s, metavar="N",
                      help="hold N training samples out (a fixed draw) and evaluate on them after each epoch, "
                           "leaving the test split for one final `fptt eval --split test` (default 0: none)")
    data.add_argument("--frames", type=_positive_int, default=s, help="event tasks: frames per sample (default 20)")
    data.add_argument("--spatial-factor", type=_positive_float, default=s,
                      help="event tasks: frame downsampling in (0, 1] (e.g. 0.25: 128x128 -> 32x32)")
    data.add_argument("--duration-ms", type=_positive_float, default=s,
                      help="saccade-mnist: recording length in ms (default 300)")
    data.add_argument("--data-dir", default=s,
                      help="dataset root (default $FPTT_DATA; MNIST tasks fall back to the bundled MNIST-10k)")
    data.add_argument("--fresh-data", action=argparse.BooleanOptionalAction, default=s,
                      help="adding task: draw every training sequence anew (constant memory)")
    data.add_argument("--max-batches", type=_positive_int, default=s, help="at most N training batches per epoch")
    data.add_argument("--max-eval-batches", type=_positive_int, default=s, help="at most N evaluation batches")
    data.add_argument("--eval-batch-size", type=_positive_int, default=s, help="evaluation batch size")

    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE", help="YAML, TOML or JSON file of settings; explicit flags override it")
    run.add_argument("--run-dir", default=s, help="output folder (default runs/<task>-<method>-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    run.add_argument("--checkpoint-every", type=_positive_int, default=s, metavar="N",
                     help="also write checkpoint_last.pt every N training batches (a killed run loses at most N "
                          "batches; default: at the end of each epoch only)")
    run.add_argument("--eval-every", type=_positive_int, default=s, metavar="N",
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


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="fptt",
        description="Online training of spiking neural networks with Forward Propagation Through Time.",
        epilog="Run `fptt COMMAND --help` for the options of a command; see docs/CLI.md.",
    )
    parser.add_argument("--version", action="version", version=f"fptt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a spiking network", description=(
        "Train a spiking RNN on a task with FPTT, BPTT, truncated BPTT or naive online gradient. "
        "Writes config.json, metrics.jsonl, checkpoint_{last,best}.pt, summary.json and plots/ to the run folder."))
    _add_train_arguments(train)
    _add_common(train)
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser("eval", help="evaluate a saved run or checkpoint",
                                   description="Rebuild a saved model from its config and evaluate it.")
    evaluate.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    evaluate.add_argument("--split", choices=("train", "validation", "test", "heldout"),
                          help="split to evaluate (default the run's evaluation split)")
    evaluate.add_argument("--with", dest="with_", choices=("average", "weights"), default="average",
                          help="FPTT runs: the running average W̄ (default) or the weights W")
    evaluate.add_argument("--which", choices=("last", "best"), default="last", help="checkpoint of a run folder")
    evaluate.add_argument("--max-batches", type=_positive_int, help="at most N batches")
    evaluate.add_argument("--batch-size", type=_positive_int, help="evaluation batch size")
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument("--data-dir", help="dataset root, if it moved since training")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--export", metavar="FILE",
                          help="also save the evaluated weights (W̄ by default) as a plain state_dict to FILE")
    _add_common(evaluate)
    evaluate.set_defaults(handler=_cmd_eval)

    from ..vocabulary import EXPORT_FORMATS, NIR_DISCRETIZATIONS

    export = commands.add_parser("export", help="export a run's model (W̄ by default) to NIR or a state_dict",
                                 description=(
        "Write the model of a saved run in another format: --format nir, a NIR graph (the Neuromorphic "
        "Intermediate Representation, HDF5; LIF and ALIF networks, see docs/INTEROP.md), or --format "
        "state_dict (a plain torch state_dict plus FILE.config.json). FPTT runs export the running average W̄ "
        "unless --with weights."))
    export.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="nir", help="output format (default nir)")
    export.add_argument("--output", "-o", metavar="FILE",
                        help="output file (default RUN_DIR/export/model.nir or model.pt)")
    export.add_argument("--with", dest="with_", choices=("average", "weights"), default="average",
                        help="FPTT runs: the running average W̄ (default) or the weights W")
    export.add_argument("--which", choices=("last", "best"), default="last", help="checkpoint of a run folder")
    export.add_argument("--discretization", choices=NIR_DISCRETIZATIONS, default="zoh",
                        help="nir: write the time constants for exact integration (zoh, default) or for one "
                             "forward-Euler step per dt (euler, what Norse's NIR import runs)")
    _add_common(export)
    export.set_defaults(handler=_cmd_export)

    compare = commands.add_parser("compare", help="several runs side by side: a table and their learning curves",
                                  description=(
        "Print a table of several run folders (task, neuron, method, k, epochs, final and best score, training "
        "time, memory) and plot their learning curves in one figure (curve.jsonl points when every run has them, "
        "else the per-epoch metrics)."))
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--plot", metavar="FILE", default="compare.png",
                         help="the figure's file (default compare.png in the current folder)")
    compare.add_argument("--no-plot", action="store_true", help="print the table only")
    compare.add_argument("--json", action="store_true", help="print the table's rows as JSON")
    compare.set_defaults(handler=_cmd_compare, quiet=False, debug=False)

    bench = commands.add_parser("bench", help="memory, speed and peer benchmarks", description=(
        "Run a benchmark of fptt.bench; the arguments after the benchmark's name are its own "
        "(`fptt bench memory --help`)."))
    bench.add_argument("benchmark", choices=("memory", "speed", "peers"))
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    bench.set_defaults(handler=_cmd_bench, quiet=False, debug=False)

    stream = commands.add_parser("stream", help="online FPTT on an endless, drifting MNIST-10k pixel stream",
                                 description=(
        "Stream MNIST-10k digits pixel after pixel with no sequence boundaries through an LTC network "
        "trained online by FPTT (an update every --k steps); the pixel permutation changes at --drift-at. "
        "Writes the online accuracy and process memory over time (stream.json, stream.png)."))
    from .stream import add_arguments as add_stream_arguments

    add_stream_arguments(stream)
    stream.set_defaults(handler=_cmd_stream, debug=False)

    demo = commands.add_parser("demo", help="FPTT vs BPTT side by side in a few minutes (adding task or MNIST-10k)",
                               description=(
        "Train the same LTC spiking network (same initial weights) with FPTT and with BPTT, then print "
        "accuracy, memory and time side by side and plot the learning curves. Default: the adding task at "
        "T = 200; --task smnist: the bundled MNIST-10k at 196 steps."))
    from .demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo, _positive_int, _positive_float)
    _add_common(demo)
    demo.set_defaults(handler=_cmd_demo)
    return parser


# ---------------------------------------------------------------------------------- commands
def _log_function(quiet: bool):
    if quiet:
        return None
    return lambda message: print(message, flush=True)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..run.config import TrainConfig, default_run_dir, load_config_file, resolve_config, save_config

    flags = {key: value for key, value in vars(args).items() if key not in _NOT_CONFIG}
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.json"
        if not saved.is_file():
            raise UsageError(f"cannot resume: {saved} not found (is {run_dir} a run folder of `fptt train`?)")
        if args.config:
            raise UsageError("--resume takes the run's saved config; do not pass --config with it")
        changed = sorted(key for key in flags if key not in _RESUMABLE and key != "run_dir")
        if changed:
            raise UsageError(f"--resume continues the saved run exactly; these flags cannot change: "
                             f"{', '.join('--' + key.replace('_', '-') for key in changed)}")
        values = json.loads(saved.read_text())
        values.update({key: value for key, value in flags.items() if key != "run_dir"})
        config = TrainConfig.from_dict(values, where=str(saved))
    else:
        file_values = load_config_file(args.config) if args.config else {}
        config = resolve_config(file_values, flags)
        # config.json first, before torch is even imported: a run killed at any later moment can be
        # resumed (from its last checkpoint, or from the beginning if it has none)
        run_dir = Path(config.run_dir or default_run_dir(config))
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 writes the run's files
            save_config(config, run_dir)
    from ..run.trainer import Trainer

    log = _log_function(args.quiet)
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


def _cmd_eval(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from ..run.build import build_dataset, default_eval_split, load_model
    from ..training.engine import evaluate
    from ..run.trainer import evaluation_rng

    try:
        config, model, payload, used = load_model(args.path, device=args.device, which=args.which,
                                                  weights=args.with_)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    if args.with_ == "average" and used != "average" and not args.quiet:
        print(f"note: a {config.method} run has no running average; evaluating the weights", file=sys.stderr)
    if args.export:
        _export(model, config, payload, used, Path(args.export))
        if not args.quiet:
            print(f"exported the {'averaged weights W̄' if used == 'average' else 'weights W'} to {args.export} "
                  f"(a plain state_dict; config in {args.export}.config.json)", file=sys.stderr)
    if args.data_dir:
        config.data_dir = args.data_dir
    split = args.split or default_eval_split(config)
    dataset = build_dataset(config, split)
    size = args.batch_size or config.eval_batch_size or max(config.batch_size, 256)
    loader = DataLoader(dataset, batch_size=size, shuffle=False)
    device = next(model.parameters()).device
    with evaluation_rng(config.seed, device):
        metrics = evaluate(model, loader, max_batches=args.max_batches,
                           progress=(not args.quiet) and sys.stderr.isatty())
    result = {"checkpoint_epoch": payload["epoch"], "split": split, "with": used, **metrics.to_dict()}
    result.pop("extra", None)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{config.task} {config.method} (epoch {payload['epoch']}, {result['with']}) on {split}: "
              f"loss {metrics.loss:.4f}  {metrics.samples} samples  {metrics.seconds:.1f}s")
        # the score alone on the last line, for scripts: `fptt eval RUN | tail -1`
        print(f"accuracy {metrics.accuracy:.6f}" if metrics.accuracy is not None else f"mse {metrics.mse:.6f}")
    return 0


def _export(model, config, payload: dict, used: str, path: Path) -> None:
    """Write ``model``'s weights as a plain state_dict to ``path`` and what rebuilds the model
    (config and shape) to ``path.config.json``: ``build_model(TrainConfig.from_dict(c["config"]),
    c["input_size"], c["output_size"]).load_state_dict(torch.load(path))``."""
    import torch

    from ..run.checkpoint import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    shape = payload.get("model_shape") or {}
    write_text_atomic(Path(f"{path}.config.json"), json.dumps(
        {"config": config.to_dict(), "weights": used, **shape}, indent=2) + "\n")


def _cmd_export(args: argparse.Namespace) -> int:
    from ..run.build import load_model

    try:
        config, model, payload, used = load_model(args.path, device="cpu", which=args.which, weights=args.with_)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    source = Path(args.path)
    folder = source if source.is_dir() else source.parent
    output = Path(args.output) if args.output else folder / "export" / ("model.nir" if args.format == "nir" else "model.pt")
    if args.format == "nir":
        from ..interop.nir import NIRExportError, write_nir

        try:
            write_nir(model, output, args.discretization)
        except NIRExportError as error:
            raise UsageError(f"cannot export {config.model} network to NIR: {error}") from None
        except ImportError as error:
            raise UsageError(str(error)) from None
    else:
        _export(model, config, payload, used, output)
    if not args.quiet:
        what = "averaged weights W̄" if used == "average" else "weights W"
        print(f"exported the {what} of {args.path} (epoch {payload['epoch']}) as {args.format} to {output}",
              file=sys.stderr)
    print(output)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from ..run.compare import comparison_rows, format_table, load_run_record, plot_comparison

    try:
        records = [load_run_record(run) for run in args.runs]
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    rows = comparison_rows(records)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    if not args.no_plot:
        try:
            path = plot_comparison(records, args.plot)
        except ImportError as error:
            raise UsageError(f"plotting needs matplotlib ({error}); pip install 'fptt[plot]', or pass --no-plot") from None
        except ValueError as error:
            raise UsageError(str(error)) from None
        print(f"learning curves: {path}", file=sys.stderr)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    name = f"fptt.bench.{args.benchmark}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (error.name == name or name.startswith(error.name)):
            raise UsageError(f"the {args.benchmark} benchmark is not available in this installation "
                             f"(module {name} not found)") from None
        raise
    entry = getattr(module, "main", None)
    if entry is None:
        raise UsageError(f"{name} has no main(argv) entry point")
    result = entry(list(args.args))
    return result if isinstance(result, int) else 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from .stream import run_from_args

    try:
        run_from_args(args)
    except ValueError as error:  # e.g. fewer steps than one digit
        raise UsageError(str(error)) from None
    return 0


# Demo budgets: LTC network on MNIST-10k at 196 steps (14×14), FPTT (k = 1) vs BPTT, both
# trained in parallel child processes with one thread each (on a busy 2-core machine two torch
# threads per process are several times slower than one). Chosen by measurement, see docs/CLI.md.
def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


# ---------------------------------------------------------------------------------- entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``fptt`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if debug:
        return args.handler(args)
    from ..run.config import ConfigError

    from ..run.checkpoint import CheckpointError

    actionable: tuple[type[BaseException], ...] = (UsageError, ConfigError, CheckpointError)
    try:
        from ..data import DatasetNotFoundError

        actionable += (DatasetNotFoundError,)
    except ImportError:  # pragma: no cover
        pass
    try:
        return args.handler(args)
    except actionable as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"fptt {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"fptt {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # anything else: one line, the traceback with --debug
        print(f"fptt {args.command}: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1

