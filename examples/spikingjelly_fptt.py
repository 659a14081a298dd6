"""Train a SpikingJelly network with FPTT: the SpikingJelly model unchanged, behind fptt.interop.adapters.

A recurrent LIF layer (SpikingJelly's LinearRecurrentContainer around a LIFNode) and a linear
readout, in multi-step mode (step_mode="m"), learn MNIST-1D (40 time steps, 10 classes; generated
offline by the ``mnist1d`` package). FPTT updates every 10 steps, so the adapter feeds the network
one time step at a time ((1, batch, features) sequences) and carries its memories (the LIF
membrane, the container's feedback y_{t-1}) itself.

    pip install 'fptt[interop,data]' -c constraints/interop.txt
    python examples/spikingjelly_fptt.py
"""
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn
from torch.utils.data import DataLoader

from fptt import FPTT, evaluate, train_epoch
from fptt.data import get_dataset
from fptt.interop.adapters import SpikingJellyAdapter

torch.manual_seed(0)
train = DataLoader(get_dataset("mnist1d", "train"), batch_size=64, shuffle=True)
test = DataLoader(get_dataset("mnist1d", "test"), batch_size=256)

network = nn.Sequential(                        # an ordinary SpikingJelly model
    layer.Linear(1, 128),
    layer.LinearRecurrentContainer(neuron.LIFNode(tau=2.0, detach_reset=True), 128, 128),
    layer.Linear(128, 10),
)
functional.set_step_mode(network, "m")
model = SpikingJellyAdapter(network, input_shape=1)
optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=3e-3), alpha=0.1)
for epoch in range(5):
    trained = train_epoch(model, train, optimizer, method="fptt", k=10)
    optimizer.load_average()                    # the paper's end-of-epoch W ← W̄
    tested = evaluate(model, test)
    print(f"epoch {epoch + 1}: loss {trained.loss:.3f}  train acc {trained.accuracy:.3f}  "
          f"test acc {tested.accuracy:.3f}  ({trained.seconds:.0f}s)")
