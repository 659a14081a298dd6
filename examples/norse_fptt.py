"""Train a Norse network with FPTT: the Norse model unchanged, behind fptt.interop.adapters.

A recurrent LIF layer (LIFRecurrentCell), a linear layer and a leaky-integrator readout (LICell)
in Norse's SequentialState learn MNIST-1D (40 time steps, 10 classes; generated offline by the
``mnist1d`` package) with one FPTT update every 10 steps. The readout voltage is the score.

    pip install 'fptt[interop,data]' -c constraints/interop.txt
    python examples/norse_fptt.py
"""
import norse.torch as norse
import torch
from torch import nn
from torch.utils.data import DataLoader

from fptt import FPTT, evaluate, train_epoch
from fptt.data import get_dataset
from fptt.interop.adapters import NorseAdapter

torch.manual_seed(0)
train = DataLoader(get_dataset("mnist1d", "train"), batch_size=64, shuffle=True)
test = DataLoader(get_dataset("mnist1d", "test"), batch_size=256)

network = norse.SequentialState(                # an ordinary Norse model
    norse.LIFRecurrentCell(1, 128),
    nn.Linear(128, 10),
    norse.LICell(),
)
model = NorseAdapter(network, input_shape=1)
optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=3e-3), alpha=0.1)
for epoch in range(5):
    trained = train_epoch(model, train, optimizer, method="fptt", k=10)
    optimizer.load_average()                    # the paper's end-of-epoch W ← W̄
    tested = evaluate(model, test)
    print(f"epoch {epoch + 1}: loss {trained.loss:.3f}  train acc {trained.accuracy:.3f}  "
          f"test acc {tested.accuracy:.3f}  ({trained.seconds:.0f}s)")
