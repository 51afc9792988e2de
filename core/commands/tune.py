"""`python -m core tune`: search the identifier's hyperparameters with Optuna (resumable, pruned)."""

import argparse
from pathlib import Path

from core.commands import comma_list, number

NAME = "tune"
HELP = "search learning rate, weight decay, width, dropout, SpecAugment and crop length with Optuna"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="dataset folder (required to run trials)")
    parser.add_argument("--trials", type=number(int, low=0), default=20, help="trials to add to the search (default %(default)s)")
    parser.add_argument("--study-name", help="name of the search: checkpoints/tune/<name>.db "
                                             "(default: <dataset>-<model>)")
    parser.add_argument("--model", default="cnn-baseline", help="model kind (default %(default)s)")
    parser.add_argument("--languages", type=comma_list(), default=(), help="comma-separated languages to learn (default: all)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="training and sampler seed (default %(default)s)")
    parser.add_argument("--timeout", type=number(float, above=0), help="stop starting trials after this many seconds")
    parser.add_argument("--threads", type=number(int, low=0), default=2,
                        help="torch CPU threads; 0 = torch's default (default %(default)s)")
    parser.add_argument("--tune-dir", type=Path, default=None, help="where searches live (default checkpoints/tune)")
    parser.add_argument("--best-to-run", action="store_true",
                        help="train the best configuration found as a normal run under checkpoints/runs/")
    parser.add_argument("--run", metavar="NAME", help="name of that run (with --best-to-run)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import torch

    from core.identify import searches, tune
    from core.errors import DeepLanguageError
    from core.identify.clips import TrainConfig

    from core.runs import check_name

    if args.run is not None:
        check_name(args.run)  # refused now, not after the search
    if args.study_name is not None:
        check_name(args.study_name, "--study-name")
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_dir = args.tune_dir or searches.TUNE_DIR
    if args.data is None and not (args.best_to_run and args.study_name):
        raise DeepLanguageError("give --data DIR to run trials (or --study-name NAME --best-to-run to train "
                                "the best configuration of an earlier search).")
    name = args.study_name or f"{args.data.resolve().name}-{args.model}"
    if args.data is not None and args.trials > 0:
        if not args.data.is_dir():
            raise DeepLanguageError(f"dataset folder {args.data} does not exist. Check the path.")
        base = TrainConfig(data_dir=str(args.data.resolve()), model=args.model, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed, threads=args.threads, patience=0,
                           languages=args.languages)

        def on_trial(row: dict) -> None:
            value = "-" if row["value"] is None else f"{row['value']:.3f}"
            params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                               if k not in ("number", "state", "value"))
            print(f"trial {row['number']:3d} {row['state'].lower():8s} {value}  {params}", flush=True)

        study = tune.tune(base, args.trials, name, tune_dir, timeout=args.timeout, on_trial=on_trial)
    else:
        study = searches.open_study(name, tune_dir)
    config = tune.best_config(study)
    print(f"search {name}: {len(study.trials)} trials; best {study.best_value:.3f} (trial {study.best_trial.number}) "
          f"with {study.best_params}  -> {searches.storage_url(name, tune_dir)}")
    if args.best_to_run:
        from core import runs
        from core.progress import tqdm_progress
        from core.identify.train import describe_run, train

        run_dir = runs.create_run("identify", {"train": asdict(config), "tuned_by": name}, name=args.run)
        with tqdm_progress("train best", unit="step") as on_progress:
            train(None, run_dir, on_progress)
        print(f"{run_dir}: {describe_run(run_dir)}")
    return 0
