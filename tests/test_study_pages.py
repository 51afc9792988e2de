"""The Convergence and Latent Space pages on a tiny finished study (and on the shipped ones): what they draw,
which run they show, what they export, which study they open on, and the phase of a study still computing."""

import fcntl
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import core.study.layout
from core import runs
from core.study import browse
from core.study.layout import load_study, portable
from tests.conftest import ROOT
from tests.test_study import one_language_studies, tiny_study  # noqa: F401  (shared fixtures)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # the tiny study trains
SHIPPED = list(browse.SHIPPED)  # tracked in the repository, in the order the pages prefer


@pytest.fixture()
def studies_dir(tiny_study, monkeypatch):
    """Only the tiny study (and the shipped studies) are listed."""
    study, _, _ = tiny_study
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", study.parent)
    return study


def open_page(page: str, study: Path | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / f"ui/pages/{page}.py"), default_timeout=120)
    if study is not None:
        at.query_params["study"] = portable(study)
    return at.run()


def chart_titles(at: AppTest) -> list[str]:
    import json

    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def test_convergence_page_draws_matrix_curves_dose_and_similarity(studies_dir):
    at = open_page("convergence", studies_dir)
    assert not at.exception
    assert at.selectbox(key="conv_browse").value == studies_dir
    titles = chart_titles(at)
    assert titles[0].startswith("Speed-up over no pretraining (2 pretraining epochs")  # the matrix, longest dose
    assert any(t.startswith("Dose-response") for t in titles)
    assert len(titles) == 4  # matrix, curves, dose, similarity
    matrix = at.get("plotly_chart")[0].proto.spec.replace(" ", "")
    assert '["bb","aa",2]' in matrix  # a click names (pretrain, target, dose)
    assert {"bb -> aa", "cc:full -> bb", "noise -> aa", "aa:utero -> bb"} <= set(at.selectbox(key="conv_cell").options)
    at.selectbox(key="conv_cell").set_value("cc:full -> bb").run()
    assert chart_titles(at)[1].startswith("cc:full -> bb: validation loss")  # the chosen cell's curves
    at.select_slider(key="conv_dose").set_value(1).run()
    assert chart_titles(at)[0].startswith("Speed-up over no pretraining (1 pretraining epochs")
    captions = " ".join(c.value for c in at.caption)
    seeds = load_study(studies_dir)["config"].seeds
    assert f"With {seeds} seeds per cell" in captions and f"below {2 / 2 ** seeds:.3g}" in captions
    assert "3 seeds" not in captions
    data_note = " ".join(t.value for t in at.text)  # dataset text: plain text, not a markdown caption
    assert "speech from" in data_note and "speakers" in data_note  # where the data comes from
    assert at.get("download_button")  # the HTML report
    at.radio(key="conv_mode").set_value("Run a new study").run()
    cv_sample = next(o for o in at.selectbox(key="conv_choice").options if o.startswith("Common Voice"))
    at.selectbox(key="conv_choice").set_value(cv_sample).run()
    assert not at.exception
    assert {"conv_targets", "conv_languages", "conv_filter", "conv_controls", "conv_doses"} <= {
        w.key for w in at.get("multiselect") + at.get("radio")}


def test_latent_space_page_shows_the_chosen_run(studies_dir):
    at = open_page("latent_space", studies_dir)
    assert not at.exception
    assert at.selectbox(key="latent_study").value == studies_dir
    assert {"none", "bb", "cc:full", "noise", "aa:utero", "ae"} <= set(at.selectbox(key="latent_condition").options)
    at.selectbox(key="latent_condition").set_value("bb").run()
    at.selectbox(key="latent_target").set_value("bb").run()
    at.selectbox(key="latent_dose").set_value(2).run()
    at.selectbox(key="latent_seed").set_value(1).run()
    at.selectbox(key="latent_kind").set_value("h_mean").run()
    at.selectbox(key="latent_method").set_value("tsne").run()
    assert not at.exception
    assert at.text[0].value.startswith("Run: bb -> bb, seed 1, 2 pretraining epochs")
    titles = chart_titles(at)
    assert titles[0] == "h_mean of bb -> bb (seed 1), TSNE" and titles[1].startswith("Balanced accuracy")
    assert at.dataframe  # the probe table
    at.radio(key="latent_task").set_value("all-languages").run()
    assert not at.exception and "all-languages" in chart_titles(at)[1]


def test_a_study_without_probes_says_so_on_both_pages(one_language_studies, monkeypatch):
    _, study = one_language_studies  # its latent sample holds one language
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", study.parent)
    at = open_page("latent_space", study)
    assert not at.exception
    assert any(info.value.startswith("no probes for this study") for info in at.info)
    at = open_page("convergence", study)
    assert not at.exception and at.get("download_button")

