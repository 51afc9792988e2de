"""`python -m core train`: train a language identifier in a resumable run directory (or cross-validate the recipe)."""

import argparse
import json
import os
import sys
from pathlib import Path

from core.commands import comma_list, number

NAME = "train"
STUDY_KINDS = ("nextframe", "autoencoder")  # runs made by core.jobs.launch for the pretraining study
HELP = "train a language identifier on a dataset's cached log-mels (resumable; --cv K to cross-validate)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults live in core.train.TrainConfig (None here = its default), so --help needs no torch import.
    parser.add_argument("--data", type=Path, help="dataset folder: Common Voice (<locale>/clips + validated.tsv) "
                                                  "or <lang>/*.wav (required unless --resume)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="feature cache folder (default: data/cache/<dataset name>-<hash>)")
    parser.add_argument("--languages", type=comma_list(), default=(),
                        help="comma-separated languages to learn (default: all)")
    parser.add_argument("--model", help="model kind: whisper-head (pretrained Whisper encoder + a head that learns "
                                        "the data's languages), whisper (Whisper's language-ID alone), or from "
                                        "scratch: gmm-supervector, cnn-baseline, resnet-asp (default resnet-asp)")
    parser.add_argument("--encoder", help="for whisper models: base (bundled, the default), a Whisper size such as "
                                          "small or large-v3 (needs internet), or a CTranslate2 Whisper folder")
    parser.add_argument("--model-config", default="{}", metavar="JSON",
                        help='overrides of the model config, e.g. \'{"channels": [16, 32, 64]}\'')
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 40)")
    parser.add_argument("--batch-size", type=int, help="default 32")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], help="default adamw")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 0.01)")
    parser.add_argument("--weight-decay", type=float, help="default 0.05")
    parser.add_argument("--crop-seconds", type=float, help="random training crop, s (default 3)")
    parser.add_argument("--patience", type=int, help="epochs without improvement before stopping; 0 = never (default 10)")
    parser.add_argument("--min-seconds", type=float, help="drop clips shorter than this, s (default 1.5)")
    parser.add_argument("--seed", type=int, help="training seed (default 0)")
    parser.add_argument("--split-seed", type=int, help="seed of the speaker-disjoint split (default 0)")
    parser.add_argument("--threads", type=number(int, low=0), default=2,
                        help="torch CPU threads; 0 = torch's default (default %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--run", metavar="NAME", help="name of the new run under checkpoints/runs/")
    where.add_argument("--out", type=Path, metavar="DIR", help="new run directory at this path instead")
    where.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run (its config wins)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                        help="whisper models: encode the clips on this Dask scheduler's workers (default: a local "
                             "cluster of one worker per core when many clips are new; as `study --scheduler`)")
    where.add_argument("--start", type=Path, metavar="RUN_DIR",
                       help="train a run folder made beforehand (the dashboard's Launch writes its config.json) "
                            "that has not trained yet")
    parser.add_argument("--cv", type=number(int, low=0), default=0, metavar="K",
                        help="instead of one model, run speaker-grouped K-fold cross-validation of this recipe")
    parser.add_argument("--cv-out", type=Path, metavar="FILE", help="write the cross-validation report here (JSON)")
    from core.commands.prepare import add_feature_arguments

    add_feature_arguments(parser)


