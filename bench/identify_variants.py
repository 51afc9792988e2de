"""Speaker-grouped CV of identifier variants on data/cv-sample: every figure in the model README's table.

    nice -n 10 .venv/bin/python bench/identify_variants.py [--folds 5] [--components 256] [--variants lr,gauss]

The costly part (frames, one UBM per fold, Baum-Welch statistics of every clip) is cached under
data/cache/identify-variants/, so trying another backend re-uses it. For each variant it prints top-1
accuracy on the 12 languages and on the 6 (de en es fr it ja, the 12-way answer renormalised over the 6,
as `identify --languages` does), each with a 95 % bootstrap CI over speakers.
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.audio.features import FeatureConfig  # noqa: E402
from core.data.cache import FeatureCache, prepared_dataset  # noqa: E402
from core.identify import backends, lda  # noqa: E402
from core.identify.evaluate import bootstrap_ci  # noqa: E402
from core.identify.gmm import clip_input  # noqa: E402
from core.identify.supervector import GMMSupervector, GMMSupervectorConfig  # noqa: E402
from core.paths import CACHE_DIR, CV_SAMPLE_DIR, default_cache_dir  # noqa: E402

SIX = ("de", "en", "es", "fr", "it", "ja")
WORK = CACHE_DIR / "identify-variants"


def cv_sample(features: FeatureConfig):
    """The clips every identifier bench scores (data/cv-sample, at least 1.5 s): ``manifest, labels,
    y`` (language codes as integers) ``, speakers``; the 5 folds come from y and speakers."""
    manifest = prepared_dataset(CV_SAMPLE_DIR, None, features)
    manifest = manifest[manifest["duration"] >= 1.5].reset_index(drop=True)
    labels = sorted(manifest["language"].unique())
    y = manifest["language"].map({x: i for i, x in enumerate(labels)}).to_numpy()
    return manifest, labels, y, manifest["speaker"].to_numpy()


def load_frames(manifest, features: FeatureConfig, model: GMMSupervector) -> list[np.ndarray]:
    path = WORK / "frames.npz"
    if path.exists():
        data = np.load(path)
        return [data[str(i)] for i in range(len(manifest))]
    frames = []
    with torch.no_grad():
        for mel in clean_mels(manifest, features):
            f, speech = model.frames(clip_input(torch.from_numpy(mel)))
            frames.append(f[0][speech[0]].numpy())
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{str(i): f for i, f in enumerate(frames)})
    return frames


def augmented_mels(manifest, features: FeatureConfig, kind: str) -> list[np.ndarray]:
    """Raw log-mels ``(n_mels, n_frames)`` of one augmented copy (``kind``, core.identify.augment) of every clip,
    cached as float16 (the neural embedding and the prosody vectors read them too)."""
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.identify.augment import augmented_copies

    path = WORK / f"logmel-{kind}.npz"
    if path.exists():
        data = np.load(path)
        return [data[str(i)].astype(np.float32) for i in range(len(manifest))]
    mels = []
    for i, source in enumerate(manifest["path"]):
        (_, audio), = augmented_copies(load_audio(source), [kind], seed=i)
        mels.append(log_mel(audio, features).astype(np.float16))
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{str(i): m for i, m in enumerate(mels)})
    return [m.astype(np.float32) for m in mels]


def clean_mels(manifest, features: FeatureConfig) -> list[np.ndarray]:
    """Raw log-mels of the clips themselves, from the feature cache (``python -m core prepare``)."""
    cache = FeatureCache(default_cache_dir(CV_SAMPLE_DIR), features)
    return [cache.load(key, normalize=False) for key in manifest["key"]]


def augmented_frames(manifest, features: FeatureConfig, model: GMMSupervector, kind: str) -> list[np.ndarray]:
    """Speech frames of an augmented copy (``kind``, see core.identify.augment) of every clip, cached."""
    path = WORK / f"frames-{kind}.npz"
    if path.exists():
        data = np.load(path)
        return [data[str(i)] for i in range(len(manifest))]
    frames = []
    with torch.no_grad():
        for mel in augmented_mels(manifest, features, kind):
            f, speech = model.frames(clip_input(torch.from_numpy(mel)))
            frames.append(f[0][speech[0]].numpy())
    np.savez(path, **{str(i): f for i, f in enumerate(frames)})
    return frames


def augmented_stats(fold: int, k: int, kind: str, frames: list[np.ndarray], ubm: dict) -> dict:
    """Statistics of the augmented copies against fold ``fold``'s UBM (fitted on clean frames only)."""
    path = WORK / f"stats-k{k}-fold{fold}-{kind}.npz"
    if path.exists():
        data = np.load(path)
        return {name: data[name] for name in data.files}
    ubm_t = {n: torch.from_numpy(ubm[f"ubm_{n}"]) for n in ("weights", "means", "variances")}
    counts, firsts = zip(*(backends.baum_welch(torch.from_numpy(f), **ubm_t) for f in frames))
    stats = {"counts": torch.stack(counts).numpy(), "first": torch.stack(firsts).numpy(),
             **{name: ubm[name] for name in ("ubm_weights", "ubm_means", "ubm_variances")}}
    np.savez(path, **stats)
    return stats


