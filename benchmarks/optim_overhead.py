"""Micro-benchmark: cost of an FPTT wrapper step vs the plain inner Adamax step.

Parameter set: the shapes of a one-hidden-layer LTC spiking network with 256 hidden units
(input and recurrent projections, the two time-constant gates acting on [input, hidden],
a 10-way leaky readout and its gate). Only the optimizer is timed; gradients are reset to
fixed random values (untimed) before every repeat.

Usage:  python benchmarks/optim_overhead.py [--repeats 200] [--threads 2] [--device cpu]
Do not commit results; run on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from fptt.optim import FPTT

SHAPES: list[tuple[int, ...]] = [
    (256, 257), (256,),   # input projection
    (256, 256), (256,),   # recurrent projection
    (256, 512), (256,),   # tau_m gate on [input, hidden]
    (256, 512), (256,),   # tau_adp gate on [input, hidden]
    (10, 256), (10,),     # readout
    (10, 20), (10,),      # readout tau gate
]


def make_params(device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(0.05 * torch.randn(s, generator=g).to(device)) for s in SHAPES]


def median_step_time(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                     grads: list[torch.Tensor], repeats: int, warmup: int = 20) -> float:
    sync = torch.cuda.synchronize if params[0].is_cuda else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        with torch.no_grad():
            for p, g in zip(params, grads):
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
        sync()
        t0 = time.perf_counter()
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(1)
    grads = [(1e-3 * torch.randn(s, generator=g)).to(args.device) for s in SHAPES]
    n = sum(t.numel() for t in grads)
    print(f"{len(SHAPES)} tensors, {n} parameters, device={args.device}, "
          f"threads={torch.get_num_threads()}, repeats={args.repeats}")
    for foreach in (False, True):
        p_plain, p_fptt = make_params(args.device), make_params(args.device)
        plain = torch.optim.Adamax(p_plain, lr=1e-3, foreach=foreach)
        wrapped = FPTT(torch.optim.Adamax(p_fptt, lr=1e-3, foreach=foreach), alpha=0.1, beta=0.5)
        t_plain = median_step_time(plain, p_plain, grads, args.repeats)
        t_fptt = median_step_time(wrapped, p_fptt, grads, args.repeats)
        print(f"Adamax(foreach={foreach}): plain {t_plain * 1e6:8.1f} us   "
              f"FPTT {t_fptt * 1e6:8.1f} us   overhead {(t_fptt - t_plain) * 1e6:8.1f} us   "
              f"ratio {t_fptt / t_plain:.2f}")


if __name__ == "__main__":
    main()
