"""The default study, measured for real: 4 conditions x 3 seeds + 3 autoencoders + probes on the demo corpus.

Run: .venv/bin/python bench/study_default.py [--workers N]
Target: <= 15 min on 2 cores. Nothing is extrapolated: the whole default study runs in a temporary
folder (the feature cache is reused if present). The ratio is against the 15-minute target;
the LSTM runs' own training seconds are printed beside the wall time, both measured in this run.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_S = 15 * 60


def main() -> None:
    from core.data.demo_corpus import ensure_demo_corpus
    from core.study.probes import probe_study
    from core.runs import read_json
    from core.study.layout import StudyConfig, study_runs
    from core.study.plan import plan_study
    from core.study.run import run_study

    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    data = ensure_demo_corpus()
    config = StudyConfig()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        study = plan_study(config, data, Path(folder) / "study", workers=args.workers)
        planned = time.perf_counter()
        run_study(config, data, study, workers=args.workers, probe=False)
        trained = time.perf_counter()
        probe_study(study)
        probed = time.perf_counter()
        own = sum(sum(read_json(p / "result.json", {}).get(k) or 0 for k in ("seconds_to_threshold",
                                                                             "pretrain_seconds"))
                  for p in study_runs(study))
        n_runs = len(study_runs(study))
    total = probed - started
    print(f"default study on the demo corpus: {n_runs} runs ({len(config.pretrain)} conditions x {config.seeds} seeds"
          f" + {config.seeds} autoencoders)")
    print(f"  prepare + plan   {planned - started:7.1f} s")
    print(f"  train + latents  {trained - planned:7.1f} s  (the LSTM runs' own training seconds sum to {own:.1f} s)")
    print(f"  probes           {probed - trained:7.1f} s")
    print(f"  total            {total:7.1f} s = {total / TARGET_S:.2f}x the 15 min target")


if __name__ == "__main__":
    main()
