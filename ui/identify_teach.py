"""The Identify page's third tab: teach the chosen model a language.

Not a page (ui/__init__.py lists the pages): ui/pages/identify.py calls it.
"""

from pathlib import Path

import streamlit as st

from core import DeepLanguageError
from core.identify import session
from ui.identify_clip import UPLOAD_TYPES


def show_teach(checkpoint: str, labels: list[str]) -> None:
    """Name a language, give clips (uploads and recordings), save the taught model as a new run."""
    st.markdown("Teach the chosen model a language from a few clips (a minute of speech or more is best). "
                "It is saved as a new model in the sidebar's list; the chosen one stays as it is.")
    language = st.text_input("Language code", key="teach_language", placeholder="e.g. eu, yue or zh-CN").strip()
    uploads = st.file_uploader("Clips of that language", type=UPLOAD_TYPES, accept_multiple_files=True,
                               key="teach_clips")
    recording = st.audio_input("...and/or record clips, one after another", key="teach_record")
    recordings = st.session_state.setdefault("teach_recordings", {})  # file id -> (name, bytes), until saved
    if recording is not None and recording.file_id not in recordings:
        recordings[recording.file_id] = (f"recording-{len(recordings) + 1}.wav", recording.getvalue())
    if recordings:
        st.caption(f"{len(recordings)} recording(s) kept for teaching: " + ", ".join(n for n, _ in recordings.values()))
    replace = language in labels and st.checkbox(
        f"This model already knows {language}: re-teach it from these clips", key="teach_replace")
    default_name = f"{Path(checkpoint).parent.name}-plus-{language or 'xx'}"
    name = st.text_input("Name of the new model", key="teach_name", placeholder=default_name).strip() or default_name
    if not st.button("Teach and save", key="teach_save"):
        return
    if language in labels and not replace:
        st.error(f"This model already knows {language}. Tick the box above to re-teach it, or give another code.")
        return
    clips = [(clip.name, clip.getvalue()) for clip in uploads or []] + list(recordings.values())
    if not clips:
        st.error("No clips yet: upload or record some speech in that language first.")
        return
    bar = st.progress(0.0, text="Listening to the clips...")
    try:
        report = session.teach(checkpoint, name, language, clips, replace=replace,
                       on_progress=lambda done, total, **_: bar.progress(done / max(total, 1),
                                                                         text=f"Clip {done} of {total}"))
    except DeepLanguageError as error:
        st.error(str(error))
        return
    finally:
        bar.empty()
    recordings.clear()
    st.success(f"Saved **{name}**: it knows {', '.join(report['languages'])}, {report['language']} learnt from "
               f"{report['n_used']} clip(s), {report['seconds_of_speech']:.0f} s of speech. Choose \"Run {name}\" "
               "in the sidebar to use it.")
    for skipped in report["skipped"]:
        st.caption(f"Skipped {skipped['clip']}: {skipped['reason']}")
