"""pages/identify.py under Streamlit's AppTest: upload or record a clip, see a prediction; what the page promises.

The second model in some tests is a real, untrained cnn-baseline checkpoint in a temporary runs folder:
the page's choices (language filter, synthetic warning) depend on its labels and data, not on its skill.
"""

import base64
import io
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core import runs
from core.audio.decode import SAMPLE_RATE, load_audio, to_wav_bytes
from core.checkpoint import save_checkpoint
from core.data.demo_corpus import MARKER_NAME
from core.identify.models import build_model
from core.identify.predict import DEFAULT_CHECKPOINT, load_identifier
from core.plots import timeline_figure

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(),
                                reason="the shipped model checkpoints/identify-default/best.pt is absent")
EIGHT = ["ca", "de", "en", "es", "fr", "it", "nl", "pl"]  # not "ja", which the shipped model knows


def _page():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "pages" / "identify.py"), default_timeout=60)


def _speechy(seconds: float) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > 0)
    return to_wav_bytes((0.2 * tone).astype(np.float32))


def _silence(seconds: float) -> bytes:
    return to_wav_bytes(np.zeros(int(seconds * SAMPLE_RATE), np.float32))


def _chart(at, title: str) -> dict | None:
    """The first plotly chart whose title contains ``title``, as its JSON spec."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title in json.dumps(spec["layout"].get("title", "")):
            return spec
    return None


def _values(array) -> list:
    """A plotly JSON array: a plain list, or a typed array ``{"dtype", "bdata"}`` (base64)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def _run_folder(runs_dir: Path, name: str, labels: list[str], data_dir: Path) -> Path:
    """A run folder holding a real (untrained) cnn-baseline checkpoint for ``labels``, trained 'on' ``data_dir``."""
    shipped = load_identifier(DEFAULT_CHECKPOINT)
    config = {"n_mels": shipped.features.n_mels, "n_classes": len(labels)}
    torch.manual_seed(0)
    model = build_model("cnn-baseline", config)
    run = runs_dir / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data_dir": str(data_dir)}))
    save_checkpoint({"format": 1, "model": {"kind": "cnn-baseline", "config": config},
                     "state_dict": model.state_dict(), "labels": labels,
                     "features": shipped.checkpoint["features"], "window_seconds": 3.0, "hop_seconds": 1.0,
                     "data": {"dir": str(data_dir)}}, run / "best.pt")
    return run


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


def test_page_asks_for_a_clip_first_and_states_the_upload_limit():
    limit = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    assert limit <= 50  # MB: clips for identification, not the 200 MB default
    at = _page().run()
    assert not at.exception
    assert any("Upload a clip" in info.value for info in at.info)
    assert f"up to {limit} MB" in at.file_uploader(key="identify_upload").label


def test_uploaded_clip_gets_a_prediction_and_a_compact_timeline():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("clip.wav", _speechy(6.0), "audio/wav")).run()
    assert not at.exception
    said = [m.value for m in at.success] + [m.value for m in at.warning]
    assert any(s.startswith(("Language:", "Uncertain:")) for s in said), said
    assert _chart(at, "Probability of each language") is not None
    timeline = _chart(at, "Language per 3 s window (every 1 s)")
    assert timeline is not None
    # One row per language some window chose: no empty rows for the others.
    chosen = {y for trace in timeline["data"] for y in trace["y"]}
    assert set(timeline["layout"]["yaxis"]["categoryarray"]) == chosen
    assert timeline["layout"]["height"] <= 110 + 36 * len(chosen)
    assert _chart(at, "Waveform") is not None and len(at.get("audio")) == 1  # the clip, to hear and see


def test_one_window_has_no_timeline():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("short.wav", _speechy(2.5), "audio/wav")).run()
    assert not at.exception
    assert _chart(at, "Probability of each language") is not None
    assert _chart(at, "Language per") is None


def test_timeline_of_few_windows_is_small_and_spans_the_clip():
    windows = [{"start": s, "end": s + 3.0, "language": lang, "probabilities": {"es": p, "it": 1 - p}}
               for s, lang, p in [(0.0, "es", 0.7), (1.0, "es", 0.6)]]
    fig = timeline_figure(windows, ["de", "en", "es", "fr", "it", "ja"], 3.0, 1.0)
    assert list(fig.layout.yaxis.categoryarray) == ["es"]
    assert fig.layout.height <= 150
    assert list(fig.layout.xaxis.range) == [0, 4.0]