def test_a_broken_probes_table_is_named_on_both_pages_not_a_traceback(tiny_study, tmp_path, monkeypatch):
    study = tmp_path / "studies" / "broken-probes"
    shutil.copytree(tiny_study[0], study, ignore=shutil.ignore_patterns("report_summary.json", "*.pt"))
    probes = pd.read_csv(study / "probes.tsv", sep="\t")
    probes.drop(columns=["accuracy"]).to_csv(study / "probes.tsv", sep="\t", index=False)
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", study.parent)
    at = open_page("latent_space", study)
    assert not at.exception and any("probes.tsv lacks the column accuracy" in info.value for info in at.info)
    at = open_page("convergence", study)
    assert not at.exception and any("probes.tsv lacks the column accuracy" in error.value for error in at.error)


def test_exported_csv_names_the_run_the_dataset_and_the_coordinates(studies_dir):
    table = browse.latent_runs(studies_dir)
    run = table[(table["condition"] == "bb") & (table["seed"] == 1)].iloc[0].to_dict()
    points = browse.latent_points(studies_dir, run, "h", "pca")
    exported = pd.read_csv(io.StringIO(browse.selection_csv(points, [0, 2])))
    assert {"study", "condition", "target", "seed", "x", "y", "dataset_root", "path", "clip"} <= set(exported)
    assert exported["condition"].tolist() == ["bb", "bb"] and exported["seed"].tolist() == [1, 1]
    assert exported["x"].tolist() == pytest.approx(points["x"].iloc[[0, 2]].tolist())
    for _, row in exported.iterrows():
        assert Path(row["clip"]).is_absolute() and Path(row["clip"]).exists()
        assert Path(row["clip"]) == Path(row["dataset_root"]) / row["path"]


def test_every_shipped_study_is_there():
    """Tracked files: a lost one fails here instead of skipping the tests that open them."""
    assert [p for p in SHIPPED if not (p / "study.json").exists()] == []


def test_pages_open_on_the_url_study_else_the_shipped_one_not_the_newest(studies_dir):
    for page, key in (("latent_space", "latent_study"), ("convergence", "conv_browse")):
        at = open_page(page)  # the tiny study is the newest; the shipped one is opened
        assert not at.exception and at.selectbox(key=key).value == SHIPPED[0], page
        assert at.query_params["study"] == portable(SHIPPED[0])
    at = open_page("latent_space", studies_dir)  # a study in the URL is reopened
    assert at.selectbox(key="latent_study").value == studies_dir
    at.selectbox(key="latent_study").set_value(SHIPPED[0]).run()
    assert at.query_params["study"] == portable(SHIPPED[0])  # the new choice is remembered


def test_after_its_last_run_the_phase_is_shown_not_n_of_n_runs(studies_dir, tmp_path, monkeypatch):
    study = tmp_path / "computing"
    shutil.copytree(studies_dir, study)
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", tmp_path)
    runs.write_json(study / "status.json", {"state": "running"})
    runs.write_json(study / "progress.json", {"phase": "latents", "done": 1, "total": 6})
    with open(study / "lock", "a+") as lock:  # a live study process holds its lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        line = browse.progress_line(study)
        assert line["text"] == "Computing the latents of the frozen models: 1 of 6" and line["fraction"] == 1 / 6
        at = open_page("convergence", study)
        assert not at.exception
        assert [p.proto.text for p in at.get("progress")] == ["Computing the latents of the frozen models: 1 of 6"]
        runs.write_json(study / "progress.json", {"phase": "training", "done": 3, "total": 4, "steps": 50})
        assert browse.progress_line(study)["text"] == "Training: 3 of 4 runs finished · 50 steps"
        runs.write_json(study / "progress.json", {"phase": "training", "done": 3, "total": 4, "steps": 50,
                                                  "workers": {"a:1": 2, "b:2": 1}})
        assert browse.progress_line(study)["text"].endswith("· 2 workers: 2, 1")
    assert browse.progress_line(study)["state"] == "failed"  # nobody holds the lock: the process died


def test_both_pages_open_the_shipped_study(tmp_path, monkeypatch):
    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", tmp_path)  # nothing else listed
    for page in ("convergence", "latent_space"):
        at = open_page(page)
        assert not at.exception, page
        assert len(at.get("plotly_chart")) >= 2, page


