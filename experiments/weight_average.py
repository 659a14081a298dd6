"""Which weights to evaluate an online learner with (docs/RESULTS.md §10.7): W, FPTT's W̄, or a
moving average W_ema of W over batches, at several decays, along one training run.

    python experiments/weight_average.py run NAME [NAME ...]    # one run each (see PROBES), 1 thread
    python experiments/weight_average.py report                 # Markdown table of the finished probes
    python experiments/weight_average.py plot                   # their validation curves, weight_average.png

Training is the product's (``fptt.run.trainer.Trainer``) and is not changed by the averages: they
only read the weights after each batch (``W_ema ← d·W_ema + (1 − d)·W``, :class:`fptt.WeightEMA`).
Every ``EVERY`` batches and at each epoch's end (before FPTT's ``W ← W̄``), the validation split
(1,000 digits held out of MNIST-10k's training images) is scored with W, W̄ (FPTT) and each W_ema,
so all decays are compared on the same trajectory. Nothing reads the test split. Each probe writes
``results/weight_average/NAME.jsonl`` (one line per point) and ``NAME.json`` (its settings).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "weight_average"
DECAYS = (0.8, 0.9, 0.95, 0.98)
def ema_key(decay: float) -> str:
    """The record's key of W_ema at ``decay``: ``ema95`` for d = 0.95 (no dot: claims.json reads dotted paths)."""
    return f"ema{round(100 * decay)}"


EVERY = 20  # batches between points (MNIST-10k: 56 training batches per epoch at 1,000 held out)

_SMNIST196 = {"task": "smnist", "downsample": 14, "validation_samples": 1000, "epochs": 5, "schedule": "cosine",
              "read_test": False, "plots": False}
_BRF = {"neuron": "brf", "norm": "layer"}
# the settings of the full-MNIST ten-epoch rows (docs/RESULTS.md §10.3), on MNIST-10k for five epochs, seed 0
PROBES: dict[str, dict[str, Any]] = {
    "smnist196_brf_fptt": {**_SMNIST196, **_BRF, "norm_scale": 100},
    "smnist196_brf_bptt": {**_SMNIST196, **_BRF, "norm_scale": 30, "method": "bptt"},
    "smnist196_ltc_fptt": {**_SMNIST196, "lr": 1e-3},
    # the BRF FPTT probe at a constant lr (a stream's situation): no schedule takes the lr towards zero, so W
    # never settles
    "smnist196_brf_fptt_constant_lr": {**_SMNIST196, **_BRF, "norm_scale": 100, "schedule": "none"},
}


def run_probe(name: str) -> Path:
    import torch

    from fptt import FPTT, WeightEMA
    from fptt.run.config import resolve_config
    from fptt.run.trainer import Trainer

    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = resolve_config(flag_values={**PROBES[name], "threads": 1})
    trainer = Trainer(config, run_dir=ROOT.parent / "runs" / "weight_average" / name, log=None)
    averages = {decay: WeightEMA(trainer.model, decay) for decay in DECAYS}
    points = (RESULTS / f"{name}.jsonl").open("w")
    (RESULTS / f"{name}.json").write_text(json.dumps({
        "name": name, "flags": PROBES[name], "decays": DECAYS, "every": EVERY,
        "batches_per_epoch": trainer.batches_per_epoch, "config": config.to_dict()}, indent=1) + "\n")

    def score(epoch: int, batch: int) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1, "batch": batch, "weights": trainer.evaluate(with_="weights").accuracy}
        if isinstance(trainer.optimizer, FPTT):
            row["average"] = trainer.evaluate(with_="average").accuracy
        for decay, average in averages.items():
            trainer.weight_average = average  # the trainer evaluates with_="ema" with this one
            row[ema_key(decay)] = trainer.evaluate(with_="ema").accuracy
        trainer.weight_average = None
        print(json.dumps(row), file=points, flush=True)
        print(name, row, flush=True)

    between, train_one_epoch = trainer._between_batches, trainer._train_one_epoch

    def after_batch(epoch: int, done: int) -> None:
        for average in averages.values():
            average.update()
        between(epoch, done)
        if done % EVERY == 0:
            score(epoch, done)

    def after_epoch(epoch: int) -> Any:
        result = train_one_epoch(epoch)
        for average in averages.values():  # the epoch's last batch
            average.update()
        score(epoch, -1)  # -1: the epoch's end
        return result

    trainer._between_batches, trainer._train_one_epoch = after_batch, after_epoch  # type: ignore[method-assign]
    trainer.fit()
    points.close()
    return RESULTS / f"{name}.jsonl"


def report() -> str:
    """Mean validation accuracy over the points of the last two epochs (fptt.run.statistics' mean, as
    docs/claims.json recomputes it)."""
    from fptt.run.statistics import mean

    lines = ["| probe | points | " + " | ".join(["W", "W̄"] + [f"W_ema, d = {d}" for d in DECAYS]) + " |",
             "| --- | --- |" + " --- |" * (2 + len(DECAYS))]
    for name in PROBES:
        path = RESULTS / f"{name}.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        last = max(row["epoch"] for row in rows)
        late = [row for row in rows if row["epoch"] >= last - 1]
        cells = []
        for key in ["weights", "average"] + [ema_key(d) for d in DECAYS]:
            values = [100 * row[key] for row in late if row.get(key) is not None]
            cells.append(f"{mean(values):.1f} %" if values else "—")
        lines.append(f"| {name} | {len(late)} (epochs {last - 1}–{last}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot() -> Path:
    """Validation accuracy along each finished probe: W, W̄ and W_ema at every decay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in PROBES if (RESULTS / f"{name}.jsonl").is_file()]
    columns = min(len(names), 2)
    rows_of_panels = -(-len(names) // columns)
    figure, axes = plt.subplots(rows_of_panels, columns, figsize=(5.5 * columns, 3.6 * rows_of_panels), squeeze=False)
    for axis in axes.flat[len(names):]:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, names):
        rows = [json.loads(line) for line in (RESULTS / f"{name}.jsonl").read_text().splitlines()]
        per_epoch = json.loads((RESULTS / f"{name}.json").read_text())["batches_per_epoch"]
        x = [row["epoch"] - 1 + (row["batch"] if row["batch"] >= 0 else per_epoch) / per_epoch for row in rows]
        lines = [("weights", "W", ":"), ("average", "W̄ (FPTT)", "--")] + [
            (ema_key(d), f"W_ema, d = {d}", "-") for d in DECAYS]
        for color, (key, label, style) in enumerate(lines):  # the same colour for a line in every panel
            if rows[0].get(key) is not None:
                axis.plot(x, [100 * row[key] for row in rows], style, marker=".", label=label, color=f"C{color}")
        axis.set(title=name, xlabel="epoch", ylabel="validation accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    path = RESULTS / "weight_average.png"
    figure.savefig(path, dpi=120)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("names", nargs="+", choices=sorted(PROBES))
    commands.add_parser("report")
    commands.add_parser("plot")
    args = parser.parse_args(argv)
    if args.command == "run":
        for name in args.names:
            print(run_probe(name))
    elif args.command == "plot":
        print(plot())
    else:
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
