"""Train an LTC spiking RNN with FPTT on the adding task (SPEC §4), in a few lines.

    python examples/adding_task_fptt.py          # about a minute on 2 CPU cores

The network is in the authors' adding-task regime (docs/PRESETS.md): a fixed threshold, a zero
initial state, a linear readout of the membrane and liquid gates whose time constants start
spread up to T (chrono init). Always answering the mean scores MSE 1/6 ≈ 0.167.
"""
import torch
from torch.utils.data import DataLoader

from fptt import FPTT, SpikingRNN, evaluate, train_epoch
from fptt.data import AddingTask

torch.manual_seed(0)
T = 50
train = DataLoader(AddingTask(seq_len=T, num_samples=6400, seed=1), batch_size=64, shuffle=True)
test = DataLoader(AddingTask(seq_len=T, num_samples=512, seed=2), batch_size=512)
model = SpikingRNN(input_size=2, hidden_sizes=64, output_size=1, neuron="ltc", readout="linear",
                   readout_from="membrane", baseline_threshold=0.5, adaptation_strength=0.0,
                   fixed_threshold=True, initial_membrane="zero", synapse_init="torch_default", chrono_tau=T)
optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=3e-3), alpha=0.005, beta=0.5, clip_grad_norm=1.0)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.3)

for epoch in range(3):
    # 10 updates per sequence, each on a detached window, the loss at each window's end
    trained = train_epoch(model, train, optimizer, method="fptt", update_points=10, loss_steps="window_end")
    scheduler.step()
    with optimizer.averaged():                                           # evaluate with the running average W̄
        tested = evaluate(model, test)
    print(f"epoch {epoch + 1}: train mse {trained.mse:.4f}  test mse {tested.mse:.4f}  "
          f"(always answering 1: {AddingTask.BASELINE_MSE:.3f})")
