"""Home: what deepLanguage does and where each job lives."""

import streamlit as st

st.title("deepLanguage")
st.markdown(
    """
Spoken language identification, and a study of how the language a small speech model hears
**first** changes what it learns. Every figure here is speaker-disjoint, comes from several seeds,
and has its confidence interval and chance level beside it. Everything the pages do is also a
command: `python -m core --help`.
"""
)

PAGES = [
    ("pages/data.py", "Data", "Load Common Voice or folders of clips; statistics, waveforms, full-band and low-pass log-mels."),
    ("pages/identify.py", "Identify", "Upload or record a clip and see the probability of every language."),
    ("pages/train.py", "Train", "Launch, watch, stop and resume training runs; compare them; tune hyperparameters."),
    ("pages/convergence.py", "Convergence", "Pretrain on a (low-pass) language, then time convergence on the target."),
    ("pages/latent_space.py", "Latent space", "TSNE, UMAP and PCA of latents by language; linear probes with CIs."),
]
for path, title, text in PAGES:
    with st.container(border=True):
        try:
            st.page_link(path, label=title)
        except Exception:  # a page not present in this build: say what it does anyway
            st.markdown(f"**{title}**")
        st.caption(text)
