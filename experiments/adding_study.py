"""The adding-task study of docs/RESULTS.md: FPTT (``--preset paper``) vs BPTT, truncated BPTT and
naive online gradient, side by side with the authors' learning-speed figures (SPEC §4).

    python experiments/adding_study.py run [--jobs 2] [--only NAME ...]   # train (skips finished runs)
    python experiments/adding_study.py report                          # table + plot from the results

Every run is one command of the CLI (printed and saved next to its results):

    fptt train --task add --seq-len T --preset paper --method M --max-batches N --seed S

The preset gives each iteration a batch of 128 fresh sequences and evaluates the current weights W
and the running average W̄ on a fixed held-out set of 512 every 25 iterations (``curve.jsonl``),
stopping at MSE ≤ 0.001. Results (config, curve, summary, command) are copied to
``experiments/results/adding/<name>/``; checkpoints stay in ``runs/`` (not committed).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results" / "adding"
RUNS = ROOT / "runs" / "adding"
FPTT = str(Path(sys.executable).with_name("fptt"))

# (T, method, seed, max_batches, variant): the budget is 2,000 iterations (or MSE <= 0.001);
# on our 2 cores (1.4 s per iteration at T = 1000) the runs get 300-1,000: compare methods at equal
# iterations on the curves. The preset decays the lr to 0 over each run's own iteration count.
# Variant "refinit": the reference's zero gate biases (--chrono-tau none) instead of the chrono init.
VARIANTS = {"": [], "refinit": ["--chrono-tau", "none"]}
PLAN: list[tuple[int, str, int, int, str]] = [
    (1000, "fptt", 0, 1000, ""), (1000, "bptt", 0, 1000, ""),
    (200, "fptt", 0, 600, ""), (200, "bptt", 0, 600, ""),
    (1000, "fptt", 0, 300, "refinit"), (1000, "bptt", 0, 300, "refinit"),
    (200, "tbptt", 0, 600, ""), (200, "online", 0, 300, ""), (200, "fptt", 1, 600, ""), (200, "fptt", 2, 600, ""),
    (1000, "fptt", 1, 600, ""), (1000, "tbptt", 0, 600, ""),
]

# the authors' training logs (SPEC §4): first iteration below each MSE level
AUTHORS = {
    200: {"fptt": {0.1: 150, 0.05: 162, 0.01: 334}, "bptt": {0.05: 2035}},
    500: {"fptt": {0.05: 95, 0.01: 257}},
    1000: {"fptt": {0.05: 35, 0.01: 77}},
}
LEVELS = (0.1, 0.05, 0.01, 0.004, 0.001)


def run_name(seq_len: int, method: str, seed: int, variant: str = "") -> str:
    return f"T{seq_len}_{method}{'_' + variant if variant else ''}_s{seed}"


def command(seq_len: int, method: str, seed: int, max_batches: int, variant: str = "") -> list[str]:
    return [FPTT, "train", "--task", "add", "--seq-len", str(seq_len), "--preset", "paper", "--method", method,
            "--max-batches", str(max_batches), "--seed", str(seed), *VARIANTS[variant], "--threads", "1",
            "--no-plots", "--quiet", "--run-dir", str(RUNS / run_name(seq_len, method, seed, variant))]


def run_one(job: tuple[int, str, int, int, str]) -> str:
    name = run_name(job[0], job[1], job[2], job[4])
    out = RESULTS / name
    if (out / "summary.json").is_file():
        return f"skip {name} (done)"
    run_dir = RUNS / name
    argv = command(*job)
    started = time.perf_counter()
    if not (run_dir / "summary.json").is_file():  # else: finished by an earlier runner, only collect it
        if run_dir.exists():
            shutil.rmtree(run_dir)
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            return f"FAILED {name}: {result.stderr.strip().splitlines()[-1:]}"
    out.mkdir(parents=True, exist_ok=True)
    for file in ("config.json", "curve.jsonl", "metrics.jsonl", "summary.json"):
        shutil.copy2(run_dir / file, out / file)
    shown = ["fptt"] + argv[1:argv.index("--threads")]
    summary = json.loads((run_dir / "summary.json").read_text())
    (out / "command.txt").write_text(" ".join(shown) + f"\n# wall {summary['wall_seconds']:.0f} s, 1 thread per "
                                     "run, 2-4 runs at a time on 2 cores (times are comparable only loosely)\n")
    return f"done {name} in {time.perf_counter() - started:.0f} s"


def load(name: str, results: Path = RESULTS) -> tuple[list[dict], dict]:
    folder = results / name
    curve = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
    return curve, json.loads((folder / "summary.json").read_text())


def first_below(curve: list[dict], level: float, key: str) -> int | None:
    for point in curve:
        value = point.get(key)
        if value is not None and value <= level:
            return int(point["batch"])
    return None


def legend_label(run: str) -> str:
    """A reader's name for a run ("fptt_refinit_s0" -> "FPTT (10 windows, reference init, seed 0)"); the first word
    names the method's colour."""
    parts = run.split("_")
    method = {"fptt": "FPTT", "bptt": "BPTT", "tbptt": "truncated BPTT", "online": "naive online"}[parts[0]]
    details = []
    if "k1" in parts or parts[0] == "online":
        details.append("k = 1")
    elif parts[0] in ("fptt", "tbptt"):
        details.append("10 windows")
    if "refinit" in parts:
        details.append("reference init")
    seed = next((part[1:] for part in parts if part.startswith("s") and part[1:].isdigit()), None)
    if seed is not None:
        details.append(f"seed {seed}")
    return f"{method} ({', '.join(details)})" if details else method


