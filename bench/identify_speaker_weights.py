"""Experiment: does weighting training clips by speaker help the shipped regression on unseen speakers?

Some speakers give one clip, others 25 (pt has 12 speakers for 75 clips), so the regression mostly learns
the talkative speakers. Here each clip (and its augmented copies) is weighted 1 / (clips of its speaker), or
1 / sqrt of that, with every language's weights summing to the same total (balanced classes, as shipped),
and compared with the shipped unweighted fit on the same clips: the learning curve's speaker-grouped 3-fold
split (split seed 0), the shipped recipe, paired differences with a 95 % bootstrap CI over speakers.

    nice -n 10 .venv/bin/python bench/identify_speaker_weights.py     # about 5 min on a quiet machine
"""

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402

from core.audio.features import FeatureConfig  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.identify.backends import LogisticBackend  # noqa: E402
from core.identify.clips import TrainConfig, evaluate_clips, load_clips  # noqa: E402
from core.identify.evaluate import bootstrap_ci  # noqa: E402
from core.identify.gmm import _fit_backend, augmented_supervectors, clip_supervectors, fit_ubm, new_model  # noqa: E402
from core.identify.predict import DEFAULT_CHECKPOINT  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402


class WeightedBackend(LogisticBackend):
    """The shipped regression with per-clip ``weights``, rescaled so every language weighs the same."""

    def __init__(self, weights: np.ndarray, c: float):
        super().__init__(c=c, balanced=False)
        self.weights = weights

    def fit(self, x, y, groups=None):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        weights = self.weights.copy()
        for label in np.unique(y):
            weights[y == label] *= len(y) / len(np.unique(y)) / weights[y == label].sum()
        self.scaler_ = StandardScaler().fit(x)
        self.model_ = LogisticRegression(C=self.c, max_iter=3000).fit(self.scaler_.transform(x), y,
                                                                       sample_weight=weights)
        self.classes_ = self.model_.classes_
        return self


def main() -> None:
    recipe = load_checkpoint(DEFAULT_CHECKPOINT)["train_config"]
    config = replace(TrainConfig.from_dict(recipe), data_dir=str(CV_SAMPLE_DIR), cache_dir="", threads=1)
    clips = load_clips(replace(config, split_fractions=(0.85, 0.15, 0.0)))
    targets, speakers = clips.targets.numpy(), clips.manifest["speaker"].to_numpy()
    folds = StratifiedGroupKFold(3, shuffle=True, random_state=config.split_seed).split(
        clips.manifest, clips.manifest["language"], speakers)
    fps = FeatureConfig.from_dict(config.features).frames_per_second
    window, hop = round(config.window_seconds * fps), round(config.hop_seconds * fps)
    right = {name: np.zeros(len(targets), bool) for name in ("unweighted (shipped)", "1 / clips", "1 / sqrt(clips)")}
    for fold, (train_part, test_part) in enumerate(folds):
        model = new_model(replace(config, seed=config.seed + fold), len(clips.labels))
        fit_ubm(model, [clips.clip(int(i)) for i in train_part], config.seed + fold)
        x, n = clip_supervectors(model, [clips.clip(int(i)) for i in train_part], window, hop)
        x_aug, _, _ = augmented_supervectors(config, model, clips, torch.from_numpy(train_part), window, hop)
        owner = np.concatenate([np.repeat(train_part, n), np.repeat(train_part, len(model.config.augment))])
        names, count = np.unique(speakers[owner], return_counts=True)
        clips_of_speaker = count[np.searchsorted(names, speakers[owner])].astype(float)
        c = model.config.inverse_regularization
        for name, backend in zip(right, (LogisticBackend(c=c, balanced=True), WeightedBackend(1 / clips_of_speaker, c),
                                         WeightedBackend(1 / np.sqrt(clips_of_speaker), c))):
            _fit_backend(model, backend, np.concatenate([x, x_aug]), targets[owner], len(clips.labels))
            result = evaluate_clips(model.eval(), clips, torch.from_numpy(test_part), config, return_predictions=True)
            right[name][test_part] = result["predicted"] == targets[test_part]
            print(f"fold {fold}: {name}: {result['accuracy']:.1%}", flush=True)
    base = right["unweighted (shipped)"]
    for name, hits in right.items():
        low, high = bootstrap_ci(hits, speakers)
        line = f"{name}: {hits.mean():.1%} (95% CI {low:.1%}-{high:.1%}), 12 languages, {len(hits)} clips"
        if hits is not base:
            d_low, d_high = bootstrap_ci(hits.astype(float) - base, speakers)
            line += f"; paired vs unweighted {hits.mean() - base.mean():+.1%} ({d_low:+.1%} to {d_high:+.1%})"
        print(line)


if __name__ == "__main__":
    main()
