"""An endless-stream benchmark: MNIST-10k digits streamed pixel after pixel, with concept drift.

Each of ``streams`` parallel streams plays digits of the MNIST-10k training split back to back
(196 pixels each at 14×14), with **no sequence boundaries**: the network state is never reset.
The digit's label is given as the target at every pixel of that digit, and :class:`OnlineLearner`
updates every ``k`` steps. At ``drift_at`` (a fraction of the stream) the pixel permutation
changes: the learner must re-adapt online. Accuracy is *prequential* (test-then-train): the
prediction at the last pixel of each digit, made before that step's update. Process memory
(RSS) is sampled along the way to show that nothing grows with the stream.

The stream leaves out the validation digits of ``fptt train --task smnist --downsample 14`` with
the same ``--validation-samples`` (the same fixed draw, :func:`fptt.run.build.validation_indices`)
and scores the network on them every ``eval_every`` steps and at the end, as ``fptt train`` scores
its epochs: each digit from a fresh state, FPTT's running average W̄, the prediction at the last
pixel (:func:`fptt.training.engine.evaluate`). So the stream and epoch training are compared on the
same held-out digits after the same number of training digits. With ``ema_decay`` it also scores a
moving average of the weights, W_ema ← d·W_ema + (1 − d)·W after every digit round
(:class:`fptt.WeightEMA`, what ``fptt train --eval-with ema`` keeps per batch).

    fptt stream --steps 1000000 --out benchmarks/results/stream   (or python -m fptt.cli.stream ...)
    fptt stream --resume benchmarks/results/stream                 (continue a killed stream)

The output folder is a run folder: ``config.json`` (written first, atomically) and, every
``checkpoint_every`` steps (at the next window boundary) and at the end, ``checkpoint_last.pt``
(the previous one kept as ``checkpoint_previous.pt``; :func:`fptt.run.checkpoint.save_generation`).
A checkpoint holds what the stream needs to continue exactly: the learner (weights, optimizer with
W̄ and λ, live network state, counters, loss ring buffer, torch RNG), the digit generator's state,
the current digits, the prequential counters and the curve. ``--resume`` continues from the newest
good checkpoint with the saved settings; on the same machine and torch build the result equals an
uninterrupted stream, except the wall-clock and memory readings (``seconds``, ``rss_mb``,
``ms_per_step``). SIGINT/SIGTERM save a checkpoint at the next window boundary and stop.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Optional

from ..run.config import DataSettings, OptimSettings
from ..run.presets import PRESET_NAMES
from .argtypes import positive_float, positive_int
from .common import EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError
from .train import setting_value_type

# torch and the library are imported inside the functions: `fptt --help` builds this module's
# parser without paying for them

__all__ = ["run_stream", "resume_stream", "stream_digits", "main", "register", "run", "DEFAULT_CHECKPOINT_EVERY"]

DEFAULT_CHECKPOINT_EVERY = 10_000  # stream steps between checkpoints (about 30 s at the default size)
# the settings of a stream, saved in config.json and in every checkpoint; --resume takes them from there
_SETTINGS = ("steps", "streams", "hidden", "k", "lr", "alpha", "drift_at", "seed", "log_every_digits", "weighting",
             "preset", "checkpoint_every", "validation_samples", "eval_every", "schedule", "reset_each_digit",
             "data_dir", "ema_decay")
# the settings a stream folder of v0.3 (before held-out scoring, schedules and resets) ran with
_V03_SETTINGS = {"validation_samples": 0, "eval_every": None, "schedule": "none", "reset_each_digit": False,
                 "data_dir": None, "ema_decay": None}
STREAM_SCHEDULES = ("none", "step", "cosine")


def run_stream(  # noqa: C901 - the stream loop with its checkpoints and resume (to split later)
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
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    handle_signals: bool = False,
    validation_samples: int | str = "auto",
    eval_every: Optional[int] = None,
    schedule: str = "none",
    reset_each_digit: bool = False,
    data_dir: Optional[str] = None,
    ema_decay: Optional[float] = None,
) -> dict:
    """Run the drifting MNIST stream; returns (and writes to ``out``) the curves and figures.

    The network and the inner optimizer are those of ``fptt train --task smnist`` (its task
    defaults: an LTC layer, Adamax, clip 1), with ``hidden`` neurons, ``lr`` and ``alpha``;
    ``preset="paper"`` takes the S-MNIST preset instead (layer-normalised currents with γ = 0.1,
    learnable gate slopes). With ``out`` and ``checkpoint_every`` (steps), ``out`` is a run folder
    with checkpoints; ``resume=True`` continues the stream saved there (use :func:`resume_stream`,
    which reads its settings). ``handle_signals``: SIGINT/SIGTERM save a checkpoint at the next
    window boundary and return with ``interrupted`` set.

    ``validation_samples`` (``"auto"`` as in ``fptt train``, or a number; 0: stream every digit and
    score none) digits of the training split are held out of the stream and scored every
    ``eval_every`` steps and at the end (``result["held_out"]``). ``schedule`` anneals the lr over
    the stream's updates (``"step"``: ×0.1 at half and three quarters, ``"cosine"``: to 0 at the
    end), as ``fptt train --schedule-unit batch`` does over a run. ``reset_each_digit`` restarts the
    network state at every digit boundary, as epoch training does for every sequence.
    ``data_dir``: the standard MNIST IDX files (``--data-dir`` of ``fptt train``) instead of the
    bundled MNIST-10k. ``ema_decay`` (``d`` in (0, 1)): also keep W_ema ← d·W_ema + (1 − d)·W, updated
    after every digit round (``streams`` digits), and score the held-out digits with it too
    (``accuracy_ema`` beside each held-out point's W̄ ``accuracy``)."""
    import torch

    from ..memory import rss_mb
    from ..optim import WeightEMA
    from ..run.build import build_model, build_optimizer, build_scheduler
    from ..run.checkpoint import newest_good_checkpoint, remove_stale_temporaries, save_generation
    from ..run.config import resolve_config
    from ..run.control import StopRequest, stop_on_signals
    from ..run.files import write_text_atomic
    from ..run.records import CONFIG, LAST, PREVIOUS
    from ..spec.rules import plans_to_fuse
    from ..training.engine import step_weight
    from ..training.streaming import OnlineLearner

    if steps < 196:
        raise ValueError(f"steps must cover at least one digit (196 steps), got {steps}")
    if weighting not in ("uniform", "linear"):
        raise ValueError(f"weighting must be 'uniform' or 'linear', got {weighting!r}")
    if not 0.0 <= drift_at <= 1.0:
        raise ValueError(f"drift_at must lie in [0, 1], got {drift_at}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every <= 0):
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    if (checkpoint_every or resume) and out is None:
        raise ValueError("checkpoints need an output folder (out)")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every <= 0):
        raise ValueError(f"eval_every must be a positive int, got {eval_every!r}")
    if schedule not in STREAM_SCHEDULES:
        raise ValueError(f"schedule must be one of {STREAM_SCHEDULES}, got {schedule!r}")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in (0, 1), got {ema_decay}")
    settings = {"steps": steps, "streams": streams, "hidden": hidden, "k": k, "lr": lr, "alpha": alpha,
                "drift_at": drift_at, "seed": seed, "log_every_digits": log_every_digits, "weighting": weighting,
                "preset": preset, "checkpoint_every": checkpoint_every, "validation_samples": validation_samples,
                "eval_every": eval_every, "schedule": schedule, "reset_each_digit": reset_each_digit,
                "data_dir": data_dir, "ema_decay": ema_decay}
    found = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # left by a process killed while saving
        if resume:
            found = newest_good_checkpoint(out, (LAST, PREVIOUS))  # None: killed before its first checkpoint
            if found is not None and found.payload.get("kind") != "stream":
                raise ValueError(f"{found.path} is not a checkpoint of `fptt stream`")
        else:  # first, atomically: a stream killed at any later moment can be resumed
            write_text_atomic(out / CONFIG, json.dumps({"command": "stream", **settings}, indent=2) + "\n")
    torch.manual_seed(seed)
    # the network and optimizer of `fptt train --task smnist` (its task defaults, or the preset's), resized;
    # a stream of known length: the compiled kernels when it pays back their compile time (fptt.spec.rules)
    flags = {"task": "smnist", "downsample": 14, "hidden_sizes": [hidden], "lr": lr, "alpha": alpha,
             "method": "fptt", "fused": plans_to_fuse(steps), "data_dir": data_dir, "validation_samples": 0,
             "schedule": schedule, "schedule_unit": "batch", "epochs": 1}
    if preset is not None:
        flags["preset"] = preset
    config = resolve_config({}, flags)
    pixels, labels, held_out = stream_digits(config, validation_samples)
    held_out_count = len(held_out) if held_out is not None else 0  # type: ignore[arg-type]
    length = pixels.shape[1]
    generator = torch.Generator().manual_seed(seed)
    drift_permutation = torch.randperm(length, generator=generator)
    model = build_model(config, 1, 10)
    optimizer = build_optimizer(config, model)
    learner = OnlineLearner(model, optimizer, loss="cross_entropy", k=k, batch_size=streams)
    scheduler = build_scheduler(config, optimizer, batches_per_epoch=-(-steps // k))  # one lr step per update
    weight_average = WeightEMA(model, ema_decay) if ema_decay is not None else None
    held_out_curve: list[dict[str, Any]] = []

    def score_held_out(step: int) -> None:
        """The held-out digits' accuracy after ``step`` stream steps (W̄, and W_ema where kept; a fresh
        state per digit)."""
        from torch.utils.data import DataLoader

        from ..run.trainer import evaluation_rng
        from ..training.engine import evaluate

        assert held_out is not None
        loader = DataLoader(held_out, batch_size=256)
        with optimizer.averaged(), evaluation_rng(seed, learner.device):  # type: ignore[attr-defined]
            metrics = evaluate(model, loader)
        point = {"step": step, "digits": (step // length) * streams, "accuracy": metrics.accuracy,
                 "loss": metrics.loss, "firing_rate": metrics.firing_rate}
        if weight_average is not None:
            with weight_average.applied(), evaluation_rng(seed, learner.device):
                point["accuracy_ema"] = evaluate(model, loader).accuracy
        held_out_curve.append(point)
        if bar is not None:
            bar.write(f"step {step:,}: held-out accuracy {metrics.accuracy:.3f}"
                      + (f" (W_ema {point['accuracy_ema']:.3f})" if "accuracy_ema" in point else ""))
    order = torch.randint(0, len(pixels), (streams,), generator=generator)
    drift_step = int(drift_at * steps)
    curve: list[dict[str, Any]] = []
    correct, seen, digit_count, seconds_before = 0, 0, 0, 0.0
    if found is not None:  # continue exactly where the checkpoint left the stream
        learner.load_state_dict(found.payload)
        position_state = found.payload["stream"]
        generator.set_state(position_state["generator"])
        order = position_state["order"]
        curve = list(position_state["curve"])
        correct, seen = int(position_state["correct"]), int(position_state["seen"])
        digit_count, seconds_before = int(position_state["digit_count"]), float(position_state["seconds"])
        held_out_curve = list(position_state.get("held_out", []))
        if scheduler is not None:
            scheduler.load_state_dict(position_state["scheduler"])
        if weight_average is not None:
            weight_average.load_model_state_dict(position_state["model_ema"])
    first_step = saved_at = learner.steps
    next_checkpoint = (first_step // checkpoint_every + 1) * checkpoint_every if checkpoint_every else None
    started = time.perf_counter()

    def save() -> None:
        """A checkpoint of the stream after ``learner.steps`` steps (at a window boundary)."""
        assert out is not None
        payload = {**learner.state_dict(), "kind": "stream", "config": settings,
                   "stream": {"generator": generator.get_state(), "order": order, "curve": curve,
                              "correct": correct, "seen": seen, "digit_count": digit_count,
                              "seconds": seconds_before + time.perf_counter() - started,
                              "held_out": held_out_curve,
                              "scheduler": scheduler.state_dict() if scheduler is not None else None,
                              "model_ema": weight_average.model_state_dict(model) if weight_average is not None else None}}
        save_generation(out / LAST, payload)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=first_step, desc="stream", unit="step", unit_scale=True, dynamic_ncols=True)
    stop = StopRequest()
    with stop_on_signals(stop, handle_signals):
        for step in range(first_step, steps):
            if stop.requested and learner.at_window_boundary:
                break
            position = step % length
            drifted = step >= drift_step
            pixel_index = drift_permutation[position] if drifted else position
            x_t = pixels[order, pixel_index].unsqueeze(-1)
            y_t = labels[order]
            output = learner.observe(x_t, y_t, weight=step_weight(position, length, weighting))  # type: ignore[arg-type]  # w_t of the batch engines
            if position == length - 1:  # a digit round ends
                correct += int((output.argmax(-1) == y_t).sum())
                seen += streams
                digit_count += 1
                if digit_count % log_every_digits == 0:
                    curve.append({
                        "step": step + 1, "accuracy": correct / seen, "rss_mb": rss_mb(),
                        "seconds": seconds_before + time.perf_counter() - started, "drifted": drifted,
                        "recent_loss": sum(learner.history) / max(len(learner.history), 1),
                    })
                    correct, seen = 0, 0
                    if bar is not None:
                        bar.set_postfix(acc=f"{curve[-1]['accuracy']:.3f}", rss=f"{curve[-1]['rss_mb']:.0f}MB")
                if weight_average is not None:  # W_ema ← d W_ema + (1 − d) W
                    weight_average.update()
                if step + 1 < steps:  # the next digits, drawn as the uninterrupted stream does
                    order = torch.randint(0, len(pixels), (streams,), generator=generator)
                    if reset_each_digit:
                        learner.reset_streams(torch.ones(streams, dtype=torch.bool))
            if scheduler is not None and learner.at_window_boundary:
                scheduler.step()
            last_scored = held_out_curve[-1]["step"] if held_out_curve else 0
            if held_out is not None and eval_every and learner.at_window_boundary and (
                    learner.steps // eval_every > last_scored // eval_every):
                score_held_out(learner.steps)
            last_window = steps - learner.steps < k  # no complete window left: this is the final state
            if next_checkpoint is not None and learner.at_window_boundary and learner.steps != saved_at and (
                    learner.steps >= next_checkpoint or last_window):
                save()
                saved_at = learner.steps
                next_checkpoint = (learner.steps // checkpoint_every + 1) * checkpoint_every
            if bar is not None and step % 1000 == 999:
                bar.update(1000)
    if bar is not None:
        bar.close()
    interrupted = learner.steps < steps
    if out is not None and interrupted and learner.steps != saved_at:
        save()  # where a signal stopped it (the end of the stream, or its last window boundary, is saved above)
    if held_out is not None and not interrupted and (not held_out_curve or held_out_curve[-1]["step"] != learner.steps):
        score_held_out(learner.steps)  # the end of the stream is always scored
    seconds = seconds_before + time.perf_counter() - started
    rss = [point["rss_mb"] for point in curve]
    result = {
        "config": {"steps": steps, "streams": streams, "hidden": hidden, "k": k, "lr": lr, "alpha": alpha,
                   "drift_at": drift_at, "seed": seed, "weighting": weighting, "preset": preset,
                   "optimizer": config.optimizer, "clip": config.clip_grad_norm, "norm": config.norm,
                   "checkpoint_every": checkpoint_every, "schedule": schedule, "reset_each_digit": reset_each_digit,
                   "validation_samples": held_out_count, "eval_every": eval_every, "ema_decay": ema_decay,
                   "data": f"{'MNIST (IDX files)' if data_dir else 'MNIST-10k'} train split less the "
                           f"{held_out_count} held-out digits, 14x14, pixel by pixel"},
        "steps_done": learner.steps,
        "interrupted": interrupted,
        "stop_signal": stop.signal if interrupted else None,
        "resumed_at_step": first_step or None,
        "updates": learner.updates,
        "seconds": seconds,
        "ms_per_step": 1000 * seconds / max(learner.steps, 1),
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,  # type: ignore[type-var]
        "curve": curve,
        "held_out": held_out_curve,
        "held_out_accuracy": held_out_curve[-1]["accuracy"] if held_out_curve else None,
        "held_out_accuracy_ema": held_out_curve[-1].get("accuracy_ema") if held_out_curve else None,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    if out is not None and not interrupted:
        write_text_atomic(out / "stream.json", json.dumps(result, indent=1))
        if curve:
            _plot(result, drift_step, out / "stream.png")
    return result


def stream_digits(config: Any, validation_samples: int | str) -> tuple[Any, Any, Any]:
    """``(pixels (N, 196), labels (N,), held_out)``: the training digits of ``config`` (an S-MNIST
    ``TrainConfig`` without a validation split) less the validation draw that ``fptt train`` holds out
    with ``validation_samples`` (``"auto"`` or a count; 0: none, ``held_out`` None), and that draw as a
    dataset for :func:`fptt.training.engine.evaluate`."""
    import torch

    from ..run.build import build_dataset, split_validation
    from ..spec.rules import validation_count

    digits = build_dataset(config, "train")
    count = validation_count(validation_samples, len(digits))  # type: ignore[arg-type]
    if not count:
        return digits.inputs[:, :, 0], digits.targets, None  # type: ignore[attr-defined]
    streamed, held_out = split_validation(digits, count)
    index = torch.as_tensor(streamed.indices)  # type: ignore[attr-defined]
    return digits.inputs[index, :, 0], digits.targets[index], held_out  # type: ignore[attr-defined]


def resume_stream(out: Path, progress: bool = True, handle_signals: bool = False) -> dict:
    """Continue the stream whose run folder is ``out`` with its saved settings (``config.json``)
    from its newest good checkpoint, or from the beginning if it was killed before the first one."""
    from ..run.records import CONFIG

    path = Path(out) / CONFIG
    if not path.is_file():
        raise ValueError(f"{out} is not a run folder of `fptt stream` (no {CONFIG})")
    saved = json.loads(path.read_text())
    if saved.get("command") != "stream":
        raise ValueError(f"{path} is not the config of `fptt stream`")
    settings = {key: saved.get(key, _V03_SETTINGS.get(key)) for key in _SETTINGS}
    return run_stream(**settings, out=Path(out), progress=progress, resume=True, handle_signals=handle_signals)


def _plot(result: dict, drift_step: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [point["step"] for point in result["curve"]]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(steps, [100 * point["accuracy"] for point in result["curve"]], label="online (prequential)")
    if result.get("held_out"):
        top.plot([point["step"] for point in result["held_out"]], [100 * point["accuracy"] for point in result["held_out"]],
                 "o-", color="black", label=f"{result['config']['validation_samples']} held-out digits")
    if drift_step < result["config"]["steps"]:  # --drift-at 1: no drift, no line
        top.axvline(drift_step, color="red", linestyle="--", linewidth=1, label="permutation changes")
    top.legend(loc="lower right", fontsize=8)
    top.set_ylabel("online accuracy (%)")
    bottom.plot(steps, [point["rss_mb"] for point in result["curve"]], color="tab:green")
    bottom.set_ylabel("process RSS (MB)")
    bottom.set_xlabel("stream time step")
    low, high = min(p["rss_mb"] for p in result["curve"]), max(p["rss_mb"] for p in result["curve"])
    bottom.set_ylim(0, high * 1.3)
    config = result["config"]
    kind = "a MNIST pixel stream, state reset at each digit" if config.get("reset_each_digit") else \
        "an endless MNIST pixel stream"
    top.set_title(f"FPTT on {kind} ({config['streams']} streams, k={config['k']}); RSS {low:.0f}-{high:.0f} MB",
                  fontsize=9)
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
    parser.add_argument("--validation-samples", type=setting_value_type(DataSettings.settings()["validation_samples"],
                                                                 "validation_samples"), default="auto", metavar="N",
                        help="training digits held out of the stream and scored on (the validation draw of `fptt train "
                             "--task smnist --downsample 14` with the same N; auto: its rule, 0: none; default auto)")
    parser.add_argument("--eval-every", type=positive_int, default=None, metavar="STEPS",
                        help="score the held-out digits every STEPS stream steps (W̄, a fresh state per digit; "
                             "default: at the end only)")
    parser.add_argument("--schedule", choices=STREAM_SCHEDULES, default="none",
                        help="lr over the stream's updates: none (default), step (×0.1 at 1/2 and 3/4) or cosine (to 0)")
    parser.add_argument("--ema-decay", type=float, default=None, metavar="D",
                        help="also score the held-out digits with a moving average of the weights, W_ema ← D·W_ema + "
                             "(1 − D)·W after every digit round (0 < D < 1; default: W̄ only)")
    parser.add_argument("--reset-each-digit", action="store_true",
                        help="restart the network state at every digit boundary (default: never, an endless stream)")
    parser.add_argument("--data-dir", default=None,
                        help="folder of the standard MNIST IDX files (default: the bundled MNIST-10k)")
    parser.add_argument("--log-every", type=positive_int, default=20,
                        help="digit rounds per point of the accuracy/memory curve (default 20)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("runs/stream"),
                        help="run folder: config.json, checkpoints, stream.json and stream.png (default runs/stream)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=DEFAULT_CHECKPOINT_EVERY, metavar="N",
                        help="write checkpoint_last.pt every N steps (at the next window boundary; a killed stream "
                             f"loses at most N steps; default {DEFAULT_CHECKPOINT_EVERY:,})")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue the stream saved in RUN_DIR (its --out) with its saved settings, exactly "
                             "where its last checkpoint left it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary print")


def run_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`run_stream` with parsed :func:`add_arguments` options; prints the figures."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume is not None:
        result = resume_stream(args.resume, progress=not args.quiet, handle_signals=True)
        out = args.resume
    else:
        result = run_stream(
            steps=args.steps, streams=args.streams, hidden=args.hidden, k=args.k, lr=args.lr, alpha=args.alpha,
            drift_at=args.drift_at, seed=args.seed, log_every_digits=args.log_every, weighting=args.weighting,
            progress=not args.quiet, out=args.out, preset=args.preset, checkpoint_every=args.checkpoint_every,
            handle_signals=True, validation_samples=args.validation_samples, eval_every=args.eval_every,
            schedule=args.schedule, reset_each_digit=args.reset_each_digit, data_dir=args.data_dir,
            ema_decay=args.ema_decay,
        )
        out = args.out
    if result["interrupted"]:
        print(f"interrupted after {result['steps_done']:,} steps; checkpoint saved: resume with "
              f"`fptt stream --resume {out}`", flush=True)
    elif not args.quiet:
        print(json.dumps({key: value for key, value in result.items() if key != "curve"}, indent=1))
        print(f"results: {out / 'stream.json'}" + (f", {out / 'stream.png'}" if result["curve"] else ""))
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
    from ..run.checkpoint import CheckpointError

    try:
        result = run_from_args(args)
    except CheckpointError:
        raise
    except ValueError as error:  # e.g. fewer steps than one digit
        raise UsageError(str(error)) from None
    if result["interrupted"]:
        return EXIT_TERMINATED if result["stop_signal"] == "SIGTERM" else EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    main()
