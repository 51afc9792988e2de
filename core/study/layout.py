"""A study on disk: its config, folders and tables; read by every other part of the study."""


from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from core import runs
from core.configs import known_fields, setting, validate
from core.errors import DeepLanguageError, UsageError
from core.audio.features import FeatureConfig
from core.data.datasets import check_language
from core.files import atomic_path
from core.paths import CHECKPOINTS_DIR, portable, resolve  # noqa: F401 (re-exported for the study)

STUDIES_DIR = CHECKPOINTS_DIR / "studies"
DEMO_STUDY_DIR = CHECKPOINTS_DIR / "demo-study"
REAL_STUDY_DIR = CHECKPOINTS_DIR / "real-study"  # 3 targets x 7 conditions (with the in-utero filter)
MATRIX_STUDY_DIR = CHECKPOINTS_DIR / "matrix-study"  # the default study: 6 targets x 9 conditions
DOSE_STUDY_DIR = CHECKPOINTS_DIR / "dose-study"  # 2 targets x 3 conditions x 3 doses
NONE = "none"  # the condition without pretraining
NOISE = "noise"  # low-pass noise shaped like speech's long-term average spectrum
AE = "ae"  # the autoencoder's runs: runs/ae__s<seed>
# The probes' two tasks: the study's target language against the others, and every language apart.
TASK_TARGET = "target-vs-rest"
TASK_ALL = "all-languages"
# A condition is "none", "noise", "<lang>" (low-pass, the Butterworth), "<lang>:full" (full band,
# the control for "is it the low-pass that matters?") or "<lang>:utero" (the in-utero filter).
VARIANTS = ("lowpass", "full", "utero")
SEP = "__"  # between the parts of a run folder's name; language codes may hold "-" (zh-CN)


