"""pages/identify.py under Streamlit's AppTest: upload a clip, see a prediction; a bad file is an error, not a crash."""

from pathlib import Path

import numpy as np
import pytest

from core.audio.decode import SAMPLE_RATE, to_wav_bytes
from core.identify.predict import DEFAULT_CHECKPOINT

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(),
                                reason="the shipped model checkpoints/identify-default/best.pt is absent")


def _page():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "pages" / "identify.py"), default_timeout=60)


def _speechy(seconds: float) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > 0)
    return to_wav_bytes((0.2 * tone).astype(np.float32))


def test_page_asks_for_a_clip_first():
    at = _page().run()
    assert not at.exception
    assert any("Upload a clip" in info.value for info in at.info)


def test_uploaded_clip_gets_a_prediction_and_timeline():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("clip.wav", _speechy(6.0), "audio/wav")).run()
    assert not at.exception
    said = [m.value for m in at.success] + [m.value for m in at.warning]
    assert any(s.startswith(("Language:", "Uncertain:")) for s in said), said
    specs = [chart.proto.spec for chart in at.get("plotly_chart")]
    # probabilities, the timeline, and the clip's waveform and two mels
    assert len(specs) == 5
    assert any("Probability of each language" in spec for spec in specs)
    assert any("Language per 3 s window (every 1 s)" in spec for spec in specs)


def test_restricting_languages_and_silence():
    at = _page().run()
    at.multiselect(key="identify_languages").set_value(["es", "it"])
    at.file_uploader(key="identify_upload").set_value(
        ("quiet.wav", to_wav_bytes(np.zeros(2 * SAMPLE_RATE, np.float32)), "audio/wav")).run()
    assert not at.exception
    assert any(w.value.startswith("No speech") for w in at.warning)


def test_bad_file_shows_an_error_and_the_page_keeps_working():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("broken.wav", b"RIFF not audio", "audio/wav")).run()
    assert not at.exception
    assert any("could not be decoded" in e.value for e in at.error)
    at.file_uploader(key="identify_upload").set_value(("clip.wav", _speechy(2.0), "audio/wav")).run()
    assert not at.exception and not at.error
