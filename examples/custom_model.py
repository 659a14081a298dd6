"""FPTT with your own stateful model: anything with ``init_state`` and ``step`` trains.

Here a ``torch.nn.GRUCell`` plus a linear readout learns to classify noisy sequences by the sign
of their mean, with one FPTT update every 5 steps.

    python examples/custom_model.py
"""
import torch
from torch import nn

from fptt import FPTT, evaluate, train_epoch


class GRUClassifier(nn.Module):
    """The stateful-model protocol: init_state(batch, device, dtype) and step(x_t, state)."""

    def __init__(self, input_size: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.cell, self.head, self.hidden = nn.GRUCell(input_size, hidden), nn.Linear(hidden, classes), hidden

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden, device=device, dtype=dtype)

    def step(self, x_t, h):
        h = self.cell(x_t, h)
        return self.head(h), h          # (scores at step t, new state)


def batches(count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        y = torch.randint(0, 2, (32,), generator=generator)
        x = torch.randn(32, 40, 3, generator=generator) + (y.float() * 2 - 1).view(-1, 1, 1) * 0.3
        yield x, y


torch.manual_seed(0)
model = GRUClassifier(input_size=3, hidden=32, classes=2)
optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=3e-3), alpha=0.1)
for epoch in range(3):
    trained = train_epoch(model, list(batches(30, seed=epoch)), optimizer, method="fptt", k=5)
    with optimizer.averaged():          # evaluate with the running average W̄, keep training W
        tested = evaluate(model, list(batches(8, seed=100)))
    print(f"epoch {epoch + 1}: train acc {trained.accuracy:.3f}  test acc (W̄) {tested.accuracy:.3f}")
