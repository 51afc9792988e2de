import json

import pandas as pd
from streamlit.testing.v1 import AppTest

from ui.common import CUSTOM, CV_SAMPLE, DEMO
from tests.conftest import ROOT


def _sentences(cv_sample, language: str) -> set[str]:
    return set(pd.read_csv(cv_sample / language / "validated.tsv", sep="\t", quoting=3)["sentence"])


def test_data_page_opens_on_the_real_sample_and_shows_the_chosen_language(cv_sample):
    at = AppTest.from_file(str(ROOT / "ui/pages/data.py"), default_timeout=60).run()
    assert not at.exception
    # No choice made: the embedded real Common Voice sample, not the synthetic corpus (still offered).
    assert at.selectbox(key="data_choice").value == CV_SAMPLE
    assert DEMO in at.selectbox(key="data_choice").options
    assert at.text[0].value.startswith("data/cv-sample · ") and "12 languages" in at.text[0].value
    assert len(at.get("plotly_chart")) >= 3 + 3  # stats plots, then waveform and two spectrograms
    columns = json.loads(at.dataframe[0].proto.columns)  # minutes as 7.1, not 7.1465
    assert columns["minutes"]["type_config"]["format"] == columns["median_seconds"]["type_config"]["format"] == "%.1f"
    spectra = [c for c in at.get("plotly_chart") if "fetus" in c.proto.spec]
    assert len(spectra) == 1 and all(name in spectra[0].proto.spec for name in ("full band", "Butterworth", "in utero"))
    for language in ("ja", "es"):
        at.selectbox(key="data_language").set_value(language).run()
        assert not at.exception
        shown = at.text[1].value  # the chosen clip's sentence, as plain text
        assert shown in _sentences(cv_sample, language)
        assert shown not in _sentences(cv_sample, "ja" if language == "es" else "es")


def test_a_bad_path_gets_a_clear_message(tmp_path):
    at = AppTest.from_file(str(ROOT / "ui/pages/data.py"), default_timeout=30).run()
    at.selectbox(key="data_choice").set_value(CUSTOM).run()
    at.text_input(key="data_path").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert "not a folder" in at.error[0].value
    at.text_input(key="data_path").set_value(str(tmp_path)).run()
    assert not at.exception
    assert "no audio clips found" in at.error[0].value
