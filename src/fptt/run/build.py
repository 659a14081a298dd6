"""Builders: configuration → dataset, model, optimizer, scheduler (and a run's saved model back).

One place for every caller: the :class:`~fptt.run.trainer.Trainer` (``fptt train``), ``fptt eval``,
``fptt stream --preset``, ``fptt demo`` and the experiment scripts build their objects here, from a
:class:`~fptt.run.config.TrainConfig`, so that a run, its evaluation and its experiments cannot differ
in how a model is made.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ..models import ConvSNN, SpikingRNN
from ..models.baselines import RecurrentBaseline
from ..optim import FPTT
from ..spec.rules import check_window, validation_count
from ..spec.vocabulary import BASELINE_CELLS, EVAL_WITH, EVENT_TASKS
from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from .config import ConfigError, TrainConfig
from .files import write_text_atomic

__all__ = ["resolve_device", "default_eval_split", "final_split", "is_final_split", "validation_indices",
           "resolve_validation", "split_validation", "build_dataset", "dataset_shape",
           "check_datasets", "frame_shape", "build_model", "build_optimizer", "build_scheduler", "load_run", "load_model",
           "export_state_dict", "WEIGHTS_LOADED"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; ``cuda`` without a GPU is a :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} was asked for but CUDA is not available "
                              "(no GPU or a CPU-only torch build); use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    return torch.device(name)


def _uses_bundled_mnist(config: TrainConfig) -> bool:
    from ..data import data_root

    return config.task in ("smnist", "psmnist") and data_root(config.data_dir) is None


def default_eval_split(config: TrainConfig) -> str:
    """``validation`` unless the config holds nothing out (``validation_samples=0``); then the
    final split (:func:`final_split`), whose every read is counted (:mod:`fptt.run.records`)."""
    return final_split(config) if config.validation_samples == 0 else "validation"


def final_split(config: TrainConfig) -> str:
    """The split a run is finally scored on, once: ``heldout`` for the bundled MNIST-10k and
    saccade-mnist, ``test`` otherwise (the validation split is carved from the training data)."""
    return "heldout" if _uses_bundled_mnist(config) or config.task == "saccade-mnist" else "test"


def is_final_split(config: TrainConfig, split: str) -> bool:
    """``split`` is the run's test data (its reads are counted): ``test``, or ``heldout`` where
    that is the final split."""
    return split in ("test", final_split(config))


VALIDATION_SEED = 20_231_129  # one fixed draw: every run of a task holds out the same samples


def validation_indices(size: int, count: int) -> tuple[list[int], list[int]]:
    """``(train, validation)`` indices of a training set of ``size`` samples with ``count`` held out:
    a fixed random draw (:data:`VALIDATION_SEED`, independent of the run's seed, so that runs with
    different seeds are selected on the same samples), each part sorted."""
    if not 0 < count < size:
        raise ConfigError(f"validation_samples must lie in [1, {size - 1}] for a training set of {size} samples, "
                          f"got {count}")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(VALIDATION_SEED)).tolist()
    return sorted(order[count:]), sorted(order[:count])


def resolve_validation(config: TrainConfig, train_size: Optional[int] = None) -> TrainConfig:
    """``config`` with ``validation_samples="auto"`` made a number
    (:func:`fptt.spec.rules.validation_count` of the full training set, built to count it when
    ``train_size`` is not given); a number stays as it is."""
    if config.validation_samples != "auto":
        return config
    if train_size is None:
        train_size = len(build_dataset(config.updated(validation_samples=0), "train"))  # type: ignore[arg-type]
    return config.updated(validation_samples=validation_count("auto", train_size))


def split_validation(full: Dataset, count: int) -> tuple[Dataset, Dataset]:
    """``(train, validation)`` subsets of a training set with ``count`` samples held out
    (:func:`validation_indices`); both keep the attributes the trainer reads of a dataset."""
    from torch.utils.data import Subset

    train_index, validation_index = validation_indices(len(full), count)  # type: ignore[arg-type]
    parts = Subset(full, train_index), Subset(full, validation_index)
    for part in parts:
        for name in ("num_classes", "input_size", "frame_shape"):  # what dataset_shape and the trainer read
            if hasattr(full, name):
                setattr(part, name, getattr(full, name))
    return parts


def build_dataset(config: TrainConfig, split: str) -> Dataset:
    """The dataset of ``config.task`` for ``split`` (``train``, ``test``, ``heldout`` or
    ``validation``), through the registry :func:`fptt.data.get_dataset` (which fixes, e.g., the
    adding task's test seed). With ``validation_samples = n`` (``"auto"``: resolved by
    :func:`resolve_validation`), ``validation`` is a fixed draw of n samples of the task's training
    data (:func:`validation_indices`) and ``train`` is the rest; the test split is untouched."""
    from .. import data

    if config.validation_samples != 0 and split in ("train", "validation"):
        full = build_dataset(config.updated(validation_samples=0), "train")
        count = validation_count(config.validation_samples, len(full))  # type: ignore[arg-type]
        if count:
            return split_validation(full, count)[0 if split == "train" else 1]
        if split == "train":
            return full
    if split == "validation":
        raise ConfigError("the validation split needs validation_samples > 0 (--validation-samples N or auto)")

    if config.task == "add":
        train = split == "train"
        # fresh_data draws each training sequence when it is read (constant memory)
        options: dict[str, Any] = dict(seq_len=config.seq_len, seed=config.seed, lazy=train and config.fresh_data,
                                       num_samples=config.train_samples if train else config.test_samples)
    elif config.task in ("smnist", "psmnist"):
        options = dict(root=config.data_dir, downsample=config.downsample)
    else:
        options = dict(root=config.data_dir)
    if config.task in EVENT_TASKS:
        if config.num_frames is not None:
            options["num_frames"] = config.num_frames
        if config.spatial_factor is not None:
            options["spatial_factor"] = config.spatial_factor
    if config.task == "saccade-mnist":  # generated from the bundled digits; the seed draws the sensor mismatch
        train = split == "train"
        options.update(duration_ms=config.duration_ms, seed=config.seed,
                       num_samples=config.train_samples if train else config.test_samples)
    try:
        return data.get_dataset(config.task, split, **options)
    except data.DatasetNotFoundError:
        raise
    except ValueError as error:  # e.g. a split the source does not have
        raise ConfigError(str(error)) from None


def dataset_shape(dataset: Dataset) -> tuple[int, int]:
    """(input_size, output_size) of a dataset; regression targets give one output."""
    x, y = dataset[0]
    input_size = getattr(dataset, "input_size", None) or int(x.shape[-1])
    classes = getattr(dataset, "num_classes", None)
    if torch.is_tensor(y) and y.is_floating_point():  # regression target
        classes = None
    return int(input_size), int(classes) if classes else 1


def check_datasets(config: TrainConfig, datasets: dict[str, Dataset]) -> None:
    """Refuse empty splits, and windows longer than the sequences, before anything is trained."""
    for split, dataset in datasets.items():
        try:
            size = len(dataset)  # type: ignore[arg-type]
        except TypeError:  # an iterable dataset: its length is unknown
            continue
        if size == 0:
            raise ConfigError(f"the {split} split of task {config.task!r} is empty: nothing to train or evaluate on")
    train = datasets["train"]
    x, _ = train[0]
    seq_len = int(x.shape[0]) if torch.is_tensor(x) and x.dim() >= 1 else None
    if seq_len is not None and config.method != "bptt":  # bptt takes the whole sequence, whatever k says
        try:
            check_window(config.k, config.update_points, seq_len,
                         where=f"the sequence length of task {config.task!r} ({seq_len} steps)")
        except ValueError as error:
            raise ConfigError(str(error)) from None


def frame_shape(input_size: int, input_shape: Optional[Sequence[int]] = None) -> tuple[int, int, int]:
    """(P, H, W) of a conv model's frames: ``input_shape`` when given (the dataset's
    ``frame_shape``), else square two-polarity frames, the layout of every event dataset here."""
    if input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3 or shape[0] * shape[1] * shape[2] != input_size:
            raise ConfigError(f"frame shape {shape} does not hold the {input_size} input features")
        return shape  # type: ignore[return-value]
    side = int(round((input_size / 2) ** 0.5))
    if 2 * side * side != input_size:
        raise ConfigError(f"conv layers need frames: {input_size} input features are not 2 polarities of a square "
                          "map; use an event task (dvsgesture, dvscifar10, nmnist, saccade-mnist)")
    return (2, side, side)


def _fused(config: TrainConfig) -> bool | str:
    """``config.fused``: ``True``/``False`` once the trainer resolved it, else the library's ``"auto"``."""
    return config.compute.fused


