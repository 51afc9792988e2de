"""Jobs: training runs as background processes the dashboard can start, watch, stop and resume.

    registry   what every run folder is doing (state from its lock, progress, curves)
    launch     start / stop / resume a run as a detached `python -m core train` process (without loading torch)
    study_job  what such a process runs for one run of the pretraining study

May import: everything below it (core.identify, core.study, core.data, core.audio, shared modules).
Only core.commands and pages import it.
"""
