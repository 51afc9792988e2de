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
