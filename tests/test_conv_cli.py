"""Conv networks through the configuration, the builders and the command line: saccade-mnist
end to end, the DVS presets (the reference architecture) on tiny files in tonic's on-disk layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fptt.models import REFERENCE_DVS_CONV, ConvSNN, SpikingRNN
from fptt.run.build import build_model, frame_shape
from fptt.run.config import ConfigError, TrainConfig, resolve_config
from fptt.run.presets import preset_values
from tests.test_cli import fptt

TINY_SACCADE = ["--task", "saccade-mnist", "--train-samples", "16", "--test-samples", "8", "--frames", "4",
                "--batch-size", "8", "--epochs", "1", "--threads", "1", "--no-plots"]


def test_saccade_mnist_trains_then_evaluates_from_its_checkpoint(tmp_path):
    run = tmp_path / "saccade"
    done = fptt("train", *TINY_SACCADE, "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["network"]["conv"] == ["8c3", "16c3"] and config["data"]["num_frames"] == 4
    assert config["data"]["spatial_factor"] == 0.5
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    # validation "auto": 2 of the 16 recordings held out; the 8 held-out ones are read once, at the end
    assert row["train"]["samples"] == 14 and row["eval"]["samples"] == 2 and row["eval_split"] == "validation"
    assert row["train"]["updates"] == 2 * 4  # FPTT k = 1: one update per frame
    test = json.loads((run / "summary.json").read_text())["test"]
    assert test["split"] == "heldout" and test["samples"] == 8
    evaluated = fptt("eval", str(run), "--json", "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert metrics["split"] == "validation" and metrics["samples"] == 2
    assert metrics["accuracy"] == pytest.approx(row["eval"]["accuracy"])


def test_conv_flags_reach_the_model():
    config = resolve_config(flag_values={"task": "saccade-mnist", "conv": ["4c3", "6c5p1"], "conv_gate": "concat",
                                         "hidden": [12], "spatial_factor": 0.25})
    model = build_model(config, 2 * 9 * 9, 10)
    assert isinstance(model, ConvSNN)
    assert [layer.spec.channels for layer in model.conv_layers] == [4, 6]
    assert model.conv_layers[1].spec.kernel == 5 and model.conv_layers[1].output_hw == (4, 4)
    assert model.conv_layers[0].membrane_rate.in_channels == 8  # concat gates: 2C -> C
    assert model.hidden_sizes == (12,)
    assert model.conv_layers[0].baseline_threshold == 0.5  # the task's DVS regime
    plain = build_model(TrainConfig.from_dict(dict(task="smnist", hidden=[8])), 1, 10)
    assert isinstance(plain, SpikingRNN)


@pytest.mark.parametrize("values, message", [
    ({"conv": ["64c4"]}, "odd kernel"),
    ({"conv": ["64x7"]}, "<channels>c"),
    ({"conv": [8]}, "conv must be one or more strings"),
    ({"conv": ["8c3"], "model": "alif"}, "neuron must be ltc"),
    ({"conv": ["8c3"], "readout_from": "membrane"}, "readout_from"),
    ({"conv_gate": "product"}, "gate_input"),
    ({"spatial_factor": 0.0}, "spatial_factor"),
    ({"frames": 0}, "frames"),
    ({"duration_ms": -5.0}, "duration_ms"),
])
def test_bad_conv_settings_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"task": "saccade-mnist", **values})


def test_conv_on_non_frame_inputs_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="event task"):
        frame_shape(784)
    assert frame_shape(2 * 17 * 17) == (2, 17, 17)
    with pytest.raises(ConfigError, match="does not hold"):
        frame_shape(100, (2, 7, 7))


def test_bad_conv_flag_fails_in_the_parser():
    done = fptt("train", "--task", "saccade-mnist", "--conv-gate", "product")
    assert done.returncode == 2 and "conv-gate" in done.stderr  # the v0.3 spelling of --gate-input


@pytest.mark.parametrize("task, frames, batch", [("dvsgesture", 20, 16), ("dvscifar10", 28, 32)])
def test_paper_presets_build_the_reference_network(task, frames, batch):
    values = preset_values("paper", task)
    assert values["conv"] == list(REFERENCE_DVS_CONV) and values["hidden_sizes"] == [512] and not values["recurrent"]
    assert (values["num_frames"], values["batch_size"], values["spatial_factor"]) == (frames, batch, 1.0)
    assert (values["optimizer"], values["lr"], values["k"], values["alpha"], values["clip_grad_norm"]) == (
        "adamax", 0.003, 1, 0.1, 1.0)
    config = resolve_config(flag_values={"task": task, "preset": "paper"})
    model = build_model(config, 2 * 128 * 128, 11 if task == "dvsgesture" else 10)
    assert [layer.output_shape for layer in model.conv_layers] == [
        (64, 64, 64), (128, 32, 32), (128, 16, 16), (256, 8, 8), (256, 4, 4), (512, 2, 2)]
    assert [layer.spec.kernel for layer in model.conv_layers] == [7, 7, 3, 3, 3, 3]
    assert model.dense_layers[0].input_size == 2048 and model.dense_layers[0].recurrent_weight is None
    assert model.dense_layers[0].baseline_threshold == 0.5 and model.dense_layers[0].adaptation_strength == 1.8


def _gesture_split(root, folder: str, files: int, seed: int) -> None:
    """tonic's DVSGesture layout: <root>/DVSGesture/<folder>/user<NN>_<lighting>/<label>.npy with
    (N, 4) int rows (x, y, p, t in µs); tonic needs at least 100 .npy files per split."""
    rng = np.random.default_rng(seed)
    for i in range(files):
        user = root / "DVSGesture" / folder / f"user{i // 11 + 1:02d}_fluorescent"
        user.mkdir(parents=True, exist_ok=True)
        n = 200
        events = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                           np.sort(rng.integers(0, 1_000_000, n))], 1)
        np.save(user / f"{i % 11}.npy", events)


def test_dvsgesture_paper_preset_trains_end_to_end_on_tonic_files(tmp_path):
    pytest.importorskip("tonic")
    _gesture_split(tmp_path, "ibmGestureTrain", 110, seed=0)
    _gesture_split(tmp_path, "ibmGestureTest", 110, seed=1)
    run = tmp_path / "run"
    # the preset's network and optimiser, on 64x64 frames (the six 2x2 poolings end at 1x1) and
    # 2 frames, one batch of 2: a few seconds on one CPU thread
    done = fptt("train", "--task", "dvsgesture", "--preset", "paper", "--data-dir", str(tmp_path),
                "--spatial-factor", "0.5", "--frames", "2", "--batch-size", "2", "--max-batches", "1",
                "--max-eval-batches", "1", "--eval-batch-size", "2", "--epochs", "1", "--threads", "1",
                "--no-plots", "--run-dir", str(run), timeout=600)
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "paper" and config["network"]["conv"] == list(REFERENCE_DVS_CONV)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train"]["updates"] == 2 and row["eval"]["samples"] == 2
    payload = torch.load(run / "checkpoint_last.pt", weights_only=False)
    assert payload["model_shape"]["input_shape"] == [2, 64, 64]
    assert "conv_layers.5.membrane_rate.weight" in payload["model"]


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _cifar10dvs_layout(root, per_class: int = 100) -> None:
    """tonic's CIFAR10-DVS layout, <root>/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4, in the
    recordings' own format (AEDAT4, written by tests/data/aedat4.py); tonic needs 1,000 files."""
    from tests.data.aedat4 import write_aedat4

    rng = np.random.default_rng(0)
    for label in CIFAR_CLASSES:
        folder = root / "CIFAR10DVS" / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            n = 40
            write_aedat4(folder / f"cifar10_{label}_{i}.aedat4", np.sort(rng.integers(0, 1_000_000, n)),
                         rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))


