"""Experiment logging (--log tensorboard, fptt.run.tracking) and `fptt compare` (fptt.run.compare)."""
import json

import pytest

from fptt.cli import main
from fptt.run.config import ConfigError, TrainConfig
from fptt.run.trainer import Trainer


def _config(**changes) -> TrainConfig:
    values = dict(task="add", seq_len=12, train_samples=64, test_samples=32, batch_size=16, hidden=[16],
                  max_batches=2, epochs=2, plots=False, threads=1)
    values.update(changes)
    return TrainConfig.from_dict(values)


def _train(run_dir, **changes) -> dict:
    return Trainer(_config(**changes), run_dir, progress=False, log=None, handle_sigint=False).fit()


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tensorboard_receives_the_metrics_that_the_run_folder_records(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    summary = _train(run, log="tensorboard", eval_every=1, measure_memory=True)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    rows, points = _lines(run / "metrics.jsonl"), _lines(run / "curve.jsonl")
    assert len(rows) == 2 and len(points) == 4
    steps = [2, 4]  # two batches per epoch: the epoch rows sit at the epoch's last batch
    for key, part in [("loss", "train"), ("mse", "train"), ("firing_rate", "train"), ("peak_memory_mb", "train"),
                      ("loss", "eval"), ("mse", "eval")]:
        assert scalars[f"{part}/{key}"] == [(step, pytest.approx(row[part][key], rel=1e-6))
                                            for step, row in zip(steps, rows)], f"{part}/{key}"
    assert scalars["lr"] == [(step, pytest.approx(row["lr"], rel=1e-6)) for step, row in zip(steps, rows)]
    assert scalars["memory/saved_bytes_per_update"][-1] == (4, pytest.approx(summary["saved_tensor_peak_bytes"]))
    assert summary["saved_tensor_peak_bytes"] > 0
    assert scalars["curve/mse_average"] == [(p["batch"], pytest.approx(p["average"], rel=1e-6)) for p in points]
    assert scalars["curve/mse_weights"] == [(p["batch"], pytest.approx(p["weights"], rel=1e-6)) for p in points]


def test_a_resumed_run_continues_the_tensorboard_curves_without_doubling_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _train(run, log="tensorboard", epochs=1)
    Trainer(_config(log="tensorboard", epochs=2), run, resume=True, progress=False, log=None,
            handle_sigint=False).fit()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = _lines(run / "metrics.jsonl")
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (2, pytest.approx(rows[0]["train"]["loss"], rel=1e-6)), (4, pytest.approx(rows[1]["train"]["loss"], rel=1e-6))]


def test_without_tensorboard_the_logger_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    from fptt.run.tracking import open_tracker

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if the package were not installed
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'fptt\[logging\]'"):
        open_tracker("tensorboard", tmp_path)


def test_an_unknown_logger_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="log must be one of none, tensorboard"):
        _config(log="wandb")


def test_fptt_compare_prints_a_table_of_the_runs_and_plots_their_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fptt_run, bptt_run = tmp_path / "fptt-run", tmp_path / "bptt-run"
    first = _train(fptt_run, eval_every=1)
    second = _train(bptt_run, method="bptt", eval_every=1)
    figure = tmp_path / "compare.png"
    assert main(["compare", str(fptt_run), str(bptt_run), "--plot", str(figure)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split("|")[1].strip() == "run" and len(table) == 4
    fptt_line = next(line for line in table if "fptt-run" in line)
    bptt_line = next(line for line in table if "bptt-run" in line)
    assert f"{first['last']['eval']['mse']:.4g}" in fptt_line and "| fptt " in fptt_line
    assert f"{second['last']['eval']['mse']:.4g}" in bptt_line and "| bptt " in bptt_line
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["compare", str(fptt_run), str(bptt_run), "--json", "--no-plot"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["epochs"] for row in rows] == [2, 2] and rows[0]["metric"] == "mse"
    assert rows[0]["best"] == min(row["eval"]["mse"] for row in _lines(fptt_run / "metrics.jsonl"))


def test_fptt_compare_plots_epoch_metrics_when_runs_have_no_curve_and_refuses_other_folders(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    _train(run)
    figure = tmp_path / "epochs.png"
    assert main(["compare", str(run), "--plot", str(figure)]) == 0
    assert figure.is_file()
    assert main(["compare", str(run), str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
