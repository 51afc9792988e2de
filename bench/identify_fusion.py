"""Speaker-grouped CV of identifier systems and their fusion, on the same folds as bench/identify_variants.py.

    nice -n 19 .venv/bin/python bench/identify_fusion.py --systems gmm:lr,prosody,phono \\
        --augment speed0.9,speed1.1,noise [--use-folds 0,1] [--inner 3]

Systems (each one flag in ``--systems``):

* ``gmm:<variant>``: the GMM supervectors (per-fold UBMs cached by identify_variants.py) with a backend
  variant of that script (``lr``, ``gauss``, ``lda-gauss-p400``, ...);
* ``prosody``: rhythm and prosody vectors from the log-mel (core.identify.prosody) -> logistic regression;
* ``phono``: GMM-token unigrams and bigrams against the fold's UBM (core.identify.phonotactics);
* ``neural``: out-of-fold probabilities of a neural embedding trained by bench/identify_neural.py (read, not trained).

Every system is trained on the fold's training speakers (plus the augmented copies of their clips). The
fusion (core.identify.fusion.LinearFusion: a weight per system and an offset per language) is fitted on
out-of-fold scores of an inner speaker-grouped split of the *training* speakers (``--inner`` folds), never on
the fold's test speakers, and then applied to the test speakers' scores of the systems trained on all the
training speakers. Prints each system alone and the fusion, 12 and 6 languages, 95 % bootstrap CIs over
speakers, and the fusion's paired difference from the first system.
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import identify_variants as iv  # noqa: E402
from core.audio.features import FeatureConfig  # noqa: E402
from core.identify import backends, phonotactics, prosody  # noqa: E402
from core.identify.evaluate import bootstrap_ci  # noqa: E402
from core.identify.fusion import LinearFusion  # noqa: E402
from core.identify.supervector import GMMSupervector, GMMSupervectorConfig  # noqa: E402

PROSODY_C = 0.1  # inverse L2 of the prosody regression (38 standardised features)


class Prosody:
    """Standardise -> logistic regression on the prosody vectors."""

    def fit(self, x, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=PROSODY_C, max_iter=3000,
                                                                         class_weight="balanced")).fit(x, y)
        return self

    def predict_proba(self, x):
        return self.model_.predict_proba(x)


def prosody_vectors(manifest, features, kinds) -> dict[str, np.ndarray]:
    """``{"clean" | kind: (n_clips, N_FEATURES)}``, cached."""
    out = {}
    for kind in ["clean", *kinds]:
        path = iv.WORK / f"prosody-{kind}.npy"
        if not path.exists():
            mels = iv.clean_mels(manifest, features) if kind == "clean" else iv.augmented_mels(manifest, features, kind)
            np.save(path, np.stack([prosody.prosody_vector(m, features.frames_per_second) for m in mels]))
        out[kind] = np.load(path)
    return out


def fold_tokens(fold: int, k: int, kind: str, frames: list[np.ndarray], stats: dict):
    """Token n-gram counts of every clip against fold ``fold``'s UBM, cached as token sequences."""
    path = iv.WORK / f"tokens-k{k}-fold{fold}-{kind}.npz"
    if not path.exists():
        ubm = {n: torch.from_numpy(stats[f"ubm_{n}"]) for n in ("weights", "means", "variances")}
        np.savez(path, **{str(i): phonotactics.tokens(torch.from_numpy(f), **ubm).astype(np.int16)
                          for i, f in enumerate(frames)})
    data = np.load(path)
    return phonotactics.token_counts([data[str(i)] for i in range(len(frames))], k)


def system_data(name: str, fold: int, ctx: dict) -> tuple[object, list, object]:
    """(clean features, [augmented features per kind], factory) of system ``name`` for outer fold ``fold``."""
    kinds = ctx["kinds"]
    if name.startswith("gmm:"):
        variant = name[4:]
        sv = backends.supervectors(ctx["stats"][fold], ctx["relevance"])
        aug = [backends.supervectors(ctx["augmented"][kind][fold], ctx["relevance"]) for kind in kinds]
        return sv, aug, lambda: _Variant(variant)
    if name == "prosody":
        vectors = ctx["prosody"]
        return vectors["clean"], [vectors[kind] for kind in kinds], Prosody
    if name == "phono":
        k = ctx["components"]
        clean = fold_tokens(fold, k, "clean", ctx["frames"], ctx["stats"][fold])
        aug = [fold_tokens(fold, k, kind, ctx["aug_frames"][kind], ctx["stats"][fold]) for kind in kinds]
        return clean, aug, phonotactics.PhonotacticBackend
    raise SystemExit(f"unknown system {name!r}")


class _Variant:
    def __init__(self, variant):
        self.variant = variant

    def fit(self, x, y, n_clean=None):
        self.model_ = iv.fit_variant(self.variant, x, y, n_clean)
        return self

    def predict_proba(self, x):
        return self.model_.predict_proba(x)


def _stack(parts):
    from scipy.sparse import issparse, vstack

    return vstack(parts).tocsr() if issparse(parts[0]) else np.concatenate(parts)


def scores(clean, aug, factory, train, test, y, n_labels) -> np.ndarray:
    """Log-probabilities ``(len(test), n_labels)`` of a system fitted on ``train`` clips and their copies."""
    x = _stack([clean[train]] + [a[train] for a in aug])
    fitted = factory()
    fitted = fitted.fit(x, np.tile(y[train], 1 + len(aug)), *([len(train)] if isinstance(fitted, _Variant) else []))
    p = np.full((len(test), n_labels), 1e-6)
    p[:, fitted.classes_ if hasattr(fitted, "classes_") else np.unique(y[train])] = fitted.predict_proba(clean[test])
    return np.log(np.clip(p / p.sum(1, keepdims=True), 1e-12, None))


