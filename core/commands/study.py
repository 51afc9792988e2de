"""`python -m core study`: the pretraining study, every condition x seed, in parallel and resumable."""

import argparse
from pathlib import Path

from core.commands import number

NAME = "study"
HELP = ("pretrain next-frame LSTMs on low-pass speech of each language, train them on a target language "
        "to a loss threshold, then probe their latents (parallel, resumable)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.study.layout import StudyConfig

    defaults = StudyConfig()
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (Common Voice layout or <lang>/*.wav)")
    parser.add_argument("--target", default=defaults.target, help="language learnt last, full band (default %(default)s)")
    parser.add_argument("--pretrain", default=",".join(defaults.pretrain),
                        help="comma-separated conditions: 'none' or languages (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="runs per condition (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="validation MSE that counts as learnt (default: --threshold-ratio x the copy baseline)")
    parser.add_argument("--threshold-ratio", type=float, default=defaults.threshold_ratio,
                        help="threshold as a fraction of the loss of repeating the last frame (default %(default)s)")
    parser.add_argument("--cutoff", type=float, default=defaults.cutoff_hz,
                        help="low-pass cutoff of the pretraining features, Hz (default %(default)s)")
    parser.add_argument("--pretrain-epochs", type=int, default=defaults.pretrain_epochs,
                        help="epochs of low-pass pretraining (default %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=defaults.max_epochs,
                        help="target epochs before a run that never reaches the threshold stops (default %(default)s)")
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size, help="LSTM units (default %(default)s)")
    parser.add_argument("--latent-languages", default="",
                        help="comma-separated languages whose latents are probed (default: all)")
    parser.add_argument("--no-autoencoder", action="store_true", help="skip the conv autoencoder reference runs")
    parser.add_argument("--permutations", type=number(int, low=1), default=None, help="permutations per probe p-value (default 30)")
    parser.add_argument("--workers", type=number(int, low=1), default=None, help="runs trained at once (default: all cores)")
    parser.add_argument("--out", type=Path, default=None,
                        help="study folder (default: checkpoints/studies/<dataset>-<target>-<settings hash>)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def study_config(args: argparse.Namespace):
    from core.study.layout import StudyConfig

    return StudyConfig(
        target=args.target, pretrain=tuple(p.strip() for p in args.pretrain.split(",") if p.strip()),
        seeds=args.seeds, threshold=args.threshold, threshold_ratio=args.threshold_ratio, cutoff_hz=args.cutoff,
        pretrain_epochs=args.pretrain_epochs, max_epochs=args.max_epochs, hidden_size=args.hidden_size,
        autoencoder=not args.no_autoencoder,
        latent_languages=tuple(p.strip() for p in args.latent_languages.split(",") if p.strip()))


def run(args: argparse.Namespace) -> int:
    import json

    from core.progress import tqdm_progress
    from core.study.probes import study_report
    from core.study.plan import plan_study
    from core.study.run import run_study

    config = study_config(args)  # StudyConfig checks every setting before anything is written
    study_dir = plan_study(config, args.data, args.out, workers=args.workers)
    with tqdm_progress("study", unit="step") as on_progress:
        run_study(config, args.data, study_dir, workers=args.workers, n_permutations=args.permutations,
                  on_progress=on_progress)
    print("probes written (rerun them alone with `python -m core probe --study DIR`)")
    report = study_report(study_dir)
    print(json.dumps({k: v for k, v in report.items() if k != "text"}, indent=2, default=float)
          if args.json else report["text"])
    print(f"study folder: {study_dir}")
    return 0
