"""FPTT implementations side by side: fptt against SpikingJelly's and the paper code's FPTT loop.

One recurrent LIF network of the same size for everyone (input 1 → H recurrent LIF → 10 outputs,
k = 1: an update at every step, Adamax, α = 0.1), trained on the same random sequences:

* ``fptt`` / ``fptt_fused``: :func:`fptt.train_epoch` with ``FPTT(Adamax)`` (``fused=False``, the
  exact path, and ``fused=True``, what runs of at least ``FUSE_AFTER_STEPS`` steps use by default)
  on a ``SpikingRNN(neuron="lif")``;
* ``reference_loop``: :func:`fptt.bench.speed.naive_fptt_sequence` on the same model, the paper
  code's loop re-typed from its equations (the regularizer as an autograd expression, the
  post-update one parameter at a time in Python);
* ``spikingjelly``: SpikingJelly 2.0's ``fptt_online_training`` on
  ``Linear(1, H) → LinearRecurrentContainer(LIFNode, H, H) → Linear(H, 10)`` (its own recurrent
  LIF layer; the container keeps a copy of its output, see ``RecurrentLIF``), which per step runs
  a second forward and backward for the running average and deep-copies the neuron memories.
  Measured only when ``spikingjelly`` imports.

Figures: time per step (median over interleaved rounds, and the per-round ratio to ``fptt``), the
bytes autograd saves per update (:class:`fptt.memory.SavedTensorMeter`), and the growth of the
process's peak resident memory while each one trains (the kernel's high-water mark, reset before
each; Linux).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..memory import SavedTensorMeter, per_update, reset_peak_rss, rss_mb, status_kb
from ..models import SpikingRNN
from ..optim import FPTT
from ..training.engine import train_epoch
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
from .speed import naive_fptt_sequence

__all__ = ["run_peer_benchmark", "main"]

ALPHA, BETA, LR = 0.1, 0.5, LEARNING_RATE


def _spikingjelly() -> Optional[Any]:
    """SpikingJelly's FPTT entry points, or None when it is not installed."""
    try:
        from spikingjelly.activation_based import functional, layer, neuron
        from spikingjelly.activation_based.learning.online_learning import (
            fptt_online_training,
            fptt_online_training_init_w_ra,
        )
    except ImportError:
        return None
    class RecurrentLIF(layer.LinearRecurrentContainer):
        """SpikingJelly's recurrent container whose memory ``y`` is a copy, not a view: its own
        ``detach_net`` (called by ``fptt_online_training``) detaches memories in place, which
        PyTorch refuses for the view the stock container keeps (RuntimeError in SpikingJelly 2.0.0)."""

        def single_step_functional_forward(self, inputs, states, **kwargs):
            (y,), _ = super().single_step_functional_forward(inputs, states, **kwargs)
            y = y.clone() if y._base is not None else y
            return (y,), (y,)

    return dict(functional=functional, recurrent=RecurrentLIF, neuron=neuron, train=fptt_online_training,
                init_average=fptt_online_training_init_w_ra)


def _per_step(device: torch.device, train: Callable[[], object], steps: int) -> float:
    """Seconds per time step of one ``train()`` call."""
    return timed(device, train) / steps


def _lif(hidden: int, device: torch.device) -> SpikingRNN:
    torch.manual_seed(0)
    return SpikingRNN(1, hidden, 10, neuron="lif", readout="fixed").to(device)


def _setups(hidden: int, x: torch.Tensor, y: torch.Tensor, device: torch.device
            ) -> dict[str, tuple[Callable[[], object], torch.optim.Optimizer]]:
    """name -> (train on the batch once, the optimizer whose step closes an update)."""
    loader = [(x, y)]
    setups: dict[str, tuple[Callable[[], object], torch.optim.Optimizer]] = {}
    for name, fused in (("fptt", False), ("fptt_fused", True)):
        model = _lif(hidden, device)
        opt = FPTT(torch.optim.Adamax(model.parameters(), lr=LR, foreach=True), alpha=ALPHA, beta=BETA, fused=fused)
        setups[name] = (partial(train_epoch, model, loader, opt, method="fptt", k=1), opt)

    model = _lif(hidden, device)
    inner = torch.optim.Adamax(model.parameters(), lr=LR, foreach=True)
    averages = {n: p.detach().clone() for n, p in model.named_parameters()}
    lambdas = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    x_steps, y_dev = x.transpose(0, 1).contiguous().to(device), y.to(device)
    setups["reference_loop"] = (lambda: naive_fptt_sequence(model, x_steps, y_dev, inner, averages, lambdas,
                                                            alpha=ALPHA, beta=BETA), inner)
    sj = _spikingjelly()
    if sj is not None:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, hidden),
                            sj["recurrent"](sj["neuron"].LIFNode(detach_reset=True), hidden, hidden),
                            nn.Linear(hidden, 10)).to(device)
        sj_opt = torch.optim.Adamax(net.parameters(), lr=LR, foreach=True)
        w_ra = sj["init_average"](sj_opt)
        targets = y_dev.unsqueeze(0).expand(x_steps.shape[0], -1)

        def spikingjelly_sequence() -> None:
            sj["train"](net, sj_opt, x_steps, targets, F.cross_entropy, ALPHA, w_ra)
            sj["functional"].reset_net(net)

        setups["spikingjelly"] = (spikingjelly_sequence, sj_opt)
    return setups