@dataclass(frozen=True)
class StudyConfig:
    targets: tuple[str, ...] = ("es", "it", "fr", "de", "en", "ja")  # languages learnt after pretraining
    # Pretraining conditions (see VARIANTS above); the default is the study's full matrix.
    pretrain: tuple[str, ...] = (NONE, "es", "it", "fr", "de", "en", "ja", "es:full", NOISE)
    seeds: int = setting(5, low=1)  # runs per (condition, target) cell
    # Dose: pretraining lengths in epochs; 0 is the "none" condition. One pretraining of the
    # longest dose is saved after each shorter one, so a dose-response costs one pretraining.
    pretrain_epochs: tuple[int, ...] = setting((4,), low=0)
    # A pretraining epoch is a fixed number of batches of random crops, the same for every
    # condition, so every language (and the noise) is heard for the same time: 50 x 32 crops.
    pretrain_epoch_steps: int = setting(50, low=1)
    budget_steps: int = setting(400, low=1, option="--budget")  # target-phase steps of every run: the fixed budget of the curves
    loss_budgets: tuple[int, ...] = setting((100, 200, 400), low=1)  # steps at which the loss is reported (loss_at_<N>)
    # The threshold rule, first that applies: an explicit validation MSE (threshold); else the
    # mean validation loss of the target's "none" runs at threshold_step (so "none" needs about
    # threshold_step steps by construction, and every condition is timed against that bar); else,
    # without "none" runs, threshold_ratio x the loss of repeating the last frame (copy baseline).
    threshold: float | None = setting(None, above=0)
    threshold_step: int = setting(200, low=1)
    threshold_ratio: float = setting(0.85, above=0)
    cutoff_hz: float = setting(500.0, above=0, high=8000, option="--cutoff")  # low-pass cutoff of the pretraining features, Hz
    # 64 units reading 0.5 s crops: a quarter of the compute of 128 units on 1 s, which is what
    # lets the default matrix (270 runs) fit in minutes on 2 cores.
    hidden_size: int = setting(64, low=1)
    n_layers: int = setting(1, low=1, high=1)  # the batched trainer implements one layer
    crop_frames: int = setting(50, low=2)  # frames per training example (0.5 s at 10 ms)
    crops_per_clip: int = setting(8, low=1)  # random crops of every target training clip per target epoch
    batch_size: int = setting(32, low=1)
    eval_every: int = setting(20, low=1)  # target-phase steps between validation passes (steps to threshold interpolate)
    learning_rate: float = setting(2e-3, above=0)
    group_size: int = setting(10, low=1)  # runs trained at once in one process (memory grows with it)
    # "grouped": one batched model (core.study.grouped); "sequential": each nn.LSTM in turn, in
    # lockstep. Same results to float rounding; on 2 AMD EPYC cores PyTorch's fused LSTM kernel
    # was the faster (bench/study_default.py measures both).
    group_backend: str = setting("sequential", choices=("grouped", "sequential"), option="--backend")
    split_fractions: tuple[float, float, float] = setting((0.6, 0.1, 0.3), low=0, high=1)  # train/validation/test, by speaker
    split_seed: int = setting(0, low=0)  # splits are shared by every run of the study
    min_seconds: float = setting(1.5, low=0)  # shorter clips (one-word prompts) are left out
    autoencoder: bool = True  # train one conv autoencoder per seed as a reference code
    ae_epochs: int = setting(8, low=1)
    latent_languages: tuple[str, ...] = ()  # languages whose latents are probed; () = the study's own (languages())
    # Latent sample per language; None = the smallest test split, at most plan.MAX_LATENT_PER_LANGUAGE clips.
    n_per_language: int | None = setting(None, low=1)
    keep_models: bool = True  # False: drop each run's weights once its latents are out (a small study)
    # "corpus": one per-band mean and SD from the full-band training clips, kept in the study, so a
    # filter's attenuation survives; "utterance": each clip's own (erases it; for comparison).
    # core/study/normalization.py says why.
    normalization: str = setting("corpus", choices=("corpus", "utterance"))

    def __post_init__(self) -> None:
        validate(self)
        if not self.targets:
            raise UsageError("--targets (StudyConfig.targets) must name at least one language.")
        if not self.pretrain:
            raise UsageError("--pretrain (StudyConfig.pretrain) must name at least one condition: 'none', a "
                             "language, '<lang>:full', '<lang>:utero' or 'noise'.")
        # Languages become folder and run names: one safe-name rule, before anything is written.
        try:
            for target in self.targets:
                check_language(target, "--targets (StudyConfig.targets)")
            for language in (parse_condition(c)[0] for c in self.pretrain):
                if language:
                    check_language(language, "--pretrain (StudyConfig.pretrain)")
            for language in self.latent_languages:
                check_language(language, "StudyConfig.latent_languages")
        except DeepLanguageError as error:
            raise UsageError(str(error)) from None

    @classmethod
    def from_dict(cls, values: dict) -> "StudyConfig":
        values = dict(values)
        if "target" in values and "targets" not in values:  # a study.json from before the matrix
            values["targets"] = [values["target"]]
        values = known_fields(cls, values)
        for key in ("targets", "pretrain", "pretrain_epochs", "loss_budgets", "split_fractions",
                    "latent_languages"):
            if key in values:
                value = values[key]
                values[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        return cls(**values)

    @property
    def target(self) -> str:
        """The first target (one-target studies and their pages)."""
        return self.targets[0]

    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.pretrain))

    def cells(self) -> list[tuple[str, int]]:
        """Every (condition, pretrain_epochs) pair; "none" (or a dose of 0) is ("none", 0), once."""
        doses = sorted(set(self.pretrain_epochs))
        cells = [(NONE, 0)] if NONE in self.pretrain or 0 in doses else []
        return cells + [(c, e) for c in self.conditions() if c != NONE for e in doses if e > 0]

    def run_names(self) -> list[str]:
        names = [run_name(c, t, s, e) for s in range(self.seeds) for t in self.targets for c, e in self.cells()]
        return names + ([ae_run_name(s) for s in range(self.seeds)] if self.autoencoder else [])

    def languages(self) -> list[str]:
        """Every language the study needs: targets and the languages of its conditions."""
        spoken = [parse_condition(c)[0] for c in self.conditions()]
        return list(dict.fromkeys([*self.targets, *(x for x in spoken if x)]))

    def key(self) -> str:
        """Hash of what makes runs comparable; targets, conditions, seeds and doses may grow."""
        fixed = {k: v for k, v in asdict(self).items() if k not in GROWABLE}
        return hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]


# Settings a study may change between invocations: the matrix may grow, and how runs are
# grouped or stored does not change what they compute.
GROWABLE = ("targets", "pretrain", "seeds", "pretrain_epochs", "latent_languages", "keep_models", "group_size",
            "group_backend")


def parse_condition(condition: str) -> tuple[str | None, str]:
    """``"es"`` -> ("es", "lowpass"); ``"es:full"`` -> ("es", "full"); "none"/"noise" -> (None, itself).

    Raises DeepLanguageError naming the spellings for anything else.
    """
    if condition in (NONE, NOISE):
        return None, condition
    language, _, variant = condition.partition(":")
    variant = variant or "lowpass"
    if not language or variant not in VARIANTS or SEP in language or "/" in language:
        raise DeepLanguageError(
            f"unknown pretraining condition {condition!r}: use 'none', 'noise', a language ('es', low-pass), "
            f"'es:full' (full band) or 'es:utero' (in-utero filter).")
    return language, variant


def run_name(pretrain: str, target: str, seed: int, pretrain_epochs: int) -> str:
    """The folder of one next-frame run: ``es+full__fr__e4__s0`` (":" is kept out of file names)."""
    return SEP.join([pretrain.replace(":", "+"), target, f"e{int(pretrain_epochs)}", f"s{int(seed)}"])


def ae_run_name(seed: int) -> str:
    return f"{AE}{SEP}s{int(seed)}"