def test_the_shipped_matrix_reads_at_a_glance(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(core.study.layout, "STUDIES_DIR", tmp_path)
    at = open_page("convergence", browse.MATRIX_STUDY_DIR)
    assert not at.exception
    specs = {json.loads(c.proto.spec)["layout"]["title"]["text"].split(" ")[0]: json.loads(c.proto.spec)
             for c in at.get("plotly_chart")}
    marker = specs["Speed-up"]["data"][0]["marker"]
    # Colours span the low-pass cells (all within 2x here), not the ~100x full-band control, which saturates.
    assert 0.1 < marker["cmax"] < 1.0 and "off the scale" in marker["colorbar"]["title"]["text"]
    labels = [float(text.split("x")[0]) for text in specs["Speed-up"]["data"][0]["text"]]
    assert max(labels) > 2 ** (4 * marker["cmax"])
    similarity = next(spec for title, spec in specs.items() if "rho" in spec["layout"]["title"]["text"])
    assert similarity["data"][0]["mode"] == "markers"  # 30 pairs: named on hover, not piled-up labels
    assert any("one dose" in info.value for info in at.info)  # one dose is no dose-response curve
    table = next(frame.value for frame in at.dataframe if "measure" in frame.value)
    assert list(table["measure"]) == ["family", "confusion", "phonemes", "whisper-centroid", "whisper-confusion"]
    assert table["p Holm"].notna().all() and (table["p Holm"] >= table["Mantel p"]).all()
    assert table["data and speakers"].str.contains("speakers").all()
    at.selectbox(key="conv_similarity_measure").set_value("whisper-centroid").run()
    assert any(t.startswith("whisper-centroid: rho") for t in chart_titles(at))
    assert any("Whisper base (pretrained" in c.value for c in at.caption)  # the measure's data, with its speakers

    at = open_page("latent_space", browse.MATRIX_STUDY_DIR)
    assert not at.exception
    assert at.selectbox(key="latent_condition").value not in ("ae", browse.IDENTIFY)  # an LSTM run first
    assert any("data: data/cv-sample" in text.value for text in at.text)  # as in the clone, not this machine
    assert "identify: Whisper encoder (pretrained)" in at.selectbox(key="latent_condition").options
    at.selectbox(key="latent_condition").set_value(browse.IDENTIFY).run()
    assert not at.exception
    assert any("Whisper encoder (pretrained), the reference space" in t for t in chart_titles(at))


def test_the_new_study_form_builds_the_matrix_config():
    from core.errors import DeepLanguageError

    config = browse.new_study_config(["es", "fr"], ["es", "it"], ["none", "noise", "es:full"], "utero", [4, 1], 5)
    assert config.targets == ("es", "fr") and config.pretrain_epochs == (1, 4) and config.seeds == 5
    assert config.pretrain == ("none", "noise", "es:full", "es:utero", "it:utero")
    assert browse.new_study_config(["es"], ["it"], [], "lowpass", [2], 3).pretrain == ("it",)
    with pytest.raises(DeepLanguageError, match="target"):
        browse.new_study_config([], ["it"], ["none"], "lowpass", [4], 5)
    with pytest.raises(DeepLanguageError, match="pretraining condition"):
        browse.new_study_config(["es"], [], [], "lowpass", [4], 5)


def test_latent_conditions_put_the_lstm_runs_first_and_name_every_model():
    assert browse.latent_conditions(["identify", "ae", "none", "es", "es"]) == ["es", "none", "ae", "identify"]
    assert browse.latent_model_name("es:utero", "fr") == "es:utero -> fr"
    assert "autoencoder" in browse.latent_model_name("ae", "fr") and "fr" not in browse.latent_model_name("ae", "fr")
    assert browse.latent_model_name(browse.IDENTIFY, "fr") == "the language identifier"
    # The shipped studies' identify latents are the pretrained Whisper encoder's: labelled so.
    assert browse.condition_label(browse.IDENTIFY, browse.MATRIX_STUDY_DIR) == "identify: Whisper encoder (pretrained)"
    assert browse.latent_model_name(browse.IDENTIFY, "fr", browse.MATRIX_STUDY_DIR).endswith("the reference space")


def test_latent_points_over_the_cap_are_a_stated_sample(studies_dir, monkeypatch):
    table = browse.latent_runs(studies_dir)
    run = table[(table["condition"] == "bb") & (table["seed"] == 1)].iloc[0].to_dict()
    every = browse.latent_points(studies_dir, run, "h", "pca")
    monkeypatch.setattr(browse, "MAX_POINTS", 5)
    sampled = browse.latent_points(studies_dir, run, "h", "pca")
    assert len(sampled) == 5 and sampled.attrs["n_clips"] == len(every) > 5
    assert sampled.attrs["sample_note"].startswith(f"5 of {len(every)} held-out clips")
    assert set(sampled["key"]) < set(every["key"])


def test_study_stamp_moves_with_what_the_pages_draw_and_not_with_progress(tmp_path):
    """The pages' caches are keyed by this stamp: a new result, curve, latents or table must move it; a run's
    progress or status (rewritten every few steps) must not; a missing study is 0."""
    import os

    assert browse.study_stamp(tmp_path / "missing") == 0.0
    run = tmp_path / "runs" / "es-en-s0"
    run.mkdir(parents=True)
    (tmp_path / "study.json").write_text("{}")
    when = [1_000_000.0]

    def touch(path: Path) -> float:
        when[0] += 10
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        os.utime(path, (when[0], when[0]))
        return when[0]

    touch(tmp_path / "study.json")
    for watched in (run / "result.json", run / "curve.json", run / "latents.npz", tmp_path / "identify" / "latents.npz",
                    tmp_path / "probes.tsv"):
        written = touch(watched)
        assert browse.study_stamp(tmp_path) == written, watched
    before = browse.study_stamp(tmp_path)
    for ignored in (run / "progress.json", run / "status.json", tmp_path / "progress.json", run / "sub" / "result.json"):
        touch(ignored)
        assert browse.study_stamp(tmp_path) == before, ignored
