"""What the study pages show, each read in one call: which study to open, its progress, its matrix and
curves (Convergence), its runs and their latents in 2-D (Latent Space).

Pages never parse run folder names: a run is described by its own ``config.json`` (the spec the
study wrote when it planned the run), and the shipped studies' labels are made here, once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from core import runs
from core.errors import DeepLanguageError
from core.files import neutralize_formulas
from core.study import stats
from core.study.latent_files import WHISPER_LABEL, clip_path, identify_label, latent_kinds, load_latents
from core.study.layout import (AE, DEMO_STUDY_DIR, DOSE_STUDY_DIR, MATRIX_STUDY_DIR, NONE, REAL_STUDY_DIR, TASK_TARGET,
                               StudyConfig, list_studies, load_study, portable, resolve)
from core.study.projections import MAX_POINTS, project_sample
from core.study.report import study_curves_long, study_summary
from core.study.results import study_status

LATENT_KINDS_HELP = ("h, c: the LSTM's last hidden and cell state; h_mean: hidden state averaged over time; ae: the "
                     "autoencoder's bottleneck; identify: the shipped identifier's embedding, the pretrained Whisper "
                     "encoder's pooled states (the reference space)")
SHIPPED = {MATRIX_STUDY_DIR: "Real speech: 6 targets x 9 conditions (shipped)",
           REAL_STUDY_DIR: "Real speech: 3 targets, with the in-utero filter (shipped)",
           DOSE_STUDY_DIR: "Real speech: dose-response (shipped)",
           DEMO_STUDY_DIR: "Demo study (shipped, synthetic speech)"}
IDENTIFY = "identify"  # the language identifier's embedding of the same clips, beside the runs
PHASES = {"latents": "Computing the latents of the frozen models", "probes": "Probing the latents"}


def study_label(path: str | Path) -> str:
    """How a study is named in the pages: the shipped ones by what they are, others by folder name."""
    path = Path(path).resolve()
    return next((label for folder, label in SHIPPED.items() if folder.resolve() == path), path.name)


def latent_conditions(conditions) -> list[str]:
    """The conditions a latent can come from, the LSTM's first (what a study is about), then the autoencoder
    and the identifier beside them."""
    return sorted(set(conditions), key=lambda c: (c in (AE, IDENTIFY), c))


def latent_model_name(condition: str, target: str, study_dir: str | Path | None = None) -> str:
    """What made a latent, in words: a pretraining -> target run, the autoencoder or the identifier (the
    Whisper encoder for the shipped one: the reference space)."""
    if condition == IDENTIFY:
        label = identify_label(study_dir) if study_dir is not None else "the language identifier"
        return f"{label}, the reference space" if label == WHISPER_LABEL else label
    return {AE: "the autoencoder (trained on every target)"}.get(condition, f"{condition} -> {target}")


def condition_label(condition: str, study_dir: str | Path | None = None) -> str:
    """A latent condition as the Latent page lists it: the identifier's by the model that made it."""
    if condition == IDENTIFY:
        return f"identify: {identify_label(study_dir) if study_dir is not None else 'the language identifier'}"
    return condition


def study_choices() -> list[Path]:
    """Every study: the user's (newest first), then the shipped ones (real speech, then the demo)."""
    return list_studies(extra=tuple(p for p in SHIPPED if (p / "study.json").exists()))


def default_study(choices: list[Path], remembered: str | None) -> int:
    """Index of the study a page opens on: the one last viewed (``remembered``, as :func:`portable`
    writes it, e.g. from the URL), else the first shipped study there is (the real-speech matrix
    first, the synthetic demo last), else the first."""
    names = [portable(p) for p in choices]
    for wanted in (remembered, *map(portable, SHIPPED)):
        if wanted in names:
            return names.index(wanted)
    return 0


