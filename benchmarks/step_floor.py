"""Where an FPTT k=1 step's time goes, and the floor under it on this machine (issue 24).

Three measurements, each in this one process, interleaved rounds, medians:

1. **The matrix products of one step** at H=256, B=128: the 5 forward and 7 backward products of
   (256 x 256)-sized blocks that every implementation of this LTC network has to compute (the
   recurrent synapses, the two liquid gates over [d, u] and [d, b], their weight gradients and the
   gradient of d), plus the small ones of the input synapse and the readout. Nothing else: the
   arithmetic floor of a step, whatever the framework.
2. **The framework's share**, at H=8, B=4, where the arithmetic is negligible: the time of one
   default (compiled) FPTT k=1 step split into its forward (model.step + loss), backward
   (zero_grad + backward), optimizer step, and the engine around them (window, loss weights,
   firing rates, non-finite check): Python, the dispatcher and the autograd engine.
3. **The default step and the plain reference** at H=256, B=128: the same as ``fptt bench speed``'s
   ``fptt_default`` and ``naive`` rows.

Usage: python benchmarks/step_floor.py [--out benchmarks/results] [--threads 2]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F

from fptt.bench.common import (
    contention_note,
    finish_info,
    interleaved,
    machine_info,
    markdown_table,
    median,
    timed,
    write_outputs,
)
from fptt.bench.speed import _adamax, _default_fptt, _model, naive_fptt_sequence
from fptt.training.engine import train_epoch


def _per_call(fn: Callable[[], object], calls: int, rounds: int) -> list[float]:
    fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls)
    return samples


def matmul_floor(rounds: int) -> dict[str, list[float]]:
    """Seconds of the 12 large and the small matrix products of one step (H=256, B=128, 1 input)."""
    batch, hidden = 128, 256
    d, u, b, s, g = (torch.randn(batch, hidden) for _ in range(5))
    gates = [torch.randn(hidden, 2 * hidden) for _ in range(2)]
    recurrent, bias = torch.randn(hidden, hidden), torch.randn(hidden)
    x, w_x, w_out, g_out = torch.randn(batch, 1), torch.randn(hidden, 1), torch.randn(10, hidden), torch.randn(batch, 10)
    out = torch.empty(hidden, 2 * hidden)

    def large() -> None:
        torch.addmm(bias, s, recurrent.t())                           # W_r s_{t-1}
        for w, own in zip(gates, (u, b)):
            torch.addmm(torch.addmm(bias, own, w[:, hidden:].t()), d, w[:, :hidden].t())  # z = W [d, own] + c
            g.mm(w[:, :hidden])                                       # ∂d
            torch.mm(g.t(), d, out=out[:, :hidden])                   # ∂W = g^T [d, own]
            torch.mm(g.t(), own, out=out[:, hidden:])
        g.t().mm(s)                                                   # ∂W_r

    def small() -> None:
        torch.addmm(bias, x, w_x.t())                                 # W_x x_t
        g.t().mm(x)                                                   # ∂W_x
        torch.addmm(bias[:10], s, w_out.t())                          # readout
        g_out.t().mm(s)                                               # ∂W_out
        g_out.mm(w_out)                                               # ∂s from the readout

    return {"large_matmuls": _per_call(large, 100, rounds), "small_matmuls": _per_call(small, 100, rounds)}


def framework_share(rounds: int) -> dict[str, list[float]]:
    """Seconds per part of a default k=1 step at H=8, B=4 (the arithmetic negligible)."""
    batch, steps = 4, 50
    x, y = torch.rand(batch, steps, 1), torch.randint(0, 10, (batch,))
    model, optimizer = _default_fptt(8, torch.device("cpu"), [(x, y)], steps)
    state = model.init_state(batch)

    def forward() -> torch.Tensor:
        output, _ = model.step(x[:, 0], state)
        return F.cross_entropy(output, y)

    def forward_backward() -> None:
        loss = forward()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def update() -> None:
        forward_backward()
        optimizer.step()

    engine = _per_call(lambda: train_epoch(model, [(x, y)], optimizer, method="fptt", k=1), 4, rounds)
    return {"forward": _per_call(forward, 300, rounds), "forward_backward": _per_call(forward_backward, 300, rounds),
            "forward_backward_step": _per_call(update, 300, rounds), "engine_step": [t / steps for t in engine]}


def full_steps(rounds: int) -> dict[str, list[float]]:
    """Seconds per step of the default FPTT k=1 step and of the plain reference (H=256, B=128)."""
    batch, steps = 128, 100
    x, y = torch.rand(batch, steps, 1), torch.randint(0, 10, (batch,))
    model, optimizer = _default_fptt(256, torch.device("cpu"), [(x, y)], steps)
    naive = _model(256, 0, torch.device("cpu"))
    inner = _adamax(naive)
    averages = {n: p.detach().clone() for n, p in naive.named_parameters()}
    lambdas = {n: torch.zeros_like(p) for n, p in naive.named_parameters()}
    x_steps = x.transpose(0, 1).contiguous()
    device = torch.device("cpu")
    return interleaved({
        "default": lambda: timed(device, lambda: train_epoch(model, [(x, y)], optimizer, method="fptt", k=1)) / steps,
        "reference": lambda: timed(device, lambda: naive_fptt_sequence(naive, x_steps, y, inner, averages, lambdas)) / steps,
    }, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info("cpu")
    floor = matmul_floor(args.rounds)
    share = framework_share(args.rounds)
    full = full_steps(args.rounds)
    finish_info(info)
    ms = {name: 1e3 * median(values) for group in (floor, share, full) for name, values in group.items()}
    parts = {"forward (model.step + loss)": ms["forward"],
             "backward (zero_grad + autograd)": ms["forward_backward"] - ms["forward"],
             "optimizer step (compiled FPTT update + host work)": ms["forward_backward_step"] - ms["forward_backward"],
             "engine around them": ms["engine_step"] - ms["forward_backward_step"]}
    arithmetic = ms["large_matmuls"] + ms["small_matmuls"]
    overhead = ms["engine_step"]
    rest = ms["default"] - arithmetic - overhead
    ratio = ms["default"] / ms["reference"]
    lines = [
        f"default FPTT k=1 step {ms['default']:.2f} ms = matrix products {arithmetic:.2f} ms + framework "
        f"{overhead:.2f} ms (measured at H=8) + the rest {rest:.2f} ms (elementwise kernels, memory traffic)",
        f"plain reference {ms['reference']:.2f} ms: default / reference x{ratio:.3f} (target <= 0.55: "
        f"{'PASS' if ratio <= 0.55 else 'MISS'}); with no framework time at all the step would be "
        f"x{(ms['default'] - overhead) / ms['reference']:.3f}; the products alone x{arithmetic / ms['reference']:.3f}",
    ]
    for line in lines:
        print(line)
    notes = [note for note in [contention_note(info)] if note]
    payload = {"benchmark": "step_floor", "machine": info, "raw_seconds": {**floor, **share, **full},
               "median_ms": ms, "framework_parts_ms": parts, "lines": lines, "notes": notes}
    md = "\n\n".join([
        "# Where an FPTT k=1 step goes (LTC, H=256, B=128; the framework's share at H=8, B=4)",
        f"`{info['command']}` — torch {info['torch']}, {info['torch_threads']} threads, {info['cpu']}, git "
        f"{info['git_commit']}, load average {info.get('load_average_start')} -> {info.get('load_average_end')}",
        markdown_table(["part", "ms / step"], [("12 large matrix products (H=256, B=128)", ms["large_matmuls"]),
                                               ("small matrix products (input synapse, readout)", ms["small_matmuls"]),
                                               *[(f"framework: {k}", v) for k, v in parts.items()],
                                               ("default FPTT k=1 step (H=256, B=128)", ms["default"]),
                                               ("plain reference step (H=256, B=128)", ms["reference"])]),
        "\n".join(f"- {line}" for line in lines + notes),
    ])
    write_outputs(args.out, "step_floor", payload, md, None)


if __name__ == "__main__":
    main()
