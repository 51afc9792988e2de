"""A study on disk: its config, folders and tables; read by every other part of the study."""


from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from core import runs
from core.configs import known_fields, setting, validate
from core.errors import DeepLanguageError, UsageError
from core.audio.features import FeatureConfig
from core.files import atomic_path
from core.paths import CHECKPOINTS_DIR

STUDIES_DIR = CHECKPOINTS_DIR / "studies"
DEMO_STUDY_DIR = CHECKPOINTS_DIR / "demo-study"
NONE = "none"  # the condition without pretraining
AE = "ae"  # the autoencoder's runs: runs/ae-s<seed>


@dataclass(frozen=True)
class StudyConfig:
    target: str = "es"  # the language learnt after pretraining (full band)
    pretrain: tuple[str, ...] = (NONE, "es", "it", "ja")  # conditions: "none" or a language
    seeds: int = setting(3, low=1)  # runs per condition
    # Validation MSE (normalised log-mel) that counts as learnt. None: threshold_ratio times the
    # loss of repeating the last frame on the target's validation clips (the copy baseline), so
    # one default suits any dataset; 0.85 takes ~150 steps (~10 s) on the demo corpus.
    threshold: float | None = setting(None, above=0)
    threshold_ratio: float = setting(0.85, above=0)
    cutoff_hz: float = setting(500.0, above=0, high=8000, option="--cutoff")  # low-pass cutoff of the pretraining features, Hz
    pretrain_epochs: int = setting(1, low=0)
    max_epochs: int = setting(30, low=1)  # target-language epochs before a run that never crosses stops
    hidden_size: int = setting(128, low=1)
    n_layers: int = setting(1, low=1)
    crop_frames: int = setting(100, low=2)  # frames per training example (1 s at 10 ms)
    crops_per_clip: int = setting(8, low=1)  # random crops of every training clip per epoch
    batch_size: int = setting(32, low=1)
    eval_every: int = setting(10, low=1)  # target-phase steps between validation checks against the threshold
    learning_rate: float = setting(2e-3, above=0)
    split_fractions: tuple[float, float, float] = setting((0.6, 0.1, 0.3), low=0, high=1)  # train/validation/test, by speaker
    split_seed: int = setting(0, low=0)  # splits are shared by every run of the study
    min_seconds: float = setting(1.5, low=0)  # shorter clips (one-word prompts) are left out
    autoencoder: bool = True  # train one conv autoencoder per seed as a reference code
    ae_epochs: int = setting(8, low=1)
    latent_languages: tuple[str, ...] = ()  # languages whose latents are probed; () = all
    n_per_language: int | None = setting(None, low=1)  # latent sample per language; None = the smallest test split

    def __post_init__(self) -> None:
        validate(self)
        if not self.pretrain:
            raise UsageError("--pretrain (StudyConfig.pretrain) must name at least one condition: 'none' or a language.")

    @classmethod
    def from_dict(cls, values: dict) -> "StudyConfig":
        values = known_fields(cls, values)
        for key in ("pretrain", "split_fractions", "latent_languages"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.pretrain))

    def run_names(self) -> list[str]:
        names = [f"{c}-s{s}" for s in range(self.seeds) for c in self.conditions()]
        return names + ([f"{AE}-s{s}" for s in range(self.seeds)] if self.autoencoder else [])

    def key(self) -> str:
        """Hash of what makes runs comparable; conditions and seeds may grow within one study."""
        fixed = {k: v for k, v in asdict(self).items() if k not in ("pretrain", "seeds")}
        return hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]


def feature_config(config: StudyConfig, base: FeatureConfig = FeatureConfig()) -> FeatureConfig:
    return replace(base, lowpass_hz=config.cutoff_hz)


def default_study_dir(data_dir: str | Path, config: StudyConfig) -> Path:
    """Same dataset and settings -> same folder, so rerunning a command resumes its study."""
    return STUDIES_DIR / f"{Path(data_dir).resolve().name}-{config.target}-{config.key()}"


def write_tsv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def load_study(study_dir: str | Path) -> dict:
    """``study.json`` with ``config`` (a StudyConfig) and ``features`` (a FeatureConfig) rebuilt."""
    study_dir = Path(study_dir)
    stored = runs.read_json(study_dir / "study.json")
    if not stored:
        raise DeepLanguageError(f"{study_dir} is not a study (no study.json). Run `python -m core study` first.")
    return {**stored, "dir": study_dir, "config": StudyConfig.from_dict(stored["study"]),
            "features": FeatureConfig.from_dict(stored["features"])}



def study_runs(study_dir: str | Path) -> list[Path]:
    root = Path(study_dir) / "runs"
    return sorted(p for p in root.iterdir() if (p / "config.json").exists()) if root.exists() else []



def list_studies(extra: tuple[Path, ...] = (DEMO_STUDY_DIR,)) -> list[Path]:
    """Every study folder: under checkpoints/studies (newest first), then the shipped demo study."""
    found = [p for p in STUDIES_DIR.iterdir() if (p / "study.json").exists()] if STUDIES_DIR.exists() else []
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found + [p for p in extra if (p / "study.json").exists()]
