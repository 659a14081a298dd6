"""Collect experiments/results/*.summary.json into tables and learning-curve plots.

    python experiments/report.py [--results experiments/results] [--out docs/results]

Prints Markdown tables (mean ± std over seeds per configuration) and writes one PNG of learning
curves per study prefix (e.g. ``smnist196``, ``add200``) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path


def load(results: Path) -> list[dict]:
    runs = []
    for path in sorted(results.glob("*.summary.json")):
        summary = json.loads(path.read_text())
        curve_path = path.with_name(path.name.replace(".summary.json", ".jsonl"))
        summary["curve"] = [json.loads(line) for line in curve_path.read_text().splitlines() if line.strip()]
        runs.append(summary)
    return runs


def group_key(name: str) -> str:
    return re.sub(r"_s\d+$", "", name)


def fmt(values: list[float], metric: str) -> str:
    scale, digits = (100.0, 1) if metric == "accuracy" else (1.0, 4)
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def describe(cfg: dict) -> str:
    """``fptt k=1 α=0.1``, ``tbptt K=10``, ``bptt``: the method and its window setting."""
    method = cfg["method"]
    if method == "bptt":
        return "bptt"
    if cfg.get("update_points"):
        window = f"K={cfg['update_points']} windows"
    else:
        window = f"k={cfg.get('k') or 1}"
    alpha = f" α={cfg['alpha']}" if method == "fptt" else ""
    return f"{method} {window}{alpha}"


def best(run: dict) -> float:
    values = [point["test_metric"] for point in run["curve"]]
    return max(values) if run["metric"] == "accuracy" else min(values)


def table(runs: list[dict]) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[group_key(run["config"]["name"])].append(run)
    lines = [
        "| configuration | method | neuron | seeds | final held-out metric | best during training | updates | "
        "train time (s) | saved MB / update | peak RSS (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in sorted(groups):
        members = groups[key]
        cfg = members[0]["config"]
        metric = members[0]["metric"]
        name = f"{metric} " + fmt([m["final_test_metric"] for m in members], metric) + (" %" if metric == "accuracy" else "")
        best_name = fmt([best(m) for m in members], metric) + (" %" if metric == "accuracy" else "")
        lines.append(
            f"| `{key}` | {describe(cfg)} | {cfg['neuron']} | "
            f"{len(members)} | {name} | {best_name} | {members[0]['updates']} | "
            f"{statistics.mean(m['train_seconds'] for m in members):.0f} | "
            f"{statistics.mean(m['saved_bytes_per_update_peak'] for m in members) / 2**20:.1f} | "
            f"{statistics.mean(m['peak_rss_mb'] for m in members):.0f} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        studies[run["config"]["name"].split("_")[0]].append(run)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for study, members in sorted(studies.items()):
        figure, axis = plt.subplots(figsize=(7, 4.2))
        for run in sorted(members, key=lambda r: r["config"]["name"]):
            xs = [point["batches"] for point in run["curve"]]
            ys = [point["test_metric"] for point in run["curve"]]
            axis.plot(xs, ys, marker="o", markersize=3, label=run["config"]["name"].split("_", 1)[1])
        metric = members[0]["metric"]
        axis.set_xlabel("training batches")
        axis.set_ylabel(f"held-out {metric}")
        if metric == "mse":
            axis.axhline(1 / 6, color="grey", linestyle="--", linewidth=1, label="trivial baseline 0.167")
            axis.set_yscale("log")
        axis.set_title(study)
        axis.legend(fontsize=7, ncol=2)
        figure.tight_layout()
        path = out / f"{study}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("experiments/results"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args(argv)
    runs = load(args.results)
    if not runs:
        raise SystemExit(f"no *.summary.json in {args.results}")
    studies: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        studies[run["config"]["name"].split("_")[0]].append(run)
    text = "".join(f"\n### {study}\n\n{table(members)}\n" for study, members in sorted(studies.items()))
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.md").write_text("<!-- written by: python experiments/report.py --out docs/results -->\n" + text)
    for path in plot(runs, args.out):
        print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
