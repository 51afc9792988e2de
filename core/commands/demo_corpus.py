"""`python -m core demo-corpus`: synthesize the embedded multilingual demo corpus with espeak-ng."""

import argparse
from pathlib import Path

from core.commands import comma_list, number
from core.paths import DEMO_CORPUS_DIR

NAME = "demo-corpus"
HELP = "synthesize the demo corpus (espeak-ng speech in Common Voice's layout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEMO_CORPUS_DIR,
                        help=f"output folder (default: {DEMO_CORPUS_DIR})")
    parser.add_argument("--seed", type=number(int, low=0), default=0,
                        help="the same seed gives the same corpus (default: 0)")
    parser.add_argument("--clips", type=number(int, low=1), default=160, help="clips per language (default: 160)")
    parser.add_argument("--languages", type=comma_list(), default=(),
                        help="comma-separated Common Voice codes (default: all demo languages)")
    parser.add_argument("--workers", type=number(int, low=1), default=None,
                        help="processes to build languages in (default: one per CPU core)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if a complete corpus with these settings is there")


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from core.data.demo_corpus import DEMO_LANGUAGES, build_demo_corpus, summarize_demo_corpus

    languages = list(args.languages or DEMO_LANGUAGES)
    bars: list[tqdm] = []  # opened on the first report, so a bad option prints no empty bar

    def on_progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="clip", desc="demo corpus"))
        bars[0].update(done - bars[0].n)

    started = time.perf_counter()
    try:
        out_dir = build_demo_corpus(args.out, seed=args.seed, n_clips=args.clips,
                                    languages=languages, workers=args.workers,
                                    on_progress=on_progress, force=args.force)
    finally:
        for bar in bars:
            bar.close()
    seconds = time.perf_counter() - started
    summary = summarize_demo_corpus(out_dir)
    print(f"{out_dir}: {summary.n_languages} languages, {summary.n_clips} clips, "
          f"{summary.n_voices} voices, {summary.seconds / 60:.1f} minutes of audio, "
          f"in {seconds:.1f} s")
    return 0
