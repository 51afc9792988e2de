"""Where the project keeps things on disk. Every default path is derived here."""

import hashlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
DATA_DIR = REPO_ROOT / "data"  # generated, never committed
DEMO_CORPUS_DIR = DATA_DIR / "demo-corpus"
CACHE_DIR = DATA_DIR / "cache"  # feature caches, one folder per dataset


def cv_sample_dir() -> Path:
    """The shared Common Voice sample: $DEEPLANGUAGE_CV_SAMPLE, else ../shared/data/cv-sample."""
    env = os.environ.get("DEEPLANGUAGE_CV_SAMPLE")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "cv-sample"


def default_cache_dir(data_dir: Path) -> Path:
    """A cache folder per dataset, named after it, so two datasets never mix."""
    data_dir = Path(data_dir).resolve()
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
    return CACHE_DIR / f"{data_dir.name}-{digest}"
