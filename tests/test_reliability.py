"""Reliability and security (issue 9): bad input, numerical faults, process faults, untrusted
checkpoints and determinism. docs/RELIABILITY.md tabulates what these tests try and how often.

The data readers' untrusted-file tests are in tests/data/test_untrusted_files.py.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from fptt import FPTT, SpikingRNN, evaluate, train_epoch
from fptt.run.checkpoint import BEST, LAST, PREVIOUS, CheckpointError, load_checkpoint, save_checkpoint
from fptt.run.config import ConfigError, TrainConfig, resolve_config
from fptt.run.trainer import PoisonedCheckpointError, Trainer

from .fuzzing import mutate

TIMING_KEYS = {"seconds", "peak_memory_mb"}


# ---------------------------------------------------------------------------------- helpers
def _batch(batch=4, steps=12, features=3, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, steps, features, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (batch,), generator=generator)


def _model(seed=0, features=3, outputs=5):
    torch.manual_seed(seed)
    return SpikingRNN(features, [6], outputs, initial_membrane="zero").double()


def _tiny(**overrides) -> TrainConfig:
    values = dict(task="add", seq_len=12, train_samples=64, test_samples=32, batch_size=16, hidden=[8],
                  epochs=1, max_batches=4, plots=False, threads=1, k=1, loss_steps="every")
    if "update_points" in overrides:  # one window setting at a time
        values.pop("k")
    values.update(overrides)
    return resolve_config({}, values)


class PoisonGradient:
    """Turns the gradient of ``parameter`` into NaN at its ``at``-th backward pass (1-based)."""

    def __init__(self, parameter: torch.Tensor, at: int) -> None:
        self.at, self.calls = at, 0
        parameter.register_hook(self)

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.full_like(grad, float("nan")) if self.calls == self.at else grad


def _without_timing(rows):
    return [{key: ({k: v for k, v in value.items() if k not in TIMING_KEYS} if isinstance(value, dict) else value)
             for key, value in row.items()} for row in rows]


def _assert_equal_nested(a, b, where="") -> None:
    """Bit-identical tensors, equal everything else, through dicts and lists."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_equal_nested(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_equal_nested(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


# ---------------------------------------------------------------------------------- 1. bad input
BAD_BATCHES = [
    # (what, make the bad batch from a good (x, y), error, message)
    ("zero sequences", lambda x, y: (x[:0], y[:0]), ValueError, r"batch 0 holds zero sequences"),
    ("zero time steps", lambda x, y: (x[:, :0], y), ValueError, r"zero time steps"),
    ("integer inputs", lambda x, y: (x.long(), y), ValueError, r"floating point, got torch\.int64"),
    ("wrong feature count", lambda x, y: (x[..., :2], y), ValueError,
     r"inputs of batch 0 have 2 features per step but the model expects 3"),
    ("targets not a tensor", lambda x, y: (x, y.tolist()), TypeError, r"targets of batch 0 must be a tensor, got list"),
    ("labels with an extra axis", lambda x, y: (x, y[:, None]), ValueError,
     r"class labels must have shape \(batch,\), got \(4, 1\)"),
    ("labels out of range", lambda x, y: (x, y - 1), ValueError, r"labels must lie in \[0, 4\].*got range \[-1"),
    ("Inf input", lambda x, y: (x.index_put((torch.tensor(2), torch.tensor(5), torch.tensor(1)),
                                            torch.tensor(float("inf"), dtype=x.dtype)), y),
     ValueError, r"inputs of batch 0 contain NaN or Inf"),
]


@pytest.mark.parametrize("engine", ["train_epoch", "evaluate"])
@pytest.mark.parametrize("what, make, error, message", BAD_BATCHES, ids=[case[0] for case in BAD_BATCHES])
def test_bad_batches_are_refused_naming_the_problem(engine, what, make, error, message):
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    bad = make(*_batch())
    with pytest.raises(error, match=message):
        if engine == "train_epoch":
            train_epoch(model, [bad], FPTT(torch.optim.SGD(model.parameters(), lr=0.1)))
        else:
            evaluate(model, [bad])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "nothing was trained"


def test_regression_targets_of_the_wrong_size_are_refused():
    model = _model(outputs=1)
    x, _ = _batch()
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"regression targets have 3 value\(s\) per sequence but the model has 1"):
        train_epoch(model, [(x, torch.zeros(4, 3, dtype=torch.float64))], optimizer)
    with pytest.raises(ValueError, match=r"per_step_targets needs targets of shape \(batch, time, \.\.\.\)"):
        train_epoch(model, [(x, torch.zeros(4, 7, dtype=torch.float64))], optimizer, per_step_targets=True)


def test_a_sequence_of_another_dtype_than_the_model_is_refused_once_per_sequence():
    model = _model().float()
    with pytest.raises(ValueError, match=r"input has dtype torch\.float64 but the model's parameters are torch\.float32"):
        model(torch.rand(2, 5, 3, dtype=torch.float64))


