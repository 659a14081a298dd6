"""The declared configuration: one schema for the flags, the files, config.json and the library;
--print-config round trips; old configurations load through the migration."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fptt.cli import build_parser, main
from fptt.run.config import (
    FIELD_SECTIONS,
    SECTIONS,
    ConfigError,
    TrainConfig,
    config_text,
    load_config_file,
    resolve_config,
)
from fptt.run.migrate import RENAMED, migrate

ROOT = Path(__file__).resolve().parents[1]
RECORDED = sorted((ROOT / "experiments" / "results").rglob("config.json"))
V03_RUN = Path(__file__).parent / "data" / "v03_run"  # written by fptt at commit ac8ebcb (flat, v0.3 names)


def _print_config(*flags: str, capsys) -> str:
    assert main(["train", *flags, "--print-config"]) == 0
    return capsys.readouterr().out


def test_print_config_shows_the_task_values_and_round_trips_through_config(tmp_path, capsys):
    text = _print_config("--task", "add", capsys=capsys)
    printed = json.loads(text)
    assert printed["network"]["baseline_threshold"] == 0.5 and printed["optim"]["lr"] == 0.003
    assert printed["compute"]["fused"] in (True, False), "the automatic choice is made"
    assert printed["run"]["run_dir"], "so is the run folder"
    saved = tmp_path / "add.json"
    saved.write_text(text)
    assert _print_config("--config", str(saved), capsys=capsys) == text
    alif = _print_config("--task", "mnist1d", "--model", "alif", capsys=capsys)
    assert json.loads(alif)["optim"]["lr"] == 0.01 and json.loads(alif)["network"]["neuron"] == "alif"
    saved.write_text(alif)
    assert _print_config("--config", str(saved), capsys=capsys) == alif


def test_every_field_is_a_flag_under_its_own_name_and_the_help_names_the_tasks_that_change_it():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    dests = {action.dest for action in train._actions}
    assert set(FIELD_SECTIONS) <= dests
    helps = {action.dest: action.help for action in train._actions if action.help not in (None, argparse.SUPPRESS)}
    assert "add, saccade-mnist: 0.5" in helps["baseline_threshold"]
    assert "default 0.003" in helps["lr"] and "alif/lif on mnist1d: 0.01" in helps["lr"]
    assert "dvsgesture: 512" in helps["hidden_sizes"] and "saccade-mnist: 64" in helps["hidden_sizes"]


def test_field_names_are_unique_and_the_library_takes_the_network_fields_by_name():
    import inspect

    from fptt.models import ConvSNN, SpikingRNN
    from fptt.neurons import ALIF, BRF, LTC
    from fptt.optim import FPTT

    names = [name for section in SECTIONS for name in section.settings()]
    assert len(names) == len(set(names))
    taken = set()
    for library in (SpikingRNN, ConvSNN, LTC, ALIF, BRF, FPTT, *LTC.__mro__[1:2]):
        taken |= set(inspect.signature(library.__init__).parameters)
    own = {"surrogate_sigma", "neuron"}  # surrogate={"sigma": ...}; RecurrentBaseline calls it cell
    network = set(SECTIONS[0].settings()) - own
    assert network <= taken, network - taken
    assert {"alpha", "beta", "reset_lambda_on_average"} <= taken


def test_a_config_is_frozen_and_updated_makes_a_new_validated_one():
    config = resolve_config({}, {"task": "add"})
    with pytest.raises(AttributeError):
        config.optim.lr = 1.0  # type: ignore[misc]
    changed = config.updated(lr=0.01)
    assert (config.lr, changed.lr) == (0.003, 0.01)
    with pytest.raises(ConfigError, match="lr must be a positive finite number, got -1"):
        config.updated(lr=-1)


def test_sections_or_flat_keys_or_v03_names_give_the_same_config(tmp_path):
    nested = tmp_path / "nested.toml"
    nested.write_text('task = "add"\n[network]\nhidden_sizes = [8]\n[optim]\nlr = 0.01\n')
    flat = tmp_path / "flat.yaml"
    flat.write_text("task: add\nhidden: [8]\nlr: 0.01\n")
    assert resolve_config(load_config_file(nested)) == resolve_config(load_config_file(flat))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[optim]\nhidden_sizes = [8]\n')
    with pytest.raises(ConfigError, match=r"optim.hidden_sizes .*belongs to \[network\]"):
        load_config_file(wrong)
    with pytest.raises(ConfigError, match="'threshold' and 'baseline_threshold' are the same setting"):
        TrainConfig.from_dict({"threshold": 0.2, "baseline_threshold": 0.3})


def test_a_method_that_conflicts_with_a_users_value_names_the_key():
    assert resolve_config({}, {"task": "mnist1d", "neuron": "alif", "method": "eprop"}).readout == "fixed"
    with pytest.raises(ConfigError, match="readout_from"):
        resolve_config({}, {"task": "mnist1d", "neuron": "alif", "method": "eprop", "readout_from": "membrane"})


def test_decode_defaults_and_refusals():
    assert TrainConfig.from_dict({"task": "smnist"}).decode == "last"  # an old config.json without the key
    with pytest.raises(ConfigError, match="regression"):
        resolve_config({}, {"task": "add", "decode": "mean"})
    # MNIST-1D's LTC (BRF, ALIF) default is decode mean; a user's weighting last (only the final step trained) replaces it,
    # and asking for both is refused
    assert resolve_config({}, {"task": "mnist1d"}).decode == "mean"
    assert resolve_config({}, {"task": "mnist1d", "model": "gru"}).decode == "last"
    assert [resolve_config({}, {"task": "mnist1d", "neuron": neuron}).decode
            for neuron in ("alif", "brf", "lif")] == ["mean", "mean", "last"]
    assert resolve_config({}, {"task": "mnist1d", "weighting": "last"}).decode == "last"
    with pytest.raises(ConfigError, match="weighting last trains only the final step"):
        resolve_config({}, {"task": "mnist1d", "weighting": "last", "decode": "mean"})


def test_an_old_field_name_still_reads_with_a_deprecation_warning():
    config = resolve_config({}, {"task": "add"})
    with pytest.warns(DeprecationWarning, match="TrainConfig.threshold is now TrainConfig.baseline_threshold"):
        assert config.threshold == config.baseline_threshold == 0.5
    with pytest.raises(AttributeError, match="no field 'learning_rate'"):
        _ = config.learning_rate


def test_the_migration_renames_only_what_changed():
    assert migrate({"threshold": 0.5, "lr": 0.1, "fused": None}) == {"baseline_threshold": 0.5, "lr": 0.1,
                                                                     "fused": "auto"}
    assert set(RENAMED.values()) <= set(FIELD_SECTIONS)
    assert not set(RENAMED) & set(FIELD_SECTIONS), "an old name is never a current one"


@pytest.mark.parametrize("path", RECORDED, ids=[str(p.relative_to(ROOT / "experiments" / "results")) for p in RECORDED])
def test_every_recorded_config_loads(path):
    values = json.loads(path.read_text())
    config = TrainConfig.from_dict(values, where=str(path))
    if "network" in values:  # written in sections (v0.4 on): read back, it is the same configuration
        assert TrainConfig.from_dict(config.to_dict()) == config and config.task == values["task"]
        return
    for old, new in RENAMED.items():  # every value arrives under its new name
        if old in values and values[old] is not None:
            expected = values[old]
            got = getattr(config, new)
            assert (list(got) if isinstance(got, tuple) else got) == expected, old
    assert config.method == values["method"] and config.lr == values["lr"]


def test_the_recorded_mnist_configs_are_all_there():
    classification = [p for p in RECORDED if "classification" in p.parts and p.parent.parent.name == "classification"
                      and "network" not in json.loads(p.read_text())]  # the flat configs of v0.3
    assert len(classification) == 82
    tasks = {json.loads(p.read_text())["task"] for p in classification}
    assert tasks <= {"mnist1d", "smnist", "psmnist"}


def test_a_v03_run_folder_resumes_evaluates_and_is_saved_in_sections(tmp_path):
    run = tmp_path / "v03"
    shutil.copytree(V03_RUN, run)
    old = json.loads((run / "config.json").read_text())
    assert "threshold" in old and "network" not in old, "the fixture is a v0.3 (flat) config"
    done = subprocess.run([sys.executable, "-m", "fptt.cli", "train", "--resume", str(run), "--epochs", "2",
                           "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_completed"] == 2
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and json.loads(rows[0]) == json.loads((V03_RUN / "metrics.jsonl").read_text())
    # v0.3 evaluated on test every epoch; resumed now, it selects on nothing and reads test once, at the end
    assert "eval" not in json.loads(rows[1]) and summary["test"]["split"] == "test" and summary["test_reads"] == 1
    saved = json.loads((run / "config.json").read_text())
    assert saved["network"]["baseline_threshold"] == old["threshold"] and saved["optim"]["epochs"] == 2
    evaluated = subprocess.run([sys.executable, "-m", "fptt.cli", "eval", str(run)], capture_output=True, text=True,
                               timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr


def test_config_text_is_what_config_json_holds(tmp_path):
    from fptt.run.config import save_config

    config = resolve_config({}, {"task": "add", "epochs": 2})
    save_config(config, tmp_path)
    assert (tmp_path / "config.json").read_text() == config_text(config)
    assert TrainConfig.from_dict(json.loads(config_text(config))) == config
