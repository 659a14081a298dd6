"""``fptt demo``: the same spiking network trained with FPTT and with BPTT, side by side.

Two demos, each a pair of ``fptt train`` runs started in parallel (one thread each, same seed,
hence the same initial weights), followed by a table of accuracy, memory and time:

* ``--task add`` (default): the adding task at T = 200 with the authors' adding-task regime
  (`fptt/run/regimes/tasks.json`, add): a fresh batch per iteration, the validation MSE of the
  current weights every 25 iterations (sequences held out of the training stream). FPTT updates at
  every time step (k = 1, the paper's online setting) and keeps one step of activations per update;
  BPTT updates once per sequence and keeps all T steps. The table says when each first remembered
  both numbers (MSE < 0.05), and the test MSE, read once at the end.
* ``--task smnist``: MNIST-10k (bundled) read pixel by pixel at 196 steps, validation accuracy per
  round (1,000 training digits held out) and the held-out accuracy, read once at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..run.config import OptimSettings
from ..run.records import CURVE, METRICS, SUMMARY
from .argtypes import positive_float, positive_int
from .common import add_common

__all__ = ["DEMOS", "QUICK", "add_arguments", "run_demo", "register"]

METHODS = ("fptt", "bptt")
VALIDATION_DIGITS = 1000  # smnist: training digits held out to score each round on
LEARNED = 0.05  # adding task: an MSE below this means both numbers are remembered (chance 1/6)

DEMOS: dict[str, dict[str, Any]] = {
    # 300 iterations of 128 fresh sequences at T = 200 (under 3 minutes on 2 cores)
    "add": {"seq_len": 200, "iterations": 300, "eval_every": 25, "hidden": 128, "batch_size": 128,
            "test_samples": 512},
    "smnist": {"rounds": 5, "batches": 50, "hidden": 128, "batch_size": 64, "eval_batches": 4,
               "eval_batch_size": 500, "lr": OptimSettings.lr, "norm": "layer", "readout_from": "spikes",
               "optimizer": "adamax"},
}
QUICK: dict[str, dict[str, Any]] = {
    "add": {"seq_len": 20, "iterations": 4, "eval_every": 2, "hidden": 16, "batch_size": 16, "test_samples": 32},
    "smnist": {"rounds": 1, "batches": 1, "hidden": 16, "batch_size": 16, "eval_batches": 1, "eval_batch_size": 32},
}
_OVERRIDABLE = ("seq_len", "iterations", "rounds", "batches", "hidden", "batch_size", "lr", "norm", "readout_from",
                "optimizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fptt demo``."""
    parser.add_argument("--task", choices=tuple(DEMOS), default="add",
                        help="add (default: the adding task, T = 200) or smnist (MNIST-10k, 196 steps)")
    parser.add_argument("--quick", action="store_true", help="a tiny budget (seconds): checks that everything runs")
    parser.add_argument("--run-dir", help="output folder (default runs/demo-<task>-<timestamp>)")
    parser.add_argument("--seq-len", type=positive_int, help=f"add: sequence length T (default {DEMOS['add']['seq_len']})")
    parser.add_argument("--iterations", type=positive_int,
                        help=f"add: training iterations (default {DEMOS['add']['iterations']})")
    parser.add_argument("--rounds", type=positive_int, help="smnist: evaluation rounds (each = --batches batches)")
    parser.add_argument("--batches", type=positive_int, help="smnist: training batches per round")
    parser.add_argument("--hidden", type=positive_int, help="LTC neurons")
    parser.add_argument("--batch-size", type=positive_int, help="batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed (same initial weights for both methods)")
    parser.add_argument("--lr", type=positive_float, help="smnist: learning rate")
    parser.add_argument("--optimizer", choices=("adam", "adamax", "sgd"), help="smnist: inner optimizer")
    parser.add_argument("--norm", choices=("none", "layer"), help="smnist: normalisation of the input currents")
    parser.add_argument("--readout-from", choices=("spikes", "membrane"), help="smnist: readout input")


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(DEMOS[args.task])
    if args.quick:
        settings.update(QUICK[args.task])
    for key in _OVERRIDABLE:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    return settings


