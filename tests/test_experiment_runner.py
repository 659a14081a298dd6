"""experiments/classification.py: a run cut off by a session's limit resumes instead of starting over, and `test`
never reads the test split of a run that left it unread."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "classification.py"


@pytest.fixture()
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("classification_runner", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "classification_runner", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RUN_ROOT", tmp_path / "runs")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    return module


def _folder(runner: ModuleType, name: str, checkpoint: bool, summary: dict | None) -> Path:
    folder = runner.run_dir(name)
    folder.mkdir(parents=True)
    if checkpoint:
        (folder / "checkpoint_last.pt").write_bytes(b"")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_only_a_checkpointed_unfinished_run_is_resumable(runner: ModuleType) -> None:
    name = "fs196_ltc_fptt_10ep"
    assert not runner.resumable(name)  # no folder
    folder = _folder(runner, name, checkpoint=True, summary=None)  # killed before its summary
    assert runner.resumable(name)
    (folder / "summary.json").write_text(json.dumps({"interrupted": True}))  # stopped by a signal
    assert runner.resumable(name)
    (folder / "summary.json").write_text(json.dumps({"interrupted": False}))  # finished
    assert not runner.resumable(name)
    (folder / "checkpoint_last.pt").unlink()
    (folder / "summary.json").unlink()
    assert not runner.resumable(name)  # nothing to resume from


def test_run_resumes_a_cut_off_run_and_starts_a_fresh_one_over(runner: ModuleType,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    def fake_run(args, **_):
        commands.append(list(args))
        return subprocess.CompletedProcess(args, 1, "", "stopped")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    cut_off = _folder(runner, "fs196_ltc_fptt_10ep", checkpoint=True, summary={"interrupted": True})
    runner.run_one("fs196_ltc_fptt_10ep")
    assert commands[-1][1:3] == ["train", "--resume"] and commands[-1][3] == str(cut_off)
    assert (cut_off / "checkpoint_last.pt").exists()  # kept for the resume
    record = (runner.RESULTS / "fs196_ltc_fptt_10ep" / "command.txt").read_text().splitlines()
    assert record[0] == " ".join(["fptt", *runner.command("fs196_ltc_fptt_10ep")[1:]])  # the run as defined
    assert record[2] == " ".join(["fptt", *commands[-1][1:]])  # then how it was resumed
    fresh = _folder(runner, "fs196_gru_bptt_10ep", checkpoint=False, summary=None)
    (fresh / "stale.txt").write_text("from an older attempt")
    runner.run_one("fs196_gru_bptt_10ep")
    assert commands[-1][1] == "train" and "--resume" not in commands[-1] and "--run-dir" in commands[-1]
    assert not (fresh / "stale.txt").exists()  # a run that cannot resume starts over in a clean folder


@pytest.mark.parametrize("summary, why", [({"test": None, "interrupted": True}, "stopped before its last epoch"),
                                          ({"test": None, "interrupted": False}, "--no-read-test")])
def test_test_leaves_a_run_that_did_not_read_its_test_split_unread(runner: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                                   summary: dict, why: str) -> None:
    def no_eval(args, **_):
        raise AssertionError(f"test read a split: {args}")

    monkeypatch.setattr(runner.subprocess, "run", no_eval)
    target = runner.RESULTS / "p196_ltc_bptt_lr1e-3"
    target.mkdir(parents=True)
    (target / "summary.json").write_text(json.dumps(summary))
    assert why in runner.test_one("p196_ltc_bptt_lr1e-3")
    assert not (target / "test.json").exists()


def test_pairs_matches_runs_by_their_seed_including_a_seed_0_run_named_without_suffix(runner: ModuleType) -> None:
    accuracies = {"fs196_brf_fptt_10ep": 0.88, "fs196_brf_fptt_10ep_s1": 0.83, "fs196_brf_fptt_10ep_s2": 0.86,
                  "fs196_brf_bptt_10ep": 0.95, "fs196_brf_bptt_10ep_s1": 0.94, "fs196_brf_bptt_10ep_s3": 0.93}
    for name, accuracy in accuracies.items():
        folder = runner.RESULTS / name
        folder.mkdir(parents=True)
        row = {"epoch": 1, "train": {"seconds": 1.0}, "eval": {"accuracy": accuracy}}
        (folder / "metrics.jsonl").write_text(json.dumps(row) + "\n")
        (folder / "test.json").write_text(json.dumps({"accuracy": accuracy}))
    assert runner._seed_values("fs196_brf_fptt_10ep", "test") == {0: 0.88, 1: 0.83, 2: 0.86}
    report = runner.pairs("fs196_brf_fptt_10ep", "fs196_brf_bptt_10ep")
    assert "paired over the seeds both have: [0, 1]" in report
    assert "seeds in one family only (left out): [2, 3]" in report
    assert "seed 0: 88.0 % against 95.0 % (difference -7.0 points)" in report
    assert "t = " in report and "verdict" in report


def test_the_weight_average_report_means_the_last_two_epochs_of_each_probe(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    script = SCRIPT.parent / "weight_average.py"
    spec = importlib.util.spec_from_file_location("weight_average_probe", script)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    monkeypatch.setattr(probe, "RESULTS", tmp_path)
    emas = {probe.ema_key(d): 0.5 for d in probe.DECAYS}
    rows = [{"epoch": 1, "batch": -1, "weights": 0.1, "average": 0.1, **emas},  # left out: not in the last two
            {"epoch": 2, "batch": 20, "weights": 0.6, "average": 0.7, **emas, "ema95": 0.8},
            {"epoch": 3, "batch": -1, "weights": 0.8, "average": 0.7, **emas, "ema95": 0.9}]
    (tmp_path / "smnist196_brf_fptt.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = probe.report().splitlines()
    assert len(table) == 3  # the header, its rule and the one finished probe
    assert table[2].startswith("| smnist196_brf_fptt | 2 (epochs 2–3) | 70.0 % | 70.0 % |")
    assert "| 85.0 % |" in table[2]  # d = 0.95: the mean of 0.8 and 0.9
