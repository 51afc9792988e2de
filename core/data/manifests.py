"""A dataset's manifest kept on disk, so reading a big dataset a second time (another process, another page)
costs milliseconds instead of one header read per clip.

The cache is named after what the manifest is read from: the size and modification time of every TSV and
the modification time of every folder (adding, removing or renaming a clip changes its folder's). A clip
rewritten in place under the same name is not noticed: :func:`clear` (or deleting
``<cache>/manifests``) forgets the cache. A listing changed in the last ``RACY_SECONDS`` is never cached:
a change made in the same clock tick as the read would not change the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from core.data import clipscan
from core.files import atomic_path
from core.paths import default_cache_dir

RACY_SECONDS = 2.0
FOLDER = "manifests"


def cache_folder(root: Path) -> Path:
    return default_cache_dir(root) / FOLDER


def signature(root: Path) -> tuple[str, float]:
    """A key for the dataset's listing (sizes and mtimes of its TSVs, mtimes of its folders) and the newest
    mtime seen (seconds since the epoch)."""
    entries, newest, seen = [], 0.0, set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        seen.add(os.path.realpath(folder))
        # A linked folder is followed once: a link loop must not walk for ever.
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in seen)
        stat = os.stat(folder)
        entries.append((os.path.relpath(folder, root), stat.st_mtime_ns))
        newest = max(newest, stat.st_mtime)
        for name in sorted(f for f in files if f.endswith(".tsv")):
            stat = os.stat(os.path.join(folder, name))
            entries.append((os.path.relpath(os.path.join(folder, name), root), stat.st_size, stat.st_mtime_ns))
            newest = max(newest, stat.st_mtime)
    digest = hashlib.sha1(json.dumps([str(Path(root).resolve()), entries]).encode()).hexdigest()[:20]
    return digest, newest


def load(root: Path, key: str) -> tuple[pd.DataFrame, bool] | None:
    """The cached manifest for ``key`` and whether it holds durations, or None (none, or unreadable)."""
    path = cache_folder(root) / f"{key}.parquet"
    try:
        manifest = pd.read_parquet(path)
    except (OSError, ValueError, ImportError):  # absent or damaged: read again and replace
        return None
    try:  # the clips' scan beside it: this process's next scan of them (the leak check) opens none again
        clipscan.remember(pd.read_parquet(path.with_suffix(".scan.parquet")).set_index("path"))
    except (OSError, ValueError, ImportError, KeyError):
        pass  # absent or damaged: the next scan reads the clips
    return manifest, bool(manifest.attrs.pop("durations_read", False))


def save(root: Path, key: str, newest: float, manifest: pd.DataFrame, durations_read: bool) -> None:
    """Keep ``manifest`` for ``key`` (replacing older keys' files) unless the listing is too fresh to trust."""
    if time.time() - newest < RACY_SECONDS:
        return
    folder = cache_folder(root)
    stored = manifest.copy()
    stored.attrs = {**manifest.attrs, "durations_read": durations_read}
    try:
        with atomic_path(folder / f"{key}.parquet") as tmp:
            stored.to_parquet(tmp, index=False)
        scan = clipscan.remembered(manifest["path"])
        if len(scan):
            with atomic_path(folder / f"{key}.scan.parquet") as tmp:
                scan.rename_axis("path").reset_index().to_parquet(tmp, index=False)
        for old in folder.glob("*.parquet"):
            if old.name.split(".")[0] != key:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache: still correct, only slower next time


def clear(root: Path) -> None:
    """Forget the cached manifest of the dataset at ``root``."""
    shutil.rmtree(cache_folder(Path(root)), ignore_errors=True)
