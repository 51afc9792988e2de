"""The identifier kinds by name, without the models: what a page or a job lists before anything is trained.

Importing :mod:`core.identify.models` loads torch (seconds on a first page load); these names do not need it.
:data:`core.identify.models.MODELS` builds one model per name here, in this order (tests/test_models.py checks).
"""

NEURAL_KINDS = ("cnn-baseline", "resnet-asp")  # trained by gradient descent (core.identify.train)
GMM_KINDS = ("gmm-supervector",)  # fitted in closed form (core.identify.supervector, .gmm)
PRETRAINED_KINDS = ("whisper", "whisper-head")  # a head on a frozen Whisper encoder (core.identify.pretrained)
KINDS = NEURAL_KINDS + GMM_KINDS + PRETRAINED_KINDS
