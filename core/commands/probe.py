"""`python -m core probe`: linear probes on a study's latents, with chance, CIs, p-values and tests."""

import argparse
from pathlib import Path

NAME = "probe"
HELP = "probe a study's latents (speaker-grouped CV, chance level, confidence intervals, permutation p) and compare its conditions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, type=Path, help="study folder made by `python -m core study`")
    parser.add_argument("--permutations", type=int, default=None, help="permutations per p-value, at most (default 20; stops early once 5 shuffles beat the real score)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--identify", action="store_true",
                        help="first embed the study's clips with the shipped identifier (Whisper) again: its latents "
                             "and the Whisper similarities; then probe those latents only, keeping the runs' probes")


def probe_and_report(study_dir: Path, n_permutations: int | None = None, identify: bool = False) -> dict:
    """Probe (writing probes.tsv); returns the study's summary (core.study.report.study_summary).

    ``identify``: re-embed with the identifier and Whisper first, and re-probe only the identifier's latents."""
    from core.progress import tqdm_progress
    from core.study.probes import N_PERMUTATIONS, probe_study
    from core.study.report import study_summary

    if identify:
        from core.study.latents import extract_identify_latents
        from core.study.similarity import store_whisper_similarity

        with tqdm_progress("Whisper similarity", unit="clip") as on_progress:
            store_whisper_similarity(study_dir, on_progress=on_progress)
        with tqdm_progress("identifier latents", unit="clip") as on_progress:
            extract_identify_latents(study_dir, on_progress=on_progress)
    with tqdm_progress("probe", unit="latent") as on_progress:
        probe_study(study_dir, n_permutations or N_PERMUTATIONS, on_progress=on_progress,
                    only=["identify"] if identify else None)
    return study_summary(study_dir)


def run(args: argparse.Namespace) -> int:
    from core.study.report_html import summary_json
    from core.study.report_text import summary_text

    summary = probe_and_report(args.study, args.permutations, args.identify)
    print(summary_json(summary) if args.json else summary_text(summary))
    return 0
