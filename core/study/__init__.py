"""The pretraining study: does hearing a language first (low-pass, < 500 Hz) speed up learning another?

Each *condition* is a pretraining language (or ``none``). For every condition and seed one
next-frame LSTM (``core.nextframe``) is trained on the condition's language, low-pass
filtered, for ``pretrain_epochs``; then on the full-band target language until its
validation loss falls below ``threshold`` (or ``max_epochs`` pass). Time, steps and epochs
to threshold are recorded, the model is frozen, and ``core.latents`` extracts its state on
held-out speakers of every language for ``core.probes``. A conv autoencoder per seed is
trained beside them, as a reference code.

A study on disk::

    <study>/study.json            StudyConfig, feature config, dataset and cache folders
    <study>/manifest.tsv          every usable clip with its speaker-disjoint split
    <study>/latent_manifest.tsv   the balanced held-out (test-split) sample whose latents are probed
    <study>/status.json, lock     the study process (core.runs helpers)
    <study>/progress.json         runs finished / total, for the Convergence page
    <study>/runs/<condition>-s<seed>/  one run each (config, metrics.jsonl, last.pt, result.json,
                                       latents.npz + latents.tsv), and runs/ae-s<seed>/

Splits never share a speaker and do not depend on the seed, so every run of a study trains,
stops and is probed on the same clips. Rerunning the same command skips finished runs and
resumes unfinished ones from their last epoch.

Modules:
    layout       StudyConfig and the study folder (study.json, manifest, runs/)
    plan         the manifest, splits, threshold and the runs to train
    trainer      one run: pretraining on a low-pass language, training to the threshold
    run          every run of a study in parallel, then latents and probes
    results      status, per-run results, curves and progress, read back from disk
    nextframe    the next-frame LSTM; autoencoder: the conv autoencoder reference
    latents      frozen models' states for held-out speakers
    probes       linear probes with chance, CIs and permutation tests
    similarity   language similarity: genealogy, identifier confusion, espeak-ng phoneme overlap
    stats        paired speed-ups per cell, Holm, the Mantel test of similarity vs speed-up
    report       the study's summary (python -m core report --json); report_html: the offline HTML report
    projections  PCA, TSNE, UMAP of latents, cached on disk
    browse       what the study pages read in one call: which study opens, its phase, matrix and curves,
                 its runs' latents in 2-D and their CSV export

May import: core.audio, core.data, core.identify (the identifier's embedding as a latent kind)
and core's shared modules; report_html also core.plots (the report's figures). Never core.jobs or
core.commands.
"""
