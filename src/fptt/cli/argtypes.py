"""Argument types shared by the command-line parsers (``fptt`` and its subcommands)."""
from __future__ import annotations

import argparse

__all__ = ["positive_int", "positive_float"]


def _positive(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive {'integer' if kind is int else 'number'}, "
                                         f"got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive {'integer' if kind is int else 'number'}, "
                                         f"got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``argparse`` type: an int > 0, else a message naming the bad text."""
    return int(_positive(text, int))


def positive_float(text: str) -> float:
    """``argparse`` type: a number > 0, else a message naming the bad text."""
    return float(_positive(text, float))
