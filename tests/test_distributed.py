"""Two CPU processes (gloo): FPTT under DistributedDataParallel equals one process on the whole batch."""
from __future__ import annotations

import datetime
import json
import os
import socket

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
                            timeout=datetime.timedelta(seconds=60))  # a deadlock fails the test, not the suite
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
        dist.barrier()  # no rank leaves while its peer's gloo threads still talk to it (as the CLI does)
    finally:
        dist.destroy_process_group()
    # Success: leave without the interpreter's teardown, where gloo's C++ threads occasionally abort the
    # process ("terminate called without an active exception", SIGABRT) after all the work above is
    # done and saved; seen about once in ten `make test` runs under load. A failure above still raises.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("k", [1, 3])
def test_two_gloo_ranks_stay_identical_and_match_one_process_on_the_whole_batch(tmp_path, k):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path), k), nprocs=WORLD, join=True, start_method="spawn")
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


def test_distributed_model_needs_an_initialised_process_group():
    model, _ = _model_and_optimizer()
    with pytest.raises(RuntimeError, match="initialise torch.distributed"):
        DistributedModel(model)


def _torchrun_train(run_dir, *extra):
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               "-m", "fptt.cli", "train", *extra]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_fptt_train_under_torchrun_writes_once_from_rank_zero_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    first = _torchrun_train(run_dir, "--task", "add", "--seq-len", "12", "--train-samples", "128",
                            "--test-samples", "32", "--batch-size", "16", "--hidden", "6", "--epochs", "1",
                            "--k", "1", "--threads", "1", "--run-dir", str(run_dir), "--no-plots")
    assert first.count("epoch 1/1") == 1  # only rank 0 logs
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == WORLD
    # 128 samples, 2 ranks, 16 per rank and batch: 4 batches per rank, each with an FPTT update per step
    assert rows[0]["train"]["samples"] == 128 // WORLD and rows[0]["train"]["updates"] == 4 * 12

    second = _torchrun_train(run_dir, "--resume", str(run_dir), "--epochs", "2", "--threads", "1")
    assert second.count("resuming") == 1 and second.count("epoch 2/2") == 1
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    payload = torch.load(run_dir / "checkpoint_last.pt", weights_only=True)
    assert payload["epoch"] == 2 and payload["config"]["compute"]["distributed"] is True
