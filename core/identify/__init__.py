"""Spoken language identification: models, training, calibration, evaluation, prediction, enrolment.

    models          the neural identifiers (cnn-baseline, resnet-asp); windowing and batch prediction
    supervector     the GMM-UBM supervector identifier (the from-scratch baseline) as an nn.Module
    gmm             fitting it in closed form: UBM, MAP supervectors, backend, calibration
    backends        logistic regression and a Gaussian backend (what enrolment extends)
    whisper         the pretrained encoder: Whisper base from the package registry, run by faster-whisper
    embeddings      each clip's pooled Whisper states and language-ID, computed once and cached
    pretrained      the whisper / whisper-head identifiers (a Gaussian head fused with Whisper's language-ID)
    pretrained_fit  fitting them, their cross-validation and learning curve
    metrics         accuracy with a bootstrap interval over speakers
    augment         speed, noise, reverberation and channel copies of training clips
    calibration     temperature scaling, expected calibration error, the "ok" rule from validation speakers
    clips           TrainConfig, every clip's log-mel in RAM, batches, validation; the base checkpoint
    train           training with exact resume (DDP under torchrun)
    recipes         named training recipes (the shipped GMM recipe) for the Train page
    evaluate        speaker-disjoint scores of a checkpoint; speaker-grouped cross-validation
    learning_curve  accuracy vs minutes of speech per language, with a power-law extrapolation
    enroll          teach a trained model a new language from a few clips
    predict         one clip -> language, calibrated probabilities, per-window timeline, embedding
    session         the Identify page's decisions (which models, which input, what "ok" promises)
    tune            Optuna hyperparameter searches (running them)
    searches        the stored searches: list, open, trials table and figure (no torch)
    kinds           the identifier kinds by name (no torch)

May import: core.audio, core.data and core's shared modules (runs, distributed, checkpoint, ...).
Never core.study, core.jobs or core.commands.
"""
