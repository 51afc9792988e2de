"""Data: which clips there are, and their features on disk.

    datasets     Common Voice and folder-per-language manifests; speaker-disjoint splits
    cache        the feature cache behind `python -m core prepare` (parallel, resumable)
    demo_corpus  the synthetic multilingual corpus made with espeak-ng (sentences/<lang>.txt)

May import: core.audio and core's shared modules. Never identify, study, jobs or commands.
"""
