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
from torch.utils.data import DataLoader

from fptt import evaluate, train_epoch
from fptt.memory import per_update
from fptt.run.build import build_dataset, build_model, build_optimizer, build_scheduler, dataset_shape
from fptt.run.config import TrainConfig

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


def train_config(cfg: dict) -> TrainConfig:
    """The study's config as a :class:`~fptt.run.config.TrainConfig` (the library's dataclass
    defaults, not the task defaults: the study ran the generic v0.1 LTC network), so that the
    data, model and optimizer come from :mod:`fptt.run.build` like every other run."""
    return TrainConfig.from_dict({
        "task": cfg["task"], "seq_len": cfg["seq_len"], "downsample": cfg["downsample"],
        "train_samples": cfg["train_samples"], "test_samples": cfg["test_samples"], "neuron": cfg["neuron"],
        "hidden_sizes": list(cfg["hidden"]), "readout": cfg["readout"], "readout_from": cfg["readout_from"],
        "norm": cfg["norm"], "method": cfg["method"], "k": cfg["k"], "update_points": cfg["update_points"],
        "weighting": cfg["weighting"], "loss_steps": cfg["loss_steps"], "optimizer": cfg["optimizer"],
        "lr": cfg["lr"], "alpha": cfg["alpha"], "beta": cfg["beta"], "clip_grad_norm": cfg["clip"],
        "schedule": "step" if cfg["lr_milestones"] else "none", "milestones": list(cfg["lr_milestones"]),
        "batch_size": cfg["batch_size"], "epochs": cfg["epochs"], "seed": cfg["seed"],
    }, where="experiment config")


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
    config = train_config(cfg)
    train_set = build_dataset(config, "train")
    test_set = build_dataset(config, "test" if config.task == "add" else "heldout")
    input_size, output_size = dataset_shape(train_set)
    model = build_model(config, input_size, output_size)
    optimizer = build_optimizer(config, model)
    fptt_mode = config.method == "fptt"
    scheduler = build_scheduler(config, optimizer)
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
    with per_update(optimizer) as meter:  # meter.peak = the largest graph kept by a single update
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
