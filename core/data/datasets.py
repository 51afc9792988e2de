"""Datasets as one pandas manifest, and splits that never share a speaker.

Two layouts are read into the same manifest, one row per clip, with the columns
``path, language, speaker, duration, sentence, gender, age, cv_split``:

* Common Voice: ``<root>/<locale>/clips/*.mp3`` + ``validated.tsv`` (and ``train/dev/test.tsv``
  when present), for one locale folder or a release folder holding many.
* Folder per language: ``<root>/<lang>/*.wav`` (any audio suffix), or
  ``<root>/<lang>/<speaker>/*.wav`` when speakers are known.

A dataset is untrusted input: a clip path must stay inside its folder (no ``..``, no absolute
path, no symlink out), a language code is one safe name (it becomes folder names), a TSV row with
the wrong number of fields is an error naming its line, and a clip listed twice (the same file, or
the same bytes under two names) is kept once, so it can't land in two splits.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import soundfile as sf

from core.audio.decode import FFMPEG_SUFFIXES, SOUNDFILE_SUFFIXES
from core.data import manifests
from core.data.clipscan import content_keys, scan_clips
from core.errors import DeepLanguageError

AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES
CV_SPLIT_FILES = ("train", "dev", "test")
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # of each language's clips, assigned whole speakers at a time
MIN_SECONDS = 1.5  # Common Voice's single-word prompts ("yes", digits) are shorter than this
COLUMNS = ["path", "language", "speaker", "duration", "sentence", "gender", "age", "cv_split"]
# A language code names folders and run names (es__fr__e4__s0): letters and digits, single "-" or "_"
# between them (zh-CN, sr_Latn), never "/", ".", ":" or "__".
LANGUAGE_NAME = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
MAX_LANGUAGE_CHARS = 35
MAX_FIELD_CHARS = 1 << 24  # a TSV field may be this long (csv's default, 128 kB, refuses a long sentence)


def check_language(code: str, where: str) -> str:
    """``code`` if it is a safe language name, else a DeepLanguageError naming ``where`` it came from."""
    if not (isinstance(code, str) and len(code) <= MAX_LANGUAGE_CHARS and LANGUAGE_NAME.fullmatch(code)):
        raise DeepLanguageError(
            f"{where}: language {str(code)[:60]!r} is not a valid language code: use letters and digits with "
            f"single '-' or '_' between them (es, zh-CN), at most {MAX_LANGUAGE_CHARS} characters.")
    return code


class SpeakerLeakError(DeepLanguageError):
    """A speaker, or the same audio, appears in more than one split: every figure computed on it would be inflated."""


def read_dataset(root: str | Path, *, durations: bool = True) -> pd.DataFrame:
    """Read a Common Voice release/locale or a folder-per-language tree into a manifest.

    Kept on disk (core.data.manifests) under the dataset's cache folder, named after its TSVs and folders:
    a second read, in any process, reads that file and no clip header.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DeepLanguageError(f"dataset folder {root} does not exist. Check the path.")
    if not root.is_dir():
        raise DeepLanguageError(f"{root} is a file; give the dataset's folder instead.")
    key, newest = manifests.signature(root)
    cached = manifests.load(root, key)
    if cached is not None and (cached[1] or not durations):
        return cached[0]
    if cached is not None:  # listed before without durations: only the headers are left to read
        manifest = cached[0]
    else:
        manifest = read_common_voice(root) if _common_voice_locales(root) else read_folders(root, durations=False)
    if durations:
        manifest["duration"] = _durations(manifest["path"], manifest["duration"])
    manifests.save(root, key, newest, manifest, durations)
    return manifest


def _common_voice_locales(root: Path) -> list[Path]:
    if (root / "validated.tsv").exists():
        return [root]
    return sorted(p.parent for p in root.glob("*/validated.tsv"))