def test_restricted_languages_are_the_only_answers():
    at = _page().run()
    at.multiselect[0].set_value(["es", "it"])
    at.file_uploader(key="identify_upload").set_value(("clip.wav", _speechy(6.0), "audio/wav")).run()
    assert not at.exception
    probabilities = _chart(at, "Probability of each language")["data"][0]
    assert sorted(probabilities["x"]) == ["es", "it"]
    assert sum(_values(probabilities["y"])) == pytest.approx(1.0, abs=1e-3)  # renormalised over the two
    timeline = _chart(at, "Language per")
    assert {y for trace in timeline["data"] for y in trace["y"]} <= {"es", "it"}


def test_silence_is_no_speech():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("quiet.wav", _silence(2.0), "audio/wav")).run()
    assert not at.exception
    assert any(w.value.startswith("No speech") for w in at.warning)


def test_language_filter_follows_the_chosen_model(runs_dir, tmp_path):
    _run_folder(runs_dir, "eight", EIGHT, tmp_path)
    shipped = load_identifier(DEFAULT_CHECKPOINT).labels
    at = _page().run()
    assert not at.exception and at.multiselect[0].value == shipped
    at.selectbox(key="identify_model").set_value("Run eight").run()
    assert not at.exception
    assert list(at.multiselect[0].options) == EIGHT
    assert at.multiselect[0].value == EIGHT  # all of the new model's languages, not the old model's six
    at.selectbox(key="identify_model").set_value("Shipped default model").run()
    assert at.multiselect[0].value == shipped  # going back drops none ("ja" is not among the eight)


def test_each_model_keeps_its_own_restriction(runs_dir, tmp_path):
    _run_folder(runs_dir, "eight", EIGHT, tmp_path)
    at = _page().run()
    at.multiselect[0].set_value(["es", "it"]).run()
    at.selectbox(key="identify_model").set_value("Run eight").run()
    assert at.multiselect[0].value == EIGHT  # the shipped model's restriction does not carry over
    at.selectbox(key="identify_model").set_value("Shipped default model").run()
    assert at.multiselect[0].value == ["es", "it"]


def test_a_model_trained_on_synthetic_speech_says_so(runs_dir, tmp_path):
    corpus = tmp_path / "demo-corpus"
    corpus.mkdir()
    (corpus / MARKER_NAME).write_text("{}")
    _run_folder(runs_dir, "synthetic", ["de", "en", "es"], corpus)
    at = _page().run()
    assert not any("synthetic speech" in w.value for w in at.warning)  # the shipped model heard real voices
    at.selectbox(key="identify_model").set_value("Run synthetic").run()
    assert not at.exception
    assert any("trained on synthetic speech" in w.value for w in at.warning)


def test_the_latest_input_wins():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("quiet.wav", _silence(2.0), "audio/wav")).run()
    assert any(w.value.startswith("No speech") for w in at.warning)
    # A new recording after the upload: the recording is answered, and the page says so.
    at.audio_input(key="identify_record").set_value(("rec.wav", _speechy(4.0), "audio/wav")).run()
    assert not at.exception
    assert not any(w.value.startswith("No speech") for w in at.warning)
    assert any("Answering the recording" in c.value for c in at.caption)
    # Then a new upload: it is answered instead.
    at.file_uploader(key="identify_upload").set_value(("quiet2.wav", _silence(3.0), "audio/wav")).run()
    assert any(w.value.startswith("No speech") for w in at.warning)
    assert any("Answering the uploaded file" in c.value for c in at.caption)


def test_bad_file_shows_an_error_and_the_page_keeps_working():
    at = _page().run()
    at.file_uploader(key="identify_upload").set_value(("broken.wav", b"RIFF not audio", "audio/wav")).run()
    assert not at.exception
    assert any("could not be decoded" in e.value for e in at.error)
    at.file_uploader(key="identify_upload").set_value(("clip.wav", _speechy(2.0), "audio/wav")).run()
    assert not at.exception and not at.error


def test_an_upload_is_decoded_in_place_with_the_same_samples():
    """The page hands the upload's file object to the decoder: same samples as its bytes, stereo mixed down."""
    stereo = np.random.default_rng(0).uniform(-0.3, 0.3, (44100 * 3, 2)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 44100, format="FLAC")
    from_bytes = load_audio(buffer.getvalue(), name="a.flac")
    buffer.seek(123)  # wherever the file object was left
    np.testing.assert_array_equal(load_audio(buffer, name="a.flac"), from_bytes)
    assert from_bytes.shape == (SAMPLE_RATE * 3,)
