"""`python -m core evaluate`: score a checkpoint on speakers it never heard, or draw its recipe's learning curve."""

import argparse
import json
from pathlib import Path

NAME = "evaluate"
HELP = ("score a trained checkpoint on a dataset's unseen speakers (accuracy, recall, confusion, calibration), "
        "or with --learning-curve, accuracy against minutes of speech per language")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a best.pt written by `train`; with --learning-curve, its training recipe is the one run")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--split", choices=["test", "all"], default="test",
                        help="test: the checkpoint's held-out speakers on its own dataset; all: every clip. "
                             "Speakers it trained on are always left out (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    curve = parser.add_argument_group("learning curve")
    curve.add_argument("--learning-curve", action="store_true",
                       help="retrain the checkpoint's recipe on at most M minutes per language in a speaker-grouped "
                            "CV of --data, for each M of --minutes, and fit a power law to the error")
    curve.add_argument("--minutes", default="0.5,1,2,3,4,all", help="budgets per language (default %(default)s)")
    curve.add_argument("--folds", type=int, default=3, help="speaker-grouped folds (default %(default)s)")
    curve.add_argument("--languages", default=None, metavar="CODES",
                       help="also the curve of the answers renormalised over these languages, on their clips, as "
                            "`identify --languages` answers (e.g. de,en,es,fr,it,ja)")
    curve.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    curve.add_argument("--out", type=Path, default=None,
                       help="write the curve as JSON here (e.g. checkpoints/identify-default/learning_curve.json)")


def run(args: argparse.Namespace) -> int:
    if args.learning_curve:
        return _learning_curve(args)
    from core.identify.evaluate import evaluate_checkpoint, format_report
    from core.progress import tqdm_progress

    with tqdm_progress("evaluate", unit="clip") as on_progress:  # one bar per phase, on stderr
        report = evaluate_checkpoint(args.checkpoint, args.data, args.split, on_progress=on_progress)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _learning_curve(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import replace

    from core.checkpoint import load_checkpoint
    from core.errors import DeepLanguageError
    from core.identify.clips import TrainConfig
    from core.identify.learning_curve import learning_curve, save_learning_curve
    from core.identify.pretrained import KINDS as PRETRAINED_KINDS
    from core.identify.pretrained_fit import learning_curve as pretrained_learning_curve
    from core.progress import tqdm_progress

    try:
        minutes = [None if m.strip() == "all" else float(m) for m in args.minutes.split(",") if m.strip()]
    except ValueError:
        print(f"python -m core evaluate: error: --minutes: {args.minutes!r} is not a list of numbers or 'all'",
              file=sys.stderr)
        return 2
    recipe = load_checkpoint(args.checkpoint).get("train_config")
    if not recipe:
        raise DeepLanguageError(f"{args.checkpoint} does not record its training recipe (train_config).")
    config = replace(TrainConfig.from_dict(recipe), data_dir=str(args.data.resolve()), cache_dir="",
                     threads=args.threads)
    with tqdm_progress("learning curve", unit="fit") as on_progress:
        languages = [code.strip() for code in args.languages.split(",")] if args.languages is not None else None
        if config.model in PRETRAINED_KINDS:
            curve = pretrained_learning_curve(config, minutes, args.folds, on_progress, languages)
        else:
            curve = learning_curve(config, minutes, args.folds, on_progress, languages)
    curve["data_dir"] = str(args.data)
    curve["command"] = "python -m core evaluate --learning-curve " + " ".join(
        f"--{k} {v}" for k, v in (("checkpoint", args.checkpoint), ("data", args.data), ("minutes", args.minutes),
                                  ("folds", args.folds), ("languages", args.languages), ("out", args.out))
        if v is not None)
    if args.out:
        save_learning_curve(curve, args.out)
    if args.json:
        print(json.dumps(curve))
    else:
        print(_curve_text(curve, f"{len(curve['languages'])} languages"))
        if "restricted" in curve:
            print(_curve_text(curve["restricted"], "answers renormalised over " + ",".join(
                curve["restricted"]["languages"])))
    return 0


def _curve_text(curve: dict, title: str) -> str:
    lines = [f"{title} (chance {curve['chance']:.1%}):"]
    lines += [f"  {m:5.2f} min/language: {a:.1%} (95% CI {lo:.1%}-{hi:.1%})"
              for m, a, lo, hi in zip(curve["minutes"], curve["accuracy"], curve["ci_low"], curve["ci_high"])]
    law = curve["power_law"]
    reach = "; ".join(f"{float(a):.0%} needs " + (f"about {need:.0f} min per language" if need else "more than it reaches")
                      for a, need in curve["minutes_for"].items())
    lines.append(f"  power law {law['form']}: b={law['b']}, c={law['c']}; {reach}")
    return "\n".join(lines)
