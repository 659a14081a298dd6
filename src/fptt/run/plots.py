"""Figures of a run: learning curves, spike raster + firing rates, LTC time constants.

matplotlib (the ``plot`` extra) is imported inside the functions, with the non-interactive Agg
backend, so importing this module costs nothing and works on machines without a display.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["record_activity", "plot_learning_curves", "plot_curves", "plot_spike_raster", "plot_time_constants"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def _membrane_rate(layer: torch.nn.Module, layer_input: Tensor, layer_state: Any) -> Optional[Tensor]:
    """α_t of an LTC layer for this step's input and state (what its step computes), or None."""
    gate_layer = getattr(layer, "membrane_rate", None)
    if isinstance(gate_layer, torch.nn.Linear):  # dense LTC: σ(k (W_m [d_t, u_{t-1}] + c_m))
        current = layer.input_current(layer_input, layer_state.spikes)
        gate = gate_layer(torch.cat([current, layer_state.membrane], dim=-1))
        slope = getattr(layer, "membrane_slope", None)
        return torch.sigmoid(gate if slope is None else slope * gate)
    if hasattr(layer, "membrane_rate_at"):  # conv LTC: σ(W_m ⊛ [d_t, u_{t-1}] + c_m)
        return layer.membrane_rate_at(layer_input, layer_state)
    return None


def record_activity(model: torch.nn.Module, x: Tensor) -> dict[str, list[Tensor]]:
    """Step ``model`` (a :class:`~fptt.SpikingRNN` or :class:`~fptt.ConvSNN`) over one sequence
    ``x`` (T, C) and record, per spiking layer (conv layers first), the spikes s_t (T, H; a conv
    layer's maps flattened) and, for LTC layers, the membrane rate α_t (THEORY.md §2.2) (T, H),
    recomputed from the layer's gate on the same input and state its step uses. The layers are
    observed through forward hooks while ``model.step`` runs, so any network of these layers works."""
    layers = [*getattr(model, "conv_layers", ()), *getattr(model, "dense_layers", getattr(model, "layers", ()))]
    spikes: list[list[Tensor]] = [[] for _ in layers]
    rates: list[list[Tensor]] = [[] for _ in layers]

    def before(index: int):
        def hook(layer, args):
            rate = _membrane_rate(layer, *args)
            if rate is not None:
                rates[index].append(rate[0].flatten().cpu())
        return hook

    def after(index: int):
        def hook(layer, args, output):
            spikes[index].append(output[0][0].flatten().cpu())
        return hook

    handles = [layer.register_forward_pre_hook(before(i)) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(after(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parameter = next(model.parameters())
            x = x.to(parameter.device, parameter.dtype)
            state = model.init_state(1)
            for t in range(x.shape[0]):
                _, state = model.step(x[t].unsqueeze(0), state)
        return {
            "spikes": [torch.stack(layer) for layer in spikes],
            "membrane_rate": [torch.stack(layer) if layer else None for layer in rates],  # type: ignore[misc]
        }
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def plot_curves(axis: Any, curves: Mapping[str, Sequence[tuple[float, float]]], *, title: str = "",
                x_label: str = "iteration", y_label: str = "held-out MSE", log: bool = True,
                chance: float | None = None, colours: Mapping[str, str] | None = None) -> None:
    """Draw ``{label: [(x, y), ...]}`` on ``axis`` (learning curves from ``curve.jsonl`` points),
    with an optional dotted chance level; log y axis by default."""
    for label, points in curves.items():
        colour = (colours or {}).get(label.replace("_", " ").split()[0].lower())  # "fptt_s0", "FPTT" -> fptt
        axis.plot([p[0] for p in points], [p[1] for p in points], "-", color=colour, alpha=0.85, label=label)
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.3g})")
    if log:
        axis.set_yscale("log")
    axis.set_title(title, fontsize=9)
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)


