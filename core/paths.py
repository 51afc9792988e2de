"""Where the project keeps things on disk. Every default path is derived here."""

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
DATA_DIR = REPO_ROOT / "data"  # generated corpora and caches, and the embedded cv-sample
DEMO_CORPUS_DIR = DATA_DIR / "demo-corpus"
CACHE_DIR = DATA_DIR / "cache"  # feature caches, one folder per dataset
CV_SAMPLE_DIR = DATA_DIR / "cv-sample"  # real Common Voice speech, 12 languages, CC0: tracked, not generated


def default_cache_dir(data_dir: Path) -> Path:
    """A cache folder per dataset, named after it, so two datasets never mix."""
    data_dir = Path(data_dir).resolve()
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
    return CACHE_DIR / f"{data_dir.name}-{digest}"


def portable(path: str | Path) -> str:
    """``path`` as stored in checkpoints and study files: relative to the repository when inside it
    (``data/cv-sample``), so a shipped file works from any clone; absolute otherwise. "" stays ""."""
    if not str(path):
        return ""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def resolve(path: str | Path) -> Path:
    """The absolute path of a stored (:func:`portable`) path: a relative one is under the repository."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path
