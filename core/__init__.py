"""deepLanguage core: every job of the dashboard and the CLI, with no UI code.

Modules, one job each:
    audio        decode any clip to 16 kHz mono float32; speech detection; low-pass
    features     the log-mel spectrogram (full band and low-pass)
    datasets     Common Voice and folder-per-language manifests; speaker-disjoint splits
    cache        the on-disk feature cache behind `python -m core prepare`
    demo_corpus  the embedded multilingual corpus synthesized with espeak-ng
    models       the identifiers: cnn-baseline, resnet-asp; windowing and prediction helpers
    classic      the gmm-supervector identifier (the shipped model)
    train        training with exact resume; evaluate: speaker-disjoint scores and grouped CV
    identify     one clip -> language, probabilities, per-window timeline, embedding
    nextframe    the next-frame LSTM of the pretraining study; autoencoder: its conv autoencoder
    study        pretraining conditions x seeds, run in parallel, time to threshold
    latents      frozen models' states for held-out speakers; probes: linear probes with CIs
    projections  PCA, TSNE, UMAP, cached on disk
    runs         run directories; registry: their states; jobs: launch, stop, resume
    distributed  DDP under torchrun; tune: Optuna searches
    checkpoint   safe checkpoint files; files: atomic writes; plots: shared plotly figures
    paths        where everything lives on disk; progress: tqdm for the CLI
"""

from core.errors import DeepLanguageError

__all__ = ["DeepLanguageError"]