def save_figure(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` (folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def new_figure(columns: int = 1, width: float = 5.5, height: float = 4.0) -> tuple[Any, list[Any]]:
    """A figure with ``columns`` axes side by side (Agg backend)."""
    figure, axes = _pyplot().subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, list(axes[0])


def _series(history: Sequence[Mapping[str, Any]], part: str, key: str) -> tuple[list[int], list[float]]:
    points = [(row["epoch"], row[part].get(key)) for row in history if row.get(part) and row[part].get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curves(histories: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
                         path: str | Path, title: str = "", x_label: str = "epoch") -> Path:
    """Training loss and evaluation accuracy (or MSE) per epoch, from ``metrics.jsonl`` rows.

    ``histories`` is one run's rows or ``{label: rows}`` for several runs on shared axes.
    Rows may also carry ``"curve"``: a list of ``{"batch", "loss", "eval"}`` points (the demo's
    per-batch curves); when present these are drawn instead of the per-epoch points.
    """
    plt = _pyplot()
    runs = dict(histories) if isinstance(histories, Mapping) else {"": histories}
    fig, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(10, 4))
    score_name = "accuracy"
    for label, rows in runs.items():
        rows = list(rows)
        if not rows:
            continue
        if rows[0].get("eval", {}).get("accuracy") is None:
            score_name = "mse"
        if "batch" in rows[0] and "eval" in rows[0] and "train" not in rows[0]:  # per-batch curve
            x_label = "batch" if x_label == "epoch" else x_label
            xs = [row["batch"] for row in rows]
            loss_axis.plot(xs, [row["loss"] for row in rows], "-", label=label or None)
            score_axis.plot(xs, [row["eval"] for row in rows], "o-", label=label or None)
        else:
            epochs, losses = _series(rows, "train", "loss")
            loss_axis.plot(epochs, losses, "o-", label=(label + " train") if label else "train")
            eval_epochs, eval_losses = _series(rows, "eval", "loss")
            loss_axis.plot(eval_epochs, eval_losses, "s--", label=(label + " eval") if label else "eval")
            epochs, scores = _series(rows, "eval", score_name)
            score_axis.plot(epochs, scores, "o-", label=label or "eval")
        loss_axis.set_xlabel(x_label)
        score_axis.set_xlabel(x_label)
    loss_axis.set_ylabel("loss (final step)")
    score_axis.set_ylabel(f"held-out {score_name}")
    from matplotlib.ticker import MaxNLocator

    for axis in (loss_axis, score_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path, plt)


def plot_spike_raster(model: torch.nn.Module, x: Tensor, path: str | Path, layer: int = 0) -> Path:
    """Spike raster of hidden layer ``layer`` on one sequence ``x`` (T, C), with the histogram of
    the neurons' firing rates (spikes per step)."""
    plt = _pyplot()
    spikes = record_activity(model, x)["spikes"][layer]  # (T, H)
    fig, (raster, histogram) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    steps, neurons = torch.nonzero(spikes > 0, as_tuple=True)
    raster.scatter(steps.numpy(), neurons.numpy(), s=1.5, marker="|", color="black")
    raster.set_xlim(0, spikes.shape[0])
    raster.set_ylim(-0.5, spikes.shape[1] - 0.5)
    raster.set_xlabel("time step")
    raster.set_ylabel("neuron")
    raster.set_title(f"layer {layer + 1}: {int(spikes.sum())} spikes, mean rate {float(spikes.mean()):.3f}")
    rates = spikes.mean(dim=0).numpy()
    histogram.hist(rates, bins=20, color="tab:blue")
    histogram.set_xlabel("firing rate (spikes / step)")
    histogram.set_ylabel("neurons")
    return _save(fig, path, plt)


def plot_time_constants(model: torch.nn.Module, x: Tensor, path: str | Path, layer: int = 0) -> Path:
    """Distribution of the LTC membrane time constants τ_t = 1/α_t of layer ``layer`` over the
    steps of one sequence ``x`` (all neurons, all steps), and their median ± quartiles over time."""
    plt = _pyplot()
    rates = record_activity(model, x)["membrane_rate"][layer]
    if rates is None:
        raise ValueError("time constants are defined for LTC layers only (membrane_rate gate)")
    tau = 1.0 / rates.clamp_min(1e-6)  # (T, H), in steps
    fig, (histogram, over_time) = plt.subplots(1, 2, figsize=(11, 4))
    values = tau.flatten().clamp_max(1e3).log10().numpy()
    histogram.hist(values, bins=50, color="tab:green")
    histogram.set_xlabel("log10 τ_m = log10(1/α_t)  (steps)")
    histogram.set_ylabel("count (neurons × steps)")
    histogram.set_title(f"layer {layer + 1}: median τ {float(tau.median()):.2f} steps")
    quartiles = torch.quantile(tau, torch.tensor([0.25, 0.5, 0.75]), dim=1).numpy()
    steps = range(tau.shape[0])
    over_time.plot(steps, quartiles[1], color="tab:green", label="median")
    over_time.fill_between(steps, quartiles[0], quartiles[2], color="tab:green", alpha=0.3, label="quartiles")
    over_time.set_yscale("log")
    over_time.set_xlabel("time step")
    over_time.set_ylabel("τ_m (steps)")
    over_time.legend(fontsize=8)
    return _save(fig, path, plt)


def _save(fig, path: str | Path, plt) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
