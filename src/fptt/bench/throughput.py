"""Training throughput at the classification batch: an S-MNIST-196 epoch at batch 512.

Every configuration trains on the same random sequences of the S-MNIST-196 shape (196 steps of
one pixel, 10 classes; the values do not change the work), measured in one process:

* ``ltc_fptt_k1_captured``: FPTT k = 1 with the captured update (:mod:`fptt.training.captured`), the
  default of ``fptt train`` for a run of at least ``CAPTURE_AFTER_STEPS`` steps;
* ``ltc_fptt_k1`` / ``ltc_bptt``: the network ``fptt train --task smnist --downsample 14
  --batch-size 512`` builds (LTC, the task default: 256 neurons, Adamax, clip 1, linear loss
  weighting) on its default path for a run of this length (an epoch is 20 × 196 steps, over
  ``FUSE_AFTER_STEPS``: the compiled kernels), trained by :func:`fptt.train_epoch` with FPTT
  k = 1 and with BPTT; ``_exact``: the same with ``--no-fused``;
* ``lif_bptt`` (fptt), ``snntorch_bptt`` and ``spikingjelly_bptt``: one recurrent LIF network of
  the same shape, input 1 → 256 recurrent LIF (all-to-all recurrent weights, reset by
  subtraction) → 10 outputs, cross-entropy at every step with the same linear weights, one
  backward through the whole sequence, Adamax; snnTorch's ``RLeaky`` (a learnable decay per
  neuron) and SpikingJelly's ``LinearRecurrentContainer(LIFNode)`` (a fixed τ) each in its
  library's own single-step loop with a ``Linear`` readout of the spikes; fptt's
  ``SpikingRNN(neuron="lif", readout="fixed")`` has a learnable τ_m per neuron and a leaky
  integrator readout. Measured only where the library imports (the interop extra).

Figures: samples per second (the batch over the median seconds per batch, interleaved rounds),
the ratio to ``ltc_bptt`` per round, and the memory of one batch: on CUDA the allocator's peak
above what was allocated before; on CPU the largest set of activations autograd kept for one
update (:class:`fptt.memory.SavedTensorMeter`, parameters not counted; for BPTT the whole
sequence), which is exact and the same in every library. (The process's resident high-water mark
does not show it: the allocator keeps the blocks of the warm-up batch.)
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..memory import SavedTensorMeter, per_update
from ..models import SpikingRNN
from ..run.build import build_model, build_optimizer
from ..run.config import resolve_config
from ..training.engine import loss_weights, train_epoch
from .common import (
    LEARNING_RATE,
    bar_panels,
    benchmark_parser,
    check_device,
    contention_note,
    finish_info,
    interleaved,
    machine_info,
    markdown_table,
    median,
    timed,
    write_outputs,
)
from .peers import _spikingjelly

__all__ = ["run_throughput_benchmark", "main"]

Train = Callable[[], None]
Setup = tuple[Train, torch.optim.Optimizer]


def _task_default(method: str, fused: bool, batch: int, hidden: int, device: torch.device,
                  data: list, capture: bool = False) -> tuple[Train, torch.optim.Optimizer, Any]:
    """What ``fptt train --task smnist --downsample 14`` trains, on ``data``."""
    config = resolve_config({}, {"task": "smnist", "downsample": 14, "method": method, "batch_size": batch,
                                 "fused": fused, "hidden_sizes": [hidden], "capture": capture})
    torch.manual_seed(0)
    model = build_model(config, 1, 10, seq_len=data[0][0].shape[1]).to(device)
    optimizer = build_optimizer(config, model)
    def train() -> None:
        train_epoch(model, data, optimizer, method=method, weighting=config.weighting,  # type: ignore[arg-type]
                    clip_grad_norm=None if method == "fptt" else config.clip_grad_norm,
                    k=1 if method == "fptt" else None, capture=capture)
    return train, optimizer, config


def _weighted_sequence_loss(outputs: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    weights = loss_weights(len(outputs), "linear")
    return sum(float(w) * F.cross_entropy(o, y) for w, o in zip(weights, outputs))  # type: ignore[return-value]


def _snntorch_lif(hidden: int, batch_data: list, device: torch.device) -> Optional[Setup]:
    try:
        import snntorch as snn
    except ImportError:
        return None
    torch.manual_seed(0)
    encoder, readout = nn.Linear(1, hidden).to(device), nn.Linear(hidden, 10).to(device)
    # a learnable decay per neuron, as fptt's LIF has a learnable τ_m per neuron
    lif = snn.RLeaky(beta=torch.full((hidden,), 0.9), learn_beta=True, linear_features=hidden, all_to_all=True,
                     reset_mechanism="subtract").to(device)
    params = [*encoder.parameters(), *lif.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adamax(params, lr=LEARNING_RATE, foreach=True)

    def train() -> None:
        for x, y in batch_data:
            spk = torch.zeros(x.shape[0], hidden, device=x.device)  # RLeaky's state, on the data's device
            mem = torch.zeros_like(spk)
            outputs = []
            for t in range(x.shape[1]):
                spk, mem = lif(encoder(x[:, t]), spk, mem)
                outputs.append(readout(spk))
            optimizer.zero_grad(set_to_none=True)
            _weighted_sequence_loss(outputs, y).backward()
            optimizer.step()
    return train, optimizer


def _spikingjelly_lif(hidden: int, batch_data: list, device: torch.device) -> Optional[Setup]:
    sj = _spikingjelly()
    if sj is None:
        return None
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, hidden), sj["recurrent"](sj["neuron"].LIFNode(v_reset=None), hidden, hidden),
                        nn.Linear(hidden, 10)).to(device)
    optimizer = torch.optim.Adamax(net.parameters(), lr=LEARNING_RATE, foreach=True)

    def train() -> None:
        for x, y in batch_data:
            outputs = [net(x[:, t]) for t in range(x.shape[1])]
            optimizer.zero_grad(set_to_none=True)
            _weighted_sequence_loss(outputs, y).backward()
            optimizer.step()
            sj["functional"].reset_net(net)
    return train, optimizer


def _fptt_lif(hidden: int, batch_data: list, device: torch.device) -> Setup:
    torch.manual_seed(0)
    model = SpikingRNN(1, hidden, 10, neuron="lif", readout="fixed").to(device)
    optimizer = torch.optim.Adamax(model.parameters(), lr=LEARNING_RATE, foreach=True)

    def train() -> None:
        train_epoch(model, batch_data, optimizer, method="bptt", weighting="linear")
    return train, optimizer


def _peak_memory_mib(device: torch.device, train: Train, optimizer: torch.optim.Optimizer) -> float:
    """Peak memory of one batch (module docstring): on CUDA the allocator's peak above what was
    allocated before; elsewhere the largest set of activations autograd kept for one update."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        train()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with per_update(optimizer, SavedTensorMeter()) as meter:
        train()
    return meter.peak / 2**20


