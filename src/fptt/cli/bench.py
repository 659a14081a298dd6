"""``fptt bench``: run one of the benchmarks of :mod:`fptt.bench` with its own arguments."""
from __future__ import annotations

import argparse

from ..spec.vocabulary import BENCHMARKS
from .common import UsageError

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="memory, speed, peer, throughput and compile-time benchmarks", description=(
        "Run a benchmark of fptt.bench; the arguments after the benchmark's name are its own "
        "(`fptt bench memory --help`)."))
    bench.add_argument("benchmark", choices=BENCHMARKS)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    bench.set_defaults(handler=run, quiet=False, debug=False)


def run(args: argparse.Namespace) -> int:
    import importlib

    name = f"fptt.bench.{args.benchmark}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (error.name == name or name.startswith(error.name)):
            raise UsageError(f"the {args.benchmark} benchmark is not available in this installation "
                             f"(module {name} not found)") from None
        raise
    entry = getattr(module, "main", None)
    if entry is None:
        raise UsageError(f"{name} has no main(argv) entry point")
    result = entry(list(args.args))
    return result if isinstance(result, int) else 0
