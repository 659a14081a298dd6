"""Minimal reproduction (plain torch, no fptt): a gloo process group outlives
``destroy_process_group()`` once a ``DistributedDataParallel`` module was built on it.

Run: ``python tests/distributed_teardown.py``. Each of 2 spawned ranks builds a DDP module,
deletes it, collects garbage, destroys the process group and lists its threads. With torch 2.13.0
(CPU) rank 0 prints, with and without a backward pass::

    ... threads after destroy_process_group: ['python', 'pt_tcpstore_uv', 'gloo_tcp_loop',
    'pt_gloo_runloop', 'pt_gloo_runloop']

while the same process without DDP (``--no-ddp``) is back to ``['python']``. Something inside torch
keeps the process group (its two gloo worker threads, the gloo transport loop and the TCPStore
server) alive until the interpreter exits; their C++ threads are then torn down during
finalization, which is where a worker of ``tests/test_distributed.py`` once aborted with
"terminate called without an active exception" (SIGABRT). Upstream: pytorch/pytorch#107298
(threads left after destroy_process_group) and the abandoned pytorch/pytorch#179291 (gloo threads
at interpreter finalization abort with SIGABRT). Hence the worker's ``os._exit(0)`` after its work
is saved. docs/RELIABILITY.md, "Limits".
"""
from __future__ import annotations

import datetime
import gc
import os
import socket
import sys
import weakref

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel


def _threads() -> list[str]:
    names = []
    for task in sorted(os.listdir("/proc/self/task")):
        try:
            with open(f"/proc/self/task/{task}/comm") as handle:
                names.append(handle.read().strip())
        except OSError:  # ended meanwhile
            pass
    return names


def _worker(rank: int, port: int, use_ddp: bool, backward: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=30))
    if use_ddp:
        ddp = DistributedDataParallel(torch.nn.Linear(4, 2))
        if backward:
            ddp(torch.rand(3, 4)).sum().backward()
        alive = weakref.ref(ddp)
        del ddp
        gc.collect()
        assert alive() is None, "the DDP module itself was collected"
    else:
        tensor = torch.ones(3)
        dist.all_reduce(tensor)
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()
    if rank == 0:
        what = f"DDP {'with' if backward else 'without'} a backward" if use_ddp else "an all_reduce, no DDP"
        print(f"[{what}] threads after destroy_process_group: {_threads()}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    cases = [(False, False)] if "--no-ddp" in sys.argv else [(True, False), (True, True), (False, False)]
    for use_ddp, backward in cases:
        mp.start_processes(_worker, args=(_free_port(), use_ddp, backward), nprocs=2, join=True, start_method="spawn")
