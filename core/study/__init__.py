"""The pretraining study: which first-heard sound (low-pass speech of a language, ...) speeds up learning which target?

A study is a transfer matrix: every pretraining *condition* x every *target* language x every
seed (and every dose: ``pretrain_epochs``). Conditions (``layout.parse_condition``): ``none``;
``es`` (that language below 500 Hz, 8th-order Butterworth); ``es:full`` (full band: is it the
low-pass that matters?); ``es:utero`` (the published in-utero filter, core.audio.filters.utero_gain);
``noise`` (noise with speech's long-term spectrum, low-passed: is it speech at all?).

For every (condition, seed) one next-frame LSTM (``nextframe``) is pretrained once and saved
after each dose (``pretrain/``); every target starts from those files. Each run then trains on
its full-band target for a fixed budget of steps, its validation loss measured every
``eval_every`` steps, and ``results`` measures convergence three ways (steps to threshold,
area under the curve, loss at fixed budgets). The model is frozen and ``latents`` extracts its
state on held-out speakers of every language for ``probes``. A conv autoencoder per seed is
trained beside them, as a reference code. Runs of a target train together in groups
(``grouped``), each member exactly as it would alone; the jobs are Dask tasks (``cluster``).

A study on disk::

    <study>/study.json            StudyConfig, feature config, dataset and cache folders, copy baselines
    <study>/manifest.tsv          every usable clip with its speaker-disjoint split
    <study>/latent_manifest.tsv   the balanced held-out (test-split) sample whose latents are probed
    <study>/ltas.npy              speech's long-term average spectrum (the noise condition)
    <study>/corpus_norm.npz       per-band mean and SD of the full-band training clips (normalization)
    <study>/status.json, lock     the study process (core.runs helpers)
    <study>/progress.json         phase, done / total, for the Convergence page
    <study>/pretrain/<condition>__s<seed>__e<epochs>.pt   shared pretrainings
    <study>/runs/<condition>__<target>__e<epochs>__s<seed>/   one run each (layout.run_name): config,
                                  curve.json, result.json, latents.npz + latents.tsv, last.pt unless
                                  dropped (keep_models); and runs/ae__s<seed>/

Splits never share a speaker and do not depend on the seed, so every run of a study trains,
stops and is probed on the same clips. Rerunning the same command skips finished runs and
pretrainings and redoes the ones that were in flight.

Modules:
    layout       StudyConfig, conditions, run names, the study folder
    plan         checks, features, splits, the runs to train
    noise        the noise condition's features
    normalization  corpus (default: keeps a filter's attenuation) or per-utterance normalisation
    grouped      several LSTMs trained in lockstep (one batched model, or one after another)
    trainer      shared pretrainings, target groups, the autoencoders
    run          every job of a study in parallel, then latents and probes; background: one started by a page
    cluster      where jobs run: a Dask scheduler's workers, a local Dask cluster, or this process
    results      status, convergence measures, curves, probes.tsv, read back from disk
    nextframe    the next-frame LSTM; autoencoder: the conv autoencoder reference
    latents      frozen models' states for held-out speakers; latent_files: their files, read without torch
    linear_probe one probe: speaker-grouped diagonal LDA, chance, speaker bootstrap CI, permutation p
    probes       every run of a study probed (probes.tsv)
    similarity   language similarity: genealogy, identifier confusion, espeak-ng phoneme overlap
    stats        paired speed-ups, Holm, Mantel (similarity), probes over seeds, Mann-Whitney vs "none"
    report       the one summary (report --json); report_html: the HTML report; report_text: the CLI's text
    projections  PCA, TSNE, UMAP of latents, cached on disk
    browse       what the study pages read in one call: which study opens, its phase, matrix and curves,
                 its runs' latents in 2-D and their CSV export

May import: core.audio, core.data, core.identify (the identifier's embedding as a latent kind),
core's shared modules and Dask's ``distributed`` (cluster, run); report_html also core.plots.
Never core.jobs or core.commands.
"""
