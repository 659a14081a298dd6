"""``fptt train``: its flags, generated from the declared configuration (:mod:`fptt.run.config`:
one flag per field, under the field's name; a flag is given to the config only when explicit, so
that it overrides the config file), and the command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from .common import EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError, add_common, log_function

__all__ = ["register", "run", "add_train_arguments", "add_setting_flag"]

# flags of `fptt train` that are not configuration fields
_NOT_CONFIG = {"command", "config", "resume", "quiet", "debug", "handler", "print_config"}


def setting_value_type(setting: Any, name: str) -> Callable[[str], Any]:
    """The argparse type of a setting's flag: its kind's parser, its words as they are, and
    ``none`` for an optional setting (unset)."""
    convert: Callable[[str], Any] = {"int": int, "ints": int, "float": float, "floats": float}.get(setting.kind, str)

    def parse(text: str) -> Any:
        if text in setting.words:
            return text
        if setting.optional and text == "none":
            return None
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} takes {setting.describe()}, got {text!r}") \
                from None
        if setting.kind in ("int", "float", "ints"):  # a bad single value is refused by argparse, naming the flag
            try:
                setting.normalise(name, value)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return value
    parse.__name__ = setting.kind  # argparse names the type in its messages
    return parse


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "unset" if value is None else str(value)


def _where_tasks_change(name: str, default: Any) -> str:
    """``; add, dvsgesture: 0.5; alif/lif on mnist1d: 0.01``: the tasks whose values replace the
    declared default (for their own network), then the neurons whose regime changes the task's."""
    from ..run.presets import task_neuron, task_values
    from ..spec.vocabulary import MODELS, TASKS

    plain = _shown(default)
    by_task: dict[str, list[str]] = {}
    by_neuron: dict[tuple[str, str], list[str]] = {}  # (value, neuron) -> tasks
    for task in TASKS:
        own = _shown(task_values(task).get(name, default))
        if own != plain:
            by_task.setdefault(own, []).append(task)
        for neuron in MODELS if name != "neuron" else ():
            value = _shown(task_values(task, neuron).get(name, default))
            if neuron != task_neuron(task) and value != own:
                by_neuron.setdefault((value, neuron), []).append(task)
    parts = [f"{', '.join(tasks)}: {value}" for value, tasks in by_task.items()]
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # neurons with the same tasks share a label
    for (value, neuron), tasks in by_neuron.items():
        merged.setdefault((value, tuple(tasks)), []).append(neuron)
    for (value, covered), neurons in merged.items():
        where = "every task" if len(covered) == len(TASKS) else ", ".join(covered)
        parts.append(f"{'/'.join(neurons)} on {where}: {value}")
    return "".join(f"; {part}" for part in parts)


def add_setting_flag(group: Any, name: str, setting: Any, default: Any) -> None:
    """One flag for one declared setting (``--name-with-dashes``), its help ending with the default
    and the tasks that change it; v0.3 spellings of the flag still work, unlisted."""
    from ..run.migrate import RENAMED

    flag = "--" + name.replace("_", "-")
    help_text = f"{setting.help} (default {_shown(default)}{_where_tasks_change(name, default)})".replace("%", "%%")
    options: dict[str, Any] = dict(default=argparse.SUPPRESS, dest=name)
    if setting.kind == "bool":
        options.update(action=argparse.BooleanOptionalAction)
    else:
        options.update(type=setting_value_type(setting, name), metavar=setting.metavar)
        if setting.choices:
            options.update(choices=setting.choices, metavar=None)
        if setting.nargs is not None:
            options.update(nargs=setting.nargs)
    group.add_argument(flag, help=help_text, **options)
    for old, new in RENAMED.items():
        if new == name:
            group.add_argument("--" + old.replace("_", "-"), help=argparse.SUPPRESS, **options)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every configuration field, one argument group per section."""
    from ..run.config import SECTIONS
    from ..run.presets import PRESET_NAMES
    from ..spec.vocabulary import TASKS

    s = argparse.SUPPRESS  # only flags given explicitly reach the config (they override the file)
    what = parser.add_argument_group("what to train")
    what.add_argument("--task", choices=TASKS, default=s, help="dataset / task (default smnist)")
    what.add_argument("--preset", choices=PRESET_NAMES, default=s,
                      help="the reference code's regime and hyperparameters for the task (docs/PRESETS.md); "
                           "config files and explicit flags still override it")
    for section in SECTIONS:
        group = parser.add_argument_group(f"[{section.name}] {section.title}")
        for name, setting in section.settings().items():
            add_setting_flag(group, name, setting, section.__dataclass_fields__[name].default)

    run = parser.add_argument_group("the command")
    run.add_argument("--config", metavar="FILE", help="YAML, TOML or JSON file of settings, flat or in sections "
                     "(what --print-config writes); explicit flags override it")
    run.add_argument("--print-config", action="store_true",
                     help="print the fully resolved configuration (JSON, what --config reads) and exit")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a spiking network", description=(
        "Train a spiking RNN on a task with FPTT, BPTT, truncated BPTT or naive online gradient. "
        "Writes config.json, metrics.jsonl, checkpoint_{last,best}.pt, summary.json and plots/ to the run folder."))
    add_train_arguments(train)
    add_common(train)
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..run.config import config_text, load_config_file, resolve_config, resume_config

    flags = {key: value for key, value in vars(args).items() if key not in _NOT_CONFIG}
    if args.resume:
        if args.config:
            raise UsageError("--resume takes the run's saved config; do not pass --config with it")
        run_dir: Path | None = Path(args.resume)
        config = resume_config(args.resume, {key: value for key, value in flags.items() if key != "run_dir"})
    else:
        file_values = load_config_file(args.config) if args.config else {}
        config = resolve_config(file_values, flags)
        run_dir = None
    if args.print_config:
        from ..run.trainer import resolve_automatic

        def note(key: str, line: str) -> None:
            print(f"fptt train: {key}: {line}", file=sys.stderr)

        print(config_text(resolve_automatic(config, run_dir, log=note)), end="")
        return 0
    from ..run.trainer import Trainer

    log = log_function(args.quiet)
    trainer = Trainer(config, run_dir, resume=bool(args.resume), progress=(not args.quiet) and sys.stderr.isatty(),
                      log=log)
    finished = False
    try:
        summary = trainer.fit()
        finished = True
    finally:
        if trainer.world_size > 1:
            import torch.distributed as dist

            if finished:  # wait for rank 0's last writes: a rank leaving early can abort gloo peers
                dist.barrier()
            dist.destroy_process_group()
    if summary["interrupted"]:
        return EXIT_TERMINATED if summary.get("stop_signal") == "SIGTERM" else EXIT_INTERRUPTED
    if log and summary["last"] and trainer.is_main:
        scored = summary["test"] or {**summary["last"].get("eval", {}), "split": summary["last"].get("eval_split")}
        score = (f"accuracy {scored['accuracy']:.4f}" if scored.get("accuracy") is not None
                 else f"mse {scored['mse']:.4f}" if scored.get("mse") is not None else "not evaluated")
        log(f"done: {summary['epochs_completed']} epochs, {scored['split'] or 'no'} {score}, "
            f"{summary['wall_seconds']:.1f}s; results in {trainer.run_dir}")
    return 0
