"""The parser of the ``fptt`` command: one subcommand per module of :mod:`fptt.cli`, each adding
its own flags (``register``) and handler (``run``). No torch import: ``fptt --help`` is instant."""
from __future__ import annotations

import argparse

from . import bench, compare, demo, evaluate, export, stream, train

__all__ = ["build_parser", "COMMANDS"]

# in the order of `fptt --help`
COMMANDS = (train, evaluate, export, compare, bench, stream, demo)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="fptt",
        description="Online training of spiking neural networks with Forward Propagation Through Time.",
        epilog="Run `fptt COMMAND --help` for the options of a command; see docs/CLI.md.",
    )
    parser.add_argument("--version", action="version", version=f"fptt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser
