"""deepLanguage core: every job of the dashboard and the CLI, with no UI code.

Packages, whose names are the architecture (dependencies point one way, top to bottom here):
    commands/   one `python -m core` subcommand per file: a thin argparse layer
    jobs/       background runs for the dashboard: registry (states), launch (start, stop, resume)
    identify/   the language identifier: models, GMM supervectors, training, evaluation, calibration,
                enrolment, prediction, tuning
    study/      the pretraining study: config and layout, planning, training, results, similarity,
                statistics, the report, latents, probes, projections
    plots/      every plotly figure the pages show (clips, identify, training, study, transfer)
    data/       datasets and speaker-disjoint splits, the feature cache, the synthetic demo corpus
    audio/      decoding, speech detection, filters (low-pass, in-utero), log-mel features

Shared modules under all of them:
    errors      DeepLanguageError (a user can act on it) and UsageError (exit 2)
    paths       where everything lives; portable/resolve keep stored paths repository-relative
    files       atomic writes; configs: one validation place per config (setting, validate)
    checkpoint  one checkpoint schema, loaded with weights_only and checked on load
    progress    on_progress callbacks as tqdm bars; runs: a run folder and its lifecycle
    distributed DDP under torchrun
"""

from core.errors import DeepLanguageError

__all__ = ["DeepLanguageError"]
