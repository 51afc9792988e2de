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
from core.identify import backends  # noqa: E402
from core.identify.evaluate import bootstrap_ci  # noqa: E402
from core.identify.gmm import clip_input  # noqa: E402
from core.identify.supervector import GMMSupervector, GMMSupervectorConfig  # noqa: E402
from core.paths import CACHE_DIR, CV_SAMPLE_DIR, default_cache_dir  # noqa: E402

SIX = ("de", "en", "es", "fr", "it", "ja")
WORK = CACHE_DIR / "identify-variants"


def load_frames(manifest, features: FeatureConfig, model: GMMSupervector) -> list[np.ndarray]:
    path = WORK / "frames.npz"
    if path.exists():
        data = np.load(path)
        return [data[str(i)] for i in range(len(manifest))]
    cache = FeatureCache(default_cache_dir(CV_SAMPLE_DIR), features)
    frames = []
    with torch.no_grad():
        for key in manifest["key"]:
            f, speech = model.frames(clip_input(torch.from_numpy(cache.load(key, normalize=False))))
            frames.append(f[0][speech[0]].numpy())
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{str(i): f for i, f in enumerate(frames)})
    return frames


def augmented_frames(manifest, features: FeatureConfig, model: GMMSupervector, kind: str) -> list[np.ndarray]:
    """Speech frames of an augmented copy (``kind``, see core.identify.augment) of every clip, cached."""
    from core.audio.decode import load_audio
    from core.audio.features import log_mel
    from core.identify.augment import augmented_copies

    path = WORK / f"frames-{kind}.npz"
    if path.exists():
        data = np.load(path)
        return [data[str(i)] for i in range(len(manifest))]
    frames = []
    with torch.no_grad():
        for i, source in enumerate(manifest["path"]):
            (_, audio), = augmented_copies(load_audio(source), [kind], seed=i)
            f, speech = model.frames(clip_input(torch.from_numpy(log_mel(audio, features))))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--components", type=int, default=256)
    parser.add_argument("--relevance", type=float, default=4.0)
    parser.add_argument("--variants", default="lr")
    parser.add_argument("--augment", default="", help="comma-separated kinds of core.identify.augment.KINDS whose "
                                                      "copies of the training clips join every fold's training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.model_selection import StratifiedGroupKFold

    features = FeatureConfig()
    manifest = prepared_dataset(CV_SAMPLE_DIR, None, features)
    manifest = manifest[manifest["duration"] >= 1.5].reset_index(drop=True)
    labels = sorted(manifest["language"].unique())
    y = manifest["language"].map({x: i for i, x in enumerate(labels)}).to_numpy()
    speakers = manifest["speaker"].to_numpy()
    model = GMMSupervector(GMMSupervectorConfig(n_components=args.components))
    started = time.perf_counter()
    frames = load_frames(manifest, features, model)
    print(f"{len(manifest)} clips, {len(set(speakers))} speakers, {len(labels)} languages; frames in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    folds = list(StratifiedGroupKFold(args.folds, shuffle=True, random_state=0).split(manifest, y, speakers))
    stats = [fold_stats(f, train, frames, args.components) for f, (train, _) in enumerate(folds)]
    six = [labels.index(x) for x in SIX]
    kinds = [k for k in args.augment.split(",") if k]
    augmented = {kind: [augmented_stats(f, args.components, kind, augmented_frames(manifest, features, model, kind),
                                        stats[f]) for f in range(len(folds))] for kind in kinds}
    if kinds:
        print(f"augmented copies: {', '.join(kinds)}", flush=True)
    for variant in args.variants.split(","):
        started = time.perf_counter()
        probs = np.zeros((len(y), len(labels)))
        for f, (train, test) in enumerate(folds):
            sv = backends.supervectors(stats[f], args.relevance)
            x_train = np.concatenate([sv[train]] + [backends.supervectors(augmented[kind][f], args.relevance)[train]
                                                    for kind in kinds])
            y_train = np.tile(y[train], 1 + len(kinds))
            probs[test] = backends.VARIANTS[variant](x_train, y_train).predict_proba(sv[test])
        hit12 = probs.argmax(1) == y
        mask6 = np.isin(y, six)
        hit6 = np.array(six)[probs[mask6][:, six].argmax(1)] == y[mask6]
        ci12, ci6 = bootstrap_ci(hit12, speakers), bootstrap_ci(hit6, speakers[mask6])
        print(f"{variant + ('+' + '+'.join(kinds) if kinds else ''):>20}: 12 languages {hit12.mean():.1%} ({ci12[0]:.1%}-{ci12[1]:.1%}), "
              f"6 languages {hit6.mean():.1%} ({ci6[0]:.1%}-{ci6[1]:.1%})  [{time.perf_counter() - started:.0f} s]",
              flush=True)
        np.save(WORK / f"oof-{variant}{'-' + '-'.join(kinds) if kinds else ''}-k{args.components}-r{args.relevance:g}.npy",
                probs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