def cell_options(config: TrainConfig, seq_len: Optional[int] = None) -> dict[str, Any]:
    """The cells' keyword arguments of ``config.network`` for its neuron, under their own names: the
    options every spiking cell takes, the LTC's own (``chrono_tau="seq_len"`` resolved to ``seq_len``,
    else the configured ``seq_len``), ALIF/LIF's time constants or BRF's initial ranges; LIF takes no
    adaptation, BRF neither a threshold, an adaptation nor an initial membrane (θ = 1, at rest)."""
    net = config.network
    options: dict[str, Any] = {key: getattr(net, key) for key in _CELL_KEYS}
    options["surrogate"] = {"name": "multi_gaussian", "sigma": float(net.surrogate_sigma)}
    if net.neuron == "brf":
        for key in _NOT_BRF_KEYS:
            del options[key]
        options.update({key: getattr(net, key) for key in ("omega_init", "b_offset_init")
                        if getattr(net, key) is not None})
        return options
    if net.neuron != "lif":
        options["adaptation_strength"] = net.adaptation_strength
    if net.neuron == "ltc":
        chrono = net.chrono_tau
        if chrono == "seq_len":  # the data's length when known, else the adding task's configured T
            chrono = seq_len if seq_len is not None else config.data.seq_len
        options.update(fixed_threshold=net.fixed_threshold, gate_slopes=net.gate_slopes,
                       chrono_tau=None if chrono is None else float(max(chrono, 3)), fused=_fused(config))
        return options
    for key in ("tau_membrane_init", "tau_adaptation_init"):  # ALIF / LIF: (mean, std) in steps
        if getattr(net, key) is not None:
            options[key] = getattr(net, key)
    return options


