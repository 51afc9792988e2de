"""Home: what deepLanguage does and where each job lives."""

import streamlit as st

from ui import PAGES

st.title("deepLanguage")
st.markdown(
    """
Spoken language identification, and a study of how the language a small speech model hears
**first** changes what it learns. Every figure here is speaker-disjoint, comes from several seeds,
and has its confidence interval and chance level beside it. Everything the pages do is also a
command: `python -m core --help`.
"""
)

for path, title, icon, text in PAGES[1:]:
    with st.container(border=True):
        st.page_link(path, label=title, icon=icon)
        st.caption(text)
