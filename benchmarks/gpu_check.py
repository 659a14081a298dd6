"""The step measurement and the one-screen summary of ``benchmarks/gpu_check.sh``.

    python benchmarks/gpu_check.py step OUT_DIR [--device cuda] [--quick]
    python benchmarks/gpu_check.py compile OUT_DIR [--device cuda]
    python benchmarks/gpu_check.py summary OUT_DIR

``step`` times the FPTT k = 1 step of ``fptt bench speed`` (LTC H = 256, B = 128; ``--quick``:
H = 32, B = 8, for a dry run on a CPU) on the eager default path (after ``FUSE_AFTER_STEPS``
steps, its compiled kernels), the captured update, and the paper's plain loop, interleaved,
and writes ``step.json``. ``compile`` times the first captured update of that network (its
compilation) in two fresh processes sharing an empty compile cache, cold then warm, and writes
``compile.json``. ``summary`` reads ``step.json``, ``throughput.json``, ``epoch.txt`` and
``cuda_tests.txt`` from OUT_DIR and writes and prints ``summary.md``: each target of the
captured-step issue with its figure, or "not measured".
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def step(out: Path, device: str, quick: bool) -> None:
    import torch

    from fptt.bench.common import machine_info, median
    from fptt.bench.speed import _step_benchmark

    hidden, batch, steps, rounds = (32, 8, 20, 3) if quick else (256, 128, 100, 5)
    if device == "cpu":
        torch.set_num_threads(2)  # the CPU target's setting (one process, 2 threads)
    info = machine_info(device)
    result = _step_benchmark(torch.device(device), hidden, batch, steps=steps, rounds=rounds)
    raw = result["raw_seconds_per_step"]

    def ratio(a: str, b: str) -> float:
        return median(x / y for x, y in zip(raw[a], raw[b]))

    payload = {"machine": info, "hidden": hidden, "batch": batch, "median_ms": result["median_ms"],
               "captured_vs_naive": ratio("fptt_captured", "naive"),
               "default_vs_naive": ratio("fptt_default", "naive"),
               "captured_vs_default": ratio("fptt_captured", "fptt_default")}
    (out / "step.json").write_text(json.dumps(payload, indent=1))
    print(json.dumps({k: v for k, v in payload.items() if k != "machine"}, indent=1))


def first_update(device: str) -> None:
    """One process: the seconds of the first captured update (compile included) and of the second."""
    import time

    import torch

    from fptt.models import SpikingRNN
    from fptt.optim import FPTT
    from fptt.training.engine import train_epoch

    if device == "cpu":
        torch.set_num_threads(2)
    torch.manual_seed(0)
    model = SpikingRNN(1, 256, 10, neuron="ltc").to(device)
    optimizer = FPTT(torch.optim.Adamax(model.parameters(), lr=3e-3, foreach=True), alpha=0.1, beta=0.5)
    x, y = torch.rand(128, 2, 1, device=device), torch.randint(0, 10, (128,), device=device)
    seconds = []
    for t in range(2):
        started = time.perf_counter()
        train_epoch(model, [(x[:, t:t + 1], y)], optimizer, method="fptt", k=1, capture=True)
        seconds.append(time.perf_counter() - started)
    print("FIRST_UPDATE", json.dumps({"first_s": seconds[0], "second_s": seconds[1]}))


def compile_time(out: Path, device: str) -> None:
    """The captured update's compile time in fresh processes: cold (an empty cache), then warm."""
    import os
    import subprocess
    import tempfile

    result = {}
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold", "warm"):
            env = dict(os.environ, FPTT_CACHE_DIR=cache)
            env.pop("TORCHINDUCTOR_CACHE_DIR", None)
            text = subprocess.run([sys.executable, __file__, "first-update", str(out), "--device", device],
                                  env=env, capture_output=True, text=True, check=True).stdout
            result[label] = json.loads(text.split("FIRST_UPDATE", 1)[1])
    (out / "compile.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def summary(out: Path) -> str:
    lines = ["# GPU check: the captured step (issue 29's targets)", ""]
    step_result = _read_json(out / "step.json")
    if step_result:
        machine = step_result["machine"]
        lines.append(f"torch {machine.get('torch')}, device {machine.get('gpu', machine.get('cpu'))}, "
                     f"git {machine.get('git_commit')}")
        ms = step_result["median_ms"]
        lines.append(f"- step (LTC H={step_result['hidden']}, B={step_result['batch']}, FPTT k=1): captured "
                     f"**{ms['fptt_captured']:.3f} ms** (target <= 0.25 ms: "
                     f"{'PASS' if ms['fptt_captured'] <= 0.25 else 'MISS'}); eager default {ms['fptt_default']:.3f} ms, "
                     f"plain loop {ms['naive']:.3f} ms; captured / plain x{step_result['captured_vs_naive']:.3f}")
    else:
        lines.append("- step: not measured")
    compiled = _read_json(out / "compile.json")
    lines.append(f"- compile of the captured update: {compiled['cold']['first_s']:.1f} s cold, "
                 f"{compiled['warm']['first_s']:.1f} s warm" if compiled else "- compile: not measured")
    throughput = _read_json(out / "throughput.json")
    if throughput:
        sps = throughput["samples_per_second"]
        captured = sps.get("ltc_fptt_k1_captured")
        bptt = sps.get("ltc_bptt")
        snn = sps.get("snntorch_bptt")
        lines.append(f"- throughput S-MNIST-196 batch {throughput['shape']['batch']}: FPTT k=1 captured "
                     f"{captured:.0f} samples/s, LTC BPTT {bptt:.0f} (target >= BPTT: "
                     f"{'PASS' if captured >= bptt else 'MISS'}), snnTorch BPTT "
                     + (f"{snn:.0f} (target >= 2x: {'PASS' if captured >= 2 * snn else 'MISS'})" if snn else
                        "not measured (not installed)"))
    else:
        lines.append("- throughput: not measured")
    epoch = out / "epoch.txt"
    seconds = re.search(r"EPOCH_SECONDS (\d+(?:\.\d+)?)", epoch.read_text()) if epoch.exists() else None
    if seconds:
        value = float(seconds.group(1))
        lines.append(f"- epoch (fptt train --task smnist --downsample 14, full MNIST, k=1): {value:.1f} s "
                     f"(target <= 30 s: {'PASS' if value <= 30 else 'MISS'})")
    else:
        lines.append("- epoch: not measured")
    tests = out / "cuda_tests.txt"
    last = tests.read_text().strip().splitlines()[-1:] if tests.exists() else []
    lines.append(f"- CUDA tests: {last[0] if last else 'not run'}")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("step", "compile", "first-update", "summary"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "step":
        step(args.out, args.device, args.quick)
    elif args.what == "compile":
        compile_time(args.out, args.device)
    elif args.what == "first-update":
        first_update(args.device)
    else:
        summary(args.out)


if __name__ == "__main__":
    main()
