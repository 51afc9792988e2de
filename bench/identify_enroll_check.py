"""Honest test of enrolment: train on 11 languages of data/cv-sample, enrol the 12th from a few speakers, score
everything on speakers never heard (neither in training nor in enrolment).

    nice -n 10 .venv/bin/python bench/identify_enroll_check.py --language pt [--minutes 1] [--out DIR]

Prints the new language's recall on its unseen speakers, and the other languages' accuracy on their test
speakers before and after enrolment (each with a 95 % bootstrap CI over speakers).
"""

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data.cache import FeatureCache  # noqa: E402
from core.data.datasets import assign_splits  # noqa: E402
from core.identify.clips import TrainConfig, load_clips  # noqa: E402
from core.identify.enroll import enroll  # noqa: E402
from core.identify.evaluate import bootstrap_ci, clip_probabilities  # noqa: E402
from core.identify.predict import load_identifier  # noqa: E402
from core.identify.train import train  # noqa: E402
from core.paths import CV_SAMPLE_DIR, default_cache_dir  # noqa: E402

RECIPE = {"relevance": 4, "n_components": 256, "fit_on": "clips", "augment": ["speed0.9", "speed1.1", "noise"]}


def accuracy(bundle, manifest, cache, truth) -> tuple[np.ndarray, np.ndarray]:
    """Whether each clip's most probable language (over all the model's) is ``truth``, and the speakers."""
    hits = [bundle.labels[int(clip_probabilities(bundle, torch.from_numpy(cache.load(k, normalize=False))).argmax())]
            == t for k, t in zip(manifest["key"], truth)]
    return np.array(hits), manifest["speaker"].to_numpy()


def line(name: str, hits: np.ndarray, speakers: np.ndarray) -> str:
    low, high = bootstrap_ci(hits, speakers)
    return f"{name}: {hits.mean():.1%} (95% CI {low:.1%}-{high:.1%}; {len(hits)} clips, {len(set(speakers))} speakers)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="pt")
    parser.add_argument("--minutes", type=float, default=1.0, help="speech to enrol from (whole speakers)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/enroll-check"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = TrainConfig(data_dir=str(CV_SAMPLE_DIR), model="gmm-supervector", model_config=RECIPE, threads=1)
    everything = load_clips(base).manifest
    others = tuple(sorted(set(everything["language"]) - {args.language}))
    run_dir = args.out / "eleven"
    if not (run_dir / "best.pt").exists():
        train(replace(base, languages=others), run_dir)
    eleven = load_identifier(run_dir / "best.pt")
    seen = set(eleven.checkpoint["data"]["train_speakers"]) | set(eleven.checkpoint["data"]["val_speakers"])
    new = everything[(everything["language"] == args.language) & ~everything["speaker"].isin(seen)]
    rng = np.random.default_rng(0)
    teachers, spent = [], 0.0
    for speaker in rng.permutation(new["speaker"].unique()):
        if spent >= args.minutes * 60:
            break
        teachers.append(speaker)
        spent += new.loc[new["speaker"] == speaker, "duration"].sum()
    teach = new[new["speaker"].isin(teachers)]
    unseen_new = new[~new["speaker"].isin(teachers)]
    report = enroll(run_dir / "best.pt", args.language, [str(p) for p in teach["path"]], args.out / "twelve.pt")
    twelve = load_identifier(args.out / "twelve.pt")
    split = assign_splits(everything[everything["language"].isin(others)].reset_index(drop=True),
                          tuple(base.split_fractions), seed=base.split_seed)
    test = split[(split["split"] == "test") & ~split["speaker"].isin(seen | set(teachers))]
    cache = FeatureCache(default_cache_dir(CV_SAMPLE_DIR), eleven.features)
    results = {
        "enrolled_from": {"clips": int(len(teach)), "speakers": len(teachers),
                          "seconds_of_speech": report["seconds_of_speech"], "audio_seconds": float(spent)},
        "new_language_recall": accuracy(twelve, unseen_new, cache, unseen_new["language"]),
        "others_before": accuracy(eleven, test, cache, test["language"]),
        "others_after": accuracy(twelve, test, cache, test["language"]),
    }
    print(f"enrolled {args.language} from {len(teach)} clips of {len(teachers)} speakers "
          f"({report['seconds_of_speech']:.0f} s of speech)")
    for name in ("new_language_recall", "others_before", "others_after"):
        print(line(name, *results[name]))
    summary = {k: (v if k == "enrolled_from" else {"accuracy": float(v[0].mean()), "ci95": bootstrap_ci(*v),
                                                    "n_clips": int(len(v[0]))}) for k, v in results.items()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