def train_command(task: str, method: str, settings: dict[str, Any], run_dir: Path, seed: int) -> list[str]:
    """The ``fptt train`` command line of one side of the demo."""
    common = ["--method", method, "--hidden", str(settings["hidden"]), "--batch-size", str(settings["batch_size"]),
              "--seed", str(seed), "--threads", "1", "--measure-memory", "--run-dir", str(run_dir / method),
              "--no-plots", "--quiet"]
    if task == "add":
        iterations = settings["iterations"]
        # FPTT with an update at every time step (k = 1), the paper's online setting; BPTT one per sequence
        window = ["--k", "1"] if method == "fptt" else []
        held_out = settings["test_samples"]  # the validation sequences, as many as the test's, out of the stream
        return [sys.executable, "-m", "fptt.cli", "train", "--task", "add", "--seq-len", str(settings["seq_len"]), *window,
                "--epochs", "1", "--fresh-data", "--train-samples", str(iterations * settings["batch_size"] + held_out),
                "--validation-samples", str(held_out),
                "--max-batches", str(iterations), "--eval-every", str(settings["eval_every"]),
                "--test-samples", str(settings["test_samples"]), "--schedule", "none", *common]
    return [sys.executable, "-m", "fptt.cli", "train", "--task", "smnist", "--downsample", "14", "--neuron", "ltc",
            "--epochs", str(settings["rounds"]), "--max-batches", str(settings["batches"]),
            "--optimizer", settings["optimizer"], "--lr", str(settings["lr"]), "--norm", settings["norm"],
            "--readout-from", settings["readout_from"], "--clip", "1", "--schedule", "none",
            "--validation-samples", str(VALIDATION_DIGITS), "--eval-batch-size", str(settings["eval_batch_size"]),
            "--max-eval-batches", str(settings["eval_batches"]),
            *common]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` written so far (a line being written is left out)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _progress_line(task: str, method: str, row: dict[str, Any], settings: dict[str, Any]) -> str:
    if task == "add":
        return (f"  {method.upper():4s} iteration {row['batch']:4d}/{settings['iterations']}: validation MSE "
                f"{row['weights']:.4f}  ({row['train_seconds']:.0f}s)")
    return (f"  {method.upper():4s} round {row['epoch']}/{settings['rounds']}: validation accuracy "
            f"{row['eval']['accuracy']:.3f}, train loss {row['train']['loss']:.3f}, {row['train']['seconds']:.0f}s")


def table(task: str, summaries: dict[str, dict], rows: dict[str, list]) -> str:
    """The side-by-side Markdown table of the demo."""
    score = ("validation MSE (best / last; chance 0.167) | test MSE (read once)" if task == "add"
             else "validation accuracy (best / last) | held-out accuracy (read once)")
    reached = f"first below MSE {LEARNED}: iteration (train s) | " if task == "add" else ""
    lines = [f"| method | {score} | {reached}saved activations per update (MiB) | peak process RSS (MiB) | updates | "
             "train time (s) |", "| --- | --- | --- | " + ("--- | " if reached else "") + "--- | --- | --- | --- |"]
    for method, summary in summaries.items():
        if task == "add":
            values = [row["weights"] for row in rows[method]]
            best, updates = min(values), summary["last"]["train"]["updates"]
            first = next((row for row in rows[method] if row["weights"] <= LEARNED), None)
            crossing = "not reached | " if first is None else f"{first['batch']} ({first['train_seconds']:.0f} s) | "
        else:
            crossing = ""
            values = [row["eval"]["accuracy"] for row in rows[method]]
            best, updates = max(values), sum(row["train"]["updates"] for row in rows[method])
        saved = summary.get("saved_tensor_peak_bytes") or 0
        test = summary["test"]["mse" if task == "add" else "accuracy"]
        lines.append(f"| {method.upper()} | {best:.4f} / {values[-1]:.4f} | {test:.4f} | {crossing}{saved / 2**20:.2f} | "
                     f"{summary['peak_rss_mb']:.0f} | {updates} | {summary['train_seconds']:.0f} |")
    return "\n".join(lines)


def _describe(task: str, settings: dict[str, Any], run_dir: Path) -> list[str]:
    if task == "add":
        return [f"fptt demo: the adding task at T = {settings['seq_len']} (remember two marked numbers among "
                f"{settings['seq_len']} and output their sum), LTC SNN of {settings['hidden']} neurons in the "
                "authors' adding-task regime",
                f"  FPTT (an update at every time step, the state detached in between) and BPTT (1 update per "
                f"sequence, the whole sequence kept), same initial weights, {settings['iterations']} iterations of "
                f"{settings['batch_size']} fresh sequences, validation MSE every {settings['eval_every']} on "
                f"{settings['test_samples']} held-out sequences, test MSE once at the end; run dir {run_dir}"]
    heldout = settings["eval_batches"] * settings["eval_batch_size"]
    return [f"fptt demo: LTC SNN ({settings['hidden']} neurons, {settings['norm']} norm) on MNIST-10k "
            "(bundled MNIST test split: 8,000 train / 2,000 held out), 196 steps per digit (14×14, pixel by pixel)",
            f"  FPTT (k=1: 196 updates per batch) and BPTT (1 update per batch), same initial weights, "
            f"{settings['rounds']} rounds × {settings['batches']} batches of {settings['batch_size']}, "
            f"validation accuracy on {VALIDATION_DIGITS:,} training digits held out, after each round; held-out "
            f"accuracy on {min(heldout, 2000)} digits once at the end; run dir {run_dir}"]


def run_demo(args: argparse.Namespace) -> int:
    """Run both trainings, stream their progress, print and save the table and the curves."""
    task = args.task
    settings = settings_from(args)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir or Path("runs") / f"demo-{task}-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))
    for line in _describe(task, settings, run_dir):
        say(line)
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    source = str(Path(__file__).resolve().parents[2])  # the folder that holds the fptt package
    environment["PYTHONPATH"] = source + (os.pathsep + environment["PYTHONPATH"] if environment.get("PYTHONPATH") else "")
    rows_file = CURVE if task == "add" else METRICS
    started = time.perf_counter()
    children = {method: subprocess.Popen(train_command(task, method, settings, run_dir, args.seed), env=environment,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for method in METHODS}
    seen = {method: 0 for method in METHODS}
    try:
        while True:
            running = [method for method, child in children.items() if child.poll() is None]
            for method in METHODS:
                rows = read_rows(run_dir / method / rows_file)
                for row in rows[seen[method]:]:
                    say(_progress_line(task, method, row, settings))
                seen[method] = len(rows)
            if not running:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        for child in children.values():
            child.terminate()
        raise
    wall = time.perf_counter() - started
    failed = {method: child for method, child in children.items() if child.returncode != 0}
    for method, child in failed.items():
        output = (child.stdout.read() if child.stdout else "").strip().splitlines()
        print(f"fptt demo: {method} training failed (exit {child.returncode}): "
              f"{output[-1] if output else 'no output'}", file=sys.stderr)
    if failed:
        return 1
    summaries = {method: json.loads((run_dir / method / SUMMARY).read_text()) for method in METHODS}
    histories = {method: read_rows(run_dir / method / rows_file) for method in METHODS}
    text = table(task, summaries, histories)
    result = {"task": task, "settings": settings, "seed": args.seed, "wall_seconds": wall, "summaries": summaries,
              "table": text}
    (run_dir / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    (run_dir / "demo.md").write_text(text + "\n")
    say("")
    say(text)
    _plot(task, histories, settings, run_dir, say)
    say(f"demo wall time {wall:.0f}s (both methods trained in parallel, one thread each)")
    return 0


def _plot(task: str, histories: dict[str, list], settings: dict[str, Any], run_dir: Path,
          say: Callable[[str], None]) -> None:
    try:
        from ..run import plots

        if task == "add":
            figure, (axis,) = plots.new_figure()
            plots.plot_curves(axis, {method.upper(): [(row["batch"], row["weights"]) for row in rows]
                                     for method, rows in histories.items()},
                              title=f"adding task, T = {settings['seq_len']}, LTC {settings['hidden']}: FPTT vs BPTT",
                              x_label=f"iteration ({settings['batch_size']} fresh sequences each)",
                              y_label="validation MSE", chance=1 / 6)
            png = plots.save_figure(figure, run_dir / "learning_curves.png")
        else:
            png = plots.plot_learning_curves({method.upper(): rows for method, rows in histories.items()},
                                             run_dir / "learning_curves.png",
                                             title=f"MNIST-10k, 196 steps, LTC {settings['hidden']}: FPTT vs BPTT",
                                             x_label=f"round ({settings['batches']} batches of {settings['batch_size']})")
    except ImportError:
        say("learning curves skipped: matplotlib is not installed (pip install 'fptt[plot]')")
        return
    say(f"learning curves: {png}")


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="FPTT vs BPTT side by side in a few minutes (adding task or MNIST-10k)",
                               description=(
        "Train the same LTC spiking network (same initial weights) with FPTT and with BPTT, then print "
        "accuracy, memory and time side by side and plot the learning curves. Default: the adding task at "
        "T = 200; --task smnist: the bundled MNIST-10k at 196 steps."))
    add_arguments(demo)
    add_common(demo)
    demo.set_defaults(handler=run_demo)
