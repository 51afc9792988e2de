"""`python -m core study`: the transfer matrix, every (pretraining condition x target) cell x seed, resumable."""

import argparse
from pathlib import Path

from core.commands import comma_list, number

NAME = "study"
HELP = ("the pretraining study: pretrain next-frame LSTMs on each condition, train them on each target "
        "language for a fixed budget, measure convergence three ways, probe their latents (resumable)")
CONDITIONS_HELP = """\
comma-separated pretraining conditions (default %(default)s):
  none        no pretraining
  es          that language, low-pass (< --cutoff Hz, 8th-order Butterworth, zero phase)
  es:full     control: the same language, full band (is it the low-pass that matters?)
  es:utero    the language through the in-utero attenuation filter (core/audio/filters.py, cited there)
  noise       control: noise shaped like speech's long-term average spectrum, low-passed (is it speech?)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.study.layout import StudyConfig

    d = StudyConfig()
    parser.formatter_class = argparse.RawTextHelpFormatter
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (Common Voice layout or <lang>/*.wav)")
    parser.add_argument("--targets", type=comma_list(), default=d.targets,
                        help="comma-separated languages learnt after pretraining, full band (default %(default)s)")
    parser.add_argument("--target", default=None, help="one target: shorthand for --targets LANG")
    parser.add_argument("--pretrain", type=comma_list(), default=d.pretrain, help=CONDITIONS_HELP)
    parser.add_argument("--seeds", type=int, default=d.seeds, help="runs per cell (default %(default)s)")
    parser.add_argument("--pretrain-epochs", type=comma_list(int), default=d.pretrain_epochs,
                        help="dose: comma-separated pretraining lengths in epochs of "
                             f"{d.pretrain_epoch_steps} steps, e.g. 0,1,2,4 (0 = none; default %(default)s)")
    parser.add_argument("--budget", type=int, default=d.budget_steps,
                        help="target-phase steps of every run (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="validation MSE that counts as learnt (default: the rule of --threshold-step)")
    parser.add_argument("--threshold-step", type=int, default=d.threshold_step,
                        help="threshold = mean validation loss of the target's 'none' runs at this step "
                             "(default %(default)s)")
    parser.add_argument("--threshold-ratio", type=float, default=d.threshold_ratio,
                        help="without 'none' runs: threshold = this x the loss of repeating the last frame "
                             "(default %(default)s)")
    parser.add_argument("--cutoff", type=float, default=d.cutoff_hz,
                        help="low-pass cutoff of the pretraining features, Hz (default %(default)s)")
    parser.add_argument("--hidden-size", type=int, default=d.hidden_size, help="LSTM units (default %(default)s)")
    parser.add_argument("--latent-languages", type=comma_list(), default=(),
                        help="comma-separated languages whose latents are probed (default: the study's own:\n"
                             "targets and pretraining languages)")
    parser.add_argument("--normalization", choices=("corpus", "utterance"), default=d.normalization,
                        help="corpus: one per-band mean and SD from the full-band training clips, so a filter's\n"
                             "attenuation survives; utterance: each clip's own, which erases it (default %(default)s)")
    parser.add_argument("--no-autoencoder", action="store_true", help="skip the conv autoencoder reference runs")
    parser.add_argument("--no-keep-models", action="store_true",
                        help="delete each run's weights once its latents are written (a small study)")
    parser.add_argument("--group-size", type=int, default=d.group_size,
                        help="runs trained together in one process (default %(default)s)")
    parser.add_argument("--backend", choices=("grouped", "sequential"), default=d.group_backend,
                        help="grouped: one batched model per group; sequential: one nn.LSTM after another "
                             "(default %(default)s)")
    parser.add_argument("--permutations", type=number(int, low=1), default=None, help="permutations per probe p-value, at most (default 20; stops\n"
                             "early once 5 shuffles beat the real score: a sequential test)")
    parser.add_argument("--workers", type=number(int, low=1), default=None,
                        help="local Dask worker processes, one group of runs each (default: one per core;\n"
                             "1: no Dask, in this process)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                        help="send the runs to this Dask scheduler's workers instead (README: Run a study on a cluster)")
    parser.add_argument("--out", type=Path, default=None,
                        help="study folder (default: checkpoints/studies/<dataset>-<targets>-<settings hash>)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def study_config(args: argparse.Namespace):
    from core.study.layout import StudyConfig

    return StudyConfig(
        targets=(args.target,) if args.target else tuple(args.targets), pretrain=tuple(args.pretrain),
        seeds=args.seeds, pretrain_epochs=tuple(args.pretrain_epochs), budget_steps=args.budget,
        loss_budgets=tuple(sorted({args.budget // 4, args.budget // 2, args.budget})),
        threshold=args.threshold, threshold_step=args.threshold_step, threshold_ratio=args.threshold_ratio,
        cutoff_hz=args.cutoff, hidden_size=args.hidden_size, autoencoder=not args.no_autoencoder,
        latent_languages=tuple(args.latent_languages), keep_models=not args.no_keep_models,
        group_size=args.group_size, group_backend=args.backend,
        normalization=args.normalization)


def usage_problem(config) -> str | None:
    """What is wrong with the settings themselves (exit 2), checked before the dataset is read: None when fine."""
    from core.errors import DeepLanguageError
    from core.study.layout import parse_condition

    if config.seeds < 1 or not config.pretrain or not config.targets:
        return "a study needs at least one seed, one target and one pretraining condition."
    if any(e < 0 for e in config.pretrain_epochs) or config.budget_steps < config.eval_every:
        return f"--pretrain-epochs must be >= 0 and --budget at least {config.eval_every} steps."
    try:
        for condition in config.pretrain:
            parse_condition(condition)
    except DeepLanguageError as error:
        return str(error)
    return None


def read_once(config, data_dir: Path):
    """``(manifest, problem)``: the dataset, read once for the whole study (this check, the plan, the features),
    with a line on stderr before and after (a first read at 64x the sample takes tens of seconds), or the
    problem with it or with the languages asked for (exit 2)."""
    import sys
    import time

    from core.data.datasets import read_dataset
    from core.errors import DeepLanguageError

    print(f"reading the dataset {data_dir} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        manifest = read_dataset(data_dir, durations=False)
    except DeepLanguageError as error:
        return None, str(error)
    print(f"read {len(manifest)} clips in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    known = sorted(set(manifest["language"]))
    unknown = [x for x in [*config.languages(), *config.latent_languages] if x not in known]
    if unknown:
        return None, f"unknown language {', '.join(unknown)} in {data_dir}; known languages: {', '.join(known)}."
    return manifest, None


def run(args: argparse.Namespace) -> int:
    import sys

    from core.progress import tqdm_progress
    from core.study.report import study_summary
    from core.study.report_html import summary_json
    from core.study.report_text import summary_text
    from core.study.run import run_study

    config = study_config(args)
    manifest, problem = (None, usage_problem(config))
    if problem is None:
        manifest, problem = read_once(config, args.data)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.scheduler:  # an unreachable scheduler is told in seconds, not after the dataset is prepared
        from core.study.cluster import connect

        connect(args.scheduler).close()
    with tqdm_progress("study", unit="run") as on_progress:
        study_dir = run_study(config, args.data, args.out, workers=args.workers, scheduler=args.scheduler,
                              n_permutations=args.permutations, on_progress=on_progress, manifest=manifest)
    summary = study_summary(study_dir)
    print(summary_json(summary) if args.json else summary_text(summary))
    print(f"study folder: {study_dir}")
    return 0