def train_config(args: argparse.Namespace):
    from dataclasses import asdict

    from core.commands.prepare import feature_config
    from core.errors import UsageError
    from core.identify.clips import TrainConfig

    try:
        model_config = json.loads(args.model_config)
    except json.JSONDecodeError as error:
        raise UsageError(f"--model-config is not valid JSON ({error}); give an object, e.g. '{{\"channels\": [16, 32]}}'.") from None
    if args.encoder:
        model_config["encoder"] = args.encoder
    values = {"data_dir": str(args.data.resolve()), "cache_dir": str(args.cache.resolve()) if args.cache else "",
              "model_config": model_config, "threads": args.threads,
              "languages": args.languages,
              "features": asdict(feature_config(args))}
    for name in ("model", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "crop_seconds", "patience",
                 "min_seconds", "seed", "split_seed"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    import signal
    from dataclasses import asdict

    import torch

    from core import distributed
    from core.errors import DeepLanguageError
    from core.progress import tqdm_progress
    from core.runs import write_json

    if args.start is not None:  # the same training as a resume, named for what it is: nothing to continue yet
        if os.environ.get("RANK", "0") == "0":  # torchrun's other ranks may find rank 0 already running it
            _check_untrained(args.start)
        args.resume = args.start
    # Every setting is checked (TrainConfig validates itself) before anything is written or started.
    config = train_config(args) if args.resume is None and args.data is not None else None
    if args.threads:
        torch.set_num_threads(args.threads)
    # SIGTERM (a job's stop, torchrun, a scheduler) ends a run as Ctrl-C does: last epoch kept, state stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    # And SIGINT (the page's Stop) always does: a process started in the background (`nohup`, `&`) starts with
    # SIGINT ignored and hands that on, so a dashboard run that way got Stop only through SIGTERM, 42 s later.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ddp = distributed.init_from_env()  # torchrun's environment: join its processes (else one process)
    if args.resume is None and args.data is None:
        raise DeepLanguageError("give --data DIR to train, or --resume RUN_DIR to continue a run.")
    if args.cv:
        from core.identify.evaluate import cross_validate, format_report

        with tqdm_progress(f"{args.cv}-fold CV", unit="step") as on_progress:
            report = cross_validate(config, args.cv, on_progress)
        report["train_config"] = asdict(config)
        print(format_report(report))
        if args.cv_out:
            args.cv_out.parent.mkdir(parents=True, exist_ok=True)
            write_json(args.cv_out, report)
            print(f"report -> {args.cv_out}")
        return 0

    from core import runs
    from core.identify.train import describe_run, train

    if args.resume is not None and (runs.read_json(args.resume / "config.json") or {}).get("kind") in STUDY_KINDS:
        from core.jobs.study_job import train_study_run  # a one-run job of the pretraining study (core.jobs.launch)

        with tqdm_progress("train", unit="step") as on_progress:
            train_study_run(args.resume, on_progress)
        return 0
    if args.resume is not None:
        run_dir = args.resume
        if not (run_dir / "config.json").exists():
            raise DeepLanguageError(f"{run_dir} is not a run directory (no config.json); give a folder "
                                    f"under checkpoints/runs/.")
    else:
        from core.identify.models import model_config

        model_config(config.model, config.model_config)  # a bad --model fails before a run is made
        runs_dir, name = (args.out.resolve().parent, args.out.name) if args.out else (runs.RUNS_DIR, args.run)
        run_dir = runs.create_run("identify", {"train": asdict(config)}, runs_dir, name=name) if ddp.is_main else None
        run_dir = distributed.broadcast_object(run_dir, ddp)  # rank 0 made it; the others train in it too
    try:
        if not ddp.is_main:
            train(None, run_dir)
            return 0
        with tqdm_progress("train", unit="step") as on_progress:
            train(None, run_dir, on_progress, scheduler=args.scheduler)
    except KeyboardInterrupt:
        print(f"interrupted: the last finished epoch is kept; resume with: python -m core train --resume {run_dir}",
              file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    print(f"{run_dir}: {describe_run(run_dir)}")
    print(f"model: {run_dir / 'best.pt'}  (try: python -m core identify CLIP.wav --checkpoint {run_dir / 'best.pt'})")
    return 0


def _check_untrained(run_dir: Path) -> None:
    from core import runs
    from core.errors import UsageError

    state = (runs.read_json(run_dir / "status.json") or {}).get("state", "created")
    if state != "created":
        raise UsageError(f"--start: run {run_dir} has trained already ({state}); continue it with --resume {run_dir}.")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
