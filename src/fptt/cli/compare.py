"""``fptt compare``: several run folders side by side (a table and their learning curves)."""
from __future__ import annotations

import argparse
import json
import sys

from .common import UsageError

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="several runs side by side: a table and their learning curves",
                                  description=(
        "Print a table of several run folders (task, neuron, method, k, epochs, final and best score, training "
        "time, memory) and plot their learning curves in one figure (curve.jsonl points when every run has them, "
        "else the per-epoch metrics)."))
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--plot", metavar="FILE", default="compare.png",
                         help="the figure's file (default compare.png in the current folder)")
    compare.add_argument("--no-plot", action="store_true", help="print the table only")
    compare.add_argument("--json", action="store_true", help="print the table's rows as JSON")
    compare.set_defaults(handler=run, quiet=False, debug=False)


def run(args: argparse.Namespace) -> int:
    from ..run.compare import comparison_rows, format_table, load_run_record, plot_comparison

    try:
        records = [load_run_record(run) for run in args.runs]
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    rows = comparison_rows(records)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    if not args.no_plot:
        try:
            path = plot_comparison(records, args.plot)
        except ImportError as error:
            raise UsageError(f"plotting needs matplotlib ({error}); pip install 'fptt[plot]', or pass --no-plot") from None
        except ValueError as error:
            raise UsageError(str(error)) from None
        print(f"learning curves: {path}", file=sys.stderr)
    return 0
