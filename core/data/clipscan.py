"""What a clip's bytes say without decoding it: its size, the hash of its head, an MP3's duration, and a key
that is equal for the same audio under two names (the reader keeps one of them, so a clip can't land in two
splits)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd

from core.audio.headers import mp3_seconds

HEAD_BYTES = 4096  # compared before a whole file is hashed (two different clips differ in their first frames);
# it also holds an MP3's first frames, which give its duration
BATCH = 256  # clips open at once: their heads are asked of the disk together, then read
COLUMNS = ["size", "mtime_ns", "head", "seconds"]
# The last scan of this process, or the one kept with a dataset's manifest (core.data.manifests): a clip whose
# size and modification time are unchanged is not opened again (checking the leak of splits at training
# re-scanned every clip: 3.3 s at 57k clips with the OS's cache warm, 29 s with it cold).
_remembered = pd.DataFrame(columns=COLUMNS)


def scan_clips(paths) -> pd.DataFrame:
    """Each clip's size, the SHA-1 of its first ``HEAD_BYTES`` and, for an MP3, its seconds from those bytes
    (NaN where the head can't tell), indexed by path: one open and one small read per clip, with no decoder
    (about 10 us a clip, where libsndfile's header read took 90). A clip that can't be opened gets size -1.

    One thread, ``BATCH`` clips at a time: all of a batch's heads are asked of the disk at once
    (``posix_fadvise``), so a disk the OS has not cached serves them together, and then they are read. At 57k
    clips that took 1.3 s from a cold cache and 0.6 s from a warm one, where 8 threads took 2.9 and 1.1 s
    (their Python work fought for the GIL on 2 cores; ``bench/read_scale.py``).
    """
    paths = list(dict.fromkeys(str(p) for p in paths))
    known = _unchanged(remembered(paths))
    todo = [p for p in paths if p not in known.index] if len(known) else paths
    rows = [row for at in range(0, len(todo), BATCH) for row in _scan_part(todo[at:at + BATCH])]
    fresh = pd.DataFrame(rows, columns=["path", *COLUMNS]).astype({"size": "int64", "mtime_ns": "int64"})
    fresh = fresh.set_index("path")
    scan = (pd.concat([known, fresh]) if len(known) else fresh).reindex(paths)
    remember(scan)
    return scan


def remember(scan: pd.DataFrame) -> None:
    """Keep ``scan`` (rows of :func:`scan_clips`, indexed by path) for this process's next scans."""
    global _remembered
    _remembered = scan[COLUMNS] if set(COLUMNS) <= set(scan.columns) else _remembered


def remembered(paths) -> pd.DataFrame:
    """The kept scan rows of those of ``paths`` that were opened (no row for the others). Selected, not
    reindexed: a missing row would turn the nanosecond times into floats, which can't hold them exactly."""
    if not len(_remembered):
        return _remembered
    rows = _remembered.loc[_remembered.index.intersection(pd.Index([str(p) for p in paths], dtype=object))]
    return rows[rows["mtime_ns"] >= 0] if len(rows) else rows


def _unchanged(known: pd.DataFrame) -> pd.DataFrame:
    """The rows whose file still has the size and modification time it had when it was scanned."""
    keep = []
    for path, size, mtime in zip(known.index, known["size"], known["mtime_ns"]):
        try:
            stat = os.stat(path)
        except OSError:
            keep.append(False)
            continue
        keep.append(stat.st_size == size and stat.st_mtime_ns == mtime)
    return known[np.array(keep, dtype=bool)]


def _scan_part(paths: list[str]) -> list[tuple]:
    """Scan rows of ``paths``, a batch opened together (see :func:`scan_clips`)."""
    handles = [_open(path) for path in paths]
    try:
        for handle in handles:
            _prefetch(handle)
        return [_row(path, handle) for path, handle in zip(paths, handles)]
    finally:
        for handle in handles:
            if handle is not None:
                os.close(handle)


def _prefetch(handle: int | None) -> None:
    """Ask the disk for the head of ``handle`` without waiting for it (Linux; elsewhere each read waits)."""
    try:
        if handle is not None and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle, 0, HEAD_BYTES, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass  # a pipe or a special file: its read below says what it is


def _row(path: str, handle: int | None) -> tuple:
    if handle is None:
        return path, -1, -1, "", np.nan
    try:
        head, stat = os.read(handle, HEAD_BYTES), os.fstat(handle)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        head, size, mtime = b"", -1, -1
    seconds = mp3_seconds(head, size) if path.lower().endswith(".mp3") else None
    return path, size, mtime, hashlib.sha1(head).hexdigest(), np.nan if seconds is None else seconds


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError:
        return None


def content_keys(paths, scan: pd.DataFrame | None = None) -> list[str]:
    """One key per clip that is equal for the same audio: its resolved path, or for files of the same size and
    the same first ``HEAD_BYTES``, the hash of their bytes. Sizes collide often in a big dataset (57k clips of
    5-100 kB), so only files whose size and head both collide are read whole: a dataset is not read whole.
    ``scan`` is :func:`scan_clips` of these paths when the caller has it."""
    paths = [str(p) for p in paths]
    scan = scan_clips(paths) if scan is None else scan
    keyed = dict(zip(scan.index, scan.index))
    known = scan[scan["size"] >= 0]
    same = known[known.duplicated(["size", "head"], keep=False)]
    for path in same.index:
        keyed[path] = "sha1:" + _sha1(path)
    return [keyed[p] for p in paths]


def _sha1(path: str, n_bytes: int = -1) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha1(handle.read(n_bytes)).hexdigest()
