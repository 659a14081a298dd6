"""The operating regime of a network at initialisation (SPEC §2 "Per-task regimes"): input-current
size, firing rate per layer and logit spread on real digits, for the S-MNIST defaults and preset.

    python experiments/regime_check.py      # ~30 s on one core; numbers quoted in docs/PRESETS.md
"""
from __future__ import annotations

import statistics

import torch

from fptt.run.build import build_dataset, build_model
from fptt.run.config import resolve_config


def regime(flags: dict, samples: int = 256, seed: int = 0) -> dict:
    config = resolve_config({}, flags)
    torch.manual_seed(seed)
    model = build_model(config, 1, 10)
    dataset = build_dataset(config, "train")
    x = torch.stack([dataset[i][0] for i in range(samples)])
    state = model.init_state(samples)
    currents, rates = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            currents.append(float(model.layers[0].input_current(x[:, t], state.layers[0].spikes).std()))
            output, state = model.step(x[:, t], state)
            rates.append([float(layer.spikes.mean()) for layer in state.layers])
    return {"current_std": statistics.mean(currents),
            "firing_rates": [statistics.mean(r[i] for r in rates) for i in range(len(rates[0]))],
            "logit_std": float(output.std())}


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, flags in (("smnist defaults", {"task": "smnist", "downsample": 14}),
                        ("smnist --preset paper", {"task": "smnist", "downsample": 14, "preset": "paper"})):
        result = regime(flags)
        print(f"{name:24s} current std {result['current_std']:.3f}  firing rates "
              f"{', '.join(f'{r:.3f}' for r in result['firing_rates'])}  logit std {result['logit_std']:.3f}")
