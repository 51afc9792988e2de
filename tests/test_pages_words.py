"""What the pages say, under AppTest: messages where a reader looks for them, counts explained, probe bars' chance."""

import pandas as pd
from streamlit.testing.v1 import AppTest

from core.data import datasets, views
from core.study import browse
from core.study.layout import TASK_TARGET
from tests.conftest import ROOT
from ui.common import CUSTOM


def _kinds(at: AppTest) -> list[str]:
    return [type(element).__name__ for element in at.main.children.values()]


def test_a_missing_dataset_is_said_under_the_page_title():
    for page, key in (("data", "data_choice"), ("train", "train_dataset_choice")):
        at = AppTest.from_file(str(ROOT / "ui" / "pages" / f"{page}.py"), default_timeout=60).run()
        at.selectbox(key=key).set_value(CUSTOM).run()
        assert not at.exception
        kinds = _kinds(at)
        assert "Info" in kinds and kinds.index("Title") < kinds.index("Info"), (page, kinds)


def test_the_data_page_says_which_clips_training_leaves_out_and_what_it_counts(cv_sample):
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "data.py"), default_timeout=60).run()
    assert not at.exception
    manifest = datasets.read_dataset(cv_sample)
    kept = datasets.filter_min_duration(manifest)
    assert len(kept) < len(manifest)  # the sample holds a one-word prompt
    note = next(c.value for c in at.caption if "shorter than" in c.value)
    short = manifest[manifest["duration"] < datasets.MIN_SECONDS]
    assert all(path.split("/")[-1] in note for path in short["path"].astype(str))
    assert f"{len(kept)} clips and {kept['speaker'].nunique()} speakers" in note


def test_no_short_clip_no_note():
    manifest = pd.DataFrame({"path": ["a.wav", "b.wav"], "language": ["es", "es"], "speaker": ["s1", "s2"],
                             "duration": [3.0, 2.0]})
    assert views.short_clips_note(manifest) == ""
    manifest.loc[1, "duration"] = 1.0
    assert "b.wav (es, 1.0 s)" in views.short_clips_note(manifest)
    assert "1 clips and 1 speakers (its speaker has no other clip)" in views.short_clips_note(manifest)


def test_the_target_vs_rest_probe_says_why_chance_is_one_half_and_the_bars_sit_near_it():
    rows = pd.DataFrame({"task": TASK_TARGET, "accuracy": [0.48, 0.55, 0.52], "majority": 5 / 6, "n_clips": 126})
    note = browse.probe_task_note(TASK_TARGET, "es", rows)
    assert "chance is 0.5" in note and "83%" in note and "near 0.5 because" in note and "es" in note
    assert "near 0.5 because" not in browse.probe_task_note(TASK_TARGET, "es", rows.assign(accuracy=0.8))
    assert browse.probe_task_note("all-languages", "es", rows) == ""


def test_the_latent_page_explains_its_default_task_under_the_bars():
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "latent_space.py"), default_timeout=180).run()
    assert not at.exception
    assert at.radio(key="latent_task").value == TASK_TARGET
    assert any("chance is 0.5" in caption.value for caption in at.caption)