def fold_stats(fold: int, train: np.ndarray, frames: list[np.ndarray], k: int, seed: int = 0):
    """UBM on the fold's training frames; zeroth/first-order statistics ``(n_clips, k)``, ``(n_clips, k, d)``."""
    path = WORK / f"stats-k{k}-fold{fold}.npz"
    if path.exists():
        data = np.load(path)
        return {name: data[name] for name in data.files}
    from sklearn.mixture import GaussianMixture

    pool = np.concatenate([frames[i] for i in train])
    rng = np.random.default_rng(seed)
    sample = pool[rng.choice(len(pool), min(100_000, len(pool)), replace=False)].astype(np.float64)
    ubm = GaussianMixture(k, covariance_type="diag", max_iter=30, reg_covar=1e-3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ubm.fit(sample)
    ubm_t = {"weights": torch.from_numpy(ubm.weights_).float(), "means": torch.from_numpy(ubm.means_).float(),
             "variances": torch.from_numpy(ubm.covariances_).float()}
    counts, firsts = zip(*(backends.baum_welch(torch.from_numpy(f), **ubm_t) for f in frames))
    stats = {"counts": torch.stack(counts).numpy(), "first": torch.stack(firsts).numpy(),
             **{f"ubm_{n}": v.numpy() for n, v in ubm_t.items()}}
    np.savez(path, **stats)
    return stats


_AXES: dict = {}  # principal axes per training set: the LDA variants of a fold share them


def fit_variant(variant: str, x: np.ndarray, y: np.ndarray, n_clean: int | None = None):
    """A backend of ``variant`` (core.identify.backends.VARIANTS, or an LDA name: core.identify.lda.parse_variant)
    fitted on supervectors ``x (n, n_features)`` and targets ``y (n,)``. LDA backends take their principal axes
    from the first ``n_clean`` rows (the clips themselves, not their copies), computed once per training set."""
    backend = lda.parse_variant(variant)
    if backend is not None:
        n_clean = n_clean or len(x)
        key = (x.shape, n_clean, float(x[:, :50].sum()), float(x[-1, -50:].sum()))  # a training set seen before?
        if key not in _AXES or len(_AXES[key][2]) < backend.pca_dim:
            _AXES[key] = lda.principal_axes(x[:n_clean], max(backend.pca_dim, lda.PCA_DIM))
        return backend.fit(x, y, axes=_AXES[key])
    if variant not in backends.VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}: one of {', '.join(backends.VARIANTS)} or lda-<gauss|cosine|plda>...")
    return backends.VARIANTS[variant](x, y)


