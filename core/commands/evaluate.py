"""`python -m core evaluate`: score a checkpoint on speakers it never heard."""

import argparse
import json
from pathlib import Path

NAME = "evaluate"
HELP = "score a trained checkpoint on a dataset's unseen speakers: accuracy, per-language recall, confusion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a best.pt written by `train`")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--split", choices=["test", "all"], default="test",
                        help="test: the checkpoint's held-out speakers on its own dataset; all: every clip. "
                             "Speakers it trained on are always left out (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from core.identify.evaluate import evaluate_checkpoint, format_report

    report = evaluate_checkpoint(args.checkpoint, args.data, args.split)
    print(json.dumps(report) if args.json else format_report(report))
    return 0
