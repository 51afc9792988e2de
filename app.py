"""deepLanguage dashboard: `streamlit run app.py` (or `make run`)."""

from pathlib import Path

import streamlit as st

from ui import PAGES
from ui.server import map_large_blocks_apart, return_freed_memory

ROOT = Path(__file__).parent

map_large_blocks_apart()  # before any page allocates: uploads and decoded audio are returned when freed
st.set_page_config(page_title="deepLanguage", page_icon=":material/translate:", layout="wide")
navigation = st.navigation(
    [st.Page(str(ROOT / path), title=title, icon=icon, default=(i == 0))
     for i, (path, title, icon, _) in enumerate(PAGES)]
)
try:
    navigation.run()
finally:  # also when the page stops or reruns itself (st.stop, st.rerun raise through here)
    return_freed_memory()
