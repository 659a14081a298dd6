"""Epochs, evaluation, metrics, checkpoints and resume around :func:`fptt.train_epoch`.

The time loop lives in the engine (:mod:`fptt.training.engine`); this module only strings epochs
together::

    from fptt.run.config import TrainConfig
    from fptt.run.trainer import Trainer

    summary = Trainer(TrainConfig.from_dict(dict(task="add", seq_len=50, epochs=2)), run_dir="runs/add").fit()

Per epoch: train (data order seeded with ``seed + epoch``; with ``eval_every`` a learning-curve
point of W and W̄ every N batches in ``curve.jsonl``, and ``stop_at`` ending the run at a target),
FPTT's end-of-epoch ``W ← W̄`` (``load_average_each_epoch``, default on for FPTT), one scheduler
step (or one per batch with ``schedule_unit="batch"``), evaluation with W̄ or W on the validation
split (``validation_samples`` held out of the training data; ``auto`` by default), one JSON line in
``metrics.jsonl``, ``checkpoint_last.pt`` (and ``checkpoint_best.pt`` when the validation score
improved). After the last epoch the final weights are scored on the test split, once; the read is
counted in ``test_reads.json`` and the score is in ``summary.json`` (``read_test=False``, for tuning
runs: no read, ``summary.json`` records ``test: null``). Nothing is chosen on the test split. With
``checkpoint_every=N``, ``checkpoint_last.pt`` is also written after every N training batches, so
a killed process loses at most N batches. Every file is written atomically, and a checkpoint whose
weights or optimizer state hold NaN/Inf is never written (:class:`PoisonedCheckpointError`): the
last good one stays.

Distributed (``config.distributed``, or automatically under ``torchrun``): each process trains its
shard of every epoch (``DistributedSampler``, ``batch_size`` per process) through
:class:`~fptt.training.distributed.DistributedModel`, which averages the gradients at each update, so the
weights, W̄ and λ stay identical on all ranks. Every rank evaluates (identical results); only
rank 0 logs, shows progress and writes files; a stop request is agreed by all ranks at a batch
boundary. Resume reads ``checkpoint_last.pt`` on every rank (the run folder must be shared). A first SIGINT (Ctrl-C) or
SIGTERM stops at the next batch boundary, writes the checkpoint and returns with
``interrupted=True`` (``stop_signal`` in the summary); a second one interrupts at once.
"""
from __future__ import annotations

import errno
import os
import random
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ..memory import peak_rss_mb, per_update
from ..optim import FPTT, WeightEMA
from ..spec.rules import CAPTURE_AFTER_STEPS, FUSE_AFTER_STEPS, plans_to_capture, plans_to_fuse
from ..spec.vocabulary import TRACE_METHODS
from ..training.captured import WINDOW_METHODS
from ..training.engine import EpochMetrics, evaluate, train_epoch
from .build import (
    build_dataset,
    build_model,
    build_optimizer,
    build_scheduler,
    check_datasets,
    dataset_shape,
    final_split,
    resolve_device,
    resolve_validation,
    split_validation,
)
from .checkpoint import (
    CheckpointWriteError,
    PoisonedCheckpointError,
    is_verified,
    newest_good_checkpoint,
    nonfinite_tensors,
    remove_stale_temporaries,
    restore_training,
    save_generation,
    training_payload,
)
from .config import ConfigError, TrainConfig, default_run_dir, save_config
from .control import EpochBatches, StopRequest, agree_to_stop, stop_on_signals
from .records import (
    BEST,
    CURVE,
    LAST,
    METRICS,
    PLOTS,
    SUMMARY,
    append_json_line,
    read_test_reads,
    record_test_read,
    write_json,
    write_json_lines,
)
from .tracking import Tracker, open_tracker

