"""`python -m core enroll`: teach a trained identifier a new language from a few clips, without retraining."""

import argparse
from pathlib import Path

NAME = "enroll"
HELP = "add a language to a trained identifier from a few clips (about a minute of speech), without retraining"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.identify.enroll import MIN_SPEECH_SECONDS

    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a model with a Gaussian backend, e.g. checkpoints/identify-default/best.pt")
    parser.add_argument("--language", required=True, help="code of the language to add, e.g. eu or zh-CN")
    parser.add_argument("--clips", nargs="+", required=True, metavar="FILE_OR_DIR",
                        help=f"audio files or folders of them (at least {MIN_SPEECH_SECONDS:.0f} s of speech in all; "
                             "clips without speech are skipped and counted)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the new checkpoint")
    parser.add_argument("--replace", action="store_true", help="re-teach a language the model already knows")


def run(args: argparse.Namespace) -> int:
    from core.identify.enroll import clip_files, enroll
    from core.progress import tqdm_progress

    files = clip_files(args.clips)
    with tqdm_progress(f"enroll {args.language}", unit="clip") as on_progress:
        report = enroll(args.checkpoint, args.language, files, args.out, replace=args.replace,
                        on_progress=on_progress)
    for skipped in report["skipped"]:
        print(f"skipped {skipped['clip']}: {skipped['reason']}")
    print(f"learned {report['language']} from {report['n_used']} clip(s), {report['seconds_of_speech']:.0f} s of "
          f"speech ({report['n_skipped']} skipped) -> {report['out']} (knows {', '.join(report['languages'])})")
    return 0
