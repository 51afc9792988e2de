"""Spoken language identification: models, training, evaluation, prediction.

    models    the neural identifiers (cnn-baseline, resnet-asp); windowing and batch prediction
    gmm       the GMM-UBM supervector identifier (the shipped model), fitted in closed form
    train     training with exact resume (DDP under torchrun); evaluate_clips
    evaluate  speaker-disjoint scores of a checkpoint; speaker-grouped cross-validation
    predict   one clip -> language, probabilities, per-window timeline, embedding
    tune      Optuna hyperparameter searches

May import: core.audio, core.data and core's shared modules (runs, distributed, checkpoint, ...).
Never core.study, core.jobs or core.commands.
"""
