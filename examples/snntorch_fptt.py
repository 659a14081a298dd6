"""Train an snnTorch network with FPTT: the snnTorch model unchanged, behind fptt.interop.adapters.

A recurrent leaky (RLeaky) layer and a leaky readout, built the snnTorch way with init_hidden off,
learn MNIST-1D (40 time steps of one value, 10 classes; generated offline by the ``mnist1d``
package) with one FPTT update every 10 steps. The readout's membrane potential is the score.

    pip install 'fptt[interop,data]' -c constraints/interop.txt
    python examples/snntorch_fptt.py
"""
import snntorch as snn
import torch
from torch import nn
from torch.utils.data import DataLoader

from fptt import FPTT, evaluate, train_epoch
from fptt.data import get_dataset
from fptt.interop.adapters import SnnTorchAdapter

torch.manual_seed(0)
train = DataLoader(get_dataset("mnist1d", "train"), batch_size=64, shuffle=True)
test = DataLoader(get_dataset("mnist1d", "test"), batch_size=256)

network = nn.Sequential(                        # an ordinary snnTorch model
    nn.Linear(1, 128),
    snn.RLeaky(beta=0.9, linear_features=128),  # init_hidden=False (the default): the adapter carries the state
    nn.Linear(128, 10),
    snn.Leaky(beta=0.9, reset_mechanism="none"),  # non-spiking readout: its membrane is the class score
)
model = SnnTorchAdapter(network, input_shape=1, output="membrane")
optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=3e-3), alpha=0.1)
for epoch in range(5):
    trained = train_epoch(model, train, optimizer, method="fptt", k=10)
    optimizer.load_average()                    # the paper's end-of-epoch W ← W̄
    tested = evaluate(model, test)
    print(f"epoch {epoch + 1}: loss {trained.loss:.3f}  train acc {trained.accuracy:.3f}  "
          f"test acc {tested.accuracy:.3f}  ({trained.seconds:.0f}s)")
