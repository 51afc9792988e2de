"""Plotly figures for the pages (and notebooks); no streamlit here. Every figure a page shows is built here.

    clips     waveform, log-mel, per-language counts (Data page)
    identify  probabilities, per-window timeline (Identify page)
    training  per-epoch curves of training runs (Train page)
    study     convergence curves, the transfer matrix, probes (Convergence and Latent Space pages)

May import: core.audio and core's shared modules; it receives tables and dicts, it reads no files.
"""

from core.plots.clips import *  # noqa: F401,F403
from core.plots.identify import *  # noqa: F401,F403
from core.plots.study import *  # noqa: F401,F403
from core.plots.training import *  # noqa: F401,F403
