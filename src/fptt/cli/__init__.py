"""The ``fptt`` command line: ``train``, ``eval``, ``export``, ``compare``, ``bench``, ``stream`` and ``demo``
(see docs/CLI.md).

Built on :mod:`argparse` (standard library, no dependency): :mod:`.parser` assembles the
subcommands, one module each (:mod:`.train`, :mod:`.evaluate`, :mod:`.export`, :mod:`.compare`,
:mod:`.bench`, :mod:`.stream`, :mod:`.demo`). Heavy imports (torch, the trainer, matplotlib) happen
inside the commands so that ``fptt --help`` and argument errors are instant.
Errors a user can act on (unknown config key, dataset not found, CUDA absent, ...) print one
line on stderr and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .common import EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from .parser import build_parser

__all__ = ["main", "build_parser", "UsageError"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``fptt`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if debug:
        return args.handler(args)
    from ..run.checkpoint import CheckpointError, CheckpointWriteError
    from ..run.config import ConfigError

    actionable: tuple[type[BaseException], ...] = (UsageError, ConfigError, CheckpointError)
    try:
        from ..data import DatasetNotFoundError

        actionable += (DatasetNotFoundError,)
    except ImportError:  # pragma: no cover
        pass
    try:
        return args.handler(args)
    except actionable as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"fptt {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except CheckpointWriteError as error:  # a full disk: one line naming the folder, the space and the resume
        print(f"fptt {args.command}: error: {error.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fptt {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # anything else: one line, the traceback with --debug
        print(f"fptt {args.command}: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
