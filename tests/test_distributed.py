"""Two CPU processes (gloo): FPTT under DistributedDataParallel equals one process on the whole batch."""
from __future__ import annotations

import datetime
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fptt import FPTT, OnlineLearner, SpikingRNN, train_epoch
from fptt.training.distributed import DistributedModel, is_main_process, world_size

WORLD = 2
BATCH = 8


def _data():
    generator = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(2):
        x = torch.rand(BATCH, 9, 3, generator=generator, dtype=torch.float64) * 2
        y = torch.randint(0, 4, (BATCH,), generator=generator)
        batches.append((x, y))
    return batches


def _model_and_optimizer():
    torch.manual_seed(0)
    model = SpikingRNN(3, [6, 5], 4, initial_membrane="zero").double()
    return model, FPTT(torch.optim.Adam(model.parameters(), lr=1e-2), alpha=0.2, beta=0.5)


def _snapshot(model, optimizer):
    fptt_state = optimizer.state_dict()["fptt"]["state"]
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "averages": [fptt_state[i]["average"].clone() for i in sorted(fptt_state)],
        "lambdas": [fptt_state[i]["lambda"].clone() for i in sorted(fptt_state)],
    }


def _worker(rank: int, port: int, out_dir: str, k: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=30))  # a deadlock fails the test, not the suite
    try:
        assert world_size() == WORLD and is_main_process() == (rank == 0)
        model, optimizer = _model_and_optimizer()
        shard = BATCH // WORLD
        local = [(x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]) for x, y in _data()]
        wrapped = DistributedModel(model)
        # the protocol attributes reach the engine's checks under DDP
        assert wrapped.input_size == 3 and wrapped.output_size == 4 and wrapped.hidden_sizes == (6, 5)
        bad = [(local[0][0][:, :, :2], local[0][1])]
        try:
            train_epoch(wrapped, bad, optimizer, method="fptt", k=k)
            raise AssertionError("a batch with 2 features was accepted by a 3-input model")
        except ValueError as error:
            assert "2 features per step but the model expects 3" in str(error)
        train_epoch(wrapped, local, optimizer, method="fptt", k=k)
        torch.save(_snapshot(model, optimizer), os.path.join(out_dir, f"rank{rank}.pt"))
        # a stream where only rank 0 has targets in the first window: every rank still takes part
        # in each window's all-reduce (no deadlock) and the weights stay identical
        learner = OnlineLearner(wrapped, optimizer, k=2, batch_size=2)
        for t in range(6):
            learner.observe(torch.rand(2, 3, dtype=torch.float64), torch.tensor([1, 2]) if rank == 0 or t >= 2 else None)
        assert learner.updates == 3
        torch.save(_snapshot(model, optimizer), os.path.join(out_dir, f"stream{rank}.pt"))
        if k == 1:  # in the same processes: a spawn costs seconds
            _nonfinite_scenarios(rank, out_dir)
        dist.barrier()  # no rank leaves while its peer's gloo threads still talk to it (as the CLI does)
    finally:
        dist.destroy_process_group()
    # Success: leave without the interpreter's teardown, where gloo's C++ threads occasionally abort the
    # process ("terminate called without an active exception", SIGABRT) after all the work above is
    # done and saved; seen about once in ten `make test` runs under load. The cause is in torch: once a
    # DDP module was built, the process group and its threads outlive destroy_process_group() and are
    # torn down at interpreter exit (tests/distributed_teardown.py reproduces it without fptt).
    # A failure above still raises.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_RUNS: dict[int, object] = {}


def _gloo_run(k: int, tmp_path_factory) -> object:
    """The folder of one 2-rank run of :func:`_worker` with window ``k`` (run once per session)."""
    if k not in _RUNS:
        folder = tmp_path_factory.mktemp(f"gloo_k{k}")
        mp.start_processes(_worker, args=(_free_port(), str(folder), k), nprocs=WORLD, join=True, start_method="spawn")
        _RUNS[k] = folder
    return _RUNS[k]


