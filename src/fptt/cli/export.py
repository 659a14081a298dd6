"""``fptt export``: a saved run's model as a NIR graph or a plain ``state_dict``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..spec.vocabulary import CHECKPOINTS, EVAL_WITH, EXPORT_FORMATS, NIR_DISCRETIZATIONS
from .common import UsageError, add_common

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export a run's model (W̄ by default) to NIR or a state_dict",
                                 description=(
        "Write the model of a saved run in another format: --format nir, a NIR graph (the Neuromorphic "
        "Intermediate Representation, HDF5; LIF and ALIF networks, see docs/INTEROP.md), or --format "
        "state_dict (a plain torch state_dict plus FILE.config.json). A run exports what it evaluated with "
        "(FPTT: the running average W̄; --eval-with ema: W_ema) unless --with says otherwise."))
    export.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="nir", help="output format (default nir)")
    export.add_argument("--output", "-o", metavar="FILE",
                        help="output file (default RUN_DIR/export/model.nir or model.pt)")
    export.add_argument("--with", dest="with_", choices=EVAL_WITH,
                        help="the running average W̄ (FPTT runs), the weights W, or the moving average W_ema (runs "
                             "trained with --eval-with ema); default: what the run evaluated with")
    export.add_argument("--which", choices=CHECKPOINTS, default="last", help="checkpoint of a run folder")
    export.add_argument("--discretization", choices=NIR_DISCRETIZATIONS, default="zoh",
                        help="nir: write the time constants for exact integration (zoh, default) or for one "
                             "forward-Euler step per dt (euler, what Norse's NIR import runs)")
    add_common(export)
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..run.build import WEIGHTS_LOADED, export_state_dict, load_model

    try:
        config, model, payload, used = load_model(args.path, device="cpu", which=args.which, weights=args.with_)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    source = Path(args.path)
    folder = source if source.is_dir() else source.parent
    output = Path(args.output) if args.output else folder / "export" / ("model.nir" if args.format == "nir" else "model.pt")
    if args.format == "nir":
        from ..interop.nir import NIRExportError, write_nir

        try:
            write_nir(model, output, args.discretization)
        except NIRExportError as error:
            raise UsageError(f"cannot export {config.neuron} network to NIR: {error}") from None
        except ImportError as error:
            raise UsageError(str(error)) from None
    else:
        export_state_dict(model, config, payload, used, output)
    if not args.quiet:
        print(f"exported the {WEIGHTS_LOADED[used]} of {args.path} (epoch {payload['epoch']}) as {args.format} to {output}",
              file=sys.stderr)
    print(output)
    return 0
