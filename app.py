"""deepLanguage dashboard: `streamlit run app.py` (or `make run`)."""

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).parent

# (file, title, icon). Every job a page uses is one call into core/; see each page's imports.
PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/data.py", "Data", ":material/library_music:"),
    ("pages/identify.py", "Identify", ":material/record_voice_over:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/convergence.py", "Convergence", ":material/show_chart:"),
    ("pages/latent_space.py", "Latent space", ":material/scatter_plot:"),
]

st.set_page_config(page_title="deepLanguage", page_icon=":material/translate:", layout="wide")
navigation = st.navigation(
    [st.Page(str(ROOT / path), title=title, icon=icon, default=(i == 0))
     for i, (path, title, icon) in enumerate(PAGES) if (ROOT / path).exists()]
)
navigation.run()