def confidence(log_p: np.ndarray, y: np.ndarray) -> str:
    """How right the most confident answers are: the top third's precision, and the largest share of clips
    answered at >= 80 % precision (descriptive, on these out-of-fold scores, after a temperature fitted on them)."""
    from core.identify.calibration import fit_temperature, temper

    p = temper(np.exp(log_p), fit_temperature(np.exp(log_p), y))
    order = np.argsort(-p.max(1))
    right = (p.argmax(1) == y)[order]
    precision = np.cumsum(right) / np.arange(1, len(y) + 1)
    reach = np.flatnonzero(precision >= 0.8)
    return (f"top third right {precision[len(y) // 3 - 1]:.1%}; 80 % precision up to "
            f"{(reach.max() + 1) / len(y) if len(reach) else 0:.1%} of clips")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="gmm:lr,prosody")
    parser.add_argument("--augment", default="speed0.9,speed1.1,noise")
    parser.add_argument("--use-folds", default="")
    parser.add_argument("--inner", type=int, default=3, help="speaker-grouped inner folds that give the fusion's "
                                                             "validation scores")
    parser.add_argument("--components", type=int, default=256)
    parser.add_argument("--relevance", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.model_selection import StratifiedGroupKFold

    features = FeatureConfig()
    manifest, labels, y, speakers = iv.cv_sample(features)
    model = GMMSupervector(GMMSupervectorConfig(n_components=args.components))
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(manifest, y, speakers))
    use = [int(f) for f in args.use_folds.split(",") if f] or list(range(len(folds)))
    kinds = [k for k in args.augment.split(",") if k]
    systems = args.systems.split(",")
    frames = iv.load_frames(manifest, features, model)
    stats = {f: iv.fold_stats(f, folds[f][0], frames, args.components) for f in use}
    aug_frames = {kind: iv.augmented_frames(manifest, features, model, kind) for kind in kinds}
    ctx = {"kinds": kinds, "stats": stats, "relevance": args.relevance, "components": args.components,
           "frames": frames, "aug_frames": aug_frames,
           "augmented": {kind: {f: iv.augmented_stats(f, args.components, kind, aug_frames[kind], stats[f])
                                for f in use} for kind in kinds},
           "prosody": prosody_vectors(manifest, features, kinds) if "prosody" in systems else None}
    n = len(labels)
    test_scores = {s: np.zeros((len(y), n)) for s in systems}
    fused = np.zeros((len(y), n))
    weights = []
    for f in use:
        started = time.perf_counter()
        train, test = folds[f]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = list(StratifiedGroupKFold(args.inner, shuffle=True, random_state=0).split(train, y[train],
                                                                                              speakers[train]))
        inner_scores = np.zeros((len(systems), len(train), n))
        for i, name in enumerate(systems):
            if name == "neural":  # trained by bench/identify_neural.py with its own inner split
                saved = np.load(iv.WORK / f"neural-fold{f}.npz")
                inner_scores[i], test_scores[name][test] = saved["inner"], saved["test"]
                continue
            clean, aug, factory = system_data(name, f, ctx)
            for tr, held in inner:
                inner_scores[i, held] = scores(clean, aug, factory, train[tr], train[held], y, n)
            test_scores[name][test] = scores(clean, aug, factory, train, test, y, n)
        fusion = LinearFusion().fit(inner_scores, y[train])
        weights.append(fusion.alpha_)
        fused[test] = fusion.log_proba(np.stack([test_scores[s][test] for s in systems]))
        print(f"fold {f}: fusion weights {np.round(fusion.alpha_, 2).tolist()} [{time.perf_counter() - started:.0f} s]",
              flush=True)
    scored = np.concatenate([folds[f][1] for f in use])
    six = [labels.index(x) for x in iv.SIX]
    mask6 = np.isin(y[scored], six)
    base = None
    for name, log_p in [*test_scores.items(), ("fusion(" + "+".join(systems) + ")", fused)]:
        p = log_p[scored]
        hit12 = p.argmax(1) == y[scored]
        hit6 = np.array(six)[p[mask6][:, six].argmax(1)] == y[scored][mask6]
        ci12, ci6 = bootstrap_ci(hit12, speakers[scored]), bootstrap_ci(hit6, speakers[scored][mask6])
        versus = "" if base is None else (f"; vs {systems[0]}: 12 {iv.paired(hit12, base[0], speakers[scored])}, "
                                          f"6 {iv.paired(hit6, base[1], speakers[scored][mask6])}")
        base = base or (hit12, hit6)
        print(f"{name:>24}: 12 languages {hit12.mean():.1%} ({ci12[0]:.1%}-{ci12[1]:.1%}), "
              f"6 languages {hit6.mean():.1%} ({ci6[0]:.1%}-{ci6[1]:.1%}){versus}; {confidence(p, y[scored])}",
              flush=True)
    print(f"mean fusion weights {np.round(np.mean(weights, 0), 2).tolist()} over folds {use}; chance 8.3 % / 16.7 %")
    tag = "-".join(s.replace(":", "_") for s in systems)
    np.save(iv.WORK / f"oof-fusion-{tag}-{'-'.join(kinds) or 'clean'}.npy", fused[scored])
    return 0


if __name__ == "__main__":
    sys.exit(main())