def progress_line(study_dir: str | Path) -> dict:
    """The study's state for a live bar: ``state``, ``fraction`` (0-1 or None) and ``text``.

    After its last run a study computes latents and probes for a while: that phase is named,
    not "n of n runs finished".
    """
    status = study_status(study_dir)
    # The phase is in study_status since the matrix engine; older studies' progress.json may hold it.
    phase = status.get("phase") or runs.read_json(Path(study_dir) / "progress.json", {}).get("phase") or "training"
    state = status.get("state")
    done, total = status.get("done") or 0, status.get("total") or 0
    line = _progress_text(study_dir, status, state, phase, done, total)
    # What changes when there is something new to draw (a run or a phase ended), not every step
    # (probing counts up too, but draws nothing new until its phase ends).
    return {**line, "key": [state, phase, done if phase == "training" else None,
                            (Path(study_dir) / "study.json").exists()]}


def _progress_text(study_dir, status: dict, state, phase: str, done: int, total: int) -> dict:
    if state in ("failed", "stopped"):
        log = Path(study_dir) / "study.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        reason = status.get("error") or " ".join(tail) or "see study.log"
        return {"state": state, "fraction": None, "text": f"The study {state}: {reason}. Start it again to resume."}
    if state == "created":
        return {"state": state, "fraction": 0.0, "text": "Starting: reading and preparing the dataset..."}
    if state != "running":
        return {"state": state, "fraction": None, "text": ""}
    if phase in PHASES:
        counted = f": {done} of {total}" if total else "..."
        return {"state": state, "fraction": done / total if total else None, "text": PHASES[phase] + counted}
    workers = status.get("workers") or {}
    per_worker = f" · {len(workers)} workers: " + ", ".join(map(str, workers.values())) if workers else ""
    return {"state": state, "fraction": done / max(total, 1),
            "text": f"Training: {done} of {total} runs finished · {status.get('steps') or 0} steps{per_worker}"}


def study_stamp(study_dir: str | Path) -> float:
    """Newest modification time of what the pages read: a page's cache is fresh while this is unchanged."""
    study_dir = Path(study_dir)
    # Not progress or status files: they change every few steps while nothing new can be drawn. Every rerun of a
    # study page asks, so each candidate costs one stat (globbing, then exists() and stat(), cost about three).
    runs = [entry.path for entry in _scan(study_dir / "runs") if entry.is_dir()]
    watched = [study_dir / "study.json", *study_dir.glob("*.tsv"),
               *(Path(entry.path) / "latents.npz" for entry in _scan(study_dir) if entry.is_dir()),
               *(Path(run) / name for run in runs for name in ("result.json", "curve.json", "latents.npz"))]
    return max((_mtime(p) for p in watched), default=0.0)


def _scan(folder: Path) -> list:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def convergence_view(study_dir: str | Path) -> dict:
    """Everything the Convergence page draws: the summary (core.study.report), the validation curves
    (long format), the doses, the targets' thresholds and the captions on data and p-values."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    summary = study_summary(study_dir)
    curves = study_curves_long(study_dir, study["config"])
    doses = sorted({c["pretrain_epochs"] for c in summary["cells"] if c["pretrain"] != NONE})
    return {"summary": summary, "curves": curves, "doses": doses,
            "conditions": list(dict.fromkeys([NONE, *curves["pretrain"]])),
            "thresholds": summary["threshold"].get("per_target") or {},
            "data_note": data_note(summary), "p_note": p_note(study["config"])}


def similarity_table(summary: dict) -> pd.DataFrame:
    """Every similarity measure's test in one table: rho [CI], Mantel p, Holm p over the measures, the data."""
    rows = []
    for test in summary.get("similarity_methods", []):
        ci = test.get("ci95") or [None, None]
        rows.append({"measure": test["method"], "rho": test.get("rho"), "CI low": ci[0], "CI high": ci[1],
                     "Mantel p": test.get("p"), "p Holm": test.get("p_holm"), "pairs": test.get("n_pairs"),
                     "permutations": test.get("n_permutations"),
                     "data and speakers": test.get("source") or test.get("reason")})
    return pd.DataFrame(rows)


