"""Communication cost of data-parallel FPTT: time per sequence vs window length k.

    python experiments/distributed_cost.py [--world 2] [--steps 196] [--hidden 128] [--batch 64]

FPTT with k = 1 all-reduces the gradients at every time step; larger windows all-reduce T/k
times per sequence. For each k the script times one sequence (median of ``--repeats``) with
``--world`` gloo processes (each with batch ``--batch`` and one thread) and, in the same run,
the same per-rank work in one process without communication, and writes
``benchmarks/results/distributed_cost.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fptt import FPTT, SpikingRNN, train_epoch
from fptt.training.distributed import DistributedModel


def _time_sequences(model, optimizer, k, batch, steps, repeats) -> list[float]:
    x = torch.rand(batch, steps, 1)
    y = torch.randint(0, 10, (batch,))
    train_epoch(model, [(x, y)], optimizer, method="fptt", k=k)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        train_epoch(model, [(x, y)], optimizer, method="fptt", k=k)
        times.append(time.perf_counter() - started)
    return times


def _worker(rank, world, port, args, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = {}
        for k in args.ks:
            torch.manual_seed(0)
            model = SpikingRNN(1, args.hidden, 10)
            optimizer = FPTT(torch.optim.Adamax(model.parameters(), lr=1e-3))
            results[k] = _time_sequences(DistributedModel(model), optimizer, k, args.batch, args.steps, args.repeats)
        if rank == 0:
            queue.put(results)
    finally:
        dist.destroy_process_group()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--steps", type=int, default=196)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 7, 28, 196])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    local = {}
    for k in args.ks:
        torch.manual_seed(0)
        model = SpikingRNN(1, args.hidden, 10)
        local[k] = _time_sequences(model, FPTT(torch.optim.Adamax(model.parameters(), lr=1e-3)), k,
                                   args.batch, args.steps, args.repeats)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_worker, args=(args.world, port, args, queue), nprocs=args.world, join=True, start_method="spawn")
    distributed = queue.get()
    rows = []
    for k in args.ks:
        one, many = statistics.median(local[k]), statistics.median(distributed[k])
        rows.append({"k": k, "updates_per_sequence": -(-args.steps // k), "single_process_s": one,
                     "distributed_s": many, "overhead_ratio": many / one,
                     "samples_per_s_single": args.batch / one, "samples_per_s_distributed": args.world * args.batch / many})
    result = {"args": vars(args) | {"out": str(args.out)}, "rows": rows, "torch": torch.__version__,
              "machine": platform.platform(), "cpus": os.cpu_count(),
              "command": "python experiments/distributed_cost.py " + " ".join(argv or [])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed_cost.json").write_text(json.dumps(result, indent=1))
    lines = ["| k | updates / sequence | 1 process (s / sequence) | "
             f"{args.world} gloo ranks (s / sequence) | time ratio | throughput 1 → {args.world} ranks (samples/s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['k']} | {row['updates_per_sequence']} | {row['single_process_s']:.2f} | "
                     f"{row['distributed_s']:.2f} | {row['overhead_ratio']:.2f} | "
                     f"{row['samples_per_s_single']:.0f} → {row['samples_per_s_distributed']:.0f} |")
    table = "\n".join(lines)
    (args.out / "distributed_cost.md").write_text(table + "\n")
    print(table)
    return result


if __name__ == "__main__":
    main()
