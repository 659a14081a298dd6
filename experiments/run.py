"""Run one accuracy-study configuration and write its learning curve and summary.

    python experiments/run.py experiments/configs/add200_ltc_fptt_K10_s0.json [--out experiments/results]

Each config is a JSON file (see experiments/configs/). The run trains with ``fptt.train_epoch``,
evaluates on the held-out split every ``eval_every`` batches (with FPTT's running average W̄ when
``eval_with == "average"``), and writes ``<out>/<name>.jsonl`` (one line per evaluation) and
``<out>/<name>.summary.json`` (final metric, wall time, peak memory, the exact command).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from fptt import FPTT, SpikingRNN, evaluate, train_epoch
from fptt.bench import SavedTensorMeter
from fptt.data import AddingTask, SequentialMNIST

DEFAULTS = {
    "task": "add",            # add | smnist | psmnist
    "seq_len": 200,           # adding task length
    "downsample": None,       # smnist: 14 -> 196 steps
    "train_samples": 12800,   # adding task
    "test_samples": 1000,
    "neuron": "ltc",
    "hidden": [128],
    "readout": "liquid",
    "readout_from": "spikes",
    "norm": "none",
    "method": "fptt",
    "k": None,
    "update_points": None,
    "weighting": "linear",
    "loss_steps": "every",
    "optimizer": "adam",
    "lr": 3e-3,
    "alpha": 0.1,
    "beta": 0.5,
    "clip": None,
    "lr_milestones": [],      # epochs after which the lr is multiplied by 0.1 (the authors' schedule)
    "batch_size": 128,
    "epochs": 1,
    "max_batches": None,      # per epoch
    "eval_every": 25,         # batches
    "eval_with": "average",   # average (W̄) | weights (W), FPTT only
    "seed": 0,
    "threads": 1,
}


def build_data(cfg: dict):
    if cfg["task"] == "add":
        train = AddingTask(seq_len=cfg["seq_len"], num_samples=cfg["train_samples"], seed=cfg["seed"])
        test = AddingTask(seq_len=cfg["seq_len"], num_samples=cfg["test_samples"], seed=10_000 + cfg["seed"])
        return train, test, 2, 1
    permute = cfg["task"] == "psmnist"
    kwargs = {"permute": permute, "downsample": cfg["downsample"]}
    train = SequentialMNIST(split="train", **kwargs)
    test = SequentialMNIST(split="heldout", **kwargs)
    return train, test, 1, 10


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = parser.parse_args(argv)
    user = json.loads(args.config.read_text())
    unknown = set(user) - set(DEFAULTS) - {"name"}
    if unknown:
        raise SystemExit(f"unknown config keys: {sorted(unknown)}")
    cfg = {**DEFAULTS, **user, "name": user.get("name", args.config.stem)}
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    train_set, test_set, input_size, output_size = build_data(cfg)
    model = SpikingRNN(
        input_size, cfg["hidden"], output_size, neuron=cfg["neuron"], readout=cfg["readout"],
        readout_from=cfg["readout_from"], norm=cfg["norm"],
    )
    inner_class = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "sgd": torch.optim.SGD}[cfg["optimizer"]]
    inner = inner_class(model.parameters(), lr=cfg["lr"])
    fptt_mode = cfg["method"] == "fptt"
    optimizer = FPTT(inner, alpha=cfg["alpha"], beta=cfg["beta"], clip_grad_norm=cfg["clip"]) if fptt_mode else inner
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg["lr_milestones"], 0.1) if cfg["lr_milestones"] else None
    generator = torch.Generator().manual_seed(cfg["seed"])
    train_loader = DataLoader(train_set, batch_size=cfg["batch_size"], shuffle=True, generator=generator, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=500)
    args.out.mkdir(parents=True, exist_ok=True)
    curve_path = args.out / f"{cfg['name']}.jsonl"
    curve_path.write_text("")
    batches_per_epoch = len(train_loader) if cfg["max_batches"] is None else min(cfg["max_batches"], len(train_loader))
    eval_every = cfg["eval_every"]
    train_seconds = 0.0
    batches_done = 0
    updates = 0
    last = None
    started = time.perf_counter()
    with SavedTensorMeter() as meter:
        inner_step = optimizer.step

        def counted_step(*step_args, **step_kwargs):
            result = inner_step(*step_args, **step_kwargs)
            meter.reset()  # meter.peak = the largest graph kept by a single update
            return result

        optimizer.step = counted_step
        for epoch in range(cfg["epochs"]):
            iterator = iter(train_loader)
            for chunk_start in range(0, batches_per_epoch, eval_every):
                chunk = min(eval_every, batches_per_epoch - chunk_start)
                batches = [next(iterator) for _ in range(chunk)]
                metrics = train_epoch(
                    model, batches, optimizer, method=cfg["method"], k=cfg["k"],
                    update_points=cfg["update_points"], weighting=cfg["weighting"],
                    loss_steps=cfg["loss_steps"],
                    clip_grad_norm=None if fptt_mode else cfg["clip"],
                )
                train_seconds += metrics.seconds
                batches_done += chunk
                updates += metrics.updates
                with (optimizer.averaged() if fptt_mode and cfg["eval_with"] == "average" else nullcontext()):
                    result = evaluate(model, test_loader)
                last = {
                    "epoch": epoch, "batches": batches_done, "updates": updates,
                    "train_loss": metrics.loss, "train_metric": metrics.accuracy if metrics.accuracy is not None else metrics.mse,
                    "test_loss": result.loss,
                    "test_metric": result.accuracy if result.accuracy is not None else result.mse,
                    "firing_rate": metrics.firing_rate, "train_seconds": train_seconds,
                }
                with curve_path.open("a") as handle:
                    handle.write(json.dumps(last) + "\n")
                print(json.dumps({"name": cfg["name"], **last}), flush=True)
            if fptt_mode:
                optimizer.load_average()  # the paper's end-of-epoch W <- W̄
            if scheduler is not None:
                scheduler.step()
    summary = {
        "config": cfg,
        "command": f"python experiments/run.py {args.config}",
        "metric": "accuracy" if output_size > 1 else "mse",
        "final_test_metric": last["test_metric"],
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "updates": updates,
        "saved_bytes_per_update_peak": meter.peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    (args.out / f"{cfg['name']}.summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