def fold_vectors(args, fold: int, train: np.ndarray, stats: dict, augmented: dict,
                 kinds: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every clip's vector for fold ``fold`` and its augmented copies': MAP supervectors, or with ``--ivector R``
    i-vectors from a total-variability matrix learned (unlabelled, cached) on the fold's training clips and copies."""
    if not args.ivector:
        return (backends.supervectors(stats[fold], args.relevance),
                [backends.supervectors(augmented[kind][fold], args.relevance) for kind in kinds])
    from core.identify.ivector import TotalVariability, centred_stats

    path = WORK / f"ivec-r{args.ivector}-k{args.components}-fold{fold}-{'-'.join(kinds) or 'clean'}.npz"
    if not path.exists():
        parts = [centred_stats(stats[fold])] + [centred_stats(augmented[kind][fold]) for kind in kinds]
        counts = np.concatenate([n[train] for n, _ in parts])
        first = np.concatenate([f[train] for _, f in parts])
        started = time.perf_counter()
        tv = TotalVariability(args.ivector).fit(counts, first)
        np.savez(path, *[tv.transform(n, f) for n, f in parts])
        print(f"fold {fold}: i-vector extractor ({args.ivector}) in {time.perf_counter() - started:.0f} s", flush=True)
    data = np.load(path)
    vectors = [data[f"arr_{i}"] for i in range(1 + len(kinds))]
    return vectors[0], vectors[1:]


def paired(hit: np.ndarray, base: np.ndarray, speakers: np.ndarray) -> str:
    """Difference of two variants' hits on the same clips, with its 95 % bootstrap CI over speakers."""
    diff = hit.astype(float) - base.astype(float)
    low, high = bootstrap_ci(diff, speakers)
    return f"{diff.mean():+.1%} ({low:+.1%} to {high:+.1%})"


def learning_curve(args, manifest, folds, use, stats, augmented, kinds, y, speakers, labels) -> int:
    """Accuracy against labelled minutes per language: the backend refitted per budget, UBMs as cached per fold."""
    import json

    from core.identify.learning_curve import MINUTES, fit_power_law, minutes_for, TARGET_ACCURACY, budget_rows
    from core.files import write_json

    variant = args.variants.split(",")[0]
    scored = np.concatenate([folds[f][1] for f in use])
    curve = {key: [] for key in ("minutes", "accuracy", "ci_low", "ci_high", "n_speakers_train", "budget",
                                 "accuracy_6", "ci_6")}
    six = [labels.index(x) for x in SIX]
    for budget in MINUTES:
        probs, used = np.zeros((len(y), len(labels))), []
        for f in use:
            train, test = folds[f]
            rows = budget_rows(manifest, train, budget, seed=f)
            sv = backends.supervectors(stats[f], args.relevance)
            x = np.concatenate([sv[rows]] + [backends.supervectors(augmented[k][f], args.relevance)[rows] for k in kinds])
            probs[test] = fit_variant(variant, x, np.tile(y[rows], 1 + len(kinds))).predict_proba(sv[test])
            part = manifest.iloc[rows]
            used.append((part["duration"].sum() / 60 / part["language"].nunique(), part["speaker"].nunique()))
        hit = probs[scored].argmax(1) == y[scored]
        ci = bootstrap_ci(hit, speakers[scored])
        mask6 = np.isin(y[scored], six)
        hit6 = np.array(six)[probs[scored][mask6][:, six].argmax(1)] == y[scored][mask6]
        for key, value in (("minutes", float(np.mean([u[0] for u in used]))), ("accuracy", float(hit.mean())),
                           ("ci_low", ci[0]), ("ci_high", ci[1]), ("budget", budget),
                           ("n_speakers_train", float(np.mean([u[1] for u in used]))),
                           ("accuracy_6", float(hit6.mean())), ("ci_6", bootstrap_ci(hit6, speakers[scored][mask6]))):
            curve[key].append(value)
        print(f"{budget or 'all'} -> {curve['minutes'][-1]:.2f} min/language: {hit.mean():.1%} ({ci[0]:.1%}-{ci[1]:.1%}); "
              f"6 languages {hit6.mean():.1%}", flush=True)
    law = fit_power_law(curve["minutes"], curve["accuracy"])
    curve.update(power_law=law, minutes_for_80=minutes_for(TARGET_ACCURACY, law), chance=1 / len(labels),
                 languages=labels, n_folds=len(folds), folds_scored=use, n_clips=int(len(scored)),
                 n_speakers=int(len(set(speakers[scored]))), data_dir="data/cv-sample", augment=kinds,
                 ubm="fitted per fold on all of the fold's training speech; budgets limit the labelled speech",
                 command=" ".join(["nice -n 10 .venv/bin/python bench/identify_variants.py"] + sys.argv[1:]))
    write_json(args.learning_curve, curve)
    print(json.dumps({k: curve[k] for k in ("power_law", "minutes_for_80")}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--components", type=int, default=256)
    parser.add_argument("--relevance", type=float, default=4.0)
    parser.add_argument("--variants", default="lr")
    parser.add_argument("--use-folds", default="", help="only these folds (comma-separated), whose UBMs are cached")
    parser.add_argument("--learning-curve", type=Path, default=None,
                        help="instead of variants: the learning curve of the first variant (+ --augment), as JSON here")
    parser.add_argument("--ivector", type=int, default=0, help="i-vectors of this rank instead of supervectors")
    parser.add_argument("--compare", default="", help="print each variant's paired difference from this one "
                                                      "(default: the first variant), bootstrap CI over speakers")
    parser.add_argument("--augment", default="", help="comma-separated kinds of core.identify.augment.KINDS whose "
                                                      "copies of the training clips join every fold's training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.model_selection import StratifiedGroupKFold

    features = FeatureConfig()
    manifest, labels, y, speakers = cv_sample(features)
    model = GMMSupervector(GMMSupervectorConfig(n_components=args.components))
    started = time.perf_counter()
    frames = load_frames(manifest, features, model)
    print(f"{len(manifest)} clips, {len(set(speakers))} speakers, {len(labels)} languages; frames in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    folds = list(StratifiedGroupKFold(args.folds, shuffle=True, random_state=0).split(manifest, y, speakers))
    use = [int(f) for f in args.use_folds.split(",") if f] or list(range(len(folds)))
    stats = {f: fold_stats(f, folds[f][0], frames, args.components) for f in use}
    six = [labels.index(x) for x in SIX]
    kinds = [k for k in args.augment.split(",") if k]
    augmented = {kind: {f: augmented_stats(f, args.components, kind, augmented_frames(manifest, features, model, kind),
                                           stats[f]) for f in use} for kind in kinds}
    if kinds:
        print(f"augmented copies: {', '.join(kinds)}", flush=True)
    if args.learning_curve:
        return learning_curve(args, manifest, folds, use, stats, augmented, kinds, y, speakers, labels)
    scored = np.concatenate([folds[f][1] for f in use])
    y_all, speakers_all = y, speakers
    y, speakers = y_all[scored], speakers_all[scored]
    variants = args.variants.split(",")
    base, hits = args.compare or variants[0], {}
    if base not in variants:
        variants.insert(0, base)
    for variant in variants:
        started = time.perf_counter()
        probs = np.zeros((len(y_all), len(labels)))
        for f in use:
            train, test = folds[f]
            sv, aug = fold_vectors(args, f, train, stats, augmented, kinds)
            x_train = np.concatenate([sv[train]] + [a[train] for a in aug])
            y_train = np.tile(y_all[train], 1 + len(kinds))
            probs[test] = fit_variant(variant, x_train, y_train, len(train)).predict_proba(sv[test])
        probs = probs[scored]
        hit12 = probs.argmax(1) == y
        mask6 = np.isin(y, six)
        hit6 = np.array(six)[probs[mask6][:, six].argmax(1)] == y[mask6]
        ci12, ci6 = bootstrap_ci(hit12, speakers), bootstrap_ci(hit6, speakers[mask6])
        hits[variant] = (hit12, hit6)
        versus = "" if variant == base else (f"; vs {base}: 12 {paired(hit12, hits[base][0], speakers)}, "
                                             f"6 {paired(hit6, hits[base][1], speakers[mask6])}")
        print(f"{variant + ('+' + '+'.join(kinds) if kinds else ''):>20}: 12 languages {hit12.mean():.1%} ({ci12[0]:.1%}-{ci12[1]:.1%}), "
              f"6 languages {hit6.mean():.1%} ({ci6[0]:.1%}-{ci6[1]:.1%})  [{time.perf_counter() - started:.0f} s]{versus}",
              flush=True)
        np.save(WORK / f"oof-{variant}{'-' + '-'.join(kinds) if kinds else ''}-k{args.components}-r{args.relevance:g}"
                       f"{f'-ivec{args.ivector}' if args.ivector else ''}.npy",
                probs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