def parse_run_name(name: str) -> dict:
    """The inverse of :func:`run_name` and :func:`ae_run_name`: kind ("lstm" or "ae"), pretrain,
    target, seed, pretrain_epochs (None where they do not apply)."""
    parts = name.split(SEP)
    try:
        if len(parts) == 2 and parts[0] == AE:
            return {"kind": AE, "pretrain": None, "target": None, "seed": int(parts[1][1:]),
                    "pretrain_epochs": None}
        pretrain, target, epochs, seed = parts
        return {"kind": "lstm", "pretrain": pretrain.replace("+", ":"), "target": target,
                "seed": int(seed.removeprefix("s")), "pretrain_epochs": int(epochs.removeprefix("e"))}
    except ValueError:
        raise DeepLanguageError(f"{name!r} is not a study run's folder name.") from None


def cell_label(pretrain: str, pretrain_epochs: int, config: StudyConfig) -> str:
    """A short label of a (condition, dose) cell for tables: the condition, plus "@e<N>" when the
    dose is not the study's longest (so a one-dose study reads "none", "es", "es:full")."""
    if pretrain == NONE or pretrain_epochs == max(config.pretrain_epochs):
        return pretrain
    return f"{pretrain}@e{pretrain_epochs}"


def pretrain_name(condition: str, seed: int, epochs: int) -> str:
    """The file of one shared pretraining state, under ``<study>/pretrain/``."""
    return SEP.join([condition.replace(":", "+"), f"s{int(seed)}", f"e{int(epochs)}"]) + ".pt"


def feature_config(config: StudyConfig, base: FeatureConfig = FeatureConfig(), variant: str = "lowpass"
                   ) -> FeatureConfig:
    """The features of a study; ``variant="utero"`` names the in-utero filter's cache."""
    return replace(base, lowpass_hz=config.cutoff_hz,
                   lowpass_filter="utero" if variant == "utero" else "butterworth")


def default_study_dir(data_dir: str | Path, config: StudyConfig) -> Path:
    """Same dataset and settings -> same folder, so rerunning a command resumes its study.

    The name goes through the run-name check (one folder name) before anything is written; the dataset's
    folder name may hold anything, so characters a folder name can't have become "_"."""
    dataset = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(data_dir).resolve().name).lstrip(".")[:40] or "data"
    name = f"{dataset}-{'-'.join(config.targets)}"[:90] + f"-{config.key()}"
    return STUDIES_DIR / runs.check_name(name, "study folder")


def write_tsv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def load_study(study_dir: str | Path) -> dict:
    """``study.json`` with ``config`` (a StudyConfig) and ``features`` (a FeatureConfig) rebuilt."""
    study_dir = Path(study_dir)
    stored = runs.read_json(study_dir / "study.json")
    if not stored:
        raise DeepLanguageError(f"{study_dir} is not a study (no study.json). Run `python -m core study` first.")
    return {**stored, "dir": study_dir, "config": stored_config(stored),
            "features": FeatureConfig.from_dict(stored["features"])}


def stored_config(stored: dict) -> StudyConfig:
    """The StudyConfig of a ``study.json``; one written before the normalisation setting existed
    was normalised per utterance."""
    return StudyConfig.from_dict({"normalization": "utterance", **stored["study"]})



def study_runs(study_dir: str | Path) -> list[Path]:
    root = Path(study_dir) / "runs"
    return sorted(p for p in root.iterdir() if (p / "config.json").exists()) if root.exists() else []


def lstm_runs(study_dir: str | Path) -> list[tuple[Path, dict]]:
    """Every next-frame run folder of a study with its parsed name (see :func:`parse_run_name`)."""
    found = [(p, parse_run_name(p.name)) for p in study_runs(study_dir) if SEP in p.name]
    return [(p, spec) for p, spec in found if spec["kind"] == "lstm"]



def list_studies(extra: tuple[Path, ...] = (MATRIX_STUDY_DIR, REAL_STUDY_DIR, DOSE_STUDY_DIR, DEMO_STUDY_DIR)
                 ) -> list[Path]:
    """Every study folder: under checkpoints/studies (newest first), then the shipped studies."""
    found = [p for p in STUDIES_DIR.iterdir() if (p / "study.json").exists()] if STUDIES_DIR.exists() else []
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found + [p for p in extra if (p / "study.json").exists()]


def no_probes_reason(study_dir: str | Path) -> str | None:
    """Why a study has no probes and how to get them, when its latent sample holds fewer than two
    languages a probe can score (two speakers or more); None when it can be probed."""
    path = Path(study_dir) / "latent_manifest.tsv"
    if not path.exists():
        return None
    manifest = pd.read_csv(path, sep="\t", usecols=["language", "speaker"])
    speakers = manifest.groupby("language")["speaker"].nunique()
    languages = sorted(speakers.index[speakers >= 2])
    if len(languages) >= 2:
        return None
    return (f"no probes for this study: its latent sample holds {len(languages)} language with two speakers or more "
            f"({', '.join(languages) or 'none'}) and a probe needs two; start a study with "
            f"--latent-languages LANG,LANG (two or more of the dataset's languages) to get them.")
