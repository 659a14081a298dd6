"""Memory vs sequence length: the benchmark behind ``fptt bench memory`` (THEORY.md §5, first claim).

The measurement tools (:class:`~fptt.memory.SavedTensorMeter`, the RSS readers) live in
:mod:`fptt.memory`; this module only runs the benchmark.
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..memory import SavedTensorMeter, per_update, reset_peak_rss, status_kb
from .common import (
    LEARNING_RATE,
    benchmark_parser,
    check_device,
    contention_note,
    finish_info,
    machine_info,
    markdown_table,
    run_in_child,
    write_outputs,
)

__all__ = ["SavedTensorMeter", "measure_update_cycle", "measure_batch_memory", "run_memory_benchmark", "main"]

FULL_LENGTHS = (100, 300, 1000, 3000, 10000)
QUICK_LENGTHS = (10, 20, 40)


def measure_update_cycle(config: dict) -> dict:
    """Train one batch of length T with ``config["method"]`` and report its memory.

    Runs in the current process; :func:`run_memory_benchmark` calls it in a fresh subprocess per
    configuration. Setup (model, optimizer, one warm-up update on a 2-step sequence so that lazily
    allocated optimizer state, thread pools and kernels exist) happens before the baseline, so the
    figure is what training the sequence adds. CPU: ``peak_rss - rss_before`` (VmHWM reset just
    before training; ``ru_maxrss`` when that is not possible); CUDA: ``max_memory_allocated`` minus
    ``memory_allocated`` before training. The SavedTensorMeter peak (activation bytes kept by the
    largest single update) is recorded in the same run.
    """
    from ..models import SpikingRNN
    from ..optim import FPTT
    from ..training.engine import train_epoch

    torch.set_num_threads(int(config.get("threads", 2)))
    device = check_device(config.get("device", "cpu"))
    torch.manual_seed(int(config.get("seed", 0)))
    method: Any = config["method"]  # a method name of fptt.spec.vocabulary.METHODS
    steps, batch = int(config["steps"]), int(config["batch"])
    # the exact paths: under fused="auto" a sequence of more than FUSE_AFTER_STEPS steps would
    # compile in the middle of the measured batch, and the compiler's memory would be counted
    model = SpikingRNN(1, list(config["hidden"]), 10, neuron="ltc", fused=False).to(device)
    inner = torch.optim.Adamax(model.parameters(), lr=LEARNING_RATE)
    optimizer = FPTT(inner, alpha=0.1, beta=0.5, fused=False) if method == "fptt" else inner
    k = config.get("k")
    train_method: Any = "tbptt" if method == "tbptt" else method
    x = torch.rand(batch, steps, 1)
    y = torch.randint(0, 10, (batch,))
    warm_x = torch.rand(batch, 2, 1)
    train_epoch(model, [(warm_x, y)], optimizer, method=train_method, k=None if method == "bptt" else 1)

    return {**config, **measure_batch_memory(model, optimizer, (x, y), train_method, None if method == "bptt" else k,
                                             device)}


def measure_batch_memory(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: tuple,
                         method: str, k: Optional[int], device: torch.device, **train_options) -> dict:
    """Train one ``batch`` with ``method`` and window ``k`` and report the memory it took: on CPU,
    the resident peak (VmHWM reset just before; ``ru_maxrss`` where that is impossible) minus the
    resident size before; on CUDA, ``max_memory_allocated`` minus ``memory_allocated`` before;
    and the SavedTensorMeter peak (activation bytes kept by the largest single update). Model and
    optimizer should be warmed up (one update) so that lazily allocated state is in the baseline."""
    from ..training.engine import train_epoch

    x, _ = batch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        rss_source = "torch.cuda.max_memory_allocated"
    else:
        reset = reset_peak_rss()
        before_kb = status_kb("VmRSS") or 0
        before = before_kb * 1024
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_source = "VmHWM after clear_refs" if reset else "ru_maxrss"
    started = time.perf_counter()
    with per_update(optimizer) as meter:
        metrics = train_epoch(model, [batch], optimizer, method=method, k=k, **train_options)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        hwm_kb = status_kb("VmHWM") if reset else None
        peak = hwm_kb * 1024 if hwm_kb is not None else max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss_before) * 1024
    input_bytes = x.numel() * x.element_size()
    return {
        "peak_bytes": int(peak),
        "baseline_bytes": int(before),
        "delta_bytes": int(peak - before),
        "delta_mb": (peak - before) / 2**20,
        "peak_mb": peak / 2**20,
        "input_bytes": int(input_bytes),
        "saved_tensor_peak_bytes": int(meter.peak),
        "updates": metrics.updates,
        "seconds": seconds,
        "memory_source": rss_source,
    }


def _label(method: str, k: Optional[int]) -> str:
    return {"fptt": f"FPTT k={k}", "tbptt": f"TBPTT k={k}", "bptt": "BPTT"}[method]


def run_memory_benchmark(out_dir: str | Path = "benchmarks/results", quick: bool = False,
                         device: str = "cpu", threads: int = 2,
                         lengths: Optional[Sequence[int]] = None,
                         max_predicted_gb: float = 4.0) -> dict:
    """Peak training memory of one update cycle over a whole sequence vs its length T.

    Configurations: FPTT (k=1 and k=28), truncated BPTT (k=28) and BPTT, for the S-MNIST LTC
    network (1 input, [256] hidden, 10 outputs, batch 128) and a 2-layer [256, 256] network; each
    in a fresh subprocess. BPTT runs are skipped when their predicted memory (SavedTensorMeter
    bytes per step at the shortest T, times T) exceeds ``max_predicted_gb``.
    ``quick``: one small network (hidden 32, batch 8), T in (10, 20, 40), FPTT k=1 and BPTT.
    Writes ``memory[_quick].json/.md/.png`` into ``out_dir`` and returns the JSON payload.
    """
    torch.set_num_threads(threads)
    check_device(device)
    info = machine_info(device)
    if quick:
        networks = {"tiny": ([32], 8)}
        methods = [("fptt", 1), ("bptt", None)]
        lengths = tuple(lengths or QUICK_LENGTHS)
    else:
        networks = {"1x256": ([256], 128), "2x256": ([256, 256], 128)}
        methods = [("fptt", 1), ("fptt", 28), ("tbptt", 28), ("bptt", None)]
        lengths = tuple(lengths or FULL_LENGTHS)
    results, notes = [], []
    for net_name, (hidden, batch) in networks.items():
        for method, k in methods:
            per_step = None
            for steps in lengths:
                if k is not None and k > steps:
                    continue
                config = {"network": net_name, "hidden": hidden, "batch": batch, "method": method,
                          "k": k, "steps": steps, "device": device, "threads": threads}
                if method == "bptt" and per_step is not None:
                    predicted = per_step * steps / 2**30
                    if predicted > max_predicted_gb:
                        notes.append(f"{net_name} BPTT T={steps} skipped: predicted {predicted:.1f} GB "
                                     f"of saved activations > {max_predicted_gb} GB")
                        results.append({**config, "skipped": True, "predicted_gb": predicted})
                        continue
                # quick mode measures in this process (seconds, not a torch import per run);
                # its RSS figures are then only indicative
                row = (measure_update_cycle(config) if quick else
                       run_in_child("fptt.bench.memory", "measure_update_cycle", config, timeout=1800))
                row["fresh_process"] = not quick
                row["label"] = _label(method, k)
                results.append(row)
                if method == "bptt" and per_step is None:
                    per_step = row["saved_tensor_peak_bytes"] / steps
                print(f"  {net_name:6s} {row['label']:12s} T={steps:6d}  delta {row['delta_mb']:9.1f} MB  "
                      f"saved/update {row['saved_tensor_peak_bytes'] / 2**20:9.2f} MB  {row['seconds']:.1f}s",
                      flush=True)
    finish_info(info)
    note = contention_note(info)
    if note:
        notes.append(note)
    targets = _memory_targets(results, lengths)
    for line in targets["lines"]:
        print(line)
    payload = {"benchmark": "memory", "quick": quick, "machine": info, "lengths": list(lengths),
               "results": results, "targets": targets, "notes": notes,
               "method": ("quick mode: measured in the benchmark's own process (indicative RSS); full mode: " if quick else "")
               + "peak RSS (VmHWM reset before training) of a fresh subprocess per configuration "
                         "minus its RSS just before train_epoch (after a 2-step warm-up update); CUDA: "
                         "max_memory_allocated minus memory_allocated. Random inputs, one batch."}
    return _write(payload, out_dir)


def _write(payload: dict, out_dir: str | Path) -> dict:
    info, results, quick, device = payload["machine"], payload["results"], payload["quick"], payload["machine"]["device"]
    targets, notes = payload["targets"], payload["notes"]
    name = "memory_quick" if quick else "memory"
    rows = [(r["network"], _label(r["method"], r["k"]), r["steps"],
             None if r.get("skipped") else r["delta_mb"],
             None if r.get("skipped") else r["peak_mb"],
             None if r.get("skipped") else r["saved_tensor_peak_bytes"] / 2**20,
             None if r.get("skipped") else r["input_bytes"] / 2**20,
             "skipped (predicted {:.1f} GB)".format(r["predicted_gb"]) if r.get("skipped") else f"{r['seconds']:.1f}")
            for r in results]
    markdown = "\n\n".join([
        f"# Memory vs sequence length ({'quick' if quick else 'full'})",
        f"`{info['command']}` — torch {info['torch']}, {info['torch_threads']} threads, {info['cpu']} "
        f"({info['cpu_count']} cores), device {device}, git {info['git_commit']}, load average "
        f"{info.get('load_average_start')} -> {info.get('load_average_end')}",
        payload.get("method", ""),
        markdown_table(["network", "method", "T", "peak − baseline (MiB)", "process peak RSS (MiB)",
                        "saved tensors / update (MiB)",
                        "input batch (MiB)", "seconds"], rows),
        "\n".join(f"- {line}" for line in targets["lines"] + notes),
    ])
    write_outputs(out_dir, name, payload, markdown, lambda png: _plot_memory(results, png))
    return payload


def _series(results: list, network: str, label: str, key: str) -> tuple[list, list]:
    rows = [r for r in results if r["network"] == network and r.get("label") == label and not r.get("skipped")]
    return [r["steps"] for r in rows], [r[key] for r in rows]


def _memory_targets(results: list, lengths: Sequence[int]) -> dict:
    lines, figures = [], {}
    networks = sorted({r["network"] for r in results})
    for net in networks:
        labels = sorted({r["label"] for r in results if r["network"] == net and "label" in r})
        for label in labels:
            steps, delta = _series(results, net, label, "delta_bytes")
            _, saved = _series(results, net, label, "saved_tensor_peak_bytes")
            if len(steps) < 2:
                continue
            key = f"{net} {label}"
            _, peaks = _series(results, net, label, "peak_bytes")
            if label.startswith("BPTT"):
                slope = (delta[-1] - delta[0]) / (steps[-1] - steps[0]) / 1e6
                saved_slope = (saved[-1] - saved[0]) / (steps[-1] - steps[0]) / 1e6
                figures[key] = {"rss_slope_mb_per_step": slope, "saved_slope_mb_per_step": saved_slope}
                lines.append(f"TARGET {key}: slope {slope:.3f} MB/step (RSS, T={steps[0]}..{steps[-1]}), "
                             f"{saved_slope:.3f} MB/step saved tensors — linear in T")
            else:
                # the engine makes the input time-major one block of steps at a time and checks it for
                # NaN/Inf in chunks: beyond the batch itself (the caller's data), nothing it holds grows with T
                growth = delta[-1] / max(delta[0], 1)
                absolute = peaks[-1] / peaks[0]
                saved_const = len(set(saved)) == 1
                figures[key] = {"growth": growth, "absolute_peak_growth": absolute,
                                "saved_constant": saved_const, "from": steps[0], "to": steps[-1]}
                ok = growth <= 1.05
                lines.append(
                    f"TARGET {key}: peak above baseline at T={steps[-1]} / T={steps[0]} = {growth:.3f} "
                    f"({delta[0] / 2**20:.1f} -> {delta[-1] / 2**20:.1f} MiB) (target <= 1.05: "
                    f"{'PASS' if ok else 'MISS'}); whole-process peak RSS x{absolute:.3f}; saved tensors/update "
                    f"{'constant' if saved_const else 'NOT constant'} at {saved[0] / 2**20:.3f} MiB")
    return {"lines": lines, "figures": figures}


def _plot_memory(results: list, png: Path) -> None:
    import matplotlib.pyplot as plt

    networks = sorted({r["network"] for r in results})
    fig, axes = plt.subplots(1, len(networks), figsize=(6 * len(networks), 4.5), squeeze=False)
    for ax, net in zip(axes[0], networks):
        labels = sorted({r["label"] for r in results if r["network"] == net and "label" in r})
        for label in labels:
            steps, delta = _series(results, net, label, "delta_bytes")
            _, saved = _series(results, net, label, "saved_tensor_peak_bytes")
            line, = ax.plot(steps, [max(d, 1) / 2**20 for d in delta], "o-", label=f"{label} (RSS)")
            ax.plot(steps, [max(s, 1) / 2**20 for s in saved], "x--", color=line.get_color(), alpha=0.6,
                    label=f"{label} (saved tensors)")
        skipped = [r["steps"] for r in results if r["network"] == net and r.get("skipped")]
        if skipped:
            ax.text(0.02, 0.02, f"BPTT skipped at T={skipped} (> memory budget)", transform=ax.transAxes,
                    fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("peak memory above baseline (MiB)")
        ax.set_title(f"LTC network {net}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def rerender(json_path: str | Path) -> dict:
    """Recompute targets, Markdown and plot from a memory JSON (its raw figures are kept)."""
    payload = json.loads(Path(json_path).read_text())
    payload["targets"] = _memory_targets(payload["results"], payload["lengths"])
    _write(payload, Path(json_path).parent)
    return payload


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """``fptt bench memory`` / ``python benchmarks/memory.py``."""
    parser = benchmark_parser("fptt bench memory", run_memory_benchmark.__doc__.splitlines()[0])
    parser.add_argument("--max-gb", type=float, default=4.0, help="skip BPTT runs predicted above this")
    parser.add_argument("--rerender", metavar="JSON", help="recompute targets/Markdown/plot from a memory JSON")
    args = parser.parse_args(argv)
    if args.rerender:
        return rerender(args.rerender)
    return run_memory_benchmark(args.out, quick=args.quick, device=args.device, threads=args.threads,
                                max_predicted_gb=args.max_gb)