def read_common_voice(root: str | Path, tsv: str = "validated.tsv") -> pd.DataFrame:
    """Read one Common Voice locale folder, or a release folder of many, into a manifest.

    Clips listed in the TSV but absent from ``clips/`` are dropped; how many is kept in
    ``manifest.attrs["missing"]``.
    """
    root = Path(root)
    locales = _common_voice_locales(root)
    if not locales:
        raise DeepLanguageError(f"{root} holds no Common Voice locale (no validated.tsv found).")
    columns, missing = {name: [] for name in COLUMNS if name != "duration"}, 0
    for locale_dir in locales:  # plain lists, one frame at the end: a frame per locale cost seconds at 768 locales
        header, rows = _read_tsv(locale_dir / tsv)
        at = {name: i for i, name in enumerate(header)}
        if "path" not in at or "client_id" not in at:
            raise DeepLanguageError(
                f"{locale_dir / tsv} lacks the Common Voice columns 'client_id' and 'path'."
            )
        split_of = {}
        for split in CV_SPLIT_FILES:
            if (locale_dir / f"{split}.tsv").exists():
                split_header, split_rows = _read_tsv(locale_dir / f"{split}.tsv")
                if "path" not in split_header:
                    raise DeepLanguageError(f"{locale_dir / f'{split}.tsv'} lacks the Common Voice column 'path'.")
                split_of.update(dict.fromkeys((row[split_header.index("path")] for row in split_rows), split))
        names = [row[at["path"]] for row in rows]
        paths, listed = _clip_paths(names, locale_dir / "clips", locale_dir / tsv)
        fields = {"language": "locale", "speaker": "client_id", "sentence": "sentence", "gender": "gender", "age": "age"}
        values = {column: [row[at[field]] for row in rows] if field in at else
                  [locale_dir.name if column == "language" else ""] * len(rows) for column, field in fields.items()}
        for code in set(values["language"]):
            check_language(code, str(locale_dir / tsv))
        kept = [i for i, path in enumerate(paths) if listed(path)]
        missing += len(paths) - len(kept)
        for column, listed_values in [("path", paths), *values.items(),
                                      ("cv_split", [split_of.get(name, "") for name in names])]:
            columns[column] += [listed_values[i] for i in kept]
    manifest = _finish(pd.DataFrame(columns, dtype=str).assign(duration=np.nan), root)
    manifest.attrs["missing"] = missing
    return manifest


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A TSV's header and rows as strings, strictly: every row has the header's number of fields, and a quote that is never
    closed (which would swallow the next rows into one field) is an error naming its line."""
    line = 1
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter="\t", strict=True)
            header = next(reader, None)
            if not header:
                raise DeepLanguageError(f"{path} is empty: it has no header line. Re-download the dataset.")
            rows, line = [], reader.line_num + 1
            for row in reader:
                if row and (len(row) != len(header) or any("\n" in field for field in row)):
                    raise DeepLanguageError(
                        f"{path}, line {line}: {len(row)} field(s) where the header has {len(header)} (a quote "
                        f"that is never closed, or a stray tab). Fix that line or re-download the dataset.")
                rows += [row] if row else []
                line = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as error:
        raise DeepLanguageError(f"{path}, line {line}: not a readable TSV ({error}; a quote that is never closed?). "
                                f"Fix that line or re-download the dataset.") from None
    return header, rows


def _clip_paths(names: list[str], clips_dir: Path, tsv: Path) -> tuple[list[str], Callable[[str], bool]]:
    """Each listed clip's resolved path, and a test of whether a path is on disk; a name that is empty,
    absolute, climbs out with "..", or is a symlink leading out of ``clips_dir`` is refused (all such rows
    counted, one shown), before anything reads it.

    ``clips_dir`` is listed once: a plain file name that is no symlink resolves to ``<clips_dir>/<name>``
    without a system call of its own (57k resolves took seconds); only the other names are resolved.
    """
    inside = clips_dir.resolve()
    try:
        with os.scandir(inside) as entries:
            links = {entry.name: entry.is_symlink() for entry in entries}
    except OSError:
        links = {}
    paths, refused, slow = [], [], set()
    for name in names:
        plain = bool(name.strip()) and "/" not in name and name not in (".", "..")
        if plain and links.get(name) is False or plain and name not in links:
            paths.append(f"{inside}{os.sep}{name}")
            continue
        path = (clips_dir / name).resolve()
        bad = not name.strip() or Path(name).is_absolute() or ".." in Path(name).parts
        if bad or not path.is_relative_to(inside):
            refused.append(name)
        paths.append(str(path))
        slow.add(str(path))
    if refused:
        raise DeepLanguageError(
            f"{tsv}: {len(refused)} row(s) name a clip outside {clips_dir} or no clip at all (e.g. "
            f"{refused[0][:80]!r}); clip paths must be file names inside clips/. Fix or remove those rows.")
    prefix = f"{inside}{os.sep}"
    on_disk = {prefix + name for name, link in links.items() if not link}

    def listed(path: str) -> bool:
        return path in on_disk or (path in slow and os.path.exists(path))
    return paths, listed


def read_folders(root: str | Path, *, durations: bool = True) -> pd.DataFrame:
    """Read ``<root>/<lang>/[<speaker>/]*.<audio>`` into a manifest.

    Without speaker folders each clip is its own speaker, so splits can't be guaranteed
    speaker-disjoint; ``manifest.attrs["speakers_known"]`` says which case this is.
    """
    root = Path(root)
    inside = root.resolve()
    rows, speakers_known, outside = [], True, []
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        check_language(lang_dir.name, f"{root} (a language folder's name)")
        for path in sorted(lang_dir.rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                continue
            if not path.resolve().is_relative_to(inside):  # a symlink out of the dataset is never followed
                outside.append(path)
                continue
            nested = path.parent != lang_dir
            speakers_known &= nested
            speaker = path.parent.relative_to(lang_dir).parts[0] if nested else path.stem
            rows.append({"path": str(path.resolve()), "language": lang_dir.name,
                         "speaker": f"{lang_dir.name}/{speaker}"})
    if outside:
        raise DeepLanguageError(
            f"{root}: {len(outside)} clip(s) are symlinks to files outside the dataset (e.g. {outside[0]}); "
            f"copy those files in, or remove the links.")
    manifest = _finish(pd.DataFrame(rows, columns=["path", "language", "speaker"]), root)
    manifest.attrs["speakers_known"] = speakers_known
    if durations:
        manifest["duration"] = _durations(manifest["path"], manifest["duration"])
    return manifest


def _finish(manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    if manifest.empty:
        raise DeepLanguageError(
            f"no audio clips found in {root}. Expected Common Voice (<locale>/clips + validated.tsv) "
            f"or one folder per language holding audio files ({', '.join(sorted(SOUNDFILE_SUFFIXES))}, ...)."
        )
    for column in COLUMNS:
        if column not in manifest:
            manifest[column] = np.nan if column == "duration" else ""
    scan = scan_clips(manifest["path"])
    manifest = manifest[COLUMNS].fillna({"sentence": "", "gender": "", "age": ""})
    manifest["duration"] = scan["seconds"].reindex(manifest["path"]).to_numpy()  # MP3s: known from the scan
    return drop_duplicate_clips(manifest, scan)


def drop_duplicate_clips(manifest: pd.DataFrame, scan: pd.DataFrame | None = None) -> pd.DataFrame:
    """Keep the first row of each clip (same file, or same bytes under another name); how many were dropped
    is in ``attrs["duplicates"]`` (one example in ``attrs["duplicate_example"]``)."""
    duplicated = pd.Series(content_keys(manifest["path"], scan), index=manifest.index).duplicated()
    kept = manifest[~duplicated].reset_index(drop=True)
    kept.attrs.update(manifest.attrs, duplicates=int(duplicated.sum()),
                      duplicate_example=str(manifest.loc[duplicated, "path"].iloc[0]) if duplicated.any() else "")
    return kept


def _durations(paths: pd.Series, known: pd.Series | None = None) -> np.ndarray:
    """Seconds per clip: ``known`` (seconds already read from the clip's head, NaN where not), else from
    libsndfile's header read; NaN where only ffmpeg can tell.

    One clip at a time: four threads took 2.3x as long as one on 2 cores (libsndfile's MP3 probe contends).
    """
    def duration(path: str) -> float:
        try:
            return float(sf.info(path).duration)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            return np.nan

    seconds = np.full(len(paths), np.nan) if known is None else known.to_numpy(dtype=np.float64, copy=True)
    for i in np.flatnonzero(np.isnan(seconds)):
        seconds[i] = duration(paths.iloc[i])
    return seconds


def filter_min_duration(manifest: pd.DataFrame, min_seconds: float = MIN_SECONDS) -> pd.DataFrame:
    """Drop clips shorter than ``min_seconds`` (single-word prompts); unknown durations stay."""
    keep = ~(manifest["duration"] < min_seconds)
    return manifest[keep].reset_index(drop=True)


def assign_splits(
    manifest: pd.DataFrame, fractions: tuple[float, float, float] = SPLIT_FRACTIONS, seed: int = 0
) -> pd.DataFrame:
    """Add a ``split`` column (train/validation/test) that never puts a speaker in two splits.

    Per language, speakers are shuffled with ``seed`` and each goes whole to the split that
    is furthest below its share of that language's clips, so splits stay near ``fractions``
    even when one speaker recorded many clips.
    """
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for language in sorted(manifest["language"].unique()):
        counts = manifest.loc[manifest["language"] == language, "speaker"].value_counts()
        speakers = list(counts.index[rng.permutation(len(counts))])
        total = counts.sum()
        filled = dict.fromkeys(SPLITS, 0)
        # Big speakers first, so the last small ones can even the splits out.
        for speaker in sorted(speakers, key=lambda s: -counts[s]):
            if speaker not in split_of:
                short = {s: fractions[i] * total - filled[s] for i, s in enumerate(SPLITS)}
                split_of[speaker] = max(SPLITS, key=lambda s: (short[s], -SPLITS.index(s)))
            filled[split_of[speaker]] += counts[speaker]
    result = manifest.copy()
    result["split"] = result["speaker"].map(split_of)
    check_leakage(result)
    return result


def check_leakage(manifest: pd.DataFrame, column: str = "split") -> None:
    """Raise :class:`SpeakerLeakError` when any speaker, or the same audio (the same file, or the same bytes
    under two names), appears in more than one split."""
    n_splits = manifest.groupby("speaker")[column].nunique()
    leaked = n_splits[n_splits > 1]
    if len(leaked):
        examples = ", ".join(s[:12] for s in leaked.index[:3])
        raise SpeakerLeakError(
            f"{len(leaked)} speaker(s) appear in more than one split (e.g. {examples}); results would be "
            f"inflated. Build splits with core.data.datasets.assign_splits, which groups by speaker."
        )
    audio = pd.Series(content_keys(manifest["path"]), index=manifest.index)
    n_splits = manifest[column].groupby(audio).nunique()
    leaked = n_splits[n_splits > 1]
    if len(leaked):
        example = manifest.loc[audio == leaked.index[0], "path"].iloc[0]
        raise SpeakerLeakError(
            f"{len(leaked)} clip(s) are the same audio in more than one split (e.g. {example}), under different "
            f"speakers or names; results would be inflated. Remove the duplicates from the dataset."
        )


def balance(manifest: pd.DataFrame, n_per_language: int | None = None, seed: int = 0) -> pd.DataFrame:
    """An equal-sized random sample of each language: ``n_per_language`` or the smallest count."""
    counts = manifest["language"].value_counts()
    n = int(counts.min()) if n_per_language is None else int(n_per_language)
    if n <= 0:
        raise DeepLanguageError("balance needs at least one clip per language.")
    parts = [
        group.sample(n=min(n, len(group)), random_state=seed)
        for _, group in manifest.groupby("language", sort=True)
    ]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def select_languages(manifest: pd.DataFrame, languages: list[str] | None) -> pd.DataFrame:
    """Keep only ``languages`` (all when None); unknown names are a user error."""
    if not languages:
        return manifest
    unknown = sorted(set(languages) - set(manifest["language"]))
    if unknown:
        raise DeepLanguageError(
            f"language(s) {', '.join(unknown)} not in this dataset; it has {', '.join(sorted(manifest['language'].unique()))}."
        )
    return manifest[manifest["language"].isin(languages)].reset_index(drop=True)
