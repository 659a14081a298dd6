"""e-prop and OSTL side by side with FPTT, BPTT and naive online gradient (docs/RESULTS.md).

    python experiments/online_baselines.py run [--only NAME ...]   # train, one run at a time (skips finished)
    python experiments/online_baselines.py report                  # table (JSON + Markdown) from the results

Every run is one command of the CLI (saved next to its results as ``command.txt`` with the git
commit), on equal data and budget per task: the same number of training sequences, batch, hidden
size and evaluation set for every method. The ALIF network (one recurrent layer of 64 ALIF
neurons, fixed leaky readout of the spikes, no normalisation) is trained by e-prop, OSTL, FPTT,
BPTT and naive online gradient; the LTC network of ``--preset paper`` (resized to 64 neurons and
batch 64) by FPTT. Each configuration also gets two short runs: ``_mem`` (3 batches with
``--measure-memory``: autograd's saved tensors per update, plus the eligibility traces' bytes) and
``_time`` (10 batches, no evaluation inside the epoch, no memory hooks: time per update and per
sequence on the adding task, whose long runs' clocks include their learning-curve evaluations).
On S-MNIST and MNIST-1D the time is the long runs' own training clock (median over seeds).

Scaled down for a shared 2-core CPU (one thread, one run at a time): adding task T = 200 with 400
iterations of 64 fresh sequences (T = 1000: 100), S-MNIST-196 for one epoch of MNIST-10k (8,000
train, 2,000 held out), MNIST-1D for 5 epochs (4,000 train, 1,000 test).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results" / "online_baselines"
RUNS = ROOT / "runs" / "online_baselines"
FPTT = str(Path(sys.executable).with_name("fptt"))

COMMON = ["--hidden", "64", "--batch-size", "64", "--threads", "1", "--quiet", "--no-plots"]
ALIF = ["--model", "alif", "--readout", "fixed", "--readout-from", "spikes", "--threshold", "0.1",
        "--adaptation", "1.8", "--norm", "none"]
# the adding task's defaults are the LTC regime: undo its LTC-only settings for the ALIF network
ALIF_ADD = ALIF + ["--no-fixed-threshold", "--initial-state", "zero", "--synapse-init", "xavier", "--chrono-tau", "none"]
LTC_MNIST1D = ["--model", "ltc", "--norm", "layer", "--norm-scale", "0.1", "--gate-slopes", "--readout", "liquid"]

TASKS: dict[str, dict[str, Any]] = {
    "add200": {"flags": ["--task", "add", "--seq-len", "200", "--max-batches", "400", "--eval-every", "50"],
               "alif": ALIF_ADD, "ltc": ["--preset", "paper", "--eval-every", "50"], "metric": "mse"},
    "add1000": {"flags": ["--task", "add", "--seq-len", "1000", "--max-batches", "100", "--eval-every", "25"],
                "alif": ALIF_ADD, "ltc": ["--preset", "paper", "--eval-every", "25"], "metric": "mse"},
    "smnist196": {"flags": ["--task", "smnist", "--downsample", "14", "--epochs", "1"],
                  "alif": ALIF, "ltc": ["--preset", "paper"], "metric": "accuracy"},
    # the same S-MNIST-196 runs for five epochs (time and memory per update: smnist196's)
    "smnist196x5": {"flags": ["--task", "smnist", "--downsample", "14", "--epochs", "5"],
                    "alif": ALIF, "ltc": ["--preset", "paper"], "metric": "accuracy", "measured_by": "smnist196"},
    "mnist1d": {"flags": ["--task", "mnist1d", "--epochs", "5", "--clip", "1"],
                "alif": ALIF, "ltc": LTC_MNIST1D, "metric": "accuracy"},
}
# (network, method): the methods of the comparison
ENTRIES = [("alif", "eprop"), ("alif", "ostl"), ("ltc", "fptt"), ("alif", "fptt"), ("alif", "bptt"), ("alif", "online")]
# order of the queue: one seed of every task first, then more seeds where time allows
# (the ALIF network stayed at chance on the adding task with every method at seed 0, so its other
# seeds come last)
PLAN: list[tuple[str, int]] = [("add200", 0), ("smnist196", 0), ("mnist1d", 0), ("mnist1d", 1), ("mnist1d", 2),
                               ("smnist196", 1), ("smnist196", 2), ("smnist196x5", 0), ("add1000", 0),
                               ("add200", 1), ("add200", 2)]


def run_name(task: str, network: str, method: str, seed: int, kind: str = "") -> str:
    return f"{task}_{network}_{method}_s{seed}" + (f"_{kind}" if kind else "")


def command(task: str, network: str, method: str, seed: int, kind: str = "") -> list[str]:
    spec = TASKS[task]
    flags = spec["flags"] + spec[network] + ["--method", method, "--seed", str(seed)] + COMMON
    if kind:  # a short run: memory (saved tensors per update) or time per update
        extra = ["--max-batches", "3", "--measure-memory"] if kind == "mem" else ["--max-batches", "10"]
        flags = flags + extra + ["--epochs", "1", "--max-eval-batches", "1"]
        if "--eval-every" in flags:
            index = flags.index("--eval-every")
            del flags[index:index + 2]
    return [FPTT, "train", *flags, "--run-dir", str(RUNS / run_name(task, network, method, seed, kind))]


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def run_one(task: str, network: str, method: str, seed: int, kind: str = "") -> str:
    name = run_name(task, network, method, seed, kind)
    target = RESULTS / name
    if (target / "summary.json").exists():
        return f"{name}: done before"
    args = command(task, network, method, seed, kind)
    run_dir = RUNS / name
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.time()
    process = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                             env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    target.mkdir(parents=True, exist_ok=True)
    (target / "command.txt").write_text(" ".join(["fptt", *args[1:]]) + f"\n# git commit {git_commit()}\n"
                                        f"# exit status {process.returncode}, {time.time() - started:.0f} s\n")
    if process.returncode != 0:
        (target / "error.txt").write_text(process.stdout[-4000:] + process.stderr[-4000:])
        return f"{name}: FAILED ({process.stderr.strip().splitlines()[-1] if process.stderr.strip() else '?'})"
    for file in ("config.json", "summary.json", "curve.jsonl", "metrics.jsonl"):
        if (run_dir / file).exists():
            shutil.copy(run_dir / file, target / file)
    return f"{name}: {time.time() - started:.0f} s"


def run(only: Optional[list[str]]) -> None:
    # the short measurement runs of every task first (they also check every configuration), then
    # the long runs in PLAN order
    jobs = [(task, seed, kind) for task, seed in PLAN if seed == 0 and "measured_by" not in TASKS[task]
            for kind in ("mem", "time")]
    jobs += [(task, seed, "") for task, seed in PLAN]
    for task, seed, kind in jobs:
        for network, method in ENTRIES:
            name = run_name(task, network, method, seed, kind)
            if only and not any(part in name for part in only):
                continue
            print(run_one(task, network, method, seed, kind), flush=True)


def _load(name: str) -> Optional[dict]:
    path = RESULTS / name / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def report() -> None:
    rows = []
    for task, spec in TASKS.items():
        for network, method in ENTRIES:
            seeds = sorted({seed for t, seed in PLAN if t == task})
            finals, best, clocks = [], [], []
            for seed in seeds:
                summary = _load(run_name(task, network, method, seed))
                if summary is None or summary.get("last") is None:
                    continue
                evaluation = summary["last"]["eval"]
                finals.append(evaluation[spec["metric"]])
                sign = 1 if spec["metric"] == "accuracy" else -1
                curve = RESULTS / run_name(task, network, method, seed) / "curve.jsonl"
                points = [json.loads(line)["weights"] for line in curve.read_text().splitlines()] if curve.exists() else []
                # the best held-out score on the learning curve (W), else the best epoch's
                best.append((max(points) if sign > 0 else min(points)) if points else sign * summary["best_score"])
                rows_of_run = [json.loads(line)["train"] for line in
                               (RESULTS / run_name(task, network, method, seed) / "metrics.jsonl").read_text().splitlines()]
                clocks.append((sum(r["seconds"] for r in rows_of_run), sum(r["updates"] for r in rows_of_run),
                               sum(r["samples"] for r in rows_of_run)))
            if not finals:
                continue
            measured = spec.get("measured_by", task)
            timing = _load(run_name(measured, network, method, 0, "time"))
            per_update = per_sequence = None
            evaluates_inside = "--eval-every" in spec["flags"] + spec[network]
            if not evaluates_inside:  # the long runs' own clock (median over seeds)
                per_update = statistics.median(1000 * sec / max(upd, 1) for sec, upd, _ in clocks)
                per_sequence = statistics.median(1000 * sec / max(n, 1) for sec, _, n in clocks)
            elif timing is not None and timing.get("last") is not None:  # the short run without evaluations
                train = timing["last"]["train"]
                per_update = 1000 * train["seconds"] / max(train["updates"], 1)
                per_sequence = 1000 * train["seconds"] / max(train["samples"], 1)
            memory = _load(run_name(measured, network, method, 0, "mem")) or {}
            saved = memory.get("saved_tensor_peak_bytes")
            traces = memory.get("trace_bytes") or 0
            rows.append({
                "task": task, "network": network, "method": method, "seeds": len(finals), "metric": spec["metric"],
                "final": statistics.mean(finals), "final_std": statistics.stdev(finals) if len(finals) > 1 else None,
                "finals": finals, "best_of_curve": statistics.mean(best),
                "ms_per_update": per_update, "ms_per_sequence": per_sequence,
                "saved_tensor_mib_per_update": None if saved is None else saved / 2 ** 20,
                "trace_mib": traces / 2 ** 20,
                "memory_mib_per_update": None if saved is None else (saved + traces) / 2 ** 20,
            })
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "table.json").write_text(json.dumps({"git_commit": git_commit(), "rows": rows}, indent=2) + "\n")
    lines = ["| task | network | method | seeds | final (held-out) | best on curve | ms / update | ms / sequence "
             "| memory / update (MiB) | of which traces |", "|" + "---|" * 10]
    for row in rows:
        fmt = (lambda v: f"{100 * v:.1f} %") if row["metric"] == "accuracy" else (lambda v: f"{v:.4f}")
        final = fmt(row["final"]) + (f" ± {fmt(row['final_std'])}" if row["final_std"] is not None else "")
        memory = "–" if row["memory_mib_per_update"] is None else f"{row['memory_mib_per_update']:.2f}"
        update = "–" if row["ms_per_update"] is None else f"{row['ms_per_update']:.1f}"
        sequence = "–" if row["ms_per_sequence"] is None else f"{row['ms_per_sequence']:.2f}"
        lines.append(f"| {row['task']} | {row['network']} | {row['method']} | {row['seeds']} | {final} | "
                     f"{fmt(row['best_of_curve'])} | {update} | {sequence} | "
                     f"{memory} | {row['trace_mib']:.2f} |")
    (RESULTS / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot_curves()


def plot_curves() -> None:
    """Held-out MSE against training iterations on the adding task (seed 0; FPTT: the weights W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [task for task in ("add200", "add1000") if (RESULTS / run_name(task, "alif", "eprop", 0)).exists()]
    if not tasks:
        return
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for network, method in ENTRIES:
            path = RESULTS / run_name(task, network, method, 0) / "curve.jsonl"
            if not path.exists():
                continue
            points = [json.loads(line) for line in path.read_text().splitlines()]
            axis.plot([p["batch"] for p in points], [p["weights"] for p in points], marker="o", markersize=3,
                      label=f"{method} ({network.upper()})")
        axis.axhline(0.167, color="grey", linestyle=":", label="chance (predict 1)")
        axis.set_yscale("log")
        axis.set_xlabel("iteration (batch of 64 fresh sequences)")
        axis.set_ylabel("held-out MSE (512 sequences)")
        axis.set_title(f"adding task T = {task[3:]}, seed 0")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "adding_curves.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--only", nargs="+", help="run only the names that contain one of these strings")
    args = parser.parse_args()
    if args.action == "run":
        run(args.only)
    else:
        report()


if __name__ == "__main__":
    main()
