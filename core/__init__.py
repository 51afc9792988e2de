"""deepLanguage core: every job of the dashboard and the CLI, with no UI code.

Modules, one job each:
    audio        decode any clip to 16 kHz mono float32; speech detection; low-pass
    features     the log-mel spectrogram (full band and low-pass)
    datasets     Common Voice and folder-per-language manifests; speaker-disjoint splits
    cache        the on-disk feature cache behind `python -m core prepare`
    demo_corpus  the embedded multilingual corpus synthesized with espeak-ng
"""

from core.errors import DeepLanguageError

__all__ = ["DeepLanguageError"]