def run_peer_benchmark(out_dir: str | Path = "benchmarks/results", quick: bool = False, device: str = "cpu",
                       threads: int = 2) -> dict:
    """Time per step, saved bytes per update and peak-RSS growth of each FPTT implementation.

    ``quick``: H = 32, batch 8, 10 steps, 2 rounds. Writes ``peers[_quick].json/.md/.png``.
    """
    torch.set_num_threads(threads)
    dev = check_device(device)
    info = machine_info(device)
    hidden, batch, steps, rounds = (32, 8, 10, 2) if quick else (256, 128, 100, 7)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, steps, 1, generator=generator).to(dev)
    y = torch.randint(0, 10, (batch,), generator=generator).to(dev)
    setups = _setups(hidden, x, y, dev)
    memory: dict[str, dict[str, Optional[float]]] = {}
    for name, (train, optimizer) in setups.items():  # warm-up (compilation, lazy state) + memory
        train()
        before = rss_mb()
        peak_reset = reset_peak_rss()
        with per_update(optimizer, SavedTensorMeter()) as meter:
            train()
        high_water = status_kb("VmHWM")
        memory[name] = {
            "saved_mib_per_update": meter.peak / 2**20,
            "peak_rss_growth_mib": (high_water / 1024.0 - before) if peak_reset and high_water and before else None,
        }
    raw = interleaved({name: partial(_per_step, dev, train, steps) for name, (train, _) in setups.items()}, rounds)
    finish_info(info)
    ms = {name: 1e3 * median(values) for name, values in raw.items()}
    vs_fptt = {name: median(a / b for a, b in zip(values, raw["fptt"])) for name, values in raw.items()}
    notes = [note for note in [contention_note(info)] if note]
    if "spikingjelly" not in setups:
        notes.append("SpikingJelly is not installed, so its column is missing: see docs/PERFORMANCE.md "
                     "(\"Peers\") for the install command")
    best = min(ms["fptt"], ms["fptt_fused"])
    verdicts = [f"{name}: {ms[name]:.2f} ms/step, x{ms[name] / best:.2f} of fptt's best ({best:.2f} ms)"
                for name in ms if not name.startswith("fptt")]
    if "spikingjelly" in ms:
        speedup = ms["spikingjelly"] / best
        verdicts.append(f"TARGET fptt >= 2x faster per step than SpikingJelly's FPTT: x{speedup:.2f} "
                        f"({'PASS' if speedup >= 2 else 'MISS'})")
    payload = {"benchmark": "peers", "quick": quick, "machine": info,
               "network": {"hidden": hidden, "batch": batch, "steps_per_call": steps, "rounds": rounds,
                           "neuron": "LIF", "k": 1, "inner": "Adamax", "alpha": ALPHA, "beta": BETA, "lr": LR},
               "raw_seconds_per_step": raw, "median_ms_per_step": ms, "ratio_to_fptt": vs_fptt,
               "memory": memory, "verdicts": verdicts, "notes": notes}
    for line in verdicts:
        print(line)
    rows = [(name, ms[name], vs_fptt[name], memory[name]["saved_mib_per_update"], memory[name]["peak_rss_growth_mib"])
            for name in ms]
    md = "\n\n".join([
        f"# FPTT implementations side by side ({'quick' if quick else 'full'})",
        f"`{info['command']}` — torch {info['torch']}, {info['torch_threads']} threads, {info['cpu']}, device "
        f"{device}, git {info['git_commit']}, load average {info.get('load_average_start')} -> "
        f"{info.get('load_average_end')}",
        f"Recurrent LIF, H={hidden}, batch {batch}, k=1 (an update per step), Adamax lr {LR}, α={ALPHA}; "
        f"{steps} steps per call, {rounds} interleaved rounds, medians.",
        markdown_table(["implementation", "ms / step", "x fptt (exact)", "saved MiB / update", "peak RSS growth MiB"],
                       rows),
        "\n".join(f"- {line}" for line in verdicts + notes),
    ])
    write_outputs(out_dir, "peers_quick" if quick else "peers", payload, md, lambda png: bar_panels(png, [
        (ms, "ms per step (median)", "time per FPTT step (k=1)"),
        ({n: float(memory[n]["saved_mib_per_update"] or 0.0) for n in ms}, "MiB saved for backward per update",
         "activation memory per update")]))
    return payload


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """``fptt bench peers`` / ``python benchmarks/peers.py``."""
    parser = benchmark_parser("fptt bench peers", run_peer_benchmark.__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    return run_peer_benchmark(args.out, quick=args.quick, device=args.device, threads=args.threads)
