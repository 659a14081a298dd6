"""Time of one SpikingRNN step (LTC) with and without gradients, at H = 64 and H = 256.

Measures what the per-step Python checks cost (issue 22: checks moved from ``model.step`` to the
batch or stream boundary): run it on two versions of the library and compare the medians.

    PYTHONPATH=src python benchmarks/step_checks.py [--repeats 9] [--steps 200]

Batch 128, input 1, 10 outputs, 2 torch threads; median over ``repeats`` of the mean time per
step over ``steps`` steps (state detached at each step, as FPTT with k = 1 does).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fptt import SpikingRNN
from fptt.state import detach_state


def time_steps(hidden: int, steps: int, repeats: int, grad: bool) -> float:
    torch.manual_seed(0)
    model = SpikingRNN(1, hidden, 10)
    x = torch.rand(steps, 128, 1)
    times = []
    for _ in range(repeats):
        state = model.init_state(128)
        started = time.perf_counter()
        for t in range(steps):
            state = detach_state(state)
            if grad:
                scores, state = model.step(x[t], state)
                scores.sum().backward()
            else:
                with torch.no_grad():
                    scores, state = model.step(x[t], state)
        times.append((time.perf_counter() - started) / steps)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = {}
    for hidden in (64, 256):
        rows[f"H={hidden}"] = {"forward_ms": round(time_steps(hidden, args.steps, args.repeats, grad=False), 4),
                               "forward_backward_ms": round(time_steps(hidden, args.steps, args.repeats, grad=True), 4)}
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
