"""Train an LTC spiking RNN with FPTT on the adding task (SPEC §4), in a few lines.

    python examples/adding_task_fptt.py          # about a minute on 2 CPU cores

Always answering the mean scores MSE 1/6 ≈ 0.167; FPTT at every step brings the held-out MSE
well below it.
"""
import torch
from torch.utils.data import DataLoader

from fptt import FPTT, SpikingRNN, evaluate, train_epoch
from fptt.data import AddingTask

torch.manual_seed(0)
train = DataLoader(AddingTask(seq_len=50, num_samples=3200, seed=1), batch_size=32, shuffle=True)
test = DataLoader(AddingTask(seq_len=50, num_samples=512, seed=2), batch_size=256)
model = SpikingRNN(input_size=2, hidden_sizes=32, output_size=1, neuron="ltc", readout_from="membrane")
optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=5e-3), alpha=0.5, beta=0.5)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.3)

for epoch in range(3):
    trained = train_epoch(model, train, optimizer, method="fptt", k=1)   # one update per time step
    scheduler.step()
    tested = evaluate(model, test)                                       # with W; `with optimizer.averaged():` for W̄
    print(f"epoch {epoch + 1}: train mse {trained.mse:.4f}  test mse {tested.mse:.4f}  "
          f"(always answering 1: {AddingTask.BASELINE_MSE:.3f})")
