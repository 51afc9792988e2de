"""`python -m core prepare`: decode a dataset once and cache its log-mels (full band and low-pass)."""

import argparse
from pathlib import Path

from core.commands import number

NAME = "prepare"
HELP = "decode every clip of a dataset and cache its log-mel features (parallel, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="dataset folder: Common Voice (<locale>/clips + validated.tsv) or <lang>/*.wav")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: data/cache/<dataset name>-<hash>)")
    parser.add_argument("--workers", type=number(int, low=1), default=None, help="processes (default: all cores)")
    parser.add_argument("--max-seconds", type=number(float, above=0), default=None,
                        help="refuse clips longer than this, s (default 600); raising it takes in clips "
                             "an earlier prepare refused as too long")
    add_feature_arguments(parser)


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature parameters, shared by every command that computes features."""
    from core.audio.features import HOP_MS, N_MELS, WIN_MS
    from core.audio.filters import LOWPASS_HZ

    group = parser.add_argument_group("features")
    group.add_argument("--n-mels", type=int, default=N_MELS, help="mel bands (default %(default)s)")
    group.add_argument("--win-ms", type=float, default=WIN_MS, help="window, ms (default %(default)s)")
    group.add_argument("--hop-ms", type=float, default=HOP_MS, help="hop, ms (default %(default)s)")
    group.add_argument("--lowpass-hz", type=float, default=LOWPASS_HZ,
                       help="cutoff of the low-pass variant, Hz (default %(default)s)")


def feature_config(args: argparse.Namespace):
    from core.audio.features import FeatureConfig

    return FeatureConfig(n_mels=args.n_mels, win_ms=args.win_ms, hop_ms=args.hop_ms, lowpass_hz=args.lowpass_hz)


def run(args: argparse.Namespace) -> int:
    from core.audio.decode import MAX_SECONDS
    from core.data.cache import prepared_dataset
    from core.progress import tqdm_progress

    with tqdm_progress("prepare", unit="clip") as on_progress:
        index = prepared_dataset(args.data, args.cache, feature_config(args), workers=args.workers,
                                 max_seconds=args.max_seconds or MAX_SECONDS, on_progress=on_progress)
    seconds = index.attrs["seconds"]
    audio_s = index["duration"].sum()
    print(f"prepared {len(index)} clips of {index['language'].nunique()} languages "
          f"({index.attrs['new']} new, {len(index) - index.attrs['new'] + index.attrs['failed']} cached, "
          f"{index.attrs['failed']} failed), {audio_s / 60:.1f} min of audio in {seconds:.1f} s "
          f"-> {index.attrs['cache_dir']}")
    if index.attrs["repaired"]:
        print(f"{index.attrs['repaired']} cached file(s) were damaged (truncated or of the wrong shape) and were "
              f"computed again")
    if index.attrs["skipped_lines"]:
        print(f"{index.attrs['skipped_lines']} line(s) of {index.attrs['cache_dir']}/index.jsonl are not clip "
              f"records and were skipped")
    if index.attrs["failed"]:
        print(f"{index.attrs['failed']} clip(s) could not be decoded (e.g. {index.attrs['failure_example']}); "
              f"every reason is in {index.attrs['cache_dir']}/index.jsonl")
    for line in skipped_lines(index):
        print(line)
    return 0


def skipped_lines(index) -> list[str]:
    """What of the dataset is not used, and why: duplicates, missing files, clips too short to train on."""
    from core.data.datasets import MIN_SECONDS

    attrs, lines = index.attrs, []
    if attrs.get("duplicates"):
        lines.append(f"{attrs['duplicates']} duplicate row(s) skipped: the same clip listed twice, or the same audio "
                     f"under another name (e.g. {attrs['duplicate_example']}); each clip is prepared once")
    if attrs.get("missing"):
        lines.append(f"{attrs['missing']} clip(s) listed in the dataset's TSV are missing on disk and were skipped")
    short = index[index["duration"] < MIN_SECONDS]
    if len(short):
        example = short.iloc[0]
        lines.append(f"{len(short)} clip(s) are shorter than {MIN_SECONDS} s (e.g. {example['path']}, "
                     f"{example['duration']:.2f} s): cached, but training and studies leave them out")
    return lines