def data_note(summary: dict) -> str:
    """Where the figures come from: real or synthetic speech, speakers, clips, languages."""
    data = summary["data"]
    speakers = f"{data['n_speakers']} speakers, {data['n_clips']} clips" if "n_speakers" in data else "speakers n/a"
    languages = ", ".join(data.get("languages", [])) or "n/a"
    return (f"Data: {data['speech']} speech from {data['dir'] or 'an unnamed folder'} ({speakers}; languages "
            f"{languages}); training, validation and test speakers are disjoint. Chance level of a speed-up: "
            f"1x (no effect); CIs: percentile bootstrap over seeds.")


def p_note(config: StudyConfig) -> str:
    """The smallest p-values this study's seed count allows, computed from its seeds."""
    seeds = config.seeds
    floor = stats.smallest_p(seeds)
    enough = next(n for n in range(1, 64) if stats.smallest_p(n) < 0.05)
    verdict = (f"so no cell can reach p < 0.05 by it: use {enough}+ seeds" if floor >= 0.05
               else "so it can reach p < 0.05")
    return (f"With {seeds} seeds per cell the exact sign-flip test cannot give p below {floor:.3g}, {verdict}. "
            f"A Mann-Whitney comparison of two conditions (probes) cannot go below "
            f"{stats.min_attainable_p(seeds, seeds):.3g}. The paired t-test, which marks the cells, is parametric and "
            f"can go lower.")


NEAR_CHANCE = 0.6  # a two-class balanced accuracy below this is "near chance" in the probe note's words


def probe_task_note(task: str, target: str, rows: pd.DataFrame) -> str:
    """What the latent page's probe bars of ``task`` are measured against: for target vs rest (the default task),
    why its chance line is 0.5 and why the bars sit near it. ``rows``: that task's probe rows (summary["probes"])."""
    if task != TASK_TARGET or rows.empty:
        return ""
    n_clips, majority = int(rows["n_clips"].iloc[0]), float(rows["majority"].iloc[0])
    return (f"Target vs rest: can a straight line through these states tell {target} from the other languages, on "
            f"speakers the probe never saw ({n_clips} held-out clips)? Balanced accuracy weighs both sides equally, "
            f"so chance is 0.5, though always answering the larger side (\"other\") is right {majority:.0%} of the "
            f"time (majority). "
            + ("Most bars sit near 0.5 because these models learnt to predict the next frame of sound, not to name "
               "a language: little in their states sets one language apart from the rest in a way that holds for "
               "new speakers. " if rows["accuracy"].median() < NEAR_CHANCE else "")
            + "A bar just under 0.5 is chance with few speakers; null_mean (languages shuffled between speakers) is "
              "this data's own chance, and p how often shuffling does as well.")


def new_study_config(targets: list[str], languages: list[str], controls: list[str], prenatal_filter: str,
                     doses: list[int], seeds: int) -> StudyConfig:
    """A matrix study's config from the form: pretraining languages are heard low-pass ("lowpass",
    the 500 Hz Butterworth) or through the in-utero attenuation ("utero"); controls are "none",
    "noise" and "<lang>:full" spellings, taken as they are."""
    if not targets:
        raise DeepLanguageError("choose at least one target language.")
    suffix = ":utero" if prenatal_filter == "utero" else ""
    pretrain = list(dict.fromkeys([*controls, *(f"{lang}{suffix}" for lang in languages)]))
    if not pretrain:
        raise DeepLanguageError("choose at least one pretraining condition (none, a language or a control).")
    return StudyConfig.from_dict({"targets": list(targets), "target": targets[0], "pretrain": pretrain,
                                  "seeds": int(seeds), "pretrain_epochs": sorted({int(d) for d in doses} or {1})})