BAD_CONFIGS = [
    ({"alpha": -0.1}, r"alpha must be a positive finite number, got -0\.1"),
    ({"alpha": float("nan")}, r"alpha must be a positive finite number, got nan"),
    ({"lr": float("inf")}, r"lr must be a positive finite number, got inf"),
    ({"beta": 1.5}, r"beta must lie in \[0, 1\], got 1\.5"),
    ({"beta": -0.1}, r"beta must lie in \[0, 1\], got -0\.1"),
    ({"k": 50}, r"k \(50\) cannot exceed the sequence length seq_len \(12\)"),
    ({"update_points": 13}, r"update_points \(13\) cannot exceed the sequence length seq_len \(12\)"),
    ({"clip": float("inf")}, r"clip_grad_norm must be a positive finite number, got inf"),
    ({"on_nonfinite": "ignore"}, r"on_nonfinite must be one of stop, skip, got 'ignore'"),
    ({"checkpoint_every": 0}, r"checkpoint_every must be a positive int, got 0"),
    ({"plots": "yes"}, r"plots must be true or false, got 'yes'"),
    ({"seed": "0"}, r"seed must be an int, got '0'"),
    ({"learning_rate": 0.1}, r"unknown config key 'learning_rate'"),
]


@pytest.mark.parametrize("override, message", BAD_CONFIGS, ids=[next(iter(c[0])) + "=" + repr(next(iter(c[0].values())))
                                                                  for c in BAD_CONFIGS])
def test_bad_config_values_name_the_key_and_the_value(override, message):
    with pytest.raises(ConfigError, match=message):
        _tiny(**override)


def test_a_window_longer_than_the_dataset_sequences_is_refused_before_training(tmp_path):
    config = resolve_config({}, dict(task="smnist", downsample=14, hidden=[8], k=500, epochs=1, plots=False))
    with pytest.raises(ConfigError, match=r"k \(500\) cannot exceed the sequence length of task 'smnist' \(196 steps\)"):
        Trainer(config, tmp_path / "run", log=None)


def test_an_empty_dataset_is_refused_naming_the_split(tmp_path, monkeypatch):
    import fptt.run.trainer as trainer_module

    original = trainer_module.build_dataset

    def empty_train(config, split):
        if split == "train":
            return TensorDataset(torch.zeros(0, 12, 2), torch.zeros(0))
        return original(config, split)

    monkeypatch.setattr(trainer_module, "build_dataset", empty_train)
    with pytest.raises(ConfigError, match=r"the train split of task 'add' is empty"):
        Trainer(_tiny(), tmp_path / "run", log=None)


# ---------------------------------------------------------------------------------- 2. numerical faults
@pytest.mark.parametrize("k, poisoned_call, message", [
    # 12 steps, 2 batches; a NaN gradient at update u makes the weights NaN, so update u + 1's loss is NaN
    (1, 17, r"non-finite loss in batch 1 at update 6 of the batch \(time steps 5\.\.5, method=fptt\)"),
    (4, 2, r"non-finite loss in batch 0 at update 3 of the batch \(time steps 8\.\.11, method=fptt\)"),
])
def test_a_nan_gradient_stops_training_naming_the_batch_and_time_steps(k, poisoned_call, message):
    model = _model()
    PoisonGradient(model.readout.weight.weight, at=poisoned_call)
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match=message):
        train_epoch(model, [_batch(seed=0), _batch(seed=1)], optimizer, k=k)


@pytest.mark.parametrize("clip, parameter, remedy", [
    (None, r"readout\.weight\.weight", r"lower the learning rate, enable gradient clipping, or train with on_nonfinite='skip'$"),
    # the clip's NaN total norm spreads the NaN to every gradient, so the first parameter named is another; and a set
    # clip cannot rescue an overflowed gradient, so the message must not advise clipping again
    (0.5, r"layers\.0\.\S+", r"lower the learning rate or train with on_nonfinite='skip' \(the gradient is clipped at norm "
                             r"0\.5 already"),
])
def test_a_nan_gradient_in_the_last_update_is_caught_by_the_parameter_check(clip, parameter, remedy):
    model = _model()
    PoisonGradient(model.readout.weight.weight, at=24)  # the very last update: no later loss sees it
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1), clip_grad_norm=clip)
    with pytest.raises(FloatingPointError, match=rf"parameter {parameter} became NaN/Inf during batch 1") as caught:
        train_epoch(model, [_batch(seed=0), _batch(seed=1)], optimizer)
    assert re.search(remedy, str(caught.value)), str(caught.value)


