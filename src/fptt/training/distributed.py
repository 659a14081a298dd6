"""Data-parallel training with ``torch.distributed`` (DistributedDataParallel) for stateful models.

DDP synchronises gradients during ``backward`` when the preceding forward ran through it. A
stateful model runs one forward per *time step* and one backward per *window*, so
:class:`DistributedModel` runs the window's earlier steps under ``no_sync()`` and only the last
step of each window through DDP's synchronising forward: the single backward of the window then
all-reduces (averages) every gradient once, in DDP's buckets. Every rank thus applies the same
averaged gradient, and FPTT's W̄ and λ, updated from identical parameters and gradients, stay
identical on all ranks without any extra communication.

Launch with ``torchrun --nproc_per_node=N your_script.py`` (one machine) or
``torchrun --nnodes=M --node_rank=i --master_addr=HOST --master_port=PORT --nproc_per_node=N ...``
(several machines; NCCL on GPUs, gloo on CPUs). See docs/DISTRIBUTED.md.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistributedModel", "setup", "is_main_process", "world_size", "launched_by_torchrun"]


def launched_by_torchrun() -> bool:
    """True when the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR) is present."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def setup(backend: Optional[str] = None) -> tuple[int, int]:
    """Initialise the default process group from the torchrun environment (once) and return
    ``(rank, world_size)``. Backend: NCCL when CUDA is available, gloo otherwise."""
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed support")
    if not dist.is_initialized():
        if not launched_by_torchrun():
            raise RuntimeError(
                "torch.distributed is not initialised and no torchrun environment was found; launch with "
                "`torchrun --nproc_per_node=N ...` or call torch.distributed.init_process_group yourself"
            )
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    """Rank 0, or a single-process run: the process that logs, prints and writes checkpoints."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _StepForward(nn.Module):
    """Makes ``forward`` one time step, so DDP's forward hooks run per step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.model.step(x, state)


class DistributedModel(nn.Module):
    """A stateful model whose gradients are averaged across ranks by DDP at each update.

    Speaks the stateful-model protocol (``init_state``, ``step``) plus ``set_gradient_sync``, which
    the engines call so that only the last step of a window synchronises. ``module`` is the
    wrapped model (use it for ``state_dict`` and evaluation).
    """

    def __init__(self, model: nn.Module, **ddp_options: Any) -> None:
        super().__init__()
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("initialise torch.distributed first (fptt.training.distributed.setup())")
        self.module = model
        self.ddp = DistributedDataParallel(_StepForward(model), **ddp_options)
        self._sync = True

    def set_gradient_sync(self, enabled: bool) -> None:
        """Whether the next ``step`` prepares DDP's gradient all-reduce for the coming backward."""
        self._sync = bool(enabled)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Any:
        return self.module.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        if self._sync or not torch.is_grad_enabled():
            return self.ddp(x, state)
        with self.ddp.no_sync():
            return self.ddp(x, state)

    def forward(self, x: Tensor, state: Any = None) -> Any:
        return self.module(x, state)

    def __getattr__(self, name: str) -> Any:
        """Every public attribute of the wrapped model (``input_size``, ``output_size``,
        ``firing_rates``, ...), so that the engines' checks see the model itself under DDP."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            return getattr(super().__getattr__("module"), name)
