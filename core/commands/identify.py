"""`python -m core identify`: which language is spoken in each file."""

import argparse
import json
import sys
from pathlib import Path

from core.commands import comma_list

NAME = "identify"
HELP = "identify the spoken language of audio files (one line, or one JSON object, per file)"
EPILOG = """status "ok" vs "uncertain": probabilities are temperature-calibrated, and an answer is "ok" only when the top
language's probability and its lead over the runner-up pass thresholds stored in the checkpoint, chosen on
validation speakers (out-of-fold, never test speakers): the rule that answers at least a third of clips with the
highest share of right answers, aiming at 80 %. What "ok" actually promises is measured, not assumed: for the
shipped 12-language model an "ok" answer was right 52 % of the time on validation speakers (65 % on its test
speakers), answering about a third of clips; 80 % is out of its reach (see checkpoints/identify-gmm/README.md).
`python -m core evaluate` re-measures any model. The figures are for answers over all the model's languages;
--languages renormalises over fewer, which makes answers bolder.
Exit status: 0 all files read, 1 some file could not be read (its line has status "error"), 2 usage error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg, opus, m4a, webm)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model (default: checkpoints/identify-default/best.pt)")
    parser.add_argument("--languages", type=comma_list(), default=(),
                        help="comma-separated languages to choose among (default: all)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: path, status, language, probabilities, windows, error")


def run(args: argparse.Namespace) -> int:
    from core.errors import DeepLanguageError
    from core.identify.predict import DEFAULT_CHECKPOINT, check_languages, format_result, identify_files, load_identifier

    bundle = load_identifier(args.checkpoint or DEFAULT_CHECKPOINT)
    languages = list(args.languages) or None
    try:
        check_languages(languages, bundle.labels)
    except DeepLanguageError as error:
        print(f"python -m core identify: error: --languages: {error}", file=sys.stderr)
        return 2  # a usage error, as argparse reports its own
    failed = False
    for result in identify_files(args.files, bundle, languages):
        failed |= result["status"] == "error"
        print(json.dumps(result) if args.json else format_result(result), flush=True)
    return 1 if failed else 0
