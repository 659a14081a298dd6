"""Time of one SpikingRNN step (LTC) with and without gradients, at H = 64 and H = 256.

Measures what the per-step Python checks cost (issue 22: checks moved from ``model.step`` to the
batch or stream boundary): run it on two versions of the library and compare the medians.

    PYTHONPATH=src python benchmarks/step_checks.py [--repeats 9] [--steps 200]

Batch 128, input 1, 10 outputs, 2 torch threads; median (and minimum) over ``repeats`` of the mean
time per step over ``steps`` steps (state detached at each step, as FPTT with k = 1 does). With
``--check-cost`` it also times, on the current version, the checks a step used to make
(``model.check_step`` plus one ``check_input`` per layer), with ``timeit`` (minimum of 7 rounds: the
figure least sensitive to other processes on the machine).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit

import torch

from fptt import SpikingRNN
from fptt.models.state import detach_state


def time_steps(hidden: int, steps: int, repeats: int, grad: bool) -> tuple[float, float]:
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
    return statistics.median(times) * 1e3, min(times) * 1e3


def check_cost_us(hidden: int) -> float:
    """Microseconds per step of the checks step() used to make (now made once per batch)."""
    model = SpikingRNN(1, hidden, 10)
    x, state = torch.rand(128, 1), model.init_state(128)

    def checks() -> None:
        model.check_step(x, state)
        for layer in model.layers:
            layer.check_input(x if layer is model.layers[0] else state.layers[0].spikes)

    number = 20_000
    return min(timeit.repeat(checks, number=number, repeat=7)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--check-cost", action="store_true", help="also time the checks moved out of step()")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = {}
    for hidden in (64, 256):
        forward = time_steps(hidden, args.steps, args.repeats, grad=False)
        both = time_steps(hidden, args.steps, args.repeats, grad=True)
        rows[f"H={hidden}"] = {"forward_ms_median": round(forward[0], 4), "forward_ms_min": round(forward[1], 4),
                               "forward_backward_ms_median": round(both[0], 4),
                               "forward_backward_ms_min": round(both[1], 4)}
        if args.check_cost:
            rows[f"H={hidden}"]["checks_us_per_step"] = round(check_cost_us(hidden), 2)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