_CELL_KEYS = ("norm", "norm_scale", "baseline_threshold", "initial_membrane", "synapse_init", "recurrent")
_NOT_BRF_KEYS = ("baseline_threshold", "initial_membrane")  # a BRF layer's θ is 1 and it starts at rest


def build_model(config: TrainConfig, input_size: int, output_size: int,
                seq_len: Optional[int] = None, input_shape: Optional[Sequence[int]] = None) -> nn.Module:
    """The :class:`SpikingRNN` that ``config.network`` describes, the :class:`ConvSNN` when it lists
    conv layers (``input_shape``: the frames' (P, H, W), see :func:`frame_shape`), or the non-spiking
    :class:`RecurrentBaseline` for ``neuron`` gru/lstm; ``seq_len`` resolves ``chrono_tau="seq_len"``.
    The fields go to the library under their own names (:func:`cell_options`)."""
    net = config.network
    if net.neuron in BASELINE_CELLS:  # the non-spiking ceiling: no neuron options apply
        return RecurrentBaseline(input_size, list(net.hidden_sizes), output_size, cell=net.neuron)
    options = cell_options(config, seq_len)
    if net.conv:
        return ConvSNN(frame_shape(input_size, input_shape), list(net.conv), list(net.hidden_sizes), output_size,
                       readout=net.readout, gate_input=net.gate_input, **options)
    return SpikingRNN(input_size, list(net.hidden_sizes), output_size, neuron=net.neuron,
                      readout=net.readout, readout_from=net.readout_from, **options)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam/Adamax/SGD (momentum 0.9); wrapped in :class:`FPTT` (``config.fptt``'s arguments and
    ``clip_grad_norm``) for ``method="fptt"``. ``foreach=True`` on every device: one code path,
    identical results (the CPU timing: docs/PERFORMANCE.md)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optim = config.optim
    if optim.optimizer == "adam":
        inner: torch.optim.Optimizer = torch.optim.Adam(parameters, lr=optim.lr, foreach=True)
    elif optim.optimizer == "adamax":
        inner = torch.optim.Adamax(parameters, lr=optim.lr, foreach=True)
    else:
        inner = torch.optim.SGD(parameters, lr=optim.lr, momentum=0.9, foreach=True)
    if config.training.method != "fptt":
        return inner
    return FPTT(inner, alpha=config.fptt.alpha, beta=config.fptt.beta,
                reset_lambda_on_average=config.fptt.reset_lambda_on_average,
                clip_grad_norm=config.training.clip_grad_norm, fused=_fused(config))


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, batches_per_epoch: int = 1):
    """None, MultiStepLR (``milestones``, default half and three quarters of the run) or cosine
    annealing to 0 over the run. ``schedule_unit="epoch"``: the run is ``epochs`` steps (one per
    epoch); ``"batch"``: ``epochs × batches_per_epoch`` steps (one per training batch), and
    ``milestones`` count batches."""
    if config.schedule == "none":
        return None
    steps = config.epochs * (batches_per_epoch if config.schedule_unit == "batch" else 1)
    if config.schedule == "step":
        milestones = config.milestones or sorted({max(1, steps // 2), max(1, (3 * steps) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def load_run(path: str | Path, device: str = "cpu",
             which: str = "last") -> tuple[TrainConfig, nn.Module, torch.optim.Optimizer, dict]:
    """Rebuild the model and optimizer of a saved run (folder or checkpoint file) for evaluation."""
    checkpoint_path = find_checkpoint(path, which)
    payload = load_checkpoint(checkpoint_path, map_location=resolve_device(device))
    config = TrainConfig.from_dict(payload["config"], where=str(checkpoint_path))
    shape = payload.get("model_shape") or {}
    model = build_model(config, shape["input_size"], shape["output_size"],
                        input_shape=shape.get("input_shape")).to(resolve_device(device))
    model.load_state_dict(payload["model"])
    optimizer = build_optimizer(config, model)
    optimizer.load_state_dict(payload["optimizer"])
    return config, model, optimizer, payload


# what ``load_model``'s ``used`` names, for messages
WEIGHTS_LOADED = {"average": "averaged weights W̄", "weights": "weights W", "ema": "moving average W_ema"}


def load_model(path: str | Path, device: str = "cpu", which: str = "last",
               weights: Optional[str] = "average") -> tuple[TrainConfig, nn.Module, dict, str]:
    """The model of a saved run (folder or checkpoint file) with its running average W̄
    (``weights="average"``, FPTT runs), its last weights W (``"weights"``) or the moving average
    W_ema it kept (``"ema"``, runs trained with ``eval_with="ema"``), for inference.

    Reads the checkpoint's ``model_average`` or ``model_ema`` (plain state_dicts): no optimizer is
    built. Older checkpoints without ``model_average`` fall back to the optimizer's state. Returns
    ``(config, model, payload, used)`` with ``used`` the weights actually loaded (``"weights"`` for
    a run without W̄). ``weights=None``: what the run evaluated with (its ``eval_with``)."""
    if weights is not None and weights not in EVAL_WITH:
        raise ValueError(f"weights must be one of {', '.join(EVAL_WITH)}, got {weights!r}")
    checkpoint_path = find_checkpoint(path, which)
    payload = load_checkpoint(checkpoint_path, map_location=resolve_device(device))
    config = TrainConfig.from_dict(payload["config"], where=str(checkpoint_path))
    weights = weights or config.eval_with
    if weights == "ema" and payload.get("model_ema") is None:
        raise CheckpointError(f"{checkpoint_path} holds no moving average of the weights: only runs trained with "
                              "--eval-with ema keep one (evaluate with 'average' or 'weights')")
    if weights == "average" and config.method == "fptt" and payload.get("model_average") is None:
        config, model, optimizer, payload = load_run(path, device=device, which=which)
        assert isinstance(optimizer, FPTT)  # method fptt
        model.load_state_dict(optimizer.averaged_state_dict(model))
        return config, model, payload, "average"
    shape = payload.get("model_shape") or {}
    model = build_model(config, shape["input_size"], shape["output_size"],
                        input_shape=shape.get("input_shape")).to(resolve_device(device))
    if weights == "ema":
        model.load_state_dict(payload["model_ema"])
        return config, model, payload, "ema"
    average = payload.get("model_average") if weights == "average" else None
    model.load_state_dict(average if average is not None else payload["model"])
    return config, model, payload, "average" if average is not None else "weights"


def export_state_dict(model: nn.Module, config: TrainConfig, payload: dict, used: str, path: Path) -> None:
    """Write ``model``'s weights as a plain state_dict to ``path`` and what rebuilds the model
    (config and shape) to ``path.config.json``: ``build_model(TrainConfig.from_dict(c["config"]),
    c["input_size"], c["output_size"]).load_state_dict(torch.load(path))``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    shape = payload.get("model_shape") or {}
    write_text_atomic(Path(f"{path}.config.json"), json.dumps(
        {"config": config.to_dict(), "weights": used, **shape}, indent=2) + "\n")
