"""The dashboard's pages: one file each, listed here once for the navigation and the Home page.

Every page imports from this package, so the guard below runs before any page does.
"""

import streamlit as st


def _leave_legacy_navigation() -> None:
    """Run pages through app.py's st.navigation even when a page's URL is the first ever opened.

    Streamlit treats an app with a ``pages/`` folder as a legacy multipage app until the main
    script calls ``st.navigation``; a first visit straight to /data would then run the page
    without app.py (no page config, a navigation listing every file). Rerunning fixes it.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and st.runtime.exists():
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_navigation()

TEXT_CHARS = 300  # dataset text shown at once; a 1 MB sentence is one click away, not in the page


def show_text(text) -> None:
    """Dataset text (a sentence, a speaker id, a path) as plain text, never markdown: a sentence holding a
    markdown image would make the browser fetch it. Past TEXT_CHARS it is cut, the rest behind an expander."""
    text = str(text)
    st.text(text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + " ...")
    if len(text) > TEXT_CHARS:
        with st.expander(f"Full text ({len(text):,} characters)"):
            st.text(text)


# (file, title, icon, what it does). Every job a page uses is one call into core/.
PAGES = [
    ("pages/home.py", "Home", ":material/home:", "What deepLanguage does."),
    ("pages/data.py", "Data", ":material/library_music:",
     "Load Common Voice or folders of clips; statistics, waveforms, full-band and low-pass log-mels."),
    ("pages/identify.py", "Identify", ":material/record_voice_over:",
     "Upload, record or try a sample clip and see the probability of every language."),
    ("pages/train.py", "Train", ":material/model_training:",
     "Launch a training run, watch it live, stop and resume it."),
    ("pages/runs.py", "Runs", ":material/leaderboard:",
     "Every training run in one table, their curves compared, and the hyperparameter searches."),
    ("pages/convergence.py", "Convergence", ":material/show_chart:",
     "Pretrain on a (low-pass) language, then time convergence on the target, across seeds."),
    ("pages/latent_space.py", "Latent space", ":material/scatter_plot:",
     "TSNE, UMAP and PCA of latents by language; hear any point; linear probes with CIs."),
]
