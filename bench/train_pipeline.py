"""Training steps per second with the data pipeline vs the model alone on ready tensors.

    .venv/bin/python bench/train_pipeline.py [--model resnet-asp] [--steps 30]

The pipeline is what core.identify.train does per step: random crops gathered from the in-RAM
features, per-crop normalisation and SpecAugment masks. Its overhead is the extra time
per step over forward + backward + optimizer on a batch built once. Budget: 10%.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from core.identify.models import build_model  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402
from core.identify.clips import ClipSet, TrainConfig, epoch_generator, load_clips, make_batch
from core.identify.train import make_optimizer

BUDGET = 0.10


def clip_set(config: TrainConfig) -> ClipSet:
    """cv-sample's six languages when present, else 400 random 4.5 s 'clips'."""
    if CV_SAMPLE_DIR.exists():
        return load_clips(config)
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"language": [f"l{i % 6}" for i in range(400)], "split": "train"})
    features = [rng.standard_normal((64, 450)).astype(np.float32) for _ in range(400)]
    return ClipSet(manifest, features, sorted(manifest["language"].unique()), 300)


def steps_per_second(step, n_steps: int) -> float:
    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(n_steps):
        step()
    return n_steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet-asp")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(data_dir=str(CV_SAMPLE_DIR), languages=("es", "it", "ja", "en", "fr", "de"), model=args.model)
    clips = clip_set(config)
    crop = round(config.crop_seconds * 100)
    torch.manual_seed(0)
    model = build_model(args.model, {"n_classes": len(clips.labels)})
    optimizer = make_optimizer(model, config)
    generator = epoch_generator(0, 0)
    rows_all = torch.arange(len(clips))

    def train_on(x, y):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    fixed_rows = rows_all[:config.batch_size]
    fixed = make_batch(clips, fixed_rows, crop, config, generator), clips.targets[fixed_rows]

    def pipeline_step():
        rows = rows_all[torch.randperm(len(rows_all), generator=generator)[:config.batch_size]]
        train_on(make_batch(clips, rows, crop, config, generator), clips.targets[rows])

    def batch_only():
        rows = rows_all[torch.randperm(len(rows_all), generator=generator)[:config.batch_size]]
        make_batch(clips, rows, crop, config, generator)

    # Interleave the two measurements so that load from other processes hits both alike.
    alone, piped = [], []
    steps_per_second(pipeline_step, 5)  # warm-up: allocator, kernels
    for _ in range(5):
        alone.append(steps_per_second(lambda: train_on(*fixed), args.steps))
        piped.append(steps_per_second(pipeline_step, args.steps))
    model_sps, pipeline_sps = max(alone), max(piped)
    batch_ms = 1000 / steps_per_second(batch_only, args.steps * 5)
    overhead = model_sps / pipeline_sps - 1
    print(f"{args.model}, batch {config.batch_size} x {crop} frames, {args.threads} threads, {len(clips)} clips in RAM")
    print(f"model alone on a ready batch: {model_sps:.2f} steps/s; with the data pipeline: {pipeline_sps:.2f} steps/s")
    print(f"pipeline overhead {overhead:+.1%} (budget {BUDGET:.0%}: {'within' if overhead <= BUDGET else 'OVER'}); "
          f"building one batch alone takes {batch_ms:.2f} ms")


if __name__ == "__main__":
    main()