@pytest.mark.parametrize("k", [1, 3])
def test_two_gloo_ranks_stay_identical_and_match_one_process_on_the_whole_batch(tmp_path_factory, k):
    tmp_path = _gloo_run(k, tmp_path_factory)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]

    model, optimizer = _model_and_optimizer()
    train_epoch(model, _data(), optimizer, method="fptt", k=k)
    single = _snapshot(model, optimizer)

    streams = [torch.load(tmp_path / f"stream{rank}.pt", weights_only=True) for rank in range(WORLD)]
    for key in ("params", "averages", "lambdas"):
        for a, b in zip(ranks[0][key], ranks[1][key]):
            assert torch.equal(a, b), f"{key} differ across ranks"
        for a, b in zip(streams[0][key], streams[1][key]):
            assert torch.equal(a, b), f"{key} differ across ranks after the stream"
        for a, b in zip(ranks[0][key], single[key]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    assert any(not torch.equal(a, b) for a, b in zip(single["averages"], single["lambdas"]))


def _poison_one_rank(rank: int, at: int) -> None:
    """On rank 1 only, make the ``at``-th window loss term +Inf; its gradient stays finite (a
    constant added), so nothing but the loss itself tells this rank's peers."""
    from fptt.training.window import WindowUpdate

    if rank != 1:
        return
    original, calls = getattr(WindowUpdate, "unpoisoned_add", WindowUpdate.add), [0]
    WindowUpdate.unpoisoned_add = original  # type: ignore[attr-defined]

    def add(self, term):
        calls[0] += 1
        return original(self, term + float("inf") if calls[0] == at else term)

    WindowUpdate.add = add  # this spawned process only


def _nonfinite_scenarios(rank: int, out_dir: str) -> None:
    """Rank 1 alone meets an Inf loss: in train_epoch with stop and skip, and in the stream learner.
    Before the ranks agreed on it, rank 0 went on alone and waited in its next all-reduce until the
    process group's timeout."""
    import warnings

    shard = BATCH // WORLD
    local = [(x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]) for x, y in _data()]
    outcome: dict = {}
    _poison_one_rank(rank, at=3)  # batch 0, update 3 (k = 1)
    model, optimizer = _model_and_optimizer()
    try:  # stop: every rank raises, naming the same update
        train_epoch(DistributedModel(model), local, optimizer, method="fptt", k=1)
        outcome["stop"] = "no error"
    except FloatingPointError as error:
        outcome["stop"] = str(error)
    _poison_one_rank(rank, at=12)  # batch 1, update 3
    model, optimizer = _model_and_optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics = train_epoch(DistributedModel(model), local, optimizer, method="fptt", k=1, on_nonfinite="skip")
    outcome["skip"] = {"skipped": metrics.skipped_updates, "updates": metrics.updates}
    torch.save(_snapshot(model, optimizer), os.path.join(out_dir, f"skip{rank}.pt"))
    _poison_one_rank(rank, at=4)  # the stream's 4th window (k = 1): checked after each update
    model, optimizer = _model_and_optimizer()
    learner = OnlineLearner(DistributedModel(model), optimizer, k=1, batch_size=2)
    try:
        for _ in range(6):
            learner.observe(torch.rand(2, 3, dtype=torch.float64), torch.tensor([1, 2]))
        outcome["stream"] = "no error"
    except FloatingPointError as error:
        outcome["stream"] = str(error)
    with open(os.path.join(out_dir, f"outcome{rank}.json"), "w") as handle:
        json.dump(outcome, handle)


def test_a_nonfinite_loss_on_one_rank_stops_or_skips_on_every_rank_without_a_hang(tmp_path_factory):
    """Rank 1 alone sees an Inf loss (its gradient finite): with "stop" both ranks raise naming the
    same update (before the agreement, rank 0 went on and waited in its next all-reduce); with
    "skip" both skip it and stay identical; the stream learner raises on both."""
    tmp_path = _gloo_run(1, tmp_path_factory)
    outcomes = [json.loads((tmp_path / f"outcome{rank}.json").read_text()) for rank in range(WORLD)]
    assert outcomes[0] == outcomes[1], outcomes
    assert outcomes[0]["stop"].startswith("non-finite loss in batch 0 at update 3 of the batch (time steps 2..2")
    assert outcomes[0]["skip"] == {"skipped": 1, "updates": 2 * 9 - 1}
    assert "non-finite loss in the update of stream time steps 3..3" in outcomes[0]["stream"]
    ranks = [torch.load(tmp_path / f"skip{rank}.pt", weights_only=True) for rank in range(WORLD)]
    for key in ("params", "averages", "lambdas"):
        for a, b in zip(ranks[0][key], ranks[1][key]):
            assert torch.equal(a, b) and bool(torch.isfinite(a).all()), f"{key} differ across ranks"


def test_distributed_model_needs_an_initialised_process_group():
    model, _ = _model_and_optimizer()
    with pytest.raises(RuntimeError, match="initialise torch.distributed"):
        DistributedModel(model)


