"""Data-parallel FPTT on MNIST-10k with torch.distributed.

One machine, 2 processes on CPU (gloo):   torchrun --nproc_per_node=2 examples/distributed_fptt.py
One machine, 4 GPUs (NCCL):               torchrun --nproc_per_node=4 examples/distributed_fptt.py
Two machines, 8 GPUs each (run on both):  torchrun --nnodes=2 --node_rank=<0|1> --nproc_per_node=8 \
                                               --master_addr=<host of rank 0> --master_port=29500 \
                                               examples/distributed_fptt.py
A quick check:                            torchrun --standalone --nproc_per_node=2 examples/distributed_fptt.py \
                                               --epochs 1 --max-batches 3
"""
import argparse

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from fptt import FPTT, SpikingRNN, evaluate, train_epoch
from fptt.data import SequentialMNIST
from fptt.training.distributed import DistributedModel, is_main_process, setup

parser = argparse.ArgumentParser(description="data-parallel FPTT on MNIST-10k (196 steps)")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--max-batches", type=int, default=None, help="at most N batches per epoch and process")
args = parser.parse_args()

rank, world = setup()  # reads RANK / WORLD_SIZE / MASTER_ADDR set by torchrun
device = torch.device(f"cuda:{torch.cuda.current_device()}") if torch.cuda.is_available() else torch.device("cpu")
torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
model = SpikingRNN(1, 128, 10, neuron="ltc").to(device)
optimizer = FPTT(torch.optim.Adamax(model.parameters(), lr=3e-3), alpha=0.1, beta=0.5)
train_set = SequentialMNIST("train", downsample=14)
sampler = DistributedSampler(train_set, shuffle=True, seed=0)  # each rank gets its own shard
loader = DataLoader(train_set, batch_size=128 // world, sampler=sampler)
parallel = DistributedModel(model)

for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    metrics = train_epoch(parallel, loader, optimizer, method="fptt", k=7,
                          max_batches=args.max_batches, progress=is_main_process())
    optimizer.load_average()
    if is_main_process():  # only rank 0 evaluates, prints and would write checkpoints
        heldout = evaluate(model, DataLoader(SequentialMNIST("heldout", downsample=14), batch_size=500))
        print(f"epoch {epoch}: train acc {metrics.accuracy:.3f}, held-out acc {heldout.accuracy:.3f}")
torch.distributed.destroy_process_group()
