"""What the commands of ``fptt`` share: the error a user can fix, the exit statuses, common flags."""
from __future__ import annotations

import argparse
from typing import Callable, Optional

__all__ = ["UsageError", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "add_common", "log_function"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped by SIGTERM after saving a checkpoint


class UsageError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def log_function(quiet: bool) -> Optional[Callable[[str], None]]:
    if quiet:
        return None
    return lambda message: print(message, flush=True)
