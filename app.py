"""deepLanguage dashboard: `streamlit run app.py` (or `make run`)."""

from pathlib import Path

import streamlit as st

from ui import PAGES

ROOT = Path(__file__).parent

st.set_page_config(page_title="deepLanguage", page_icon=":material/translate:", layout="wide")
navigation = st.navigation(
    [st.Page(str(ROOT / path), title=title, icon=icon, default=(i == 0))
     for i, (path, title, icon, _) in enumerate(PAGES)]
)
navigation.run()
