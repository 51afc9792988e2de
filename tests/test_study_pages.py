"""The Convergence and Latent space pages run on a tiny study (and on the shipped demo study)."""

import pytest
from streamlit.testing.v1 import AppTest

import core.study.layout
from core.study.layout import DEMO_STUDY_DIR
from tests.conftest import ROOT
from tests.test_study import tiny_study  # noqa: F401  (a shared fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def studies_dir(tiny_study, monkeypatch):
    """Only the tiny study (and the shipped demo study) are listed."""
    study, _, _ = tiny_study
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", study.parent)
    return study


@pytest.mark.slow
def test_convergence_page_shows_curves_and_the_time_table(studies_dir):
    at = AppTest.from_file(str(ROOT / "pages/convergence.py"), default_timeout=60).run()
    assert not at.exception
    assert at.selectbox(key="conv_browse").value == studies_dir
    assert len(at.get("plotly_chart")) >= 2
    assert at.get("arrow_data_frame") or at.dataframe
    at.radio(key="conv_mode").set_value("Run a new study").run()
    assert not at.exception


@pytest.mark.slow
def test_latent_space_page_projects_and_shows_probes(studies_dir):
    at = AppTest.from_file(str(ROOT / "pages/latent_space.py"), default_timeout=60).run()
    assert not at.exception
    assert at.selectbox(key="latent_study").value == studies_dir
    at.selectbox(key="latent_condition").set_value("bb").run()
    at.selectbox(key="latent_kind").set_value("h_mean").run()
    at.selectbox(key="latent_method").set_value("tsne").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2  # the scatter and the probe bars
    at.radio(key="latent_task").set_value("all-languages").run()
    assert not at.exception


@pytest.mark.skipif(not (DEMO_STUDY_DIR / "study.json").exists(), reason="the demo study is not shipped here")
def test_both_pages_open_the_shipped_demo_study(tmp_path, monkeypatch):
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", tmp_path)  # nothing else listed
    for page in ("convergence", "latent_space"):
        at = AppTest.from_file(str(ROOT / f"pages/{page}.py"), default_timeout=60).run()
        assert not at.exception, page
        assert len(at.get("plotly_chart")) >= 2, page
