"""``fptt compare``: several run folders side by side, as a table and as learning curves in one figure.

Reads what :class:`~fptt.run.trainer.Trainer` writes in each run folder (``config.json``,
``metrics.jsonl``, ``curve.jsonl``, ``summary.json``; a run still in progress has no summary and
is read from its metrics) and changes nothing in them.

Table columns: the run (folder name), task, neuron, method, k (or update points), epochs done,
the final evaluation score (accuracy, or MSE), the best score, training seconds, peak resident
memory (MiB) and, when measured, the bytes autograd saved per update.

Figure: with learning-curve points (``--eval-every``) in every run, the evaluated score of each run
against training batches (W̄ for FPTT runs evaluated with it, else W); otherwise the per-epoch
training loss and evaluation score of each run (:func:`fptt.run.plots.plot_learning_curves`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import flatten
from .records import CONFIG, CURVE, METRICS, SUMMARY, read_json_lines

__all__ = ["RunRecord", "load_run_record", "comparison_rows", "format_table", "plot_comparison"]


@dataclass
class RunRecord:
    """What one run folder holds (see the module docstring)."""

    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    curve: list[dict[str, Any]] = field(default_factory=list)
    summary: Optional[dict[str, Any]] = None

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def load_run_record(run_dir: str | Path) -> RunRecord:
    """Read one run folder; ``FileNotFoundError`` when it is not a run folder of ``fptt train``."""
    path = Path(run_dir)
    config_file = path / CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a run folder of `fptt train` (no {CONFIG})")
    summary_file = path / SUMMARY
    return RunRecord(path=path, config=flatten(json.loads(config_file.read_text()), str(config_file)),
                     history=read_json_lines(path / METRICS), curve=read_json_lines(path / CURVE),
                     summary=json.loads(summary_file.read_text()) if summary_file.is_file() else None)


def _score(metrics: Optional[dict[str, Any]]) -> tuple[str, Optional[float]]:
    if not metrics:
        return "score", None
    if metrics.get("accuracy") is not None:
        return "accuracy", float(metrics["accuracy"])
    return "mse", None if metrics.get("mse") is None else float(metrics["mse"])


def comparison_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One dict per run with the table's columns (``None`` where a run lacks the value)."""
    rows = []
    for record in records:
        config, summary, history = record.config, record.summary or {}, record.history
        last = history[-1] if history else None
        metric, final = _score(last.get("eval") if last else None)
        scores = [score for row in history if (score := _score(row.get("eval"))[1]) is not None]
        best = (max(scores) if metric == "accuracy" else min(scores)) if scores else None
        window = (config.get("k") or 1) if config.get("update_points") is None else f"K={config['update_points']}"
        rows.append({
            "run": record.label, "task": config.get("task"), "neuron": config.get("neuron"),
            "method": config.get("method"), "k": window if config.get("method") in ("fptt", "tbptt") else
            (1 if config.get("method") == "online" else None),
            "epochs": len(history), "metric": metric, "final": final, "best": best,
            "train_s": sum(row["train"]["seconds"] for row in history) if history else None,
            "peak_rss_mb": summary.get("peak_rss_mb") or (last["train"].get("peak_memory_mb") if last else None),
            "saved_bytes_per_update": summary.get("saved_tensor_peak_bytes"),
        })
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`comparison_rows` (readable in a terminal, pastable in docs)."""
    columns = ["run", "task", "neuron", "method", "k", "epochs", "metric", "final", "best", "train_s",
               "peak_rss_mb", "saved_bytes_per_update"]
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["| " + " | ".join(column.ljust(width) for column, width in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    lines += ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in cells]
    return "\n".join(lines)


def plot_comparison(records: Sequence[RunRecord], path: str | Path) -> Path:
    """The learning curves of ``records`` in one figure at ``path`` (see the module docstring)."""
    from . import plots

    labels = [record.label for record in records]
    if len(set(labels)) != len(labels):  # same folder names under different parents
        labels = [str(record.path) for record in records]
    if all(record.curve for record in records):
        curves = {}
        metric = records[0].curve[0].get("metric", "score")
        for label, record in zip(labels, records):
            with_ = record.config.get("eval_with", "average")
            key = "weights" if with_ == "average" and record.config.get("method") != "fptt" else with_
            curves[label] = [(point["batch"], point[key]) for point in record.curve if point.get(key) is not None]
        figure, (axis,) = plots.new_figure(1, width=7.0, height=4.5)
        plots.plot_curves(axis, curves, title=f"{len(records)} runs", x_label="training batches",
                          y_label=f"held-out {metric}", log=metric == "mse")
        return plots.save_figure(figure, path)
    missing = [label for label, record in zip(labels, records) if not record.history]
    if len(missing) == len(records):
        raise ValueError("none of the runs has finished an epoch (metrics.jsonl is empty): nothing to plot")
    return plots.plot_learning_curves({label: record.history for label, record in zip(labels, records)
                                       if record.history}, path, title=f"{len(records)} runs")