def latent_runs(study_dir: str | Path) -> pd.DataFrame:
    """Every run of a study with latents: condition, target, seed, pretrain_epochs, folder, kinds.

    Read from each run's own config.json; the identifier's embedding appears as condition "identify".
    """
    study_dir = Path(study_dir)
    config = load_study(study_dir)["config"]
    default_target = getattr(config, "targets", None) or (config.target,)
    rows = []
    for folder in sorted((study_dir / "runs").glob("*/latents.npz")) if (study_dir / "runs").exists() else []:
        spec = runs.read_json(folder.parent / "config.json", {})
        condition = spec.get("pretrain") or spec.get("condition") or spec.get("kind", "?").removeprefix("study-")
        rows.append({"condition": condition, "target": spec.get("target") or default_target[0],
                     "seed": int(spec.get("seed", 0)), "pretrain_epochs": spec.get("pretrain_epochs"),
                     "folder": str(folder.parent)})
    if (study_dir / IDENTIFY / "latents.npz").exists():
        rows.append({"condition": IDENTIFY, "target": default_target[0], "seed": 0, "pretrain_epochs": None,
                     "folder": str(study_dir / IDENTIFY)})
    table = pd.DataFrame(rows, columns=["condition", "target", "seed", "pretrain_epochs", "folder"])
    table["pretrain_epochs"] = table["pretrain_epochs"].astype("Int64")  # whole epochs; none for ae and identify
    table["kinds"] = [latent_kinds(f) for f in table["folder"]]
    return table


def latent_points(study_dir: str | Path, run: dict, kind: str, method: str) -> pd.DataFrame:
    """The run's latents of ``kind`` projected to 2-D, one row per held-out clip: x, y, language,
    speaker, key, path (relative to the dataset), dataset_root, clip (absolute path), study,
    condition, target, seed, pretrain_epochs, kind, method. ``run`` is a row of :func:`latent_runs`.

    At most ``MAX_POINTS`` clips are projected, a random sample (seed 0) of bigger sets: ``attrs`` holds
    ``n_clips`` (all the run's held-out clips) and ``sample_note`` (what was drawn, for the page)."""
    arrays, manifest = load_latents(run["folder"])
    if kind not in arrays:
        raise DeepLanguageError(f"{run['folder']} has no {kind!r} latents; it has {', '.join(arrays)}.")
    rows, xy = project_sample(arrays[kind], method, seed=0, max_points=MAX_POINTS)
    n_clips, manifest = len(manifest), manifest.iloc[rows].reset_index(drop=True)
    root = resolve(load_study(study_dir)["data_dir"]).resolve()
    points = manifest.assign(
        x=xy[:, 0], y=xy[:, 1], dataset_root=str(root), clip=[str(clip_path(study_dir, p)) for p in manifest["path"]],
        study=portable(study_dir),
        condition=run["condition"], target=run["target"], seed=run["seed"],
        pretrain_epochs=run["pretrain_epochs"], kind=kind, method=method)
    points.attrs.update(n_clips=n_clips, sample_note=sample_note(len(points), n_clips))
    return points


def sample_note(n_shown: int, n_clips: int) -> str:
    """How many of the held-out clips a projection shows, and how they were chosen."""
    if n_shown == n_clips:
        return f"all {n_clips} held-out clips of test speakers"
    return (f"{n_shown} of {n_clips} held-out clips of test speakers: a uniform random sample (seed 0), "
            f"at most {MAX_POINTS} projected so t-SNE and UMAP answer in seconds")


def selection_csv(points: pd.DataFrame, rows: list[int]) -> str:
    """The chosen clips as CSV, with where they live and where they sit in the projection."""
    columns = ["study", "condition", "target", "seed", "pretrain_epochs", "kind", "method", "x", "y", "language",
               "speaker", "dataset_root", "path", "clip"]
    return neutralize_formulas(points.iloc[rows][columns]).to_csv(index=False)
