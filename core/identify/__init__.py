"""Spoken language identification: models, training, calibration, evaluation, prediction, enrolment.

    models          the neural identifiers (cnn-baseline, resnet-asp); windowing and batch prediction
    supervector     the GMM-UBM supervector identifier (the shipped model) as an nn.Module
    gmm             fitting it in closed form: UBM, MAP supervectors, backend, calibration
    backends        logistic regression, a Gaussian backend (what enrolment extends), their fusion
    lda             i-vector-style backends: whitening, length norm, LDA, Gaussian / cosine / PLDA scoring
    ivector         a total-variability (i-vector) extractor over the UBM statistics
    prosody         rhythm and prosody vectors of a clip, from its log-mel
    phonotactics    GMM-token unigram/bigram counts and their TF-IDF regression
    fusion          score fusion (a weight per system, an offset per language) fitted on validation speakers
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
    tune            Optuna hyperparameter searches

May import: core.audio, core.data and core's shared modules (runs, distributed, checkpoint, ...).
Never core.study, core.jobs or core.commands.
"""
