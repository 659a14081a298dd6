"""Time per training step and per epoch (issue 6, benchmarks 2 and 3).

* (a) FPTT step (k=1, :func:`fptt.train_epoch` with ``FPTT(Adamax)``; exact, ``fused=False``; fused,
  ``fused=True`` for both the LTC dynamics and the update; captured, ``capture=True``, the whole
  update as one compiled graph (:mod:`fptt.training.captured`); and the eager *default*, network and optimizer
  built without the argument and trained past ``FUSE_AFTER_STEPS`` steps, so that ``fused="auto"``
  has switched to the compiled kernels) vs its floor, the same engine with ``method="online"``
  and plain Adamax (one forward + backward of one step + one optimizer step, no regularizer); a
  no-grad forward step for reference.
* (b) vs a *naive* FPTT written here the way the paper's code does it: the regularizer built as an
  autograd expression over all named parameters every step, added to the loss, one backward,
  then the post-update in a Python loop.
* (c) an S-MNIST-sized epoch (784 steps, 8000 samples, batch 128 -> 63 batches) with FPTT k=1 (exact and
  fused), FPTT with 28 windows of 28 steps, and BPTT (exact, and with the fused LTC dynamics, its
  default path in a run that long): a few batches timed, the epoch extrapolated.
* (3) scaling of the FPTT step with hidden size and batch size (time and saved-tensor bytes).

All configurations being compared are measured in the same process, interleaved (A, B, C, A, ...),
and summarised by medians; ratios are the figures to read on a shared machine.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..memory import SavedTensorMeter
from ..models import SpikingRNN
from ..models.state import detach_state
from ..optim import FPTT
from ..spec.rules import FUSE_AFTER_STEPS
from ..training.engine import loss_weights, train_epoch
from .common import (
    LEARNING_RATE,
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

__all__ = ["run_speed_benchmark", "naive_fptt_sequence", "main"]

EPOCH_SAMPLES = 8000


def _model(hidden: int, seed: int, device: torch.device, fused: bool = False) -> SpikingRNN:
    torch.manual_seed(seed)
    return SpikingRNN(1, hidden, 10, neuron="ltc", fused=fused).to(device)


def _adamax(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adamax(model.parameters(), lr=LEARNING_RATE, foreach=True)  # as fptt.run.trainer builds it


def naive_fptt_sequence(model: SpikingRNN, x: torch.Tensor, y: torch.Tensor, inner: torch.optim.Optimizer,
                        averages: dict, lambdas: dict, alpha: float = 0.1, beta: float = 0.5) -> None:
    """FPTT at k=1 the way the paper's code writes it (the baseline of benchmark (b)).

    Every step: ``reg = Σ_W (α/2)‖W − W̄‖² − ⟨λ, W⟩`` as an autograd expression over all named
    parameters, ``(ℓ_t + reg).backward()``, the inner step, then ``λ ← λ − α(W − W̄)`` and
    ``W̄ ← (1 − β)W̄ + βW − (β/α)λ`` one parameter at a time in Python. ``x`` is (time, batch, 1).
    """
    steps = x.shape[0]
    weights = loss_weights(steps, "linear")
    named = list(model.named_parameters())
    state = model.init_state(x.shape[1], device=x.device, dtype=x.dtype)
    for t in range(steps):
        state = detach_state(state)
        output, state = model.step(x[t], state)
        loss = weights[t] * F.cross_entropy(output, y)
        reg = 0.0
        for name, param in named:
            reg = reg + 0.5 * alpha * (param - averages[name].detach()).pow(2).sum()
            reg = reg - (param * lambdas[name].detach()).sum()
        inner.zero_grad(set_to_none=True)
        (loss + reg).backward()
        inner.step()
        with torch.no_grad():
            for name, param in named:
                lambdas[name].sub_(alpha * (param - averages[name]))
                averages[name].mul_(1 - beta).add_(beta * param).sub_((beta / alpha) * lambdas[name])


def _default_fptt(hidden: int, device: torch.device, loader: list, steps: int) -> tuple[SpikingRNN, FPTT]:
    """A network and an FPTT optimizer built with the library's defaults (``fused="auto"``), trained
    past ``FUSE_AFTER_STEPS`` steps so that both have switched to their compiled paths, as in any
    run that long: what a user gets without a flag."""
    torch.manual_seed(0)
    model = SpikingRNN(1, hidden, 10, neuron="ltc").to(device)
    optimizer = FPTT(_adamax(model), alpha=0.1, beta=0.5)
    for _ in range(math.ceil(FUSE_AFTER_STEPS / steps) + 1):
        train_epoch(model, loader, optimizer, method="fptt", k=1)
    layer = model.layers[0]
    if not (optimizer._fuse_policy.use_fused(training=False) and layer.fusion.kernels_now(layer.spike_fn) is not None):
        raise RuntimeError("the default FPTT path did not switch to its compiled kernels")
    return model, optimizer


def _step_benchmark(device: torch.device, hidden: int, batch: int, steps: int, rounds: int,
                    with_naive: bool = True) -> dict:
    """Per-step seconds of FPTT (engine), the floor (engine 'online', plain Adamax), naive FPTT, no-grad."""
    x = torch.rand(batch, steps, 1)
    y = torch.randint(0, 10, (batch,))
    loader = [(x, y)]
    fptt_model = _model(hidden, 0, device)
    fptt_opt = FPTT(_adamax(fptt_model), alpha=0.1, beta=0.5, fused=False)
    floor_model = _model(hidden, 0, device)
    floor_opt = _adamax(floor_model)
    runs: dict[str, Callable[[], float]] = {
        "fptt": lambda: timed(device, lambda: train_epoch(fptt_model, loader, fptt_opt, method="fptt", k=1)) / steps,
        "floor": lambda: timed(device, lambda: train_epoch(floor_model, loader, floor_opt, method="online")) / steps,
    }
    if with_naive:  # the full comparison: also the fused update, the naive loop, a no-grad forward
        fused_model = _model(hidden, 0, device, fused=True)
        fused_opt = FPTT(_adamax(fused_model), alpha=0.1, beta=0.5, fused=True)
        runs["fptt_fused"] = lambda: timed(
            device, lambda: train_epoch(fused_model, loader, fused_opt, method="fptt", k=1)) / steps
        captured_model = _model(hidden, 0, device)
        captured_opt = FPTT(_adamax(captured_model), alpha=0.1, beta=0.5)
        runs["fptt_captured"] = lambda: timed(device, lambda: train_epoch(
            captured_model, loader, captured_opt, method="fptt", k=1, capture=True)) / steps
        default_model, default_opt = _default_fptt(hidden, device, loader, steps)
        runs["fptt_default"] = lambda: timed(
            device, lambda: train_epoch(default_model, loader, default_opt, method="fptt", k=1)) / steps
        naive_model = _model(hidden, 0, device)
        naive_opt = _adamax(naive_model)
        averages = {n: p.detach().clone() for n, p in naive_model.named_parameters()}
        lambdas = {n: torch.zeros_like(p) for n, p in naive_model.named_parameters()}
        x_steps = x.to(device).transpose(0, 1).contiguous()
        y_dev = y.to(device)
        runs["naive"] = lambda: timed(device, lambda: naive_fptt_sequence(
            naive_model, x_steps, y_dev, naive_opt, averages, lambdas)) / steps

        def nograd() -> None:
            with torch.no_grad():
                state = naive_model.init_state(batch, device=device)
                for t in range(steps):
                    _, state = naive_model.step(x_steps[t], state)

        runs["nograd_forward"] = lambda: timed(device, nograd) / steps
    for run in runs.values():  # warm-up (allocator, lazy optimizer state, kernels)
        run()
    raw = interleaved(runs, rounds)
    meter_model = _model(hidden, 0, device)
    with SavedTensorMeter() as meter:
        out, state = meter_model.step(x[:, 0].to(device), meter_model.init_state(batch, device=device))
    return {"hidden": hidden, "batch": batch, "steps_per_call": steps, "rounds": rounds,
            "raw_seconds_per_step": raw, "median_ms": {k: 1e3 * median(v) for k, v in raw.items()},
            "saved_bytes_per_step": meter.bytes,
            "parameter_bytes": sum(p.numel() * p.element_size() for p in meter_model.parameters())}


def _epoch_benchmark(device: torch.device, hidden: int, batch: int, steps: int, batches: int,
                     rounds: int) -> dict:
    """Seconds per batch of ``steps`` steps for FPTT k=1, FPTT with 28 windows, BPTT."""
    data = [(torch.rand(batch, steps, 1), torch.randint(0, 10, (batch,))) for _ in range(batches)]
    windows = 28 if steps >= 56 else max(1, steps // 4)
    setups: dict[str, dict[str, Any]] = {
        "fptt_k1": dict(method="fptt", k=1),
        "fptt_k1_fused": dict(method="fptt", k=1),
        "fptt_k1_captured": dict(method="fptt", k=1, capture=True),
        f"fptt_K{windows}": dict(method="fptt", update_points=windows),
        "bptt": dict(method="bptt"),
        "bptt_fused": dict(method="bptt"),
    }
    models, runs = {}, {}
    for name, kwargs in setups.items():
        fused = name.endswith("fused")
        model = _model(hidden, 0, device, fused=fused)
        inner = _adamax(model)
        opt = FPTT(inner, alpha=0.1, beta=0.5, fused=fused) if kwargs["method"] == "fptt" else inner
        models[name] = (model, opt)
        train_epoch(model, data[:1], opt, **kwargs)  # warm-up: compilation, lazy state
        runs[name] = (lambda m=model, o=opt, kw=kwargs: timed(
            device, lambda: train_epoch(m, data, o, **kw)) / batches)
    raw = interleaved(runs, rounds)
    per_batch = {k: median(v) for k, v in raw.items()}
    epoch_batches = math.ceil(EPOCH_SAMPLES / batch)
    return {"hidden": hidden, "batch": batch, "steps": steps, "batches_timed_per_round": batches,
            "rounds": rounds, "windows": windows, "raw_seconds_per_batch": raw,
            "median_seconds_per_batch": per_batch, "epoch_batches": epoch_batches,
            "extrapolated_epoch_seconds": {k: v * epoch_batches for k, v in per_batch.items()},
            "note": f"{batches} batch(es) x {rounds} interleaved rounds timed, epoch = median batch time x "
                    f"{epoch_batches} batches ({EPOCH_SAMPLES} samples / batch {batch}); random data of MNIST shape"}


def run_speed_benchmark(out_dir: str | Path = "benchmarks/results", quick: bool = False, device: str = "cpu",
                        threads: int = 2) -> dict:
    """Time per FPTT step vs its floor and a naive FPTT, epoch time vs BPTT, scaling.

    ``quick``: hidden 32, batch 8, short sequences, few rounds (a few seconds). Writes
    ``speed[_quick].json/.md/.png`` into ``out_dir`` and returns the JSON payload.
    """
    torch.set_num_threads(threads)
    dev = check_device(device)
    info = machine_info(device)
    if quick:
        step = _step_benchmark(dev, 32, 8, steps=20, rounds=3)
        epoch = _epoch_benchmark(dev, 32, 8, steps=28, batches=1, rounds=2)
        scaling = {"hidden": [_step_benchmark(dev, h, 8, 10, 2, with_naive=False) for h in (16, 32)],
                   "batch": [_step_benchmark(dev, 32, b, 10, 2, with_naive=False) for b in (4, 8)]}
    else:
        step = _step_benchmark(dev, 256, 128, steps=100, rounds=9)
        print(f"  step: {step['median_ms']}", flush=True)
        epoch = _epoch_benchmark(dev, 256, 128, steps=784, batches=1, rounds=3)
        print(f"  epoch: {epoch['extrapolated_epoch_seconds']}", flush=True)
        scaling = {"hidden": [_step_benchmark(dev, h, 128, 30, 3, with_naive=False) for h in (64, 128, 256, 512, 1024)],
                   "batch": [_step_benchmark(dev, 256, b, 30, 3, with_naive=False) for b in (16, 32, 64, 128, 256)]}
    finish_info(info)
    notes = []
    note = contention_note(info)
    if note:
        notes.append(note)
    targets = _speed_targets(step, epoch)
    for line in targets:
        print(line)
    payload = {"benchmark": "speed", "quick": quick, "machine": info, "step": step, "epoch": epoch,
               "scaling": scaling, "targets": targets, "notes": notes}
    md = _markdown(info, step, epoch, scaling, targets, notes, quick, device)
    write_outputs(out_dir, "speed_quick" if quick else "speed", payload, md,
                  lambda png: _plot(step, epoch, scaling, png))
    return payload


def _speed_targets(step: dict, epoch: dict) -> list[str]:
    ms = step["median_ms"]
    raw = step["raw_seconds_per_step"]

    def ratio(series: dict, a: str, b: str) -> float:  # per round (same machine load), then the median
        return median(x / y for x, y in zip(series[a], series[b]))

    over = ratio(raw, "fptt", "floor")
    naive = ratio(raw, "naive", "fptt")
    fused_vs_naive = ratio(raw, "fptt_fused", "naive")
    default_vs_naive = ratio(raw, "fptt_default", "naive")
    captured_vs_naive = ratio(raw, "fptt_captured", "naive")
    captured_vs_default = ratio(raw, "fptt_captured", "fptt_default")
    exact_vs_naive = ratio(raw, "fptt", "naive")
    fused_vs_exact = ratio(raw, "fptt_fused", "fptt")
    e = epoch["median_seconds_per_batch"]
    er = epoch["raw_seconds_per_batch"]
    kname = next(k for k in e if k.startswith("fptt_K"))
    k_vs_bptt = ratio(er, kname, "bptt")
    k1_vs_bptt = ratio(er, "fptt_k1", "bptt")
    k1_fused_vs_bptt = ratio(er, "fptt_k1_fused", "bptt")
    k1_captured_vs_bptt = ratio(er, "fptt_k1_captured", "bptt")
    k1_fused_vs_bptt_fused = ratio(er, "fptt_k1_fused", "bptt_fused")
    h, b = step["hidden"], step["batch"]
    best = min(ms["fptt"], ms["fptt_fused"])
    return [
        f"TARGET FPTT step k=1 (H={h}, B={b}): {ms['fptt']:.2f} ms exact, {ms['fptt_fused']:.2f} ms fused "
        f"(target <= 2.5 ms: {'PASS' if best <= 2.5 else 'MISS'}); floor (online, plain Adamax) "
        f"{ms['floor']:.2f} ms; no-grad forward {ms['nograd_forward']:.2f} ms",
        f"TARGET default FPTT step / plain reference (naive loop): x{default_vs_naive:.3f} (target <= 0.55: "
        f"{'PASS' if default_vs_naive <= 0.55 else 'MISS'}); fused=True x{fused_vs_naive:.3f}, fused=False "
        f"x{exact_vs_naive:.3f}; fused / exact x{fused_vs_exact:.3f}; default {ms['fptt_default']:.2f} ms",
        f"TARGET captured FPTT step / plain reference (naive loop): x{captured_vs_naive:.3f} (target <= 0.45: "
        f"{'PASS' if captured_vs_naive <= 0.45 else 'MISS'}); captured / fused-eager default x{captured_vs_default:.3f}; "
        f"captured {ms['fptt_captured']:.2f} ms",
        f"TARGET FPTT machinery over the plain step: x{over:.3f} (target <= 1.15: {'PASS' if over <= 1.15 else 'MISS'})",
        f"TARGET naive FPTT / FPTT: x{naive:.2f} (target >= 2.5: {'PASS' if naive >= 2.5 else 'MISS'}); "
        f"naive {ms['naive']:.2f} ms/step",
        f"TARGET epoch at T={epoch['steps']}: FPTT k=1 fused / BPTT = {k1_fused_vs_bptt:.3f} (target <= 1: "
        f"{'PASS' if k1_fused_vs_bptt <= 1.0 else 'MISS'}; exact {k1_vs_bptt:.3f}; "
        f"captured {k1_captured_vs_bptt:.3f}; against BPTT with the fused "
        f"LTC dynamics {k1_fused_vs_bptt_fused:.3f}); FPTT K={epoch['windows']} / "
        f"BPTT = {k_vs_bptt:.3f} (target <= 0.6: {'PASS' if k_vs_bptt <= 0.6 else 'MISS'}); extrapolated epoch "
        + ", ".join(f"{k} {v:.0f} s" for k, v in epoch["extrapolated_epoch_seconds"].items()),
    ]


def _markdown(info, step, epoch, scaling, targets, notes, quick, device) -> str:
    ms = step["median_ms"]
    step_rows = [(name, value, value / ms["floor"]) for name, value in ms.items()]
    epoch_rows = [(name, epoch["median_seconds_per_batch"][name], seconds,
                   epoch["median_seconds_per_batch"][name] / epoch["median_seconds_per_batch"]["bptt"])
                  for name, seconds in epoch["extrapolated_epoch_seconds"].items()]
    scale_rows = [(axis, r["hidden"], r["batch"], r["median_ms"]["fptt"], r["median_ms"]["floor"],
                   r["median_ms"]["fptt"] / r["median_ms"]["floor"], r["saved_bytes_per_step"] / 2**20)
                  for axis, rows in scaling.items() for r in rows]
    return "\n\n".join([
        f"# Speed ({'quick' if quick else 'full'})",
        f"`{info['command']}` — torch {info['torch']}, {info['torch_threads']} threads, {info['cpu']} "
        f"({info['cpu_count']} cores), device {device}, git {info['git_commit']}, "
        f"load average {info.get('load_average_start')} -> {info.get('load_average_end')}",
        f"## Step (H={step['hidden']}, B={step['batch']}, {step['steps_per_call']} steps per call, "
        f"{step['rounds']} interleaved rounds, medians)",
        markdown_table(["configuration", "ms / step", "x floor"], step_rows),
        f"## Epoch at T={epoch['steps']} ({epoch['note']})",
        markdown_table(["method", "s / batch", "epoch s (extrapolated)", "x BPTT"], epoch_rows),
        "## Scaling (FPTT k=1 step vs floor; saved tensors of one step)",
        markdown_table(["axis", "hidden", "batch", "FPTT ms", "floor ms", "ratio", "saved MiB / step"], scale_rows),
        "\n".join(f"- {line}" for line in targets + notes),
    ])


def _plot(step, epoch, scaling, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    ms = step["median_ms"]
    axes[0].bar(list(ms), list(ms.values()), color=["C0", "C2", "C4", "C3", "C7"][: len(ms)])
    axes[0].set_ylabel("ms per step (median)")
    axes[0].set_title(f"step, H={step['hidden']} B={step['batch']}")
    ep = epoch["extrapolated_epoch_seconds"]
    axes[1].bar(list(ep), list(ep.values()), color=["C0", "C4", "C1", "C3"][: len(ep)])
    axes[1].set_ylabel("seconds per epoch (extrapolated)")
    axes[1].set_title(f"epoch, T={epoch['steps']}, {epoch['epoch_batches']} batches")
    for ax, axis in zip(axes[2:], ("hidden", "batch")):
        rows = scaling[axis]
        xs = [r[axis] for r in rows]
        ax.plot(xs, [r["median_ms"]["fptt"] for r in rows], "o-", label="FPTT k=1")
        ax.plot(xs, [r["median_ms"]["floor"] for r in rows], "s--", label="floor (plain step)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(axis + (" size" if axis == "hidden" else " size"))
        ax.set_ylabel("ms per step")
        ax.set_title(f"scaling with {axis}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """``fptt bench speed`` / ``python benchmarks/speed.py``."""
    parser = benchmark_parser("fptt bench speed", run_speed_benchmark.__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    return run_speed_benchmark(args.out, quick=args.quick, device=args.device, threads=args.threads)