def test_skip_leaves_out_the_poisoned_update_and_counts_it():
    model = _model()
    PoisonGradient(model.readout.weight.weight, at=17)
    optimizer = FPTT(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.warns(RuntimeWarning, match=r"1 update\(s\) skipped .*first: batch 1, time steps 4\.\.4"):
        metrics = train_epoch(model, [_batch(seed=0), _batch(seed=1)], optimizer, on_nonfinite="skip")
    assert (metrics.skipped_updates, metrics.updates, metrics.samples) == (1, 23, 8)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert all(bool(torch.isfinite(v).all()) for state in optimizer.state_dict()["fptt"]["state"].values()
               for v in state.values() if torch.is_tensor(v))


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_a_sample_with_a_huge_value_stops_or_is_skipped(on_nonfinite):
    """A finite but huge input (1e30) passes the input check and overflows the membrane potential
    that the adding task's readout reads (float32)."""
    from fptt.data import AddingTask

    data = AddingTask(20, 48, seed=0)
    x = torch.stack([data[i][0] for i in range(48)])
    y = torch.stack([data[i][1] for i in range(48)])
    x[20, 5, 0] = 1e30  # batch 1 (of 3), time step 5
    torch.manual_seed(0)
    model = SpikingRNN(2, [16], 1, readout_from="membrane")
    optimizer = FPTT(torch.optim.Adam(model.parameters(), lr=3e-3))
    batches = list(zip(x.split(16), y.split(16)))
    if on_nonfinite == "stop":
        with pytest.raises(FloatingPointError, match=r"non-finite loss in batch 1 at update 6 of the batch \(time steps 5\.\.5"):
            train_epoch(model, batches, optimizer)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics = train_epoch(model, batches, optimizer, on_nonfinite="skip")
    assert metrics.skipped_updates >= 1 and metrics.extra["first_skipped"] == "batch 1, time steps 5..5"
    assert metrics.extra["nonfinite_batches"] == 1 and metrics.samples == 32  # the poisoned batch left out
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert abs(metrics.loss) < float("inf")


def test_trainer_keeps_the_last_good_checkpoint_then_resumes_with_skip(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(_tiny(checkpoint_every=1), run, log=None)
    PoisonGradient(trainer.model.readout.weight.weight, at=2 * 12 + 3)  # batch 2 (of 4), update 3
    with pytest.raises(FloatingPointError) as info:
        trainer.fit()
    message = str(info.value)
    assert "epoch 1: non-finite loss in batch 2 at update 4 of the batch (time steps 3..3" in message
    assert f"the last good checkpoint {run / LAST} (after epoch 0 + 2 batches) was kept" in message
    kept = load_checkpoint(run / LAST)
    assert (kept["epoch"], kept["batches_done"]) == (0, 2)
    assert all(bool(torch.isfinite(t).all()) for t in kept["model"].values())

    resumed = Trainer(_tiny(checkpoint_every=1, on_nonfinite="skip"), run, resume=True, log=None)
    PoisonGradient(resumed.model.readout.weight.weight, at=3)  # the same update: batch 2, update 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = resumed.fit()
    assert summary["epochs_completed"] == 1 and not summary["interrupted"]
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train"]["skipped_updates"] == 1 and row["resumed_at_batch"] == 2
    assert all(bool(torch.isfinite(t).all()) for t in load_checkpoint(run / LAST)["model"].values())


def test_a_poisoned_model_is_never_saved_over_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(_tiny(), tmp_path, log=None)
    trainer.fit()
    good = (tmp_path / LAST).read_bytes()
    with torch.no_grad():
        trainer.model.layers[0].input_weight.weight[0, 0] = float("inf")
    with pytest.raises(PoisonedCheckpointError, match=r"refusing to save checkpoint_last\.pt: NaN/Inf values in "
                                                      r"model\.layers\.0\.input_weight\.weight"):
        trainer._save(tmp_path / LAST, trainer.state(1))
    assert (tmp_path / LAST).read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------- 3. process faults
def _env() -> dict:
    source = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("FPTT_DATA", None)
    return env


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fptt.cli", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _wait_for_start(child: subprocess.Popen) -> None:
    line = child.stdout.readline()
    assert line.startswith(("fptt train:", "resuming")) or "no checkpoint yet" in line, line + child.stderr.read()
    if not line.startswith("fptt train:"):
        line = child.stdout.readline()
        assert line.startswith("fptt train:"), line + child.stderr.read()


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    child = _start("--task", "add", "--seq-len", "20", "--train-samples", "4000", "--test-samples", "16",
                   "--batch-size", "16", "--hidden", "16", "--epochs", "1", "--threads", "1", "--no-plots",
                   "--run-dir", str(run))
    try:
        _wait_for_start(child)
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 143, stderr
    assert "SIGTERM received: saving a checkpoint" in stderr and "Traceback" not in stderr
    assert "interrupted in epoch 1 after" in stdout
    checkpoint = load_checkpoint(run / LAST)
    assert checkpoint["epoch"] == 0 and checkpoint["batches_done"] >= 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["stop_signal"] == "SIGTERM"


def _inode(path: Path):
    try:
        return path.stat().st_ino  # os.replace gives every new checkpoint a new inode
    except FileNotFoundError:
        return None


def _wait_for_checkpoints(child: subprocess.Popen, path: Path, count: int) -> None:
    """Return once ``path`` has been replaced ``count`` times (the run must still be going)."""
    seen, last, deadline = 0, _inode(path), time.monotonic() + 60
    while seen < count:
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoints are being written"
        time.sleep(0.005)
        inode = _inode(path)
        if inode != last:
            seen, last = seen + 1, inode


def _kill_after_checkpoints(child: subprocess.Popen, path: Path, count: int, delay: float) -> None:
    """SIGKILL ``child`` (no handler, no cleanup) ``delay`` seconds after ``path`` was replaced
    ``count`` times, and wait for it to end."""
    try:
        _wait_for_checkpoints(child, path, count)
        time.sleep(delay)
        child.kill()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()


KILLS = 3  # SIGKILLs at random moments of one run (docs/RELIABILITY.md)
KILL_RUN = ["--task", "add", "--seq-len", "20", "--train-samples", "320", "--test-samples", "64",
            "--batch-size", "16", "--hidden", "16", "--epochs", "3", "--threads", "1", "--seed", "5",
            "--checkpoint-every", "1", "--no-plots"]


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    """3 epochs x 20 batches, a checkpoint after every batch; SIGKILL 3 times at random moments,
    resume each time: the weights, optimizer state (W̄, λ, Adam moments), RNG states and every
    evaluation are bit-identical to one uninterrupted run, and checkpoint_last.pt always loads."""
    reference = _start(*KILL_RUN, "--quiet", "--run-dir", str(tmp_path / "straight"))  # in parallel with the kills
    run = tmp_path / "killed"
    rng = random.Random(int(os.environ.get("FPTT_KILL_SEED", "9")))
    progress = []
    try:
        for _kill in range(KILLS):
            if (run / "config.json").is_file():  # --resume: from the last checkpoint, or from the start
                child = _start("--resume", str(run))
            else:
                child = _start(*KILL_RUN, "--run-dir", str(run))
            _wait_for_start(child)
            # a random number of checkpoints (batches) into this segment, then a random moment
            # inside the next batch or its checkpoint write: whatever the machine's speed
            _kill_after_checkpoints(child, run / LAST, rng.randint(3, 16), rng.uniform(0.0, 0.05))
            assert child.returncode == -signal.SIGKILL
            assert json.loads((run / "config.json").read_text())["run"]["seed"] == 5  # never torn
            if (run / LAST).is_file():
                checkpoint = load_checkpoint(run / LAST)  # never torn: loads after every kill
                progress.append((checkpoint["epoch"], checkpoint["batches_done"]))
        final = subprocess.run([sys.executable, "-m", "fptt.cli", "train", "--resume", str(run), "--quiet"],
                               capture_output=True, text=True, timeout=120, env=_env())
        assert final.returncode == 0, final.stderr
        assert reference.wait(timeout=120) == 0, reference.stderr.read()
    finally:
        if reference.poll() is None:
            reference.kill()
    assert len(progress) == KILLS and progress == sorted(progress) and len(set(progress)) == KILLS, progress
    print(f"\nkilled at (epoch, batches done) = {progress}")
    straight, killed = load_checkpoint(tmp_path / "straight" / LAST), load_checkpoint(run / LAST)
    for key in ("model", "optimizer", "scheduler", "rng", "epoch", "batches_done", "best"):
        _assert_equal_nested(straight[key], killed[key], key)
    rows_a = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows_a) == len(rows_b) == 3
    for a, b in zip(_without_timing(rows_a), _without_timing(rows_b)):
        assert a["eval"] == b["eval"] and a["lr"] == b["lr"]
        if "resumed_at_batch" not in b:  # a resumed epoch's train metrics cover the batches after the resume
            assert a["train"] == b["train"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")], "stale temporaries were removed"


def test_sigkill_during_start_up_leaves_a_run_that_resume_restarts_and_finishes(tmp_path):
    """Killed at random moments before its first checkpoint (while importing torch, building the
    data and the model, or in the first batch): config.json is already there and whole, and
    --resume restarts the run from the beginning; the result equals an uninterrupted run."""
    short = [*KILL_RUN[:KILL_RUN.index("--epochs")], "--epochs", "1", *KILL_RUN[KILL_RUN.index("--epochs") + 2:]]
    reference = _start(*short, "--quiet", "--run-dir", str(tmp_path / "straight"))
    run = tmp_path / "killed"
    rng = random.Random(int(os.environ.get("FPTT_KILL_SEED", "9")))
    try:
        child = _start(*short, "--run-dir", str(run))
        deadline = time.monotonic() + 60
        while not (run / "config.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.3))  # some moment during start-up
        child.kill()
        child.wait(timeout=30)
        assert not (run / LAST).is_file(), "the kill came after the first checkpoint: make it earlier"
        assert json.loads((run / "config.json").read_text())["run"]["seed"] == 5  # whole, not torn
        resumed = subprocess.run([sys.executable, "-m", "fptt.cli", "train", "--resume", str(run)],
                                 capture_output=True, text=True, timeout=180, env=_env())
        assert resumed.returncode == 0, resumed.stderr
        assert "no checkpoint yet" in resumed.stdout and "from the beginning" in resumed.stdout
        assert reference.wait(timeout=180) == 0, reference.stderr.read()
    finally:
        for process in (reference, child):
            if process.poll() is None:
                process.kill()
    straight, killed = load_checkpoint(tmp_path / "straight" / LAST), load_checkpoint(run / LAST)
    for key in ("model", "optimizer", "epoch", "batches_done"):
        _assert_equal_nested(straight[key], killed[key], key)


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB filesystem (tmpfs) at ``tmp_path / "disk"``; skipped where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(result.stderr or result.stdout).strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder / "filler"`` until the filesystem is full (a real ENOSPC)."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        for chunk in (2**16, 2**10, 1):  # down to the last byte
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == 28, error  # ENOSPC
    return filler


def test_a_full_disk_stops_the_run_keeping_the_last_checkpoint_and_resume_finishes_it(tmp_path, small_disk,
                                                                                         monkeypatch, capsys):
    """On a real 4 MiB tmpfs, the disk fills up after the first mid-epoch checkpoint: the second
    write fails with ENOSPC, `fptt train` stops with one line naming the folder and the space, the
    previous checkpoint loads, and once space is freed `--resume` ends bit-identical to a run on a
    roomy disk."""
    import fptt.run.trainer as trainer_module
    from fptt.cli import main

    flags = ["--task", "add", "--seq-len", "12", "--train-samples", "64", "--test-samples", "32", "--batch-size", "16",
             "--hidden", "8", "--epochs", "2", "--k", "1", "--threads", "1", "--checkpoint-every", "1", "--no-plots",
             "--quiet", "--seed", "4"]
    assert main(["train", *flags, "--run-dir", str(tmp_path / "straight")]) == 0
    real_save, saves = trainer_module.save_generation, []

    def fill_before_the_second(path, payload, **options):
        saves.append(path.name)
        if saves.count(LAST) == 2:  # before it, the rotation of a third one would free the first
            _fill(small_disk)
        return real_save(path, payload, **options)

    monkeypatch.setattr(trainer_module, "save_generation", fill_before_the_second)
    run = small_disk / "run"
    assert main(["train", *flags, "--run-dir", str(run)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"fptt train: error: could not write {LAST} in {run}: No space left on device "
                            "(the checkpoint needs about "), error
    assert "MB free); the previous checkpoint was kept intact (checkpoint_last.pt, checkpoint_previous.pt); " \
           f"free some space, then resume with `fptt train --resume {run}`" in error, error
    kept = load_checkpoint(run / LAST)
    assert (kept["epoch"], kept["batches_done"]) == (0, 1)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert main(["train", "--resume", str(run), "--quiet"]) == 1  # still full: config.json cannot be rewritten
    error = capsys.readouterr().err
    assert error.startswith(f"fptt train: error: could not write to {run}: No space left on device (0.0 MB free); "
                            f"the last checkpoint {LAST} (after epoch 0 + 1 batches) is intact; free some space"), error
    assert load_checkpoint(run / LAST)["batches_done"] == 1
    (small_disk / "filler").unlink()  # space is freed
    monkeypatch.setattr(trainer_module, "save_generation", real_save)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    straight, resumed = load_checkpoint(tmp_path / "straight" / LAST), load_checkpoint(run / LAST)
    for key in ("model", "optimizer", "rng", "epoch", "batches_done", "best"):
        _assert_equal_nested(straight[key], resumed[key], key)


def test_a_read_only_disk_stops_the_run_naming_the_error_and_resume_finishes_once_writable(tmp_path, small_disk,
                                                                                            monkeypatch):
    """The tmpfs is remounted read-only before the second checkpoint (EROFS, like a disk that
    failed): CheckpointWriteError names the folder and the error, the first checkpoint stays."""
    import fptt.run.trainer as trainer_module
    from fptt.run.checkpoint import CheckpointWriteError

    real_save, saves = trainer_module.save_generation, []

    def read_only_before_the_second(path, payload, **options):
        saves.append(path.name)
        if saves.count(LAST) == 2:
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        return real_save(path, payload, **options)

    monkeypatch.setattr(trainer_module, "save_generation", read_only_before_the_second)
    run = small_disk / "run"
    with pytest.raises(CheckpointWriteError) as info:
        Trainer(_tiny(checkpoint_every=1), run, log=None).fit()
    assert str(info.value.strerror).startswith(f"could not write {LAST} in {run}: Read-only file system; the previous "
                                               "checkpoint was kept intact (checkpoint_last.pt); fix the cause, then "
                                               f"resume with `fptt train --resume {run}`"), info.value
    assert load_checkpoint(run / LAST)["batches_done"] == 1
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    monkeypatch.setattr(trainer_module, "save_generation", real_save)
    assert Trainer(_tiny(checkpoint_every=1), run, resume=True, log=None).fit()["epochs_completed"] == 1


STREAM_RUN = ["--steps", "784", "--streams", "4", "--hidden", "16", "--threads", "1", "--checkpoint-every", "49",
              "--log-every", "1", "--seed", "3", "--quiet"]  # = _in_process_stream
STREAM_TIMING = {"seconds", "rss_mb", "ms_per_step", "rss_mb_first", "rss_mb_last", "rss_mb_max", "resumed_at_step"}


def _start_stream(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fptt.cli", "stream", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _without_stream_timing(value):
    """A stream's result or checkpoint entry without its wall-clock and memory readings."""
    if isinstance(value, dict):
        return {key: _without_stream_timing(item) for key, item in value.items() if key not in STREAM_TIMING}
    if isinstance(value, list):
        return [_without_stream_timing(item) for item in value]
    return value


def _in_process_stream(run: Path, resume: bool) -> dict:
    """The stream of STREAM_RUN in this process (1 thread, as the command line's --threads 1)."""
    from fptt.cli.stream import resume_stream, run_stream

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if resume:
            return resume_stream(run, progress=False)
        return run_stream(steps=784, streams=4, hidden=16, checkpoint_every=49, log_every_digits=1, seed=3,
                          progress=False, out=run)
    finally:
        torch.set_num_threads(threads)


def test_a_stream_killed_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path):
    """`fptt stream` (4 digits x 196 steps, a checkpoint every 49 steps) SIGKILLed at a random
    moment (FPTT_STREAM_KILLS times), then resumed: weights, W̄, λ, Adam moments, live network
    state, stream position, RNG states, loss history and the accuracy curve equal one
    uninterrupted stream; only the wall-clock and memory readings differ. The uninterrupted stream
    and the last resume run in this process (one thread, like --threads 1). The campaign:
    FPTT_STREAM_KILLS=4 with FPTT_KILL_SEED=1..5 (docs/RELIABILITY.md)."""
    kills = int(os.environ.get("FPTT_STREAM_KILLS", "1"))
    run = tmp_path / "killed"
    rng = random.Random(int(os.environ.get("FPTT_KILL_SEED", "9")))
    progress = []
    for _kill in range(kills):
        child = _start_stream("--resume", str(run)) if (run / "config.json").is_file() else \
            _start_stream(*STREAM_RUN, "--out", str(run))
        _kill_after_checkpoints(child, run / LAST, rng.randint(1, 12 // kills), rng.uniform(0.0, 0.1))
        assert child.returncode == -signal.SIGKILL, child.stderr.read()
        progress.append(load_checkpoint(run / LAST)["steps"])  # never torn
    print(f"\nstream killed after checkpoints at steps {progress}")
    assert progress == sorted(progress) and len(set(progress)) == kills, progress
    resumed = _in_process_stream(run, resume=True)
    uninterrupted = _in_process_stream(tmp_path / "straight", resume=False)
    straight, killed = load_checkpoint(tmp_path / "straight" / LAST), load_checkpoint(run / LAST)
    assert straight["steps"] == killed["steps"] == 784
    for key in ("model", "optimizer", "network_state", "steps", "updates", "skipped", "history", "rng", "config"):
        _assert_equal_nested(straight[key], killed[key], key)
    _assert_equal_nested(_without_stream_timing(straight["stream"]), _without_stream_timing(killed["stream"]), "stream")
    assert len(uninterrupted["curve"]) == 4
    assert _without_stream_timing(uninterrupted) == _without_stream_timing(resumed)
    assert resumed["resumed_at_step"] == progress[-1]
    assert json.loads((run / "stream.json").read_text())["curve"] == resumed["curve"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_sigterm_stops_a_stream_at_a_window_boundary_with_a_checkpoint_and_resume_finishes_it(tmp_path, monkeypatch):
    """k = 3: SIGTERM at step 100 stops the stream at the next window boundary (step 102) with a
    checkpoint there (no stream.json); the resume ends equal to an uninterrupted stream (its lr
    schedule, state resets, moving average W_ema and held-out scores included), and the periodic
    checkpoints fall on window boundaries (the first at or after each 50 steps)."""
    from fptt.cli.stream import resume_stream, run_stream
    from fptt.training.streaming import OnlineLearner

    settings = dict(steps=392, streams=2, hidden=8, k=3, checkpoint_every=50, log_every_digits=1, progress=False,
                    validation_samples=20, eval_every=98, schedule="cosine", reset_each_digit=True, ema_decay=0.5)
    straight = run_stream(**settings, out=tmp_path / "straight")
    observe, calls = OnlineLearner.observe, [0]

    def observe_and_signal(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 100:
            os.kill(os.getpid(), signal.SIGTERM)
        return observe(self, *args, **kwargs)

    monkeypatch.setattr(OnlineLearner, "observe", observe_and_signal)
    run = tmp_path / "run"
    stopped = run_stream(**settings, out=run, handle_signals=True)
    monkeypatch.setattr(OnlineLearner, "observe", observe)
    assert stopped["interrupted"] and stopped["stop_signal"] == "SIGTERM" and stopped["steps_done"] == 102
    assert load_checkpoint(run / LAST)["steps"] == 102 and load_checkpoint(run / PREVIOUS)["steps"] == 51
    assert not (run / "stream.json").exists()
    resumed = resume_stream(run, progress=False)
    assert resumed["resumed_at_step"] == 102 and _without_stream_timing(resumed) == _without_stream_timing(straight)
    assert [point["step"] for point in resumed["held_out"]] == [99, 198, 294, 392]  # boundaries at or after 98 n, the end
    assert all(point["accuracy_ema"] is not None for point in resumed["held_out"])
    _assert_equal_nested(load_checkpoint(tmp_path / "straight" / LAST)["model"], load_checkpoint(run / LAST)["model"])
    _assert_equal_nested(load_checkpoint(tmp_path / "straight" / LAST)["stream"]["model_ema"],
                         load_checkpoint(run / LAST)["stream"]["model_ema"])
    assert load_checkpoint(run / LAST)["steps"] == 390  # the last window boundary: steps 390, 391 update nothing


def test_a_stream_resumed_before_its_first_checkpoint_starts_over_and_refuses_a_foreign_folder(tmp_path):
    from fptt.cli.stream import resume_stream, run_stream

    run = tmp_path / "run"
    with pytest.raises(ValueError, match="is not a run folder of `fptt stream`"):
        resume_stream(run)
    first = run_stream(steps=196, streams=2, hidden=8, checkpoint_every=1000, log_every_digits=1, progress=False,
                       out=run)
    (run / LAST).unlink()
    (run / "checkpoint_previous.pt").unlink(missing_ok=True)
    again = resume_stream(run, progress=False)  # no checkpoint: from the beginning
    assert again["resumed_at_step"] is None and again["curve"][0]["accuracy"] == first["curve"][0]["accuracy"]
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int"):
        run_stream(steps=196, checkpoint_every=0, out=run, progress=False)


# ---------------------------------------------------------------------------------- 4. untrusted checkpoints
class _RunsCode:
    """Pickles to a call of ``function(*arguments)`` when loaded by an unsafe unpickler."""

    def __init__(self, function, *arguments) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def _malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    payload = {"model": _RunsCode(os.system, f"touch {marker}"), "config": {}}
    zipped = folder / "zip.pt"
    torch.save(payload, zipped)
    legacy = folder / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"model": _RunsCode(exec, f"open({str(marker)!r}, 'w').close()"),
                                     "config": {}}, protocol=2))
    return {"zip": zipped, "legacy pickle": legacy}


@pytest.mark.parametrize("kind", ["zip", "legacy pickle"])
def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "code_ran"
    path = _malicious_files(tmp_path, marker)[kind]
    with pytest.raises(CheckpointError, match=r"refusing to load .*could run code \(.*GLOBAL (posix\.system|exec) "):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_malicious_checkpoint_through_the_cli_and_resume_runs_nothing(tmp_path, capsys):
    from fptt.cli import main

    marker = tmp_path / "code_ran"
    path = _malicious_files(tmp_path, marker)["zip"]
    assert main(["eval", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fptt eval: error: refusing to load") and error.count("\n") == 1
    run = tmp_path / "run"
    Trainer(_tiny(), run, log=None).fit()
    (run / LAST).write_bytes(path.read_bytes())
    lines: list[str] = []
    Trainer(_tiny(), run, resume=True, log=lines.append)  # passed over: the good checkpoint_best.pt is used
    assert any(line.startswith("passed over:") and "refusing to load" in line for line in lines), lines
    assert "falling back to checkpoint_best.pt, the newest good checkpoint" in " ".join(lines)
    (run / BEST).unlink()
    with pytest.raises(CheckpointError, match=r"no good checkpoint to resume from in .*refusing to load"):
        Trainer(_tiny(), run, resume=True, log=None)
    assert not marker.exists()


def test_corrupt_truncated_and_foreign_checkpoints_are_clean_errors(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(3)}, "config": {}})
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cut\.pt is corrupt, truncated or not a torch checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign\.pt is not an fptt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def _flip_bit(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def test_a_bit_flipped_last_checkpoint_is_detected_and_resume_falls_back_to_the_previous_one(tmp_path):
    """checkpoint_last.pt damaged after a run: load_checkpoint names it; --resume passes over it,
    trains again from checkpoint_previous.pt (3 of 4 batches) and ends bit-identical to the run."""
    config = dict(checkpoint_every=1, seed=3)
    Trainer(_tiny(**config), tmp_path / "straight", log=None).fit()
    run = tmp_path / "run"
    Trainer(_tiny(**config), run, log=None).fit()
    good = (run / LAST).read_bytes()
    assert load_checkpoint(run / "checkpoint_previous.pt")["batches_done"] == 3
    rng = random.Random(0)
    while True:  # a flip in bytes that carry content (a few bytes of zip padding carry none)
        (run / LAST).write_bytes(_flip_bit(good, rng))
        try:
            load_checkpoint(run / LAST)
        except CheckpointError as error:
            assert str(error).startswith(str(run / LAST)), error
            break
    (run / BEST).unlink()  # the previous generation is the only good one left
    lines: list[str] = []
    Trainer(_tiny(**config), run, resume=True, log=lines.append).fit()
    text = "\n".join(lines)
    assert f"passed over: {run / LAST}" in text and "falling back to checkpoint_previous.pt" in text
    assert "resuming " in text and "batch 4" in text
    assert (run / (LAST + ".corrupt")).read_bytes() != good  # kept for inspection
    straight, resumed = load_checkpoint(tmp_path / "straight" / LAST), load_checkpoint(run / LAST)
    for key in ("model", "optimizer", "rng", "epoch", "batches_done", "best"):
        _assert_equal_nested(straight[key], resumed[key], key)


def test_resume_refuses_clearly_when_no_checkpoint_is_good(tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny(), run, log=None).fit()
    (run / LAST).write_bytes((run / LAST).read_bytes()[:-100])  # truncated
    (run / BEST).write_bytes((run / BEST).read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        Trainer(_tiny(), run, resume=True, log=None)
    message = str(info.value)
    assert message.startswith(f"no good checkpoint to resume from in {run}: {run / LAST} is corrupt, truncated")
    assert f"; {run / BEST} is corrupt, truncated" in message and "Start a new run" in message


def test_a_format_1_checkpoint_without_checksum_still_loads_and_resumes_unverified(tmp_path):
    from fptt.run.checkpoint import is_verified

    run = tmp_path / "run"
    Trainer(_tiny(epochs=2, max_batches=2), run, log=None).fit()
    old = load_checkpoint(run / LAST)
    assert is_verified(old)
    del old["checksum"]
    old.update(format=1, epoch=1, history=old["history"][:1])  # as fptt 0.3 wrote it (after epoch 1)
    torch.save(old, run / LAST)
    assert not is_verified(load_checkpoint(run / LAST))
    lines: list[str] = []
    Trainer(_tiny(epochs=2, max_batches=2), run, resume=True, log=lines.append)
    assert "checkpoint_last.pt was written by fptt 0.3 or earlier and carries no checksum: loaded unverified" in lines
    old["format"] = 2  # a format-2 file must carry its checksum
    torch.save(old, run / LAST)
    with pytest.raises(CheckpointError, match=r"checkpoint_last\.pt is corrupt: its checksum entry is missing"):
        load_checkpoint(run / LAST)


def _corruption_campaign(folder: Path, count: int, seed: int) -> dict[str, int]:
    """``count`` damaged copies of a real run's checkpoint_last.pt (a third truncated at a random
    length, the rest with 1-3 flipped bits): each must raise CheckpointError or load contents
    bit-identical to the original (flips in zip padding bytes, which hold no content)."""
    run = folder / "run"
    if not (run / LAST).is_file():
        Trainer(_tiny(), run, log=None).fit()
    original = (run / LAST).read_bytes()
    reference = load_checkpoint(run / LAST)
    rng = random.Random(seed)
    counts = {"detected": 0, "truncations detected": 0, "undamaged contents": 0, "garbage": 0}
    for index in range(count):
        if index % 3 == 0:
            damaged = original[:rng.randrange(len(original))]
            counts["truncations detected"] += 1  # taken back below if it loads
        else:
            damaged = original
            for _ in range(rng.randint(1, 3)):
                damaged = _flip_bit(damaged, rng)
        path = folder / "damaged.pt"
        path.write_bytes(damaged)
        try:
            payload = load_checkpoint(path)
        except CheckpointError as error:
            assert str(path) in str(error), error  # the message names the file
            counts["detected"] += 1
            continue
        counts["truncations detected"] -= index % 3 == 0
        try:
            for key in reference:
                _assert_equal_nested(reference[key], payload[key], key)
            counts["undamaged contents"] += 1
        except AssertionError:
            counts["garbage"] += 1
    return counts


def test_damaged_checkpoints_are_detected_and_never_load_garbage(tmp_path):
    """60 per test run; the campaign: FPTT_CORRUPT_CHECKPOINTS=2000 (docs/RELIABILITY.md)."""
    count = int(os.environ.get("FPTT_CORRUPT_CHECKPOINTS", "60"))
    counts = _corruption_campaign(tmp_path, count, seed=int(os.environ.get("FPTT_CORRUPT_SEED", "0")))
    print(f"\n{count} damaged checkpoints: {counts}")
    assert counts["garbage"] == 0, counts
    assert counts["truncations detected"] == len(range(0, count, 3)), counts
    assert counts["detected"] + counts["undamaged contents"] == count and counts["detected"] > count // 2, counts


CHECKPOINT_FUZZ_EXAMPLES = 60
_GOOD_CHECKPOINT: list[bytes] = []


def _good_checkpoint_bytes(folder: Path) -> bytes:
    if not _GOOD_CHECKPOINT:
        path = save_checkpoint(folder / "seed.pt", {"model": {"w": torch.arange(6.0).reshape(2, 3)},
                                                    "config": {"task": "add"}, "history": [{"epoch": 1}]})
        _GOOD_CHECKPOINT.append(path.read_bytes())
    return _GOOD_CHECKPOINT[0]


@settings(max_examples=CHECKPOINT_FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])),
                      min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_fuzz_mutated_checkpoints_load_or_raise_checkpoint_error(tmp_path, edits, cut):
    path = tmp_path / "mutated.pt"
    path.write_bytes(mutate(_good_checkpoint_bytes(tmp_path), edits, cut))
    try:
        payload = load_checkpoint(path)
    except CheckpointError:
        return
    original = torch.load(io.BytesIO(_good_checkpoint_bytes(tmp_path)), weights_only=True)
    _assert_equal_nested(original, payload)  # whatever loads is the original, never garbage


# ---------------------------------------------------------------------------------- 5. determinism
def test_two_seeded_cpu_runs_are_bit_identical(tmp_path):
    config = dict(method="fptt", epochs=2, max_batches=3, checkpoint_every=2)
    first = Trainer(_tiny(**config), tmp_path / "a", log=None).fit()
    second = Trainer(_tiny(**config), tmp_path / "b", log=None).fit()
    assert first["last"]["eval"]["mse"] == second["last"]["eval"]["mse"]
    a, b = load_checkpoint(tmp_path / "a" / LAST), load_checkpoint(tmp_path / "b" / LAST)
    for key in ("model", "optimizer", "rng", "history"):
        _assert_equal_nested(a[key] if key != "history" else _without_timing(a[key]),
                             b[key] if key != "history" else _without_timing(b[key]), key)
