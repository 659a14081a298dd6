"""What the reference DVS-Gesture network (``--task dvsgesture --preset paper``) costs per frame:
the basis of the README's GPU memory and time estimate.

    python experiments/dvs_reference_memory.py [--out experiments/results/dvs_reference]

Builds the preset's model (conv LTC 64c7-128c7-128c3-256c3-256c3-512c3 on 2x128x128 frames,
512 LTC, liquid readout) through :func:`fptt.run.build.build_model`, then measures on this CPU, exactly
(:class:`~fptt.memory.SavedTensorMeter`, independent of the device): the activation bytes one
FPTT update keeps (k = 1: one frame) and the bytes BPTT keeps per frame (from 2 and 3 frames), at
batch 1; and the multiply-accumulates of one forward step, counted from the layer shapes. The
Markdown turns them into the memory of a batch of 16 (the preset's) at 20 and 500 frames, and a
time per epoch at an assumed sustained GPU throughput: estimates, not GPU measurements.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fptt.bench.common import machine_info, markdown_table
from fptt.memory import per_update
from fptt.run.build import build_model, build_optimizer
from fptt.run.config import resolve_config
from fptt.training.engine import train_epoch


def forward_macs(model) -> int:
    """Multiply-accumulates of one forward step at batch 1 (convolutions and linear layers)."""
    total = 0
    for layer in model.conv_layers:
        c_in, c_out, k = layer.in_channels, layer.channels, layer.spec.kernel
        h, w = layer.input_hw
        oh, ow = layer.output_hw
        gate_in = c_out * (2 if layer.gate_input == "concat" else 1)
        total += h * w * c_out * c_in * k * k  # synapse, before pooling
        total += 2 * oh * ow * c_out * gate_in * k * k  # the two gates, on the pooled map
    for module in [*model.dense_layers, model.readout]:
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear):
                total += sub.in_features * sub.out_features
    return total


def saved_bytes(config, model, frames: int, method: str) -> int:
    optimizer = build_optimizer(config.__class__(**{**config.to_dict(), "method": method}), model)
    x = (torch.rand(1, frames, model.input_size) < 0.02).float()
    y = torch.zeros(1, dtype=torch.int64)
    with per_update(optimizer) as meter:
        train_epoch(model, [(x, y)], optimizer, method=method, k=1 if method == "fptt" else None)
    return meter.peak


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/dvs_reference"))
    parser.add_argument("--gpu-tflops", type=float, default=20.0,
                        help="assumed sustained fp32 throughput of the GPU for the time estimate (TFLOP/s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = resolve_config(flag_values={"task": "dvsgesture", "preset": "paper"})
    model = build_model(config, 2 * 128 * 128, 11)
    parameters = sum(p.numel() for p in model.parameters())
    started = time.perf_counter()
    fptt = saved_bytes(config, model, 1, "fptt")
    bptt2 = saved_bytes(config, model, 2, "bptt")
    bptt3 = saved_bytes(config, model, 3, "bptt")
    seconds = time.perf_counter() - started
    per_frame = bptt3 - bptt2
    macs = forward_macs(model)
    batch = config.batch_size
    # weights, gradients, W̄ and λ (FPTT), Adamax's two moments: 6 copies of the parameters in fp32
    state_bytes = 6 * parameters * 4
    estimate = {
        f"fptt_batch{batch}_any_frames_gib": (batch * fptt + state_bytes) / 2**30,
        f"bptt_batch{batch}_20_frames_gib": (batch * (bptt2 + 18 * per_frame) + state_bytes) / 2**30,
        f"bptt_batch{batch}_500_frames_gib": (batch * (bptt2 + 498 * per_frame) + state_bytes) / 2**30,
    }
    train_flop = 3 * 2 * macs  # forward + backward ≈ 3 forward passes, 2 FLOP per MAC
    epoch_flop = train_flop * 1077 * config.num_frames  # DVS-Gesture's 1,077 training recordings
    result = {
        "info": machine_info("cpu"), "config": config.to_dict(), "parameters": parameters,
        "fptt_k1_saved_bytes_batch1": fptt, "bptt_saved_bytes_batch1": {"2": bptt2, "3": bptt3},
        "bptt_saved_bytes_per_frame_batch1": per_frame, "forward_macs_per_frame_batch1": macs,
        "parameter_and_optimizer_state_bytes": state_bytes, "estimates": estimate,
        "epoch_train_flop_20_frames": epoch_flop, "assumed_gpu_tflops": args.gpu_tflops,
        "epoch_seconds_estimate_20_frames": epoch_flop / (args.gpu_tflops * 1e12),
        "measure_seconds": seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dvs_reference.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows = [["parameters", f"{parameters:,}"],
            ["FPTT k=1: saved activations per update, batch 1", f"{fptt / 2**20:.1f} MiB"],
            ["BPTT: saved activations per frame, batch 1", f"{per_frame / 2**20:.1f} MiB"],
            ["weights + grads + W̄ + λ + Adamax state", f"{state_bytes / 2**20:.0f} MiB"],
            [f"estimate: FPTT, batch {batch}, any number of frames", f"{estimate[f'fptt_batch{batch}_any_frames_gib']:.1f} GiB"],
            [f"estimate: BPTT, batch {batch}, 20 frames", f"{estimate[f'bptt_batch{batch}_20_frames_gib']:.1f} GiB"],
            [f"estimate: BPTT, batch {batch}, 500 frames", f"{estimate[f'bptt_batch{batch}_500_frames_gib']:.1f} GiB"],
            ["forward MACs per frame and sample", f"{macs / 1e9:.2f} G"],
            [f"estimate: one epoch (1,077 × {config.num_frames} frames) at {args.gpu_tflops:g} TFLOP/s",
             f"{result['epoch_seconds_estimate_20_frames']:.0f} s"]]
    lines = ["# Reference DVS-Gesture network: memory and compute per frame", "",
             f"Measured with `python experiments/dvs_reference_memory.py` at git commit {result['info']['git_commit']} "
             "(saved-tensor bytes are exact and the same on any device; the GiB and seconds are estimates from "
             "them, without allocator overhead, cuDNN workspaces or the CUDA context, about 0.5–1 GiB).", "",
             markdown_table(["quantity", "value"], rows)]
    (args.out / "dvs_reference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
