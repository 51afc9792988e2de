import json

import pandas as pd
from streamlit.testing.v1 import AppTest

from pages.common import CUSTOM, CV_SAMPLE, DEMO
from tests.conftest import ROOT


def _sentences(cv_sample, language: str) -> set[str]:
    return set(pd.read_csv(cv_sample / language / "validated.tsv", sep="\t", quoting=3)["sentence"])


def test_data_page_opens_on_the_real_sample_and_shows_the_chosen_language(cv_sample):
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=60).run()
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
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=30).run()
    at.selectbox(key="data_choice").set_value(CUSTOM).run()
    at.text_input(key="data_path").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert "not a folder" in at.error[0].value
    at.text_input(key="data_path").set_value(str(tmp_path)).run()
    assert not at.exception
    assert "no audio clips found" in at.error[0].value


def test_the_clip_list_is_paged_and_the_plots_do_not_grow_with_the_dataset(cv_sample):
    from core import plots
    from core.data import datasets, views

    manifest = datasets.read_dataset(cv_sample)
    # 16 copies under new speaker ids: 16x the clips, the same languages.
    big = pd.concat([manifest.assign(speaker=manifest["speaker"] + f"-{k}", path=manifest["path"] + f"#{k}")
                     for k in range(16)], ignore_index=True)
    size = {name: sum(len(f.to_json()) for f in plots.language_stats_figures(views.language_stats(m)).values())
            for name, m in (("1x", manifest), ("16x", big))}
    assert size["16x"] < 1.2 * size["1x"], size
    es = big[big["language"] == "es"]
    assert views.n_pages(big, "es") == -(-len(es) // views.CLIPS_PER_PAGE)
    first, last = views.clip_page(big, "es", 1), views.clip_page(big, "es", 10_000)  # past the end: the last page
    assert len(first) == views.CLIPS_PER_PAGE and first["path"].tolist() == es["path"].iloc[:len(first)].tolist()
    assert last["path"].tolist() == es["path"].iloc[(views.n_pages(big, "es") - 1) * views.CLIPS_PER_PAGE:].tolist()


def test_the_data_page_offers_one_page_of_clips_and_turns_pages(cv_sample):
    from core.data import datasets

    n_es = int((datasets.read_dataset(cv_sample)["language"] == "es").sum())
    at = AppTest.from_file(str(ROOT / "pages/data.py"), default_timeout=60).run()
    at.selectbox(key="data_language").set_value("es").run()
    first = list(at.selectbox(key="data_clip").options)
    assert not at.exception and len(first) == 50 < n_es
    at.number_input(key="data_page").set_value(2).run()
    assert not at.exception
    second = list(at.selectbox(key="data_clip").options)
    assert len(second) == n_es - 50 and not set(first) & set(second)
    assert at.text[1].value in _sentences(cv_sample, "es")