__all__ = ["Trainer", "PoisonedCheckpointError", "fit", "evaluation_rng", "default_run_dir", "resolve_automatic"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def evaluation_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Evaluate with a fixed random stream (the neurons' random initial membrane u_0 ~ U(0, 1)):
    the same score for the same weights, whenever and wherever it is computed, and the training
    stream is left untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------------------- helpers
def _metrics_dict(metrics: EpochMetrics) -> dict[str, Any]:
    row = metrics.to_dict()
    row.pop("extra", None)
    return row


def _score(metrics: dict[str, Any]) -> float:
    """Higher is better: accuracy, or minus the MSE."""
    if metrics.get("accuracy") is not None:
        return float(metrics["accuracy"])
    return -float(metrics["mse"] if metrics.get("mse") is not None else metrics["loss"])


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------------- automatic choices
def resolve_automatic(config: TrainConfig, run_dir: Optional[str | Path] = None, *, seq_len: Optional[int] = None,
                      batches_per_epoch: Optional[int] = None,
                      log: Optional[Callable[[str, str], None]] = None) -> TrainConfig:
    """``config`` with its automatic choices made: ``run_dir`` (``run_dir``, the config's, or
    :func:`default_run_dir`), and ``fused="auto"`` and ``capture="auto"`` by the planned number of
    training steps (:func:`fptt.spec.rules.plans_to_fuse`, :func:`~fptt.spec.rules.plans_to_capture`;
    the training data is built to count them when ``seq_len`` and ``batches_per_epoch`` are not
    given). ``log(key, why)`` receives why each of the two is what it is. Where the data cannot be
    read, they stay ``"auto"`` (the trainer resolves them)."""
    folder = str(run_dir or config.run_dir or default_run_dir(config))
    rules = {"fused": (plans_to_fuse, FUSE_AFTER_STEPS), "capture": (plans_to_capture, CAPTURE_AFTER_STEPS)}
    automatic = [key for key in rules if getattr(config, key) == "auto"]
    for key in rules:
        if key not in automatic and log:
            log(key, f"set by --{key} / --no-{key} or the run's config")
    if not automatic:
        return config.updated(run_dir=folder)
    if seq_len is None or batches_per_epoch is None:
        from ..data import DatasetNotFoundError

        try:
            train_set = build_dataset(config, "train")
        except DatasetNotFoundError as error:
            for key in automatic:
                if log:
                    log(key, f"stays auto (resolved by the run): {str(error).splitlines()[0]}")
            return config.updated(run_dir=folder)
        seq_len = int(train_set[0][0].shape[0])
        batches = -(-len(train_set) // config.batch_size)  # type: ignore[arg-type]
        batches_per_epoch = batches if config.max_batches is None else min(batches, config.max_batches)
    planned = config.epochs * batches_per_epoch * seq_len
    choices = {}
    for key in automatic:
        rule, threshold = rules[key]
        choices[key] = rule(planned)
        if log:
            log(key, f"{planned:,} planned training steps {'>=' if choices[key] else '<'} {threshold:,}; "
                     f"--{key} / --no-{key} to choose")
    return config.updated(run_dir=folder, **choices)


# ---------------------------------------------------------------------------------- trainer
class Trainer:
    """Train ``config`` in ``run_dir``; :meth:`fit` runs the remaining epochs.

    Args:
        config: the resolved :class:`TrainConfig`.
        run_dir: where ``config.json``, ``metrics.jsonl``, checkpoints, ``summary.json`` and
            plots go (default ``config.run_dir`` or ``runs/<task>-<method>-<timestamp>``).
        resume: continue from ``run_dir``'s last checkpoint (exactly: weights, optimizer with
            W̄ and λ, scheduler, RNG states, data order, interrupted epoch's position).
        progress: tqdm bars per epoch (default: when stderr is a terminal).
        log: where the per-epoch lines go (default ``print``); ``None`` silences them.
        datasets: ``(train, validation)`` or ``(train, validation, test)`` datasets to use instead of
            building them from the config (they must be what the config describes; e.g. one cached
            dataset shared by several runs). ``validation`` may be ``None``: no per-epoch evaluation.
            Without ``test``, the test split is built from the config when it is read.
    """

    def __init__(self, config: TrainConfig, run_dir: Optional[str | Path] = None, *, resume: bool = False,
                 progress: Optional[bool] = None, log: Optional[Callable[[str], None]] = print,
                 handle_sigint: bool = True, datasets: Optional[tuple[Optional[Dataset], ...]] = None) -> None:
        if not isinstance(config, TrainConfig):  # the one guard: a TrainConfig is valid by construction
            raise TypeError(f"Trainer takes a TrainConfig (fptt.run.config.resolve_config), got {type(config).__name__}")
        self.config = config
        self.run_dir = Path(run_dir or config.run_dir or default_run_dir(config))
        self.progress = _stderr_is_tty() if progress is None else progress
        self.log = log or (lambda message: None)
        self.handle_sigint = handle_sigint
        self.device = resolve_device(config.device)
        self.rank, self.world_size = self._setup_distributed()
        self.is_main = self.rank == 0
        if not self.is_main:  # only rank 0 logs and shows progress bars
            self.log, self.progress = (lambda message: None), False
        if config.threads:
            torch.set_num_threads(config.threads)
        self.stop = StopRequest()  # set by SIGINT/SIGTERM (fit), agreed by all ranks at batch boundaries
        self.last_saved: Optional[tuple[int, int]] = None  # (epoch, batches_done) of checkpoint_last.pt
        self.damaged_last = False  # resumed from an older checkpoint: checkpoint_last.pt failed to load
        self.history: list[dict[str, Any]] = []
        self.curve: list[dict[str, Any]] = []  # eval_every points (curve.jsonl)
        self.target_reached = False  # stop_at met
        self.train_seconds = 0.0  # training time of the completed epochs
        self.epoch_started = time.perf_counter()
        self.best: Optional[float] = None
        self.start_epoch = 0
        self.skip_batches = 0
        self.saved_tensor_peak = 0
        self.tracker: Tracker = Tracker()  # --log: opened by fit() on the main process
        self.trace_bytes = 0  # e-prop/OSTL: the eligibility traces' memory (largest batch)
        seed_everything(config.seed)
        config = self.config  # _setup_distributed may have set distributed
        self.test_set: Optional[Dataset] = None  # built when it is read, once, after the last epoch
        self.test_result: Optional[dict[str, Any]] = None
        self.eval_set: Optional[Dataset]
        if datasets is not None:
            if len(datasets) not in (2, 3) or datasets[0] is None:
                raise TypeError("datasets must be (train, validation) or (train, validation, test)")
            self.train_set, self.eval_set = datasets[0], datasets[1]
            self.test_set = datasets[2] if len(datasets) == 3 else None
            held_out = 0 if self.eval_set is None else len(self.eval_set)  # type: ignore[arg-type]
            config = self.config = self.config.updated(validation_samples=held_out)
        else:
            full = build_dataset(config.updated(validation_samples=0), "train")
            config = self.config = resolve_validation(self.config, len(full))  # type: ignore[arg-type]
            self.train_set, self.eval_set = (split_validation(full, config.validation_samples)  # type: ignore[arg-type]
                                             if config.validation_samples else (full, None))
        self.eval_split: Optional[str] = None if self.eval_set is None else "validation"
        check_datasets(config, {"train": self.train_set, **({"validation": self.eval_set} if self.eval_set else {})})
        self.notes: dict[str, str] = {}  # why the automatic choices (fused, capture) are what they are
        if self.eval_set is None and (config.eval_every or config.stop_at is not None):
            if not resume:
                raise ConfigError("--eval-every and --stop-at evaluate on the validation split, and this run holds "
                                  "none (validation_samples 0): hold some training samples out (--validation-samples "
                                  "N or auto); the test split is only read once, after the last epoch")
            # a run folder of fptt 0.3, which evaluated on its test split: it goes on without doing so
            config = self.config = config.updated(eval_every=None, stop_at=None)
            self.notes["validation"] = ("this run holds no validation split (a run folder of fptt 0.3?): its "
                                        "learning-curve points and stop_at are off, so that nothing is chosen on the "
                                        "test split, which is read once after the last epoch")
        self.input_size, self.output_size = dataset_shape(self.train_set)
        seq_len = int(self.train_set[0][0].shape[0])
        self.input_shape = getattr(self.train_set, "frame_shape", None) if config.conv else None
        count = len(self.train_loader(0))  # training batches of one epoch (max_batches caps it)
        self.batches_per_epoch = count if config.max_batches is None else min(count, config.max_batches)
        # the automatic choices, resolved before config.json is written (fit)
        config = self.config = resolve_automatic(self.config, self.run_dir, seq_len=seq_len,
                                                 batches_per_epoch=self.batches_per_epoch, log=self.notes.__setitem__)
        # the captured update (fptt.training.captured) for the window methods; not while measuring memory:
        # the activations it keeps live inside its compiled graph, where --measure-memory cannot count them
        self.captures = bool(config.capture) and config.method in WINDOW_METHODS and not config.measure_memory
        if config.capture is True and config.measure_memory:
            self.notes["capture"] = ("off while --measure-memory counts the activations autograd keeps: a captured "
                                     "update keeps them inside its compiled graph")
        if self.is_main and not resume:  # every choice made: from here a killed run can be resumed (restarted)
            save_config(config, self.run_dir)
        self.model = build_model(config, self.input_size, self.output_size, seq_len,
                                 input_shape=self.input_shape).to(self.device)
        self.train_model: nn.Module = self.model
        if self.world_size > 1 or self.config.distributed:
            from ..training.distributed import DistributedModel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedModel(self.model, device_ids=device_ids)
        self.optimizer = build_optimizer(config, self.model)
        self.scheduler = build_scheduler(config, self.optimizer, self.batches_per_epoch)
        if self.captures and self.scheduler is not None:
            # the captured graph runs the optimizer's update without calling optimizer.step(), which torch's
            # schedulers watch for (a misleading "lr_scheduler.step() before optimizer.step()" warning): the
            # trainer steps the schedule only after updates, so mark the optimizer as stepped
            self.optimizer._opt_called = True  # type: ignore[attr-defined]
        # W_ema, updated after every training batch, when the run evaluates with it
        self.weight_average = WeightEMA(self.model, config.ema_decay) if config.eval_with == "ema" else None
        if resume:
            self._resume()

    def _setup_distributed(self) -> tuple[int, int]:
        """(rank, world size): (0, 1) unless distributed; then the process group from torchrun."""
        from ..training.distributed import launched_by_torchrun, setup

        if not (self.config.distributed or launched_by_torchrun()):
            return 0, 1
        if not self.config.distributed:
            self.config = self.config.updated(distributed=True)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        rank, world = setup(backend)
        if self.device.type == "cuda":  # one GPU per process
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return rank, world

    @property
    def stop_requested(self) -> bool:
        """A stop (at the next batch boundary) was asked for."""
        return self.stop.requested

    @stop_requested.setter
    def stop_requested(self, value: bool) -> None:
        self.stop.requested = value

    @property
    def stop_signal(self) -> Optional[str]:
        """``"SIGINT"`` or ``"SIGTERM"`` once one asked for a stop."""
        return self.stop.signal

    def _should_stop(self) -> bool:
        """A stop request (SIGINT/SIGTERM) of any rank, agreed by all ranks."""
        self.stop.requested = agree_to_stop(self.stop.requested, self.world_size, self.device)
        return self.stop.requested

    def _save(self, path: Path, payload: dict[str, Any]) -> None:
        """Write a checkpoint (rank 0 only) unless it is poisoned: a NaN/Inf in the weights or the
        optimizer state raises ``FloatingPointError`` and the previous file is left as it was."""
        bad = nonfinite_tensors({"model": payload["model"], "optimizer": payload["optimizer"]})
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise PoisonedCheckpointError(f"refusing to save {path.name}: NaN/Inf values in {shown}; {self._kept()}")
        if self.is_main:
            last = path.name == LAST
            if last and self.damaged_last and path.is_file():  # kept for inspection, never made "previous"
                os.replace(path, path.with_name(path.name + ".corrupt"))
            try:
                save_generation(path, payload, keep_previous=last)
            except CheckpointWriteError as error:  # a full disk: stop, the previous checkpoint is intact
                raise CheckpointWriteError(error.errno, f"{error.strerror}; {self._resume_hint(error.errno)}") from None
            self.damaged_last = self.damaged_last and not last
        if path.name == LAST:
            self.last_saved = (int(payload["epoch"]), int(payload["batches_done"]))

    def _kept(self) -> str:
        """Which checkpoint a failure leaves in place (for error messages)."""
        if self.last_saved is None:
            return f"no checkpoint was written in {self.run_dir}"
        return (f"the last good checkpoint {self.run_dir / LAST} ({self._progress_text()}) was kept; resume with "
                f"`fptt train --resume {self.run_dir}` (e.g. with --on-nonfinite skip)")

    # -------------------------------------------------------------- state
    def state(self, epoch: int, batches_done: int = 0) -> dict[str, Any]:
        """The checkpoint payload after ``epoch`` completed epochs (+ ``batches_done`` of the next)."""
        return training_payload(
            self.model, self.optimizer, self.scheduler, epoch=epoch, batches_done=batches_done,
            weight_average=self.weight_average,
            config=self.config.to_dict(), history=self.history, curve=self.curve, best=self.best,
            model_shape={"input_size": self.input_size, "output_size": self.output_size,
                         "input_shape": None if self.input_shape is None else list(self.input_shape)},
            saved_tensor_peak_bytes=self.saved_tensor_peak)

    def _resume(self) -> None:
        found = newest_good_checkpoint(self.run_dir, map_location=self.device)  # CheckpointError if none is good
        if found is None:  # killed before its first checkpoint: nothing was trained for good
            self.log(f"{self.run_dir} has no checkpoint yet (stopped before the first one): "
                     "starting this run from the beginning")
            return
        payload = found.payload
        for problem in found.rejected:
            self.log(f"passed over: {problem}")
        if found.path.name != LAST:
            self.damaged_last = (self.run_dir / LAST).is_file()
            self.log(f"falling back to {found.path.name}, the newest good checkpoint"
                     + (f" ({LAST} will be kept as {LAST}.corrupt)" if self.damaged_last else ""))
        if not is_verified(payload):
            self.log(f"{found.path.name} was written by fptt 0.3 or earlier and carries no checksum: loaded unverified")
        restore_training(payload, self.model, self.optimizer, self.scheduler, self.weight_average)
        self.start_epoch = int(payload["epoch"])
        self.skip_batches = int(payload.get("batches_done", 0))
        self.history = list(payload.get("history", []))
        self.curve = list(payload.get("curve", []))
        self.train_seconds = sum(row["train"]["seconds"] for row in self.history)
        self.best = payload.get("best")
        self.saved_tensor_peak = int(payload.get("saved_tensor_peak_bytes", 0))
        self.last_saved = (self.start_epoch, self.skip_batches)
        where = f"epoch {self.start_epoch + 1}" + (f", batch {self.skip_batches + 1}" if self.skip_batches else "")
        self.log(f"resuming {self.run_dir} at {where}")

    # -------------------------------------------------------------- pieces
    def train_loader(self, epoch: int) -> DataLoader:
        """The shuffled training loader of ``epoch`` (order seeded with ``seed + epoch``)."""
        if self.world_size > 1:  # this rank's shard, reshuffled each epoch with the same seed on all ranks
            sampler: DistributedSampler = DistributedSampler(self.train_set, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=True, seed=self.config.seed)
            sampler.set_epoch(epoch)
            # a generator of its own: without one, every iterator draws its base seed from the global
            # RNG, and a resume in the middle of an epoch (a second iterator) would shift that stream
            generator = torch.Generator().manual_seed(self.config.seed + epoch)
            return DataLoader(self.train_set, batch_size=self.config.batch_size, sampler=sampler, generator=generator)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        return DataLoader(self.train_set, batch_size=self.config.batch_size, shuffle=True, generator=generator)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        size = self.config.eval_batch_size or max(self.config.batch_size, 256)
        return DataLoader(dataset, batch_size=size, shuffle=False)

    def evaluate(self, dataset: Optional[Dataset] = None, with_: Optional[str] = None) -> EpochMetrics:
        """Evaluate on ``dataset`` (default the run's validation split) with W̄, W or W_ema
        (``with_``: ``average``, ``weights`` or ``ema``; default the run's ``eval_with``), scored by
        the run's ``decode``."""
        dataset = dataset if dataset is not None else self.eval_set
        if dataset is None:
            raise ValueError("this run holds no validation split (validation_samples 0): pass the dataset to evaluate")
        with_ = with_ or self.config.eval_with
        context: Any = nullcontext()
        if with_ == "average" and isinstance(self.optimizer, FPTT):
            context = self.optimizer.averaged()
        elif with_ == "ema":
            if self.weight_average is None:
                raise ValueError("this run keeps no moving average of its weights (train it with --eval-with ema)")
            context = self.weight_average.applied()
        with context, evaluation_rng(self.config.seed, self.device):
            return evaluate(self.model, self.eval_loader(dataset), max_batches=self.config.max_eval_batches,
                            progress=self.progress, description="eval", decode=self.config.decode)

    def _train_one_epoch(self, epoch: int) -> tuple[EpochMetrics, EpochBatches]:
        config = self.config
        start = self.skip_batches
        loader = self.train_loader(epoch)
        batches = EpochBatches(loader, len(loader), start, config.max_batches,
                           lambda: self._should_stop() or self.target_reached,
                           on_boundary=lambda done: self._between_batches(epoch, start + done))
        # bptt takes the whole sequence, online single steps; eprop/ostl update every k steps (default 1)
        windowed = config.method in ("fptt", "tbptt", "eprop", "ostl")
        windows = {"k": config.k, "update_points": config.update_points} if windowed else {}
        with per_update(self.optimizer) if config.measure_memory else nullcontext() as meter:
            metrics = train_epoch(
                self.train_model, batches, self.optimizer, method=config.method, weighting=config.weighting,
                loss_steps=config.loss_steps, clip_grad_norm=None if config.method == "fptt" else config.clip_grad_norm,
                progress=self.progress, description=f"epoch {epoch + 1}/{config.epochs}",
                on_nonfinite=config.on_nonfinite, feedback=config.feedback, feedback_seed=config.seed,
                capture=self.captures, **windows,
            )
        self.trace_bytes = max(self.trace_bytes, int(metrics.extra.get("trace_bytes", 0)))
        if meter is not None:
            self.saved_tensor_peak = max(self.saved_tensor_peak, meter.peak)
        return metrics, batches

    def _between_batches(self, epoch: int, done: int) -> None:
        """After ``done`` batches of ``epoch``: the W_ema update (``eval_with="ema"``), an lr step
        (``schedule_unit="batch"``), a checkpoint every ``checkpoint_every`` batches, a
        learning-curve point every ``eval_every``."""
        config = self.config
        if self.weight_average is not None:
            self.weight_average.update()
        if self.scheduler is not None and config.schedule_unit == "batch":
            self.scheduler.step()
        if config.eval_every and done % config.eval_every == 0:
            self._curve_point(epoch, done)
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            self._save(self.run_dir / LAST, self.state(epoch, done))

    def _curve_point(self, epoch: int, done: int) -> None:
        """Evaluate the current weights W, (FPTT) the running average W̄ and (``eval_with="ema"``)
        W_ema on the evaluation split, append the point to ``curve.jsonl`` and check ``stop_at``."""
        scores: dict[str, Optional[float]] = {"weights": None, "average": None}
        evaluated = ["weights", *(["average"] if isinstance(self.optimizer, FPTT) else []),
                     *(["ema"] if self.weight_average is not None else [])]
        for with_ in evaluated:
            metrics = self.evaluate(with_=with_)
            scores[with_] = metrics.accuracy if metrics.accuracy is not None else metrics.mse
        metric = "accuracy" if metrics.accuracy is not None else "mse"
        point = {"batch": epoch * self.batches_per_epoch + done, "epoch": epoch + 1, "metric": metric, **scores,
                 "train_seconds": self.train_seconds + time.perf_counter() - self.epoch_started}
        self.curve.append(point)
        if self.is_main:
            append_json_line(self.run_dir / CURVE, point)
            self.tracker.curve(point)
        watched = scores[self._evaluated_with()]
        target = self.config.stop_at
        if target is not None and watched is not None and (watched >= target if metric == "accuracy" else watched <= target):
            if not self.target_reached:
                self.log(f"stop_at reached: {metric} {watched:.4g} after {point['batch']} batches")
            self.target_reached = True

    @staticmethod
    @contextmanager
    def _closing(tracker: Tracker) -> Iterator[None]:
        try:
            yield
        finally:
            tracker.close()

    # -------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs; returns (and writes) the summary.

        A full disk stops the run (:class:`CheckpointWriteError`, one message naming the folder and
        the space) and leaves the last checkpoint as it was, so that ``--resume`` continues once
        space is freed: continuing without checkpoints would put ever more training at risk."""
        try:
            return self._fit()
        except CheckpointWriteError:
            raise
        except OSError as error:  # metrics.jsonl, curve.jsonl, summary.json, plots on a full disk
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            kept = (f"the last checkpoint {LAST} ({self._progress_text()}) is intact" if self.last_saved
                    else "no checkpoint was written yet")
            raise CheckpointWriteError(error.errno, f"could not write to {self.run_dir}: {error.strerror} "
                                                    f"({shutil.disk_usage(self.run_dir).free / 2**20:.1f} MB free); "
                                                    f"{kept}; {self._resume_hint()}") from None

    def _progress_text(self) -> str:
        epoch, batches = self.last_saved or (0, 0)
        return f"after epoch {epoch}" + (f" + {batches} batches" if batches else "")

    def _resume_hint(self, code: Optional[int] = errno.ENOSPC) -> str:
        action = "free some space" if code in (errno.ENOSPC, errno.EDQUOT) else "fix the cause"
        return f"{action}, then resume with `fptt train --resume {self.run_dir}`"

    def _fit(self) -> dict[str, Any]:  # noqa: C901 - the epoch loop
        config = self.config
        metrics_path = self.run_dir / METRICS
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)  # left by a process killed while saving
            # atomic: a kill at any moment leaves a config.json that --resume can read
            save_config(config, self.run_dir)
            # a fresh run starts empty; a resumed one keeps exactly the rows the checkpoint has seen
            write_json_lines(metrics_path, self.history)
            write_json_lines(self.run_dir / CURVE, self.curve)
        started = time.perf_counter()
        interrupted = False
        if self.is_main and config.log != "none":
            done = self.start_epoch * self.batches_per_epoch + self.skip_batches
            self.tracker = open_tracker(config.log, self.run_dir, purge_step=done + 1 if done else None)
        with stop_on_signals(self.stop, self.handle_sigint), self._closing(self.tracker):
            self.log(f"fptt train: {config.task} {config.neuron} {config.method}, hidden {config.hidden_sizes}, "
                     f"{sum(p.numel() for p in self.model.parameters())} parameters, device {self.device}, "
                     f"run dir {self.run_dir}")
            self.log(f"fused kernels {'on' if config.fused else 'off'} ({self.notes.get('fused', '')})")
            if "validation" in self.notes:
                self.log(self.notes["validation"])
            if config.method in WINDOW_METHODS:
                self.log(f"captured update {'on' if self.captures else 'off'} ({self.notes.get('capture', '')})")
            for epoch in range(self.start_epoch, config.epochs):
                resumed_at = self.skip_batches
                self.epoch_started = time.perf_counter()
                try:
                    train_metrics, batches = self._train_one_epoch(epoch)
                except PoisonedCheckpointError:
                    raise
                except FloatingPointError as error:  # the engine's, naming the batch and time steps
                    offset = (f" (batches counted from batch {resumed_at} of the epoch, where this run resumed)"
                              if resumed_at else "")
                    raise FloatingPointError(f"epoch {epoch + 1}: {error}{offset}; {self._kept()}") from None
                if self.stop_requested and batches.done < batches.remaining:
                    self.skip_batches += batches.done
                    self._save(self.run_dir / LAST, self.state(epoch, self.skip_batches))
                    self.log(f"interrupted in epoch {epoch + 1} after {self.skip_batches} batches; checkpoint "
                             f"saved: resume with `fptt train --resume {self.run_dir}`")
                    interrupted = True
                    break
                self.skip_batches = 0
                if self.weight_average is not None and batches.done:
                    self.weight_average.update()  # for the epoch's last batch (the others updated between batches)
                if self.scheduler is not None and config.schedule_unit == "batch":
                    self.scheduler.step()  # for the epoch's last batch (the others stepped between batches)
                if config.eval_every and not self.target_reached:  # the epoch's last point, before any W ← W̄
                    self._curve_point(epoch, resumed_at + batches.done)
                self.train_seconds += train_metrics.seconds
                if isinstance(self.optimizer, FPTT) and config.averaging:
                    self.optimizer.load_average()
                lr = self.optimizer.param_groups[0]["lr"]
                if self.scheduler is not None and config.schedule_unit == "epoch":
                    self.scheduler.step()
                row = {"epoch": epoch + 1, "lr": lr, "train": _metrics_dict(train_metrics)}
                if self.eval_set is not None:  # the validation split: all a run selects on
                    row.update({"eval": _metrics_dict(self.evaluate()), "eval_split": self.eval_split,
                                "eval_with": self._evaluated_with()})
                if resumed_at:
                    row["resumed_at_batch"] = resumed_at
                self.history.append(row)
                if self.is_main:
                    append_json_line(metrics_path, row)
                    self.tracker.epoch(row, epoch * self.batches_per_epoch + resumed_at + batches.done,
                                       self.saved_tensor_peak if config.measure_memory else None)
                improved = "eval" in row and (self.best is None or _score(row["eval"]) > self.best)
                if improved:
                    self.best = _score(row["eval"])
                payload = self.state(epoch + 1)
                self._save(self.run_dir / LAST, payload)
                if improved:
                    self._save(self.run_dir / BEST, payload)
                self.log(self._epoch_line(row))
                if self.target_reached:
                    self.log(f"stopped after epoch {epoch + 1}: stop_at {config.stop_at} reached")
                    break
                if self._should_stop():  # Ctrl-C during evaluation: the epoch is complete and saved
                    interrupted = epoch + 1 < config.epochs
                    break
        finished = not interrupted and self.history and (len(self.history) == config.epochs or self.target_reached)
        if finished and config.read_test:
            self.test_result = self._read_test_once()
        summary = self._summary(time.perf_counter() - started, interrupted)
        if self.is_main:
            write_json(self.run_dir / SUMMARY, summary)
            if config.plots and not interrupted and self.history:
                self.make_plots()
        return summary

    def _evaluated_with(self) -> str:
        """What an evaluation scores: ``ema`` (W_ema) when the run keeps it, ``average`` (W̄) for FPTT
        evaluated with it, else ``weights``."""
        if self.config.eval_with == "ema":
            return "ema"
        return "average" if isinstance(self.optimizer, FPTT) and self.config.eval_with == "average" else "weights"

    def _read_test_once(self) -> dict[str, Any]:
        """Score the run's final weights (W̄ or W_ema where the run evaluates with them) on the test split, and count
        the read in ``test_reads.json``; a run resumed after it finished reuses its recorded read."""
        done = len(self.history)
        earlier = [read for read in read_test_reads(self.run_dir) if read.get("by") == "fptt train"
                   and read.get("epoch") == done and "metrics" in read]
        if earlier:
            read = earlier[-1]
        else:
            split = final_split(self.config)
            dataset = self.test_set if self.test_set is not None else build_dataset(self.config, split)
            metrics = _metrics_dict(self.evaluate(dataset))
            read = {"by": "fptt train", "split": split, "checkpoint": LAST, "epoch": done,
                    "with": self._evaluated_with(), "decode": self.config.decode, "metrics": metrics}
            read["read"] = record_test_read(self.run_dir, read) if self.is_main else 1
            metric = "accuracy" if metrics.get("accuracy") is not None else "mse"
            self.log(f"{split} {metric} {metrics[metric]:.4f} (the final weights, epoch {done}; read {read['read']} "
                     f"of this run's {split} split, counted in test_reads.json)")
        return {"split": read["split"], "epoch": done, "with": read["with"], "decode": read.get("decode", "last"),
                "reads": read["read"], **read["metrics"]}

    def _epoch_line(self, row: dict[str, Any]) -> str:
        train, evaluation = row["train"], row.get("eval")
        if evaluation is None:
            scores = (f"train acc {train['accuracy']:.4f}" if train.get("accuracy") is not None
                      else f"train mse {train['mse']:.4f}")
        elif evaluation.get("accuracy") is not None:
            scores = f"train acc {train['accuracy']:.4f}  {row['eval_split']} acc {evaluation['accuracy']:.4f}"
        else:
            scores = f"train mse {train['mse']:.4f}  {row['eval_split']} mse {evaluation['mse']:.4f}"
        rate = f"  rate {train['firing_rate']:.3f}" if train.get("firing_rate") is not None else ""
        return (f"epoch {row['epoch']}/{self.config.epochs}  loss {train['loss']:.4f}  {scores}{rate}  "
                f"lr {row['lr']:.2e}  {train['seconds']:.1f}s")

    def _summary(self, seconds: float, interrupted: bool) -> dict[str, Any]:
        last = self.history[-1] if self.history else None
        return {
            "run_dir": str(self.run_dir),
            "task": self.config.task,
            "method": self.config.method,
            "model": self.config.neuron,
            "epochs_completed": len(self.history),
            "interrupted": interrupted,
            "stop_signal": self.stop_signal if interrupted else None,
            "last": last,
            "best_score": self.best,
            "best_metric": "accuracy" if last and last["train"].get("accuracy") is not None else "-mse",
            "best_split": self.eval_split,
            "test": self.test_result,
            "test_reads": len(read_test_reads(self.run_dir)) if self.is_main else None,
            "wall_seconds": seconds,
            "train_seconds": sum(row["train"]["seconds"] for row in self.history),
            "peak_rss_mb": peak_rss_mb(),
            "saved_tensor_peak_bytes": self.saved_tensor_peak if self.config.measure_memory else None,
            "trace_bytes": self.trace_bytes if self.config.method in TRACE_METHODS else None,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
            "world_size": self.world_size,
        }

    def make_plots(self) -> list[Path]:
        """Learning curves, spike raster/rates and (LTC) time constants into ``run_dir/plots``.

        matplotlib is an optional extra: without it the plots are skipped with a one-line note and
        the run is otherwise complete."""
        from . import plots

        folder = self.run_dir / PLOTS
        try:
            written = [plots.plot_learning_curves(self.history, folder / "learning_curves.png",
                                                  title=f"{self.config.task} {self.config.method}")]
            x, _ = (self.eval_set if self.eval_set is not None else self.train_set)[0]
            written.append(plots.plot_spike_raster(self.model, x, folder / "spike_raster.png"))
            if self.config.neuron == "ltc":
                written.append(plots.plot_time_constants(self.model, x, folder / "time_constants.png"))
        except ImportError as error:  # matplotlib (the "plot" extra) is not installed
            self.log(f"plots skipped: {error.name or 'matplotlib'} is not installed (pip install 'fptt[plot]')")
            return []
        return written


def fit(config: TrainConfig, run_dir: Optional[str | Path] = None, **options: Any) -> dict[str, Any]:
    """``Trainer(config, run_dir, **options).fit()``."""
    return Trainer(config, run_dir, **options).fit()
