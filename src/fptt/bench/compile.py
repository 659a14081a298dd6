"""The price of the compiled path and when it is paid back: cold and warm compile times, and the
saving per training step, which together give the rule of ``fused="auto"`` (:mod:`fptt.compiled`).

Each measurement is a fresh Python process (what a user starting a run sees), on the network of
``fptt bench speed`` (LTC, H = 256, batch 128, FPTT k = 1, Adamax):

* **cold**: an empty compile cache directory; the first training step with ``fused=True``
  compiles the LTC forward, its backward and the FPTT update;
* **warm**: the same directory again, in a new process: torch loads the compiled kernels from the
  on-disk cache (Dynamo still traces the Python functions);
* the first step of the exact path (``fused=False``) in the same process, as the reference: the
  compile time is the first fused step minus it;
* **the saving per step**: after the first steps, the exact and the compiled step timed
  interleaved in that process (median of per-round differences).

The payback length is compile time / saving per step; :data:`fptt.spec.rules.FUSE_AFTER_STEPS` is set
from the warm figure (most runs on a machine start with a warm cache; a cold one costs once).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from .common import (
    LEARNING_RATE,
    benchmark_parser,
    contention_note,
    finish_info,
    machine_info,
    markdown_table,
    median,
    run_in_child,
    write_outputs,
)

__all__ = ["run_compile_benchmark", "measure_first_steps", "main"]


def measure_first_steps(config: dict) -> dict:
    """In this (fresh) process: seconds of the first exact and the first fused training step,
    then the per-step times of both paths, interleaved. Called by the child processes."""
    import torch

    from ..models import SpikingRNN
    from ..optim import FPTT
    from ..training.engine import train_epoch

    torch.set_num_threads(int(config["threads"]))
    hidden, batch, steps, rounds = (int(config[key]) for key in ("hidden", "batch", "steps", "rounds"))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, steps, 1, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    runs = {}
    first = {}
    for name, fused in (("exact", False), ("fused", True)):
        torch.manual_seed(0)
        model = SpikingRNN(1, hidden, 10, neuron="ltc", fused=fused)
        optimizer = FPTT(torch.optim.Adamax(model.parameters(), lr=LEARNING_RATE, foreach=True), fused=fused)
        started = time.perf_counter()
        train_epoch(model, [(x[:, :1], y)], optimizer, method="fptt", k=1)
        first[name] = time.perf_counter() - started
        runs[name] = (model, optimizer)
    per_step: dict[str, list[float]] = {"exact": [], "fused": []}
    for _ in range(rounds):
        for name, (model, optimizer) in runs.items():
            started = time.perf_counter()
            train_epoch(model, [(x, y)], optimizer, method="fptt", k=1)
            per_step[name].append((time.perf_counter() - started) / steps)
    return {"first_step_seconds": first, "seconds_per_step": per_step,
            "compiled": bool(runs["fused"][1]._fused is not None and not runs["fused"][1]._fused.kernel.failed)}


def _child(config: dict, cache: Path) -> dict:
    """:func:`measure_first_steps` in a fresh process whose compile cache is ``cache``."""
    return run_in_child("fptt.bench.compile", "measure_first_steps", config, timeout=900,
                        env={"TORCHINDUCTOR_CACHE_DIR": str(cache), "OMP_NUM_THREADS": str(config["threads"])})


def run_compile_benchmark(out_dir: str | Path = "benchmarks/results", quick: bool = False, device: str = "cpu",
                          threads: int = 2, warm_runs: int = 2) -> dict:
    """Cold and warm compile times, the saving per step and the payback length (module docstring).

    ``quick``: H = 32, batch 8 (the compile times are about the same, the saving is tiny).
    Writes ``compile[_quick].json/.md``.
    """
    if device != "cpu":
        raise SystemExit("fptt bench compile measures the CPU compiler (inductor's C++ backend); --device cpu")
    import torch

    from ..spec.rules import FUSE_AFTER_STEPS

    torch.set_num_threads(threads)
    info = machine_info(device)
    config = {"threads": threads, **({"hidden": 32, "batch": 8, "steps": 20, "rounds": 3} if quick else
                                     {"hidden": 256, "batch": 128, "steps": 100, "rounds": 7})}
    with tempfile.TemporaryDirectory(prefix="fptt-compile-cache-") as cache_dir:
        cache = Path(cache_dir)
        runs = [{"cache": "cold", **_child(config, cache)}]
        print(f"  cold: first fused step {runs[0]['first_step_seconds']['fused']:.2f} s", flush=True)
        for _ in range(warm_runs):
            runs.append({"cache": "warm", **_child(config, cache)})
            print(f"  warm: first fused step {runs[-1]['first_step_seconds']['fused']:.2f} s", flush=True)
    finish_info(info)

    def compile_seconds(run: dict) -> float:
        return run["first_step_seconds"]["fused"] - run["first_step_seconds"]["exact"]

    cold = compile_seconds(runs[0])
    warm = median(compile_seconds(run) for run in runs[1:])
    savings = [median(e - f for e, f in zip(run["seconds_per_step"]["exact"], run["seconds_per_step"]["fused"]))
               for run in runs]
    saving = median(savings)
    exact_ms = 1e3 * median(t for run in runs for t in run["seconds_per_step"]["exact"])
    fused_ms = 1e3 * median(t for run in runs for t in run["seconds_per_step"]["fused"])
    payback = {"cold": cold / saving if saving > 0 else None, "warm": warm / saving if saving > 0 else None}
    lines = [
        f"compile: cold {cold:.1f} s, warm {warm:.1f} s (median of {len(runs) - 1}); step exact {exact_ms:.2f} ms, "
        f"compiled {fused_ms:.2f} ms, saving {1e3 * saving:.2f} ms per step",
        "paid back after " + ", ".join(f"{k} {'never' if v is None else f'{v:,.0f} steps'}" for k, v in payback.items())
        + f"; fused='auto' switches after FUSE_AFTER_STEPS = {FUSE_AFTER_STEPS:,} steps",
    ]
    for line in lines:
        print(line)
    notes = [note for note in [contention_note(info)] if note]
    if not all(run["compiled"] for run in runs):
        notes.append("torch.compile failed in at least one run: the fused times are the exact path's")
    payload = {"benchmark": "compile", "quick": quick, "machine": info, "network": config, "runs": runs,
               "compile_seconds": {"cold": cold, "warm": warm}, "saving_seconds_per_step": saving,
               "payback_steps": payback, "fuse_after_steps": FUSE_AFTER_STEPS, "lines": lines, "notes": notes}
    rows = [(run["cache"], run["first_step_seconds"]["exact"], run["first_step_seconds"]["fused"], compile_seconds(run),
             1e3 * median(run["seconds_per_step"]["exact"]), 1e3 * median(run["seconds_per_step"]["fused"]))
            for run in runs]
    md = "\n\n".join([
        f"# Compile time and payback ({'quick' if quick else 'full'})",
        f"`{info['command']}` — torch {info['torch']}, {info['torch_threads']} threads, {info['cpu']}, git "
        f"{info['git_commit']}, load average {info.get('load_average_start')} -> {info.get('load_average_end')}",
        f"LTC H={config['hidden']}, batch {config['batch']}, FPTT k=1, Adamax; one fresh process per row, the first "
        "row with an empty compile cache, the others reusing it.",
        markdown_table(["cache", "first exact step s", "first fused step s", "compile s", "exact ms / step",
                        "compiled ms / step"], rows),
        "\n".join(f"- {line}" for line in lines + notes),
    ])
    write_outputs(out_dir, "compile_quick" if quick else "compile", payload, md, None)
    return payload


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """``fptt bench compile`` / ``python benchmarks/compile.py``."""
    parser = benchmark_parser("fptt bench compile", run_compile_benchmark.__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    return run_compile_benchmark(args.out, quick=args.quick, device=args.device, threads=args.threads)
