"""An endless-stream benchmark: MNIST-10k digits streamed pixel after pixel, with concept drift.

Each of ``streams`` parallel streams plays digits of the MNIST-10k training split back to back
(196 pixels each at 14×14), with **no sequence boundaries**: the network state is never reset.
The digit's label is given as the target at every pixel of that digit, and :class:`OnlineLearner`
updates every ``k`` steps. At ``drift_at`` (a fraction of the stream) the pixel permutation
changes: the learner must re-adapt online. Accuracy is *prequential* (test-then-train): the
prediction at the last pixel of each digit, made before that step's update. Process memory
(RSS) is sampled along the way to show that nothing grows with the stream.

    fptt stream --steps 1000000 --out benchmarks/results/stream   (or python -m fptt.cli.stream ...)
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Optional

from ..run.config import OptimSettings
from ..run.presets import PRESET_NAMES
from .argtypes import positive_float, positive_int
from .common import UsageError

# torch and the library are imported inside the functions: `fptt --help` builds this module's
# parser without paying for them

__all__ = ["run_stream", "main", "register", "run"]


def run_stream(
    steps: int = 1_000_000,
    streams: int = 8,
    hidden: int = 64,
    k: int = 1,
    lr: float = OptimSettings.lr,
    alpha: float = 0.1,
    drift_at: float = 0.5,
    seed: int = 0,
    log_every_digits: int = 20,
    weighting: str = "uniform",
    progress: bool = True,
    out: Optional[Path] = None,
    preset: Optional[str] = None,
) -> dict:
    """Run the drifting MNIST stream; returns (and writes to ``out``) the curves and figures.

    The network and the inner optimizer are those of ``fptt train --task smnist`` (its task
    defaults: an LTC layer, Adamax, clip 1), with ``hidden`` neurons, ``lr`` and ``alpha``;
    ``preset="paper"`` takes the S-MNIST preset instead (layer-normalised currents with γ = 0.1,
    learnable gate slopes)."""
    import torch

    from ..data import SequentialMNIST
    from ..memory import rss_mb
    from ..run.build import build_model, build_optimizer
    from ..run.config import resolve_config
    from ..spec.rules import plans_to_fuse
    from ..training.engine import step_weight
    from ..training.streaming import OnlineLearner

    if steps < 196:
        raise ValueError(f"steps must cover at least one digit (196 steps), got {steps}")
    if weighting not in ("uniform", "linear"):
        raise ValueError(f"weighting must be 'uniform' or 'linear', got {weighting!r}")
    if not 0.0 <= drift_at <= 1.0:
        raise ValueError(f"drift_at must lie in [0, 1], got {drift_at}")
    torch.manual_seed(seed)
    digits = SequentialMNIST("train", downsample=14)
    pixels, labels = digits.inputs[:, :, 0], digits.targets  # (N, 196), (N,)
    length = pixels.shape[1]
    generator = torch.Generator().manual_seed(seed)
    drift_permutation = torch.randperm(length, generator=generator)
    # the network and optimizer come from a TrainConfig through the library's builders, like every run
    # the network and optimizer of `fptt train --task smnist` (its task defaults, or the preset's), resized
    # a stream of known length: the compiled kernels when it pays back their compile time (fptt.spec.rules)
    flags = {"task": "smnist", "hidden_sizes": [hidden], "lr": lr, "alpha": alpha, "method": "fptt",
             "fused": plans_to_fuse(steps)}
    if preset is not None:
        flags["preset"] = preset
    config = resolve_config({}, flags)
    model = build_model(config, 1, 10)
    optimizer = build_optimizer(config, model)
    learner = OnlineLearner(model, optimizer, loss="cross_entropy", k=k, batch_size=streams)
    order = torch.randint(0, len(pixels), (streams,), generator=generator)
    drift_step = int(drift_at * steps)
    curve, correct, seen = [], 0, 0
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="stream", unit="step", unit_scale=True, dynamic_ncols=True)
    digit_count = 0
    for step in range(steps):
        position = step % length
        if position == 0 and step:
            order = torch.randint(0, len(pixels), (streams,), generator=generator)
        drifted = step >= drift_step
        pixel_index = drift_permutation[position] if drifted else position
        x_t = pixels[order, pixel_index].unsqueeze(-1)
        y_t = labels[order]
        output = learner.observe(x_t, y_t, weight=step_weight(position, length, weighting))  # type: ignore[arg-type]  # w_t of the batch engines
        if position == length - 1:
            correct += int((output.argmax(-1) == y_t).sum())
            seen += streams
            digit_count += 1
            if digit_count % log_every_digits == 0:
                curve.append({
                    "step": step + 1, "accuracy": correct / seen, "rss_mb": rss_mb(),
                    "seconds": time.perf_counter() - started, "drifted": drifted,
                    "recent_loss": sum(learner.history) / max(len(learner.history), 1),
                })
                correct, seen = 0, 0
                if bar is not None:
                    bar.set_postfix(acc=f"{curve[-1]['accuracy']:.3f}", rss=f"{curve[-1]['rss_mb']:.0f}MB")
        if bar is not None and step % 1000 == 999:
            bar.update(1000)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started
    rss = [point["rss_mb"] for point in curve]
    result = {
        "config": {"steps": steps, "streams": streams, "hidden": hidden, "k": k, "lr": lr, "alpha": alpha,
                   "drift_at": drift_at, "seed": seed, "weighting": weighting, "preset": preset,
                   "optimizer": config.optimizer, "clip": config.clip_grad_norm, "norm": config.norm,
                   "data": "MNIST-10k train split, 14x14, pixel by pixel"},
        "updates": learner.updates,
        "seconds": seconds,
        "ms_per_step": 1000 * seconds / steps,
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,  # type: ignore[type-var]
        "curve": curve,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "stream.json").write_text(json.dumps(result, indent=1))
        if curve:
            _plot(result, drift_step, out / "stream.png")
    return result


def _plot(result: dict, drift_step: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [point["step"] for point in result["curve"]]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(steps, [100 * point["accuracy"] for point in result["curve"]])
    if drift_step < result["config"]["steps"]:  # --drift-at 1: no drift, no line
        top.axvline(drift_step, color="red", linestyle="--", linewidth=1, label="permutation changes")
        top.legend(loc="lower right")
    top.set_ylabel("online accuracy (%)")
    bottom.plot(steps, [point["rss_mb"] for point in result["curve"]], color="tab:green")
    bottom.set_ylabel("process RSS (MB)")
    bottom.set_xlabel("stream time step")
    low, high = min(p["rss_mb"] for p in result["curve"]), max(p["rss_mb"] for p in result["curve"])
    bottom.set_ylim(0, high * 1.3)
    config = result["config"]
    top.set_title(f"FPTT on an endless MNIST-10k pixel stream ({config['streams']} streams, k={config['k']}); "
                  f"RSS {low:.0f}-{high:.0f} MB", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fptt stream`` (also ``python -m fptt.cli.stream``)."""
    parser.add_argument("--steps", type=positive_int, default=1_000_000,
                        help="stream length in time steps (default 1,000,000: about 45 min on one CPU core)")
    parser.add_argument("--streams", type=positive_int, default=8, help="parallel streams (batch size, default 8)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="LTC neurons (default 64)")
    parser.add_argument("--k", type=positive_int, default=1, help="steps per update (default 1)")
    parser.add_argument("--lr", type=positive_float, default=OptimSettings.lr, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--alpha", type=positive_float, default=0.1, help="FPTT regularizer α (default 0.1)")
    parser.add_argument("--drift-at", type=float, default=0.5,
                        help="fraction of the stream after which the pixel permutation changes (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, digit order and permutation")
    parser.add_argument("--weighting", choices=("uniform", "linear"), default="uniform",
                        help="loss weight of pixel p of a digit: 1 (default) or (p+1)/196 as in the paper's S-MNIST")
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None,
                        help="the S-MNIST regime of fptt.run.presets (normalised currents, gate slopes, Adamax, clip 1)")
    parser.add_argument("--log-every", type=positive_int, default=20,
                        help="digit rounds per point of the accuracy/memory curve (default 20)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("runs/stream"),
                        help="folder for stream.json and stream.png (default runs/stream)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary print")


def run_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_stream` with parsed :func:`add_arguments` options; prints the figures."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_stream(
        steps=args.steps, streams=args.streams, hidden=args.hidden, k=args.k, lr=args.lr, alpha=args.alpha,
        drift_at=args.drift_at, seed=args.seed, log_every_digits=args.log_every, weighting=args.weighting,
        progress=not args.quiet,
        out=args.out, preset=args.preset,
    )
    if not args.quiet:
        print(json.dumps({key: value for key, value in result.items() if key != "curve"}, indent=1))
        print(f"results: {args.out / 'stream.json'}" + (f", {args.out / 'stream.png'}" if result["curve"] else ""))
    return result


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(prog="fptt stream", description="Online FPTT on a drifting MNIST-10k pixel stream.")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))



def register(commands: argparse._SubParsersAction) -> None:
    stream = commands.add_parser("stream", help="online FPTT on an endless, drifting MNIST-10k pixel stream",
                                 description=(
        "Stream MNIST-10k digits pixel after pixel with no sequence boundaries through an LTC network "
        "trained online by FPTT (an update every --k steps); the pixel permutation changes at --drift-at. "
        "Writes the online accuracy and process memory over time (stream.json, stream.png)."))
    add_arguments(stream)
    stream.set_defaults(handler=run, debug=False)


def run(args: argparse.Namespace) -> int:
    try:
        run_from_args(args)
    except ValueError as error:  # e.g. fewer steps than one digit
        raise UsageError(str(error)) from None
    return 0


if __name__ == "__main__":
    main()
