"""``fptt eval``: rebuild a saved model from its config and evaluate it.

Every evaluation on the run's test split (``test``, or ``heldout`` where that is the final split)
is counted in the run folder's ``test_reads.json`` (:func:`fptt.run.records.record_test_read`), so
that "the test split was read once" is a fact a reader can check."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..spec.vocabulary import CHECKPOINTS, DECODINGS, EVAL_SPLITS, EVAL_WITH
from .argtypes import positive_int
from .common import UsageError, add_common

__all__ = ["register", "run"]


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a saved run or checkpoint",
                                   description="Rebuild a saved model from its config and evaluate it.")
    evaluate.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    evaluate.add_argument("--split", choices=EVAL_SPLITS,
                          help="split to evaluate (default: the run's validation split; the test split when it "
                               "holds none). Each read of the test split is counted in the run's test_reads.json")
    evaluate.add_argument("--with", dest="with_", choices=EVAL_WITH,
                          help="the running average W̄ (FPTT runs), the weights W, or the moving average W_ema "
                               "(runs trained with --eval-with ema); default: what the run evaluated with")
    evaluate.add_argument("--decode", choices=DECODINGS,
                          help="the class scores of a sequence: the final step's output (last) or the mean over "
                               "the steps of its class probabilities (mean); default: the run's decode")
    evaluate.add_argument("--which", choices=CHECKPOINTS, default="last", help="checkpoint of a run folder")
    evaluate.add_argument("--max-batches", type=positive_int, help="at most N batches")
    evaluate.add_argument("--batch-size", type=positive_int, help="evaluation batch size")
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument("--data-dir", help="dataset root, if it moved since training")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--export", metavar="FILE",
                          help="also save the evaluated weights (W̄ by default) as a plain state_dict to FILE")
    add_common(evaluate)
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from ..run.build import (
        WEIGHTS_LOADED,
        build_dataset,
        default_eval_split,
        export_state_dict,
        is_final_split,
        load_model,
    )
    from ..run.records import record_test_read
    from ..run.trainer import evaluation_rng
    from ..training.engine import evaluate

    try:
        config, model, payload, used = load_model(args.path, device=args.device, which=args.which,
                                                  weights=args.with_)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    if args.with_ == "average" and used != "average" and not args.quiet:
        print(f"note: a {config.method} run has no running average; evaluating the weights", file=sys.stderr)
    if args.export:
        export_state_dict(model, config, payload, used, Path(args.export))
        if not args.quiet:
            print(f"exported the {WEIGHTS_LOADED[used]} to {args.export} "
                  f"(a plain state_dict; config in {args.export}.config.json)", file=sys.stderr)
    if args.data_dir:
        config = config.updated(data_dir=args.data_dir)
    split = args.split or default_eval_split(config)
    dataset = build_dataset(config, split)
    size = args.batch_size or config.eval_batch_size or max(config.batch_size, 256)
    loader = DataLoader(dataset, batch_size=size, shuffle=False)
    device = next(model.parameters()).device
    if args.decode:
        config = config.updated(decode=args.decode)  # refused (a ConfigError) where the run cannot be decoded so
    decode = config.decode
    with evaluation_rng(config.seed, device):
        metrics = evaluate(model, loader, max_batches=args.max_batches,
                           progress=(not args.quiet) and sys.stderr.isatty(), decode=decode)
    result = {"checkpoint_epoch": payload["epoch"], "split": split, "with": used, "decode": decode,
              **metrics.to_dict()}
    result.pop("extra", None)
    if is_final_split(config, split):
        run_dir = Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent
        checkpoint = f"checkpoint_{args.which}.pt" if Path(args.path).is_dir() else Path(args.path).name
        scores = {key: result[key] for key in ("loss", "accuracy", "mse", "samples") if key in result}
        result["test_reads"] = record_test_read(run_dir, {
            "by": "fptt eval", "split": split, "checkpoint": checkpoint, "epoch": payload["epoch"], "with": used,
            "decode": decode, "metrics": scores})
        if not args.quiet:
            print(f"note: read {result['test_reads']} of this run's {split} split (counted in {run_dir}/test_reads.json)",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        decoded = "" if decode == "last" else ", decode mean"
        print(f"{config.task} {config.method} (epoch {payload['epoch']}, {result['with']}{decoded}) on {split}: "
              f"loss {metrics.loss:.4f}  {metrics.samples} samples  {metrics.seconds:.1f}s")
        # the score alone on the last line, for scripts: `fptt eval RUN | tail -1`
        print(f"accuracy {metrics.accuracy:.6f}" if metrics.accuracy is not None else f"mse {metrics.mse:.6f}")
    return 0
