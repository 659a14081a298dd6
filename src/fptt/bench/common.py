"""Shared plumbing of the benchmarks: machine description, timing helpers, JSON/Markdown/PNG output."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch

from ..run.config import OptimSettings

__all__ = ["LEARNING_RATE",
    "benchmark_parser",
    "machine_info",
    "median",
    "interleaved",
    "write_outputs",
    "markdown_table",
    "synchronize",
    "check_device",
    "timed",
    "bar_panels",
    "run_in_child",
]

#: the learning rate of every benchmark's optimizer: the reference code's Adam/Adamax 3e-3 (SPEC §4)
LEARNING_RATE = OptimSettings.lr


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Everything needed to read a figure later: host, CPU, load, torch, threads, command."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else None,
        "git_commit": _git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with contextlib.suppress(OSError):
        info["load_average_start"] = os.getloadavg()
    try:
        with open("/proc/meminfo") as handle:
            info["mem_total_kb"] = int(handle.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def contention_note(info: dict[str, Any]) -> Optional[str]:
    """A sentence when the 1-minute load average exceeded the cores available (timings inflated)."""
    loads = [info.get("load_average_start"), info.get("load_average_end")]
    worst = max((load[0] for load in loads if load), default=None)
    cores = info.get("cpu_count") or 1
    own = min(info.get("torch_threads") or 1, cores)  # the benchmark's own threads load the machine too
    if worst is not None and worst > own + 0.75:
        return (
            f"machine contended: 1-min load average up to {worst:.1f} on {cores} cores while measuring "
            f"with {own} threads of our own; "
            "absolute times are inflated, ratios (interleaved, same process) are the figures to read"
        )
    return None


def finish_info(info: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        info["load_average_end"] = os.getloadavg()


def check_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available on this machine")
    return dev


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes, with the device synchronised before and after."""
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - started


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def interleaved(runs: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call every ``runs[name]()`` once per round, in the same order (A, B, C, A, B, C, ...).

    Each callable returns one measured figure (seconds); the raw lists are returned.
    """
    raw: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            raw[name].append(run())
    return raw


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(out_dir: str | Path, name: str, payload: dict[str, Any], markdown: str,
                  plot: Optional[Callable[[Path], None]] = None) -> dict[str, str]:
    """Write ``<name>.json``, ``<name>.md`` and (if matplotlib is installed) ``<name>.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / f"{name}.json"), "markdown": str(out / f"{name}.md")}
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            png = out / f"{name}.png"
            plot(png)
            files["png"] = str(png)
        except ImportError:
            payload.setdefault("notes", []).append("matplotlib not installed: no plot (pip install fptt[plot])")
    payload["files"] = files
    Path(files["json"]).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    Path(files["markdown"]).write_text(markdown + "\n")
    return files


def benchmark_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick``, ``--out``, ``--device``, ``--threads``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="one small configuration, a few seconds")
    parser.add_argument("--out", default="benchmarks/results", help="output folder (JSON, Markdown, PNG)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    return parser


def bar_panels(png: Path, panels: Sequence[tuple[dict[str, float], str, str]], rotation: int = 20,
               width: float = 5.5) -> None:
    """One bar chart per ``(values by name, y label, title)`` side by side, saved to ``png``; the
    same colour for the same name in every panel."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.5), squeeze=False)
    for ax, (values, ylabel, title) in zip(axes[0], panels):
        names = list(values)
        ax.bar(names, [values[n] for n in names], color=[f"C{i}" for i in range(len(names))])
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=rotation)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def run_in_child(module: str, function: str, config: dict[str, Any], timeout: float,
                 env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """``module.function(config)`` in a fresh Python process (this checkout's ``src`` first on its
    path, ``OMP_NUM_THREADS`` from ``config["threads"]`` unless set in ``env``) and its JSON result.
    Raises ``RuntimeError`` with the end of the child's stderr when it returns none."""
    code = (f"import json, sys; from {module} import {function}; "
            f"print('RESULT ' + json.dumps({function}(json.loads(sys.argv[1]))))")
    child_env = {**os.environ, **(env or {})}
    src = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = src + (os.pathsep + child_env["PYTHONPATH"] if child_env.get("PYTHONPATH") else "")
    child_env.setdefault("OMP_NUM_THREADS", str(config.get("threads", 2)))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(config)], capture_output=True, text=True,
                          timeout=timeout, env=child_env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{module}.{function} failed in a child process for {config}: {done.stderr[-2000:]}")