def _torchrun_train(run_dir, *extra):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               "-m", "fptt.cli", "train", *extra]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def _torchrun_start(*extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               "-m", "fptt.cli", "train", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def _rank_processes(launcher: int) -> dict[int, int]:
    """{rank: pid} of the workers that the torchrun process ``launcher`` started (from /proc)."""
    ranks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != launcher:
                continue
            environment = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        for item in environment:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = int(entry)
    return ranks


TORCHRUN_RUN = ["--task", "add", "--seq-len", "12", "--train-samples", "144", "--validation-samples", "16",
                "--test-samples", "32",
                "--batch-size", "16", "--hidden", "6", "--epochs", "2", "--k", "1", "--threads", "1", "--seed", "2",
                "--checkpoint-every", "1", "--no-plots"]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the ranks' processes in /proc (Linux)")
def test_a_torchrun_rank_killed_at_a_random_moment_then_resume_equals_an_uninterrupted_run(tmp_path):
    """2 ranks (gloo), 2 epochs x 4 batches per rank, a checkpoint after every batch: one rank,
    chosen at random, is SIGKILLed after a random number of checkpoints (FPTT_DDP_KILLS times);
    torchrun ends the job; the same command with --resume finishes it. Weights, optimizer state
    (W̄, λ, Adam moments), RNG states and every evaluation equal an uninterrupted 2-process run;
    only rank 0 logs and writes. The campaign: FPTT_DDP_KILLS=2 with FPTT_KILL_SEED=1..5
    (docs/RELIABILITY.md)."""
    from fptt.run.checkpoint import load_checkpoint

    from .test_reliability import _assert_equal_nested, _wait_for_checkpoints, _without_timing

    kills = int(os.environ.get("FPTT_DDP_KILLS", "1"))
    rng = random.Random(int(os.environ.get("FPTT_KILL_SEED", "9")))
    straight, run_dir = tmp_path / "straight", tmp_path / "run"
    reference = _torchrun_start(*TORCHRUN_RUN, "--run-dir", str(straight))  # alongside the killed one
    killed_ranks = []
    try:
        for _kill in range(kills):
            arguments = ["--resume", str(run_dir)] if (run_dir / "config.json").is_file() else \
                [*TORCHRUN_RUN, "--run-dir", str(run_dir)]
            launcher = _torchrun_start(*arguments)
            try:
                _wait_for_checkpoints(launcher, run_dir / "checkpoint_last.pt", rng.randint(1, 6 // kills))
                time.sleep(rng.uniform(0.0, 0.05))
                rank = rng.randrange(WORLD)
                os.kill(_rank_processes(launcher.pid)[rank], signal.SIGKILL)
                killed_ranks.append(rank)
                launcher.wait(timeout=90)  # torchrun ends the other rank and exits
            finally:
                if launcher.poll() is None:
                    launcher.kill()
            assert launcher.returncode != 0
            load_checkpoint(run_dir / "checkpoint_last.pt")  # whole after every kill
        second = _torchrun_train(run_dir, "--resume", str(run_dir), "--threads", "1")
        assert reference.wait(timeout=120) == 0, reference.stderr.read()[-2000:]
        first = reference.stdout.read()
    finally:
        if reference.poll() is None:
            reference.kill()
    print(f"\nkilled ranks {killed_ranks}")
    assert first.count("epoch 1/2") == 1 and first.count("epoch 2/2") == 1  # only rank 0 logs
    assert second.count("resuming") == 1 and second.count("epoch 2/2") == 1
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    # 128 training samples (16 of 144 held out), 2 ranks, 16 per rank and batch: 4 batches per rank, each
    # with an FPTT update per step
    assert rows[0]["train"]["samples"] == 128 // WORLD and rows[0]["train"]["updates"] == 4 * 12
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == WORLD and summary["test_reads"] == 1  # rank 0 counted the one read
    assert summary["test"]["mse"] == json.loads((straight / "summary.json").read_text())["test"]["mse"]
    resumed_rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["eval"] for row in _without_timing(resumed_rows)] == [row["eval"] for row in _without_timing(rows)]
    a, b = load_checkpoint(straight / "checkpoint_last.pt"), load_checkpoint(run_dir / "checkpoint_last.pt")
    assert b["epoch"] == 2 and b["config"]["compute"]["distributed"] is True
    for key in ("model", "optimizer", "rng", "epoch", "batches_done", "best"):
        _assert_equal_nested(a[key], b[key], key)
