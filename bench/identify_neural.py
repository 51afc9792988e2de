"""A neural embedding (resnet-asp: small ResNet + attentive statistics pooling) in the variants' speaker-grouped CV,
trained with the same augmented copies, to be fused with the GMM system by bench/identify_fusion.py.

    nice -n 19 .venv/bin/python bench/identify_neural.py --use-folds 0,1,2 --epochs 12 [--inner 2]

Per outer fold (the 5-fold split of bench/identify_variants.py, split seed 0) it trains on the fold's training
speakers' clips and their copies (random 3 s crops, per-window normalised, time and band masks), scores the
fold's test clips from the whole clip, and, for the fusion, scores every training clip from models trained on
an inner speaker-grouped split (``--inner`` folds) that held its speaker out. Writes
data/cache/identify-variants/neural-fold<F>.npz (``test``, ``inner`` log-probabilities) and prints accuracy.
CPU is scarce here: one thread, a few epochs; the figure is what such a budget buys, not the architecture's best.
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
from torch.nn import functional as F  # noqa: E402

import identify_variants as iv  # noqa: E402
from core.audio.features import FeatureConfig  # noqa: E402
from core.identify.evaluate import bootstrap_ci  # noqa: E402
from core.identify.models import ResNetASP, ResNetASPConfig, normalize_windows  # noqa: E402

CROP = 300  # frames per training crop (3 s, identify's window)
BATCH = 32
LR = 3e-3
WEIGHT_DECAY = 0.05


def crops(mels: list[np.ndarray], rows: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """One random ``CROP``-frame crop of each clip (tiled when shorter), per-window normalised, band and time masked."""
    out = []
    for r in rows:
        m = mels[r]
        if m.shape[1] < CROP:
            m = np.tile(m, (1, -(-CROP // m.shape[1])))
        start = rng.integers(0, m.shape[1] - CROP + 1)
        out.append(m[:, start: start + CROP])
    x = normalize_windows(torch.from_numpy(np.stack(out)))
    for i in range(len(x)):  # SpecAugment-style: one band mask (<= 8 bands) and one time mask (<= 30 frames)
        b, t = rng.integers(0, 9), rng.integers(0, 31)
        b0, t0 = rng.integers(0, 64 - b + 1), rng.integers(0, CROP - t + 1)
        x[i, b0: b0 + b] = 0
        x[i, :, t0: t0 + t] = 0
    return x


def train(mels: list[np.ndarray], rows: np.ndarray, targets: np.ndarray, n_labels: int, epochs: int,
          seed: int) -> ResNetASP:
    """A resnet-asp trained on ``rows`` of ``mels`` (clean and copies together) with ``targets``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ResNetASP(ResNetASPConfig(n_classes=n_labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = epochs * (len(rows) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=max(1, steps), pct_start=0.15)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(rows))
        for i in range(len(rows) // BATCH):
            batch = order[i * BATCH: (i + 1) * BATCH]
            loss = F.cross_entropy(model(crops(mels, rows[batch], rng)), torch.from_numpy(targets[batch]),
                                   label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def score(model: ResNetASP, mels: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Log-probabilities ``(len(rows), n_classes)`` from each whole clip."""
    return np.stack([F.log_softmax(model(normalize_windows(torch.from_numpy(mels[r])[None])), 1)[0].numpy()
                     for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-folds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--inner", type=int, default=2, help="inner folds for the fusion's scores (0: none)")
    parser.add_argument("--augment", default="speed0.9,speed1.1,noise")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.model_selection import StratifiedGroupKFold

    features = FeatureConfig()
    manifest, labels, y, speakers = iv.cv_sample(features)
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(manifest, y, speakers))
    kinds = [k for k in args.augment.split(",") if k]
    clean = iv.clean_mels(manifest, features)
    mels = clean + [m for kind in kinds for m in iv.augmented_mels(manifest, features, kind)]
    n = len(clean)

    def with_copies(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([rows + j * n for j in range(1 + len(kinds))])

    targets = np.tile(y, 1 + len(kinds))
    hits, groups = [], []
    for f in [int(x) for x in args.use_folds.split(",")]:
        started = time.perf_counter()
        train_rows, test = folds[f]
        model = train(mels, with_copies(train_rows), targets[with_copies(train_rows)], len(labels), args.epochs, f)
        test_logp = score(model, clean, test)
        inner_logp = np.zeros((len(train_rows), len(labels)))
        if args.inner:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inner = StratifiedGroupKFold(args.inner, shuffle=True, random_state=0).split(
                    train_rows, y[train_rows], speakers[train_rows])
            for j, (tr, held) in enumerate(inner):
                rows = with_copies(train_rows[tr])
                inner_model = train(mels, rows, targets[rows], len(labels), args.epochs, 100 * f + j)
                inner_logp[held] = score(inner_model, clean, train_rows[held])
        np.savez(iv.WORK / f"neural-fold{f}.npz", test=test_logp, inner=inner_logp, test_rows=test,
                 train_rows=train_rows, epochs=args.epochs, inner_folds=args.inner)
        hit = test_logp.argmax(1) == y[test]
        hits.append(hit)
        groups.append(speakers[test])
        print(f"fold {f}: {hit.mean():.1%} on {len(test)} clips; inner {np.mean(inner_logp.argmax(1) == y[train_rows]):.1%}"
              f" [{time.perf_counter() - started:.0f} s]", flush=True)
    hit, group = np.concatenate(hits), np.concatenate(groups)
    low, high = bootstrap_ci(hit, group)
    print(f"resnet-asp, {args.epochs} epochs: 12 languages {hit.mean():.1%} ({low:.1%}-{high:.1%}), chance 8.3 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
