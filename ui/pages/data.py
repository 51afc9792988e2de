"""Data: choose a dataset, see who speaks how much, and look at and listen to its clips."""

import streamlit as st

from core import DeepLanguageError
from core.data import views
from core.paths import portable
from ui.common import dataset_overview, dataset_picker, load_clip, manifest_or_stop, show_clip, show_text, spectra_figure

st.title("Data")  # first: what the picker says about a missing dataset goes under it
folder = dataset_picker("data")
if folder is None:
    st.stop()

manifest = manifest_or_stop(folder)
missing = manifest.attrs.get("missing", 0)
show_text(f"{portable(folder)} · {len(manifest)} clips · {manifest['language'].nunique()} languages · "
           f"{manifest['speaker'].nunique()} speakers · {manifest['duration'].sum() / 60:.1f} min"
           + (f" · {missing} clips listed but missing on disk" if missing else ""))
table, figures, short = dataset_overview(str(folder))
if short:
    st.caption(short)
if manifest.attrs.get("speakers_known") is False:
    st.warning("This folder has no speaker sub-folders, so each clip counts as its own speaker and "
               "splits can't be guaranteed speaker-disjoint. Use <lang>/<speaker>/*.wav to fix that.")

st.dataframe(table, hide_index=True, key="data_summary",
             column_config={"minutes": st.column_config.NumberColumn(format="%.1f"),
                            "median_seconds": st.column_config.NumberColumn("median seconds", format="%.1f")})
left, right = st.columns(2)
left.plotly_chart(figures["languages"], key="data_languages")
right.plotly_chart(figures["speakers"], key="data_speakers")
st.plotly_chart(figures["durations"], key="data_durations")

st.subheader("Clips")
pick_language, pick_page = st.columns([3, 1])
language = pick_language.selectbox("Language", sorted(manifest["language"].unique()), key="data_language")
# The label and bounds stay fixed (a widget whose bounds change with the language would reset or refuse its
# value); a page past the last shows the last.
page = pick_page.number_input("Page", min_value=1, value=1, step=1, key="data_page",
                              help=f"{views.CLIPS_PER_PAGE} clips a page, in the dataset's order")
n_pages = views.n_pages(manifest, language)
clips = views.clip_page(manifest, language, page)
pick_page.caption(f"page {min(page, n_pages)} of {n_pages}")
row = st.selectbox("Clip", clips.index, key="data_clip",
                   format_func=lambda i: f"{clips.at[i, 'speaker'][:10]} · {clips.at[i, 'duration']:.1f} s · "
                                         f"{clips.at[i, 'sentence'][:60]}")
try:
    clip = load_clip(clips.at[row, "path"])
except DeepLanguageError as error:
    st.error(str(error))
    st.stop()
show_text(clips.at[row, "sentence"])
show_clip(clip, key="data_clip_view")
st.plotly_chart(spectra_figure(clip), key="data_spectra")
