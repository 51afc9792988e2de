"""ui/pages/identify.py under Streamlit's AppTest: upload or record a clip, see a prediction; what the page promises.

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
from core.identify import session
from core.identify.predict import DEFAULT_CHECKPOINT, load_identifier
from core.plots import timeline_figure
from core.plots.identify import TIMELINE_BASE_HEIGHT

ROOT = Path(__file__).resolve().parent.parent
EIGHT = ["ca", "de", "en", "es", "fr", "it", "nl", "pl"]  # not "ja", which the shipped model knows


def _page():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "ui" / "pages" / "identify.py"), default_timeout=60)


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


def _run_folder(runs_dir: Path, name: str, labels: list[str], data_dir: Path, **extra) -> Path:
    """A run folder holding a real (untrained) cnn-baseline checkpoint for ``labels``, trained 'on' ``data_dir``.

    ``extra`` entries (e.g. a ``calibration``) are added to the checkpoint."""
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
                     "data": {"dir": str(data_dir)}, **extra}, run / "best.pt")
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
    assert timeline["layout"]["height"] <= TIMELINE_BASE_HEIGHT + 36 * len(chosen)
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
    assert fig.layout.height <= TIMELINE_BASE_HEIGHT + 40
    key = fig.layout.title.subtitle.text  # what dot size and colour mean, under the title
    assert "size: that probability" in key and "colour: the language" in key
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
    at.selectbox(key="identify_model").set_value(session.SHIPPED).run()
    assert at.multiselect[0].value == shipped  # going back drops none ("ja" is not among the eight)


def test_each_model_keeps_its_own_restriction(runs_dir, tmp_path):
    _run_folder(runs_dir, "eight", EIGHT, tmp_path)
    at = _page().run()
    at.multiselect[0].set_value(["es", "it"]).run()
    at.selectbox(key="identify_model").set_value("Run eight").run()
    assert at.multiselect[0].value == EIGHT  # the shipped model's restriction does not carry over
    at.selectbox(key="identify_model").set_value(session.SHIPPED).run()
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


def test_try_a_clip_answers_a_sample_clip_of_an_unheard_speaker_and_a_new_upload_wins():
    import torch

    from core.data.datasets import read_common_voice

    data = torch.load(DEFAULT_CHECKPOINT, weights_only=True, map_location="cpu")["data"]
    heard = set(data["train_speakers"]) | set(data["val_speakers"])
    at = _page().run()
    at.selectbox(key="identify_sample_language").set_value("ja").run()
    at.button(key="identify_sample_button").click().run()
    assert not at.exception
    said = next(c.value for c in at.caption if c.value.startswith("Sample clip: **ja**"))
    path = said.rsplit("(", 1)[1].split(",")[0]
    assert path.startswith("data/cv-sample/ja/clips/")
    speakers = read_common_voice(ROOT / "data" / "cv-sample" / "ja").set_index("path")["speaker"]
    assert speakers[str(ROOT / path)] not in heard  # a speaker the model never trained or validated on
    assert at.success or at.warning  # an answer: ok, uncertain or no speech
    if not any(w.value.startswith("No speech") for w in at.warning):  # then: right or wrong, and which
        verdict = next(c.value for c in at.caption if c.value.startswith(("Right:", "Wrong:", "The clip is ja")))
        if at.success:
            said = at.success[0].value.split("**")[1]
            assert verdict == ("Right: the clip is ja." if said == "ja" else f"Wrong: the clip is ja; the model said {said}.")
        else:  # uncertain is never called right or wrong, only its best guess
            said = at.warning[0].value.split("Most likely ")[1].split(",")[0]
            assert verdict.startswith("The clip is ja: the model was uncertain") and said in verdict
    # A newer upload is answered instead, and the page says which input it answers.
    at.file_uploader(key="identify_upload").set_value(("quiet.wav", _silence(2.0), "audio/wav")).run()
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


def test_trust_tab_shows_reliability_what_ok_promises_and_the_learning_curve(runs_dir, tmp_path, monkeypatch):
    from core.identify import session
    from core.identify.calibration import calibration_entry
    from core.identify.learning_curve import fit_power_law, minutes_for

    # Validation probabilities of an overconfident model: its top answer is right 60 % of the time.
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 300)
    guesses = np.where(rng.random(300) < 0.6, targets, rng.integers(0, 3, 300))
    probabilities = np.full((300, 3), 0.05)
    probabilities[np.arange(300), guesses] = 0.9
    calibration = calibration_entry(probabilities, targets, rng.integers(0, 40, 300), "validation speakers")
    _run_folder(runs_dir, "calibrated", ["de", "en", "es"], tmp_path, calibration=calibration)
    minutes, accuracy = [0.5, 1.0, 2.0, 4.0], [0.3, 0.38, 0.45, 0.52]
    law = fit_power_law(minutes, accuracy)
    curve = {"minutes": minutes, "accuracy": accuracy, "ci_low": [a - 0.08 for a in accuracy],
             "ci_high": [a + 0.08 for a in accuracy], "power_law": law, "minutes_for_80": minutes_for(0.8, law),
             "chance": 1 / 6, "languages": ["de", "en", "es", "fr", "it", "ja"], "n_folds": 3, "n_speakers": 120}
    two = [a + 0.2 for a in accuracy]  # the answers renormalised over two of the languages
    two_law = fit_power_law(minutes, two)
    curve["restricted"] = {"languages": ["es", "it"], "n_clips": 40, "minutes": minutes, "accuracy": two,
                           "ci_low": [a - 0.1 for a in two], "ci_high": [a + 0.1 for a in two], "power_law": two_law,
                           "minutes_for": {"0.6": minutes_for(0.6, two_law), "0.8": minutes_for(0.8, two_law)},
                           "chance": 0.5}
    (runs_dir / "calibrated" / "learning_curve.json").write_text(json.dumps(curve))  # its own, beside its best.pt

    at = _page().run()
    at.selectbox(key="identify_model").set_value("Run calibrated").run()
    assert not at.exception
    reliability = _chart(at, "Reliability")
    assert reliability is not None and len(reliability["data"]) == 3  # diagonal, before, after calibration
    promise = next(m.value for m in at.markdown if "promises" in m.value)
    assert f"{calibration['ok_precision']:.0%} of those answers were right (95 % CI" in promise
    assert f"{calibration['ece_after']:.1%} after" in promise and "chance is 33%" in promise
    chart = _chart(at, "How much speech per language buys")
    assert chart is not None and len(chart["data"]) == 6  # band, points and law of each curve
    caption = next(c.value for c in at.caption if "minutes per language" in c.value)
    assert f"about {curve['minutes_for_80']:.0f} minutes per language" in caption
    # 60 % is already measured for the two languages (at 4 minutes): only 80 % is an extrapolation to state.
    assert "renormalised over es, it" in caption and "chance 50%" in caption
    assert f"80% at about {curve['restricted']['minutes_for']['0.8']:.0f} minutes" in caption and "60% at" not in caption


def test_trust_tab_says_when_there_is_nothing_to_show(runs_dir, tmp_path, monkeypatch):
    from core.identify import session

    _run_folder(runs_dir, "plain", ["de", "en", "es"], tmp_path)
    at = _page().run()
    at.selectbox(key="identify_model").set_value("Run plain").run()
    assert not at.exception
    assert any("No reliability figures" in i.value for i in at.info)
    assert any("This model has no learning curve. Make one with `python -m core evaluate --learning-curve" in i.value
               for i in at.info)


def _teach(at, language: str, clips: list[tuple[str, bytes]], name: str = "") -> None:
    at.text_input(key="teach_language").set_value(language)
    at.text_input(key="teach_name").set_value(name)
    at.file_uploader(key="teach_clips").set_value([(n, data, "audio/wav") for n, data in clips])
    at.button(key="teach_save").click().run()


def test_teach_refuses_what_it_should(runs_dir, tmp_path):
    _run_folder(runs_dir, "plain", ["de", "en", "es"], tmp_path)
    at = _page().run()
    at.selectbox(key="identify_model").set_value("Run plain").run()
    _teach(at, "es", [("a.wav", _speechy(3.0))])
    assert any("already knows es" in e.value for e in at.error)  # a known code: only with the box ticked
    assert at.checkbox(key="teach_replace").label.startswith("This model already knows es")
    _teach(at, "eu", [])
    assert any("No clips yet" in e.value for e in at.error)
    _teach(at, "eu", [("a.wav", _speechy(3.0))], name="../elsewhere")
    assert any("model name '../elsewhere' is not a valid name" in e.value for e in at.error)  # runs.check_name
    _teach(at, "eu", [("a.wav", _speechy(3.0))])
    assert any("cannot learn a language without retraining" in e.value for e in at.error)  # no Gaussian backend
    assert not at.exception
    assert sorted(p.name for p in runs_dir.iterdir()) == ["plain"]  # nothing written by a refusal


def test_recordings_are_kept_for_teaching_until_saved(runs_dir, tmp_path):
    _run_folder(runs_dir, "plain", ["de", "en", "es"], tmp_path)
    at = _page().run()
    at.selectbox(key="identify_model").set_value("Run plain").run()
    at.audio_input(key="teach_record").set_value(("a.wav", _speechy(3.0), "audio/wav")).run()
    at.audio_input(key="teach_record").set_value(("b.wav", _speechy(4.0), "audio/wav")).run()
    assert any(c.value.startswith("2 recording(s) kept for teaching") for c in at.caption)
    _teach(at, "eu", [])
    assert any("cannot learn a language without retraining" in e.value for e in at.error)
    assert any(c.value.startswith("2 recording(s) kept for teaching") for c in at.caption)  # a refusal loses none
    assert not at.exception


@pytest.mark.slow
def test_teach_a_language_saves_a_model_that_the_list_offers(runs_dir, tmp_path, one_thread):
    from core.checkpoint import load_checkpoint
    from core.identify.clips import TrainConfig
    from core.identify.train import train
    from tests.conftest import speechlike, tone_dataset

    tone_dataset(tmp_path / "data", np.random.default_rng(0), 3.0)
    small = {"n_components": 8, "ubm_frames": 5000, "ubm_iterations": 10, "backend": "gauss", "backend_dim": 8}
    train(TrainConfig(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), model="gmm-supervector",
                      model_config=small, window_seconds=1.0, hop_seconds=0.5, threads=1), runs_dir=runs_dir)
    trained = runs.list_runs(runs_dir)[0].name
    at = _page().run()
    at.selectbox(key="identify_model").set_value(f"Run {trained}").run()

    _teach(at, "mid", [("few.wav", to_wav_bytes(speechlike(4.0, seed=1)))], name="with-mid")
    assert any("at least 30 s is needed" in e.value and "add about" in e.value for e in at.error)  # too little
    assert not (runs_dir / "with-mid").exists()

    clips = [(f"mid{i}.wav", to_wav_bytes(speechlike(5.0, seed=10 + i))) for i in range(15)]
    _teach(at, "mid", clips + [("silence.wav", _silence(2.0))], name="with-mid")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Saved **with-mid**" in s.value and "high, low, mid" in s.value for s in at.success)
    assert any(c.value.startswith("Skipped silence.wav: no speech") for c in at.caption)
    at.run()
    assert "Run with-mid" in at.selectbox(key="identify_model").options  # the new model is offered
    at.selectbox(key="identify_model").set_value("Run with-mid").run()
    assert at.multiselect[0].options == ["high", "low", "mid"]
    assert any("was taught mid on top of its training" in w.value for w in at.warning)
    record = load_checkpoint(runs_dir / "with-mid" / "best.pt")["enrolled"][0]
    assert record["language"] == "mid" and len(record["clips"]) == 15 and record["n_skipped"] == 1
