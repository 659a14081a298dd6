"""Write the accuracy study's config files (one JSON per run) into experiments/configs/.

    python experiments/make_configs.py

Budgets are sized for 2 CPU cores and one 180-minute session (see docs/RESULTS.md).
"""
import json
from pathlib import Path

OUT = Path(__file__).parent / "configs"


def write(name: str, **cfg) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps({"name": name, **cfg}, indent=1) + "\n")


# 1. Normalisation question (SPEC §2): MNIST-10k, 196 steps, 60 batches, FPTT and BPTT.
for method in ("fptt", "bptt"):
    for norm in ("none", "layer"):
        write(f"norm_smnist196_{method}_{norm}", task="smnist", downsample=14, hidden=[128], method=method,
              norm=norm, optimizer="adamax", lr=3e-3, epochs=1, max_batches=60, eval_every=60)

# 2. S-MNIST / PS-MNIST on MNIST-10k at 196 steps: 2 epochs (124 updates of BPTT, 24,304 of FPTT k=1).
SMNIST = dict(downsample=14, hidden=[128], optimizer="adamax", lr=3e-3, epochs=2, eval_every=31)
for task in ("smnist", "psmnist"):
    for seed in (0, 1, 2):
        write(f"{task}196_ltc_fptt_k1_s{seed}", task=task, method="fptt", seed=seed, **SMNIST)
        write(f"{task}196_ltc_bptt_s{seed}", task=task, method="bptt", seed=seed, **SMNIST)
    write(f"{task}196_ltc_fptt_k14_s0", task=task, method="fptt", k=14, **SMNIST)
    write(f"{task}196_ltc_online_s0", task=task, method="online", **SMNIST)
    write(f"{task}196_alif_fptt_k1_s0", task=task, neuron="alif", method="fptt", **SMNIST)
    write(f"{task}196_alif_bptt_s0", task=task, neuron="alif", method="bptt", **SMNIST)

# 3. S-MNIST at the full 784 steps (one epoch each).
S784 = dict(task="smnist", hidden=[128], optimizer="adamax", lr=3e-3, epochs=1, eval_every=31)
write("smnist784_ltc_fptt_k1_s0", method="fptt", **S784)
write("smnist784_ltc_fptt_k28_s0", method="fptt", k=28, **S784)
write("smnist784_ltc_bptt_s0", method="bptt", **S784)

# 4. The adding task moved to experiments/adding_study.py (the per-task regime, `fptt train --preset paper`):
#    the generic-LTC adding runs of v0.1 were superseded and removed.

# 5. A longer S-MNIST-196 budget (10 epochs, one seed): does the FPTT-vs-BPTT gap hold once BPTT
#    has had more updates?
LONG = dict(SMNIST, epochs=10, eval_every=62)
write("smnist196long_ltc_fptt_k1_s0", task="smnist", method="fptt", **LONG)
write("smnist196long_ltc_bptt_s0", task="smnist", method="bptt", **LONG)
# ... and the same with the authors' gradient clipping (norm 1; FPTT clips loss + regularizer)
write("smnist196long_ltc_fptt_k1_clip1_s0", task="smnist", method="fptt", clip=1.0, **LONG)
write("smnist196long_ltc_bptt_clip1_s0", task="smnist", method="bptt", clip=1.0, **LONG)
# ... and two diagnostics of the late-epoch drop of FPTT k=1: the authors' lr decay (x0.1, here after
#     epoch 4 instead of 10), and a 3x smaller constant lr
write("smnist196long_ltc_fptt_k1_decay4_s0", task="smnist", method="fptt", lr_milestones=[4], **LONG)
write("smnist196long_ltc_fptt_k1_lr1e-3_s0", task="smnist", method="fptt", **dict(LONG, lr=1e-3))