def run_throughput_benchmark(out_dir: str | Path = "benchmarks/results", quick: bool = False, device: str = "cpu",
                             threads: int = 2) -> dict:
    """Samples per second and peak memory of an S-MNIST-196 batch of 512, FPTT against BPTT and peers.

    ``quick``: batch 8, 12 steps, 16 neurons, 2 rounds. Writes ``throughput[_quick].json/.md/.png``.
    """
    torch.set_num_threads(threads)
    dev = check_device(device)
    info = machine_info(device)
    batch, steps, hidden, rounds = (8, 12, 16, 2) if quick else (512, 196, 256, 3)
    generator = torch.Generator().manual_seed(0)
    data = [(torch.rand(batch, steps, 1, generator=generator).to(dev),
             torch.randint(0, 10, (batch,), generator=generator).to(dev))]
    setups: dict[str, Setup] = {}
    configs: dict[str, Any] = {}
    for name, method, fused, capture in (("ltc_fptt_k1", "fptt", True, False),
                                         ("ltc_fptt_k1_captured", "fptt", True, True),
                                         ("ltc_fptt_k1_exact", "fptt", False, False),
                                         ("ltc_bptt", "bptt", True, False), ("ltc_bptt_exact", "bptt", False, False)):
        train, optimizer, config = _task_default(method, fused, batch, hidden, dev, data, capture)
        setups[name] = (train, optimizer)
        configs[name] = {key: getattr(config, key) for key in ("neuron", "hidden_sizes", "optimizer", "lr",
                                                               "clip_grad_norm", "weighting", "method", "fused", "capture",
                                                               "readout")}
    setups["lif_bptt"] = _fptt_lif(hidden, data, dev)
    missing = []
    for name, make in (("snntorch_bptt", _snntorch_lif), ("spikingjelly_bptt", _spikingjelly_lif)):
        setup = make(hidden, data, dev)
        if setup is None:
            missing.append(name)
        else:
            setups[name] = setup
    memory: dict[str, float] = {}
    for name, (train, optimizer) in setups.items():  # warm-up (compilation, lazy state), then one batch's peak
        train()
        memory[name] = _peak_memory_mib(dev, train, optimizer)
        print(f"  {name}: warmed up, peak {memory[name]:.1f} MiB", flush=True)
    runs = {name: train for name, (train, _) in setups.items()}
    raw = interleaved({name: partial(timed, dev, train) for name, train in runs.items()}, rounds)
    finish_info(info)
    seconds = {name: median(values) for name, values in raw.items()}
    samples_per_second = {name: batch / value for name, value in seconds.items()}
    vs_bptt = {name: median(a / b for a, b in zip(values, raw["ltc_bptt"])) for name, values in raw.items()}
    memory_label = ("peak allocated on the GPU" if dev.type == "cuda" else
                    "activations autograd kept for one update (peak)")
    notes = [note for note in [contention_note(info)] if note]
    notes += [f"{name}: not measured, its library is not installed (pip install -e \".[interop]\" "
              "-c constraints/interop.txt)" for name in missing]
    lines = [f"{name}: {samples_per_second[name]:.0f} samples/s, x{vs_bptt[name]:.2f} of LTC BPTT's time per batch, "
             f"{memory_label} {memory[name]:.1f} MiB" for name in runs]
    for line in lines:
        print(line)
    payload = {"benchmark": "throughput", "memory_measure": memory_label, "quick": quick, "machine": info,
               "shape": {"batch": batch, "steps": steps, "hidden": hidden, "inputs": 1, "classes": 10,
                         "rounds": rounds, "data": "random, S-MNIST-196 shape"},
               "configs": configs, "raw_seconds_per_batch": raw, "samples_per_second": samples_per_second,
               "time_ratio_to_ltc_bptt": vs_bptt, "peak_memory_mib": memory, "lines": lines, "notes": notes}
    rows = [(name, seconds[name], samples_per_second[name], vs_bptt[name], memory[name]) for name in runs]
    md = "\n\n".join([
        f"# Throughput at the classification batch ({'quick' if quick else 'full'})",
        f"`{info['command']}` — torch {info['torch']}, {info['torch_threads']} threads, {info['cpu']}, device "
        f"{device}, git {info['git_commit']}, load average {info.get('load_average_start')} -> "
        f"{info.get('load_average_end')}",
        f"S-MNIST-196 shape: batch {batch}, {steps} steps of 1 input, 10 classes, {hidden} neurons; "
        f"{rounds} interleaved rounds of one batch each, medians. LTC rows: the `fptt train --task smnist "
        "--downsample 14` network and optimizer; LIF rows: one equal recurrent LIF network in each library, "
        "BPTT through the whole sequence.",
        markdown_table(["configuration", "s / batch", "samples / s", "x LTC BPTT time", f"{memory_label}, MiB"], rows),
        "\n".join(f"- {line}" for line in notes) if notes else "",
    ])
    write_outputs(out_dir, "throughput_quick" if quick else "throughput", payload, md,
                  lambda png: bar_panels(png, [(samples_per_second, "training samples per second",
                                                f"S-MNIST-196, batch {batch}"),
                                               (memory, f"{memory_label} (MiB)", "memory")], rotation=25, width=6.5))
    return payload


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """``fptt bench throughput`` / ``python benchmarks/throughput.py``."""
    parser = benchmark_parser("fptt bench throughput", run_throughput_benchmark.__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    return run_throughput_benchmark(args.out, quick=args.quick, device=args.device, threads=args.threads)