def test_aedat4_files_written_by_the_tests_are_read_back_by_tonic(tmp_path):
    pytest.importorskip("aedat")
    from tonic.io import read_aedat4

    from tests.data.aedat4 import write_aedat4

    t, x, y, on = np.arange(7) * 250, np.arange(7) * 3, 127 - np.arange(7), np.arange(7) % 2
    write_aedat4(tmp_path / "r.aedat4", t, x, y, on, packets=3)
    events = read_aedat4(str(tmp_path / "r.aedat4"))
    assert events["t"].tolist() == t.tolist() and events["x"].tolist() == x.tolist()
    assert events["y"].tolist() == y.tolist() and events[events.dtype.names[3]].tolist() == on.astype(bool).tolist()


def test_dvscifar10_paper_preset_trains_end_to_end_on_aedat4_files(tmp_path):
    pytest.importorskip("tonic")
    pytest.importorskip("aedat")
    _cifar10dvs_layout(tmp_path)
    run = tmp_path / "run"
    done = fptt("train", "--task", "dvscifar10", "--preset", "paper", "--data-dir", str(tmp_path),
                "--spatial-factor", "0.5", "--frames", "2", "--batch-size", "2", "--max-batches", "1",
                "--max-eval-batches", "1", "--eval-batch-size", "2", "--epochs", "1", "--threads", "1",
                "--no-plots", "--run-dir", str(run), timeout=600)
    assert done.returncode == 0, done.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "paper" and config["network"]["conv"] == list(REFERENCE_DVS_CONV) and config["training"]["k"] == 1
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train"]["updates"] == 2 and row["eval"]["samples"] == 2
