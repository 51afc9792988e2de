"""`python -m core probe`: linear probes on a study's latents, with chance, CIs, p-values and tests."""

import argparse
from pathlib import Path

NAME = "probe"
HELP = "probe a study's latents (speaker-grouped CV, chance level, confidence intervals, permutation p) and compare its conditions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, type=Path, help="study folder made by `python -m core study`")
    parser.add_argument("--permutations", type=int, default=None, help="permutations per p-value, at most (default 20; stops early once 5 shuffles beat the real score)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def probe_and_report(study_dir: Path, n_permutations: int | None = None) -> dict:
    """Probe (writing probes.tsv), summarise, compare; returns the tables as dicts plus a text report."""
    from core.study.probes import N_PERMUTATIONS
    from core.progress import tqdm_progress
    from core.study.probes import study_report

    with tqdm_progress("probe", unit="latent") as on_progress:
        from core.study.probes import probe_study

        probe_study(study_dir, n_permutations or N_PERMUTATIONS, on_progress=on_progress)
    return study_report(study_dir)


def run(args: argparse.Namespace) -> int:
    import json

    report = probe_and_report(args.study, args.permutations)
    print(json.dumps({k: v for k, v in report.items() if k != "text"}, indent=2, default=float)
          if args.json else report["text"])
    return 0