def report(results: Path = RESULTS) -> None:
    """``table.md`` and ``adding_curves.png`` in ``results`` from its run folders."""
    from fptt.run import plots

    names = sorted((path.name for path in results.iterdir() if (path / "summary.json").is_file()),
                   key=lambda name: (int(name.split("_")[0][1:]), name))
    lines = ["| run | iterations | final MSE (W) | final MSE (W̄) | best MSE (W) | first iteration ≤ "
             + " / ".join(str(level) for level in LEVELS) + " (W) | train time |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name in names:
        curve, summary = load(name, results)
        last = curve[-1]
        best = min(point["weights"] for point in curve)
        crossings = " / ".join(str(first_below(curve, level, "weights") or "–") for level in LEVELS)
        average = f"{last['average']:.4f}" if last.get("average") is not None else "–"
        lines.append(f"| {name} | {last['batch']} | {last['weights']:.4f} | {average} | {best:.4f} | {crossings} | "
                     f"{last['train_seconds']:.0f} s |")
    lines.append("")
    lines.append("Authors' logs (SPEC §4), first iteration below 0.1 / 0.05 / 0.01: "
                 + "; ".join(f"T={T} {method}: " + ", ".join(f"{level}→{it}" for level, it in marks.items())
                             for T, by_method in AUTHORS.items() for method, marks in by_method.items()))
    (results / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    lengths = sorted({int(name.split("_")[0][1:]) for name in names})
    figure, axes = plots.new_figure(len(lengths), width=6.5, height=4.5)
    colours = {"fptt": "tab:blue", "bptt": "tab:red", "tbptt": "tab:orange", "truncated": "tab:orange",
               "online": "tab:green", "naive": "tab:green"}
    for axis, seq_len in zip(axes, lengths):
        curves = {legend_label(name.split("_", 1)[1]): [(p["batch"], p["weights"]) for p in load(name, results)[0]]
                  for name in names if name.startswith(f"T{seq_len}_")}
        plots.plot_curves(axis, curves, title=f"adding task, T = {seq_len}  (× = the authors' logs)",
                          x_label="iteration (batch of 128 fresh sequences)",
                          y_label="held-out MSE (current weights W)", chance=1 / 6, colours=colours)
        for line, label in zip(axis.get_lines(), curves):  # seeds and variants of one method: line styles
            line.set_linestyle("-." if label.startswith("FPTT (k = 1") else
                               "--" if "seed 1" in label or "reference init" in label else
                               ":" if "seed 2" in label else "-")
        axis.legend(fontsize=7)
        for method, marks in AUTHORS.get(seq_len, {}).items():
            axis.scatter(list(marks.values()), list(marks.keys()), marker="x", s=60, color=colours[method], zorder=5)
    path = plots.save_figure(figure, results / "adding_curves.png")
    print(f"wrote {results / 'table.md'} and {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="run names (e.g. T200_fptt_s0)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="report: the folder of run results")
    args = parser.parse_args()
    if args.action == "report":
        report(args.results)
        return
    jobs = [job for job in PLAN if not args.only or run_name(job[0], job[1], job[2], job[4]) in args.only]
    with ThreadPoolExecutor(args.jobs) as pool:
        for message in pool.map(run_one, jobs):
            print(message, flush=True)


if __name__ == "__main__":
    main()
