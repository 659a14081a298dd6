"""The ``fptt`` command line through its real entry point, ``python -m fptt.cli``, in subprocesses.

Small budgets: every training here is a couple of batches of a tiny network.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY_ADD = ["--task", "add", "--seq-len", "12", "--train-samples", "64", "--test-samples", "32",
            "--batch-size", "16", "--hidden", "16", "--max-batches", "2", "--epochs", "1", "--no-plots"]
# S-MNIST-196 on the bundled MNIST-10k: 2 training batches of 16, one evaluation batch
TINY_SMNIST = ["--task", "smnist", "--downsample", "14", "--hidden", "16", "--batch-size", "16", "--max-batches", "2",
               "--epochs", "1", "--max-eval-batches", "1", "--no-plots", "--quiet"]


def _env() -> dict:
    source = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("FPTT_DATA", None)
    return env


def fptt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fptt.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_on_the_adding_task_then_eval_it(tmp_path):
    run = tmp_path / "add"
    done = fptt("train", *TINY_ADD, "--run-dir", str(run), "--plots")
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" in done.stdout and "validation mse" in done.stdout and "test mse" in done.stdout
    for name in ("config.json", "metrics.jsonl", "checkpoint_last.pt", "checkpoint_best.pt", "summary.json",
                 "test_reads.json", "plots/learning_curves.png", "plots/spike_raster.png", "plots/time_constants.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["network"]["hidden_sizes"], config["training"]["method"],
            config["data"]["seq_len"]) == ("add", [16], "fptt", 12)
    assert config["data"]["validation_samples"] == 6  # auto: 10 % of the 64 training sequences, recorded
    rows = _rows(run)
    assert len(rows) == 1 and rows[0]["train"]["batches"] == 2 and rows[0]["eval_split"] == "validation"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["split"] == "test" and summary["test"]["samples"] == 32 and summary["test_reads"] == 1

    evaluated = fptt("eval", str(run), "--json", "--with", "weights", "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert metrics["split"] == "validation" and metrics["samples"] == 6 and "test_reads" not in metrics
    # the checkpoint was written after W ← W̄, so both evaluations see the same weights
    assert metrics["mse"] == pytest.approx(rows[0]["eval"]["mse"], rel=1e-5)

    tested = fptt("eval", str(run), "--json", "--split", "test", "--quiet")  # a second read of test: counted
    assert tested.returncode == 0, tested.stderr
    metrics = json.loads(tested.stdout)
    assert metrics["samples"] == 32 and metrics["test_reads"] == 2
    assert metrics["mse"] == pytest.approx(summary["test"]["mse"], rel=1e-5)
    reads = json.loads((run / "test_reads.json").read_text())
    assert reads["count"] == 2 and [read["by"] for read in reads["reads"]] == ["fptt train", "fptt eval"]


def test_a_run_that_evaluates_with_the_moving_average_is_evaluated_and_tested_with_it(tmp_path):
    run, plain = tmp_path / "ema", tmp_path / "plain"
    done = fptt("train", *TINY_ADD, "--run-dir", str(run), "--eval-with", "ema", "--ema-decay", "0.5")
    assert done.returncode == 0, done.stderr
    rows, summary = _rows(run), json.loads((run / "summary.json").read_text())
    assert rows[0]["eval_with"] == "ema" and summary["test"]["with"] == "ema"
    checkpoint = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["model_ema"] is not None
    assert any(not torch.equal(checkpoint["model_ema"][name], value) for name, value in checkpoint["model"].items())

    by_default = json.loads(fptt("eval", str(run), "--json", "--quiet").stdout)  # what the run evaluated with
    assert by_default["with"] == "ema" and by_default["mse"] == pytest.approx(rows[0]["eval"]["mse"], rel=1e-5)
    with_weights = json.loads(fptt("eval", str(run), "--json", "--with", "weights", "--quiet").stdout)
    assert with_weights["with"] == "weights" and with_weights["mse"] != pytest.approx(by_default["mse"], rel=1e-6)
    tested = json.loads(fptt("eval", str(run), "--json", "--split", "test", "--quiet").stdout)
    assert tested["mse"] == pytest.approx(summary["test"]["mse"], rel=1e-5)

    assert fptt("train", *TINY_ADD, "--run-dir", str(plain)).returncode == 0
    refused = fptt("eval", str(plain), "--with", "ema")
    assert refused.returncode == 2 and "no moving average" in refused.stderr and "--eval-with ema" in refused.stderr
    bad = fptt("train", *TINY_ADD, "--run-dir", str(tmp_path / "bad"), "--eval-with", "ema", "--ema-decay", "1")
    assert bad.returncode == 2 and "ema" in bad.stderr and "(0, 1)" in bad.stderr


def test_train_on_mnist10k_tiny(tmp_path):
    run = tmp_path / "mnist"
    done = fptt("train", *TINY_SMNIST, "--eval-batch-size", "32", "--method", "bptt", "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # --quiet
    row = _rows(run)[0]
    assert row["eval_split"] == "validation" and row["eval"]["samples"] == 32 and row["train"]["samples"] == 32
    assert json.loads((run / "summary.json").read_text())["test"]["split"] == "heldout"  # MNIST-10k's final split
    assert 0.0 <= row["eval"]["accuracy"] <= 1.0


def test_a_run_decoded_by_the_mean_is_evaluated_tested_and_recorded_so(tmp_path):
    run = tmp_path / "mean"
    done = fptt("train", *TINY_SMNIST, "--eval-batch-size", "64", "--decode", "mean", "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    row, summary = _rows(run)[0], json.loads((run / "summary.json").read_text())
    reads = json.loads((run / "test_reads.json").read_text())["reads"]
    assert summary["test"]["decode"] == "mean" and reads[0]["decode"] == "mean"
    by_default = json.loads(fptt("eval", str(run), "--json", "--quiet", "--max-batches", "1").stdout)
    assert by_default["decode"] == "mean" and by_default["loss"] == pytest.approx(row["eval"]["loss"], rel=1e-5)
    last = json.loads(fptt("eval", str(run), "--json", "--quiet", "--max-batches", "1", "--decode", "last").stdout)
    assert last["decode"] == "last" and last["loss"] != pytest.approx(by_default["loss"], rel=1e-4)
    refused = fptt("train", *TINY_ADD, "--run-dir", str(tmp_path / "add"), "--decode", "mean")
    assert refused.returncode == 2 and "regression" in refused.stderr
    assert fptt("train", *TINY_ADD, "--run-dir", str(tmp_path / "add"), "--quiet").returncode == 0
    refused = fptt("eval", str(tmp_path / "add"), "--decode", "mean")
    assert refused.returncode == 2 and "regression" in refused.stderr


def test_sigint_saves_a_checkpoint_and_resume_finishes(tmp_path):
    run = tmp_path / "long"
    args = ["train", "--task", "add", "--seq-len", "40", "--train-samples", "4000", "--test-samples", "16",
            "--batch-size", "16", "--hidden", "16", "--epochs", "1", "--no-plots", "--run-dir", str(run)]
    child = subprocess.Popen([sys.executable, "-m", "fptt.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env())
    try:
        first = child.stdout.readline()
        assert first.startswith("fptt train:"), first + child.stderr.read()
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert "interrupt received" in stderr and "resume with" in stdout
    checkpoint = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["batches_done"] >= 1
    resumed = fptt("train", "--resume", str(run), "--max-batches", str(checkpoint["batches_done"] + 1), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    rows = _rows(run)
    assert len(rows) == 1 and rows[0]["resumed_at_batch"] == checkpoint["batches_done"]
    assert rows[0]["train"]["batches"] == 1


def test_config_file_values_and_flag_override(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("task: add\nseq-len: 10\nhidden: [8]\nepochs: 3\nlr: 0.01\nmax_batches: 1\n"
                           "train_samples: 32\ntest_samples: 16\nbatch_size: 16\nplots: false\n")
    run = tmp_path / "cfg"
    done = fptt("train", "--config", str(config_file), "--epochs", "1", "--run-dir", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["optim"]["epochs"], config["optim"]["lr"], config["network"]["hidden_sizes"],
            config["data"]["seq_len"]) == (1, 0.01, [8], 10)


BAD_FLAGS = [
    (["train", "--task", "imagenet"], "invalid choice: 'imagenet'"),
    (["train", "--model", "transformer"], "invalid choice: 'transformer'"),
    (["train", "--method", "rtrl"], "invalid choice: 'rtrl'"),
    (["train", "--hidden-sizes", "0"], "hidden_sizes must be one or more positive ints"),
    (["train", "--hidden", "0"], "hidden_sizes must be one or more positive ints"),  # the v0.3 spelling
]


def test_bad_flag_exits_2_through_the_entry_point():
    done = fptt("train", "--task", "imagenet")
    assert done.returncode == 2
    assert "invalid choice: 'imagenet'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args, message", BAD_FLAGS)
def test_bad_flags_exit_2_with_argparse_message(args, message, capsys):
    from fptt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _actionable_cases(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('task = "add"\nlearning_rate = 0.1\n')
    cases = [
        (["train", "--config", str(bad)], "unknown config key 'learning_rate'"),
        (["train", "--task", "smnist", "--data-dir", str(tmp_path / "nowhere")], "not found"),
        (["eval", str(tmp_path / "missing-run")], "not found"),
        (["train", "--resume", str(tmp_path / "missing-run")], "cannot resume"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", *TINY_ADD, "--device", "cuda"], "CUDA is not available"))
    return bad, cases


def test_actionable_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from fptt.cli import main

    monkeypatch.delenv("FPTT_DATA", raising=False)
    _, cases = _actionable_cases(tmp_path)
    for args, message in cases:
        assert main(args) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, lines)


def test_actionable_error_through_the_entry_point_and_debug(tmp_path):
    bad, _ = _actionable_cases(tmp_path)
    done = fptt("train", "--config", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip() == "fptt train: error: unknown config key 'learning_rate' in " + str(bad)
    debug = fptt("train", "--config", str(bad), "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_bench_forwards_its_arguments():
    done = fptt("bench", "memory", "--help")
    assert done.returncode == 0, done.stderr
    assert "fptt bench memory" in done.stdout and "--quick" in done.stdout


@pytest.mark.parametrize("task", ["add", "smnist"])
def test_demo_quick_runs(tmp_path, task):
    run = tmp_path / "demo"
    done = fptt("demo", "--quick", "--task", task, "--run-dir", str(run), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| FPTT |" in done.stdout and "| BPTT |" in done.stdout
    assert ("test MSE" if task == "add" else "held-out accuracy") in done.stdout
    result = json.loads((run / "demo.json").read_text())
    fptt_run, bptt_run = result["summaries"]["fptt"], result["summaries"]["bptt"]
    # the point of FPTT: one window of activations per update instead of the whole sequence
    # (quick add: windows of 2 steps out of 20; quick smnist: k = 1 out of 196 steps)
    factor = 5 if task == "add" else 20
    assert 0 < fptt_run["saved_tensor_peak_bytes"] * factor < bptt_run["saved_tensor_peak_bytes"]
    assert (run / "learning_curves.png").is_file()
    # same initial weights for both methods
    first = torch.load(run / "fptt" / "checkpoint_last.pt", weights_only=True)["config"]
    second = torch.load(run / "bptt" / "checkpoint_last.pt", weights_only=True)["config"]
    assert first["run"]["seed"] == second["run"]["seed"]
    assert first["network"]["hidden_sizes"] == second["network"]["hidden_sizes"]


def test_missing_benchmark_module_is_a_clear_error(monkeypatch, capsys):
    from fptt.cli import main

    monkeypatch.setitem(sys.modules, "fptt.bench.speed", None)  # as if the module were not installed
    assert main(["bench", "speed", "--quick"]) == 2
    assert "the speed benchmark is not available" in capsys.readouterr().err


def test_stream_runs_an_online_learner_over_a_short_drifting_stream(tmp_path):
    from fptt.cli import main

    out = tmp_path / "stream"
    # 4 digits of 196 pixels, a curve point every 2: one before the drift (at 0.5), one after
    assert main(["stream", "--steps", str(4 * 196), "--streams", "2", "--hidden", "8", "--threads", "1",
                 "--log-every", "2", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "stream.json").read_text())
    assert result["updates"] == 4 * 196  # a target at every step, k = 1: one update per step
    assert [point["drifted"] for point in result["curve"]] == [False, True]
    assert all(0.0 <= point["accuracy"] <= 1.0 for point in result["curve"])
    assert (out / "stream.png").is_file()


def test_stream_refuses_a_stream_shorter_than_one_digit(capsys):
    from fptt.cli import main

    assert main(["stream", "--steps", "100", "--quiet"]) == 2
    assert "at least one digit" in capsys.readouterr().err


def test_the_parser_and_help_do_not_import_torch():
    code = ("import sys, fptt.cli; fptt.cli.build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_each_vocabulary_is_the_one_its_registry_and_the_config_use():
    from fptt.data import DATASET_NAMES
    from fptt.neurons import NEURON_CLASSES, READOUT_CLASSES
    from fptt.run.config import MODELS, TASKS
    from fptt.spec import vocabulary
    from fptt.training.engine import METHODS, WEIGHTINGS

    assert TASKS is vocabulary.TASKS and DATASET_NAMES == vocabulary.TASKS
    assert MODELS is vocabulary.MODELS and tuple(NEURON_CLASSES) == vocabulary.NEURONS
    assert tuple(READOUT_CLASSES) == vocabulary.READOUTS
    assert METHODS is vocabulary.METHODS and WEIGHTINGS is vocabulary.WEIGHTINGS
    with pytest.raises(RuntimeError, match="differs from fptt.spec.vocabulary"):
        vocabulary.check_registry("neuron", ("ltc",), vocabulary.NEURONS)


def test_eval_exports_the_averaged_weights_as_a_plain_state_dict(tmp_path):
    from fptt.run.build import build_model
    from fptt.run.config import TrainConfig

    run = tmp_path / "run"
    done = fptt("train", "--task", "add", "--seq-len", "10", "--train-samples", "32", "--test-samples", "16",
                "--batch-size", "16", "--hidden", "8", "--epochs", "1", "--no-plots", "--quiet", "--run-dir", str(run),
                "--no-load-average-each-epoch")
    assert done.returncode == 0, done.stderr
    export = tmp_path / "model_average.pt"
    evaluated = fptt("eval", str(run), "--export", str(export))
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.strip().splitlines()[-1].startswith("mse ")
    saved = json.loads(Path(f"{export}.config.json").read_text())
    assert saved["weights"] == "average"
    model = build_model(TrainConfig.from_dict(saved["config"]), saved["input_size"], saved["output_size"])
    model.load_state_dict(torch.load(export, weights_only=True))
    checkpoint = torch.load(run / "checkpoint_last.pt", weights_only=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["model_average"][name])


def test_training_works_without_matplotlib_and_says_the_plots_were_skipped(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"  # `import matplotlib` now raises ImportError
            "from fptt.cli import main\n"
            f"sys.exit(main(['train', '--task', 'add', '--seq-len', '20', '--train-samples', '16', '--test-samples', '8', "
            f"'--batch-size', '8', '--hidden', '4', '--epochs', '1', '--run-dir', {str(tmp_path / 'run')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "plots skipped: matplotlib is not installed" in done.stdout
    assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / "plots").exists()


def test_demo_help_states_the_defaults_the_demo_uses():
    from fptt.cli import build_parser
    from fptt.cli.demo import DEMOS

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    text = " ".join(demo.format_help().split())
    assert f"training iterations (default {DEMOS['add']['iterations']})" in text
    assert f"sequence length T (default {DEMOS['add']['seq_len']})" in text
    assert "default 400" not in text
