"""Probe: how a trained run's validation accuracy depends on how its steps' outputs are decoded.

    python experiments/decode_probe.py RUN_DIR [RUN_DIR ...] [--json FILE]

For each run folder (its last checkpoint, evaluated with what the run evaluated with: W̄ for FPTT) the
validation split is run once and every step's output y_t kept; then the sequence is scored by the final
step (``last``), by the mean over the steps of the probabilities (``p``) or the log-probabilities
(``logp``; the raw scores give the same argmax: they differ from the log-probabilities by a term
that is the same for every class), over all steps, the last half or the last quarter, and by the
same weighted linearly in t (``linear_*``). The validation split only: the test split is never read.
This chose ``--decode mean`` (RESULTS §10.8).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.data import DataLoader

from fptt.run.build import build_dataset, default_eval_split, load_model
from fptt.run.trainer import evaluation_rng


def step_outputs(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, N, classes) outputs of every step on the run's validation split, and the (N,) labels."""
    config, model, _, _ = load_model(path, device="cpu", which="last", weights=None)
    split = default_eval_split(config)
    if split != "validation":
        raise SystemExit(f"{path}: the run holds no validation split; this probe reads no other")
    model.eval()
    outputs, labels = [], []
    with torch.no_grad(), evaluation_rng(config.seed, torch.device("cpu")):
        for x, y in DataLoader(build_dataset(config, split), batch_size=500, shuffle=False):
            state = model.init_state(x.shape[0], device="cpu", dtype=torch.float32)
            steps = []
            for t in range(x.shape[1]):
                output, state = model.step(x[:, t], state)
                steps.append(output)
            outputs.append(torch.stack(steps))
            labels.append(y)
    return torch.cat(outputs, dim=1), torch.cat(labels)


def decodings(outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    steps = outputs.shape[0]
    views = {"p": outputs.softmax(-1), "logp": outputs.log_softmax(-1)}
    linear = torch.arange(1, steps + 1, dtype=outputs.dtype)[:, None, None]

    def accuracy(scores: torch.Tensor) -> float:
        return float((scores.argmax(-1) == labels).double().mean())

    result = {"last": accuracy(outputs[-1])}
    for name, view in views.items():
        for span, start in (("all", 0), ("last_half", steps // 2), ("last_quarter", steps - steps // 4)):
            result[f"mean_{name}_{span}"] = accuracy(view[start:].mean(0))
        result[f"linear_{name}"] = accuracy((view * linear).sum(0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--json", help="also write the table as JSON to FILE")
    args = parser.parse_args()
    table = {path: decodings(*step_outputs(path)) for path in args.runs}
    names = list(next(iter(table.values())))
    for name in names:
        print(f"{name:24s}" + "".join(f"{table[path][name] * 100:7.1f}" for path in args.runs))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"command": " ".join(["python", "experiments/decode_probe.py", *sys.argv[1:]]),
                       "validation_accuracy": table}, handle, indent=2)


if __name__ == "__main__":
    main()
