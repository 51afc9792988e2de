from streamlit.testing.v1 import AppTest

from pages.common import CUSTOM, CV_SAMPLE
from tests.conftest import ROOT


def test_data_page_shows_stats_and_a_clip(cv_sample):
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=60).run()
    assert not at.exception
    at.selectbox(key="data_choice").set_value(CV_SAMPLE).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 3 + 3  # stats plots, then waveform and two spectrograms
    at.selectbox(key="data_language").set_value("ja").run()
    assert not at.exception
    assert "ja" in at.caption[0].value or "12 languages" in at.caption[0].value


def test_a_bad_path_gets_a_clear_message(tmp_path):
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=30).run()
    at.selectbox(key="data_choice").set_value(CUSTOM).run()
    at.text_input(key="data_path").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert "not a folder" in at.error[0].value
    at.text_input(key="data_path").set_value(str(tmp_path)).run()
    assert not at.exception
    assert "no audio clips found" in at.error[0].value
