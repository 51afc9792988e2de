"""What the pages do on load, and what they leave for later (speed itself is measured by bench/page_times.py)."""

import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

import core.study.report_html
from core.checkpoint import load_checkpoint
from core.errors import DeepLanguageError
from core.identify.card import DEFAULT_CHECKPOINT, read_card
from core.identify.predict import load_identifier
from tests.conftest import ROOT


def test_the_study_pages_read_a_study_without_importing_torch_or_sklearn():
    """torch, then scikit-learn (through the probes' vocabulary), took most of the study pages' first load; they
    only read files."""
    code = ("import sys, core.study.browse, core.study.report, core.plots, ui.common, ui.study; "
            "sys.exit(sorted({'torch', 'distributed', 'sklearn'} & set(sys.modules)) or None)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_convergence_page_writes_its_report_only_when_asked(monkeypatch):
    written = []
    monkeypatch.setattr(core.study.report_html, "report_html", lambda folder: written.append(folder) or "<html>")
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "convergence.py"), default_timeout=120).run()
    assert not at.exception
    assert at.get("download_button") and written == []  # offered, not written


# Run each page's first load in a fresh process (as a new server's first visitor) with no runs, then list which
# of the slow imports it made. torch took most of the Identify, Train and Runs pages' first load (issue 17 §2).
FIRST_LOAD = """
import sys, tempfile
from pathlib import Path
from streamlit.testing.v1 import AppTest
from core import runs
runs.RUNS_DIR = Path(tempfile.mkdtemp())
at = AppTest.from_file({page!r}, default_timeout=120).run()
assert not at.exception, at.exception
print(sorted({{'torch', 'scipy.stats', 'core.identify.predict'}} & set(sys.modules)))
"""


@pytest.mark.parametrize("page", ["identify", "train", "runs"])
def test_the_identify_train_and_runs_pages_first_load_without_torch(page):
    code = FIRST_LOAD.format(page=str(ROOT / "ui" / "pages" / f"{page}.py"))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_model_card_says_what_the_loaded_model_says_without_torch():
    """The Identify page shows the card until a clip is answered; then the model it loads must match it."""
    code = ("import sys; from core.identify.card import read_card; "
            "cards = [read_card(p) for p in sys.argv[1:]]; sys.exit('torch' in sys.modules)")
    paths = [str(DEFAULT_CHECKPOINT), str(ROOT / "checkpoints" / "identify-gmm" / "best.pt")]
    assert subprocess.run([sys.executable, "-c", code, *paths], cwd=ROOT).returncode == 0
    for path in paths:
        card, bundle = read_card(path), load_identifier(path)
        for name in ("labels", "features", "window", "hop", "path", "temperature", "ok_rule", "trained_on"):
            assert getattr(card, name) == getattr(bundle, name), name
        assert card.checkpoint["model"] == bundle.checkpoint["model"] and card.calibration == bundle.calibration


def test_a_damaged_checkpoint_gives_the_full_readers_error(tmp_path):
    broken = tmp_path / "best.pt"
    broken.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:5000])  # truncated: the zip's directory is gone
    with pytest.raises(DeepLanguageError) as error:
        read_card(broken)
    with pytest.raises(DeepLanguageError) as full:
        load_checkpoint(broken)
    assert str(error.value) == str(full.value) and "truncated or corrupt" in str(error.value)


def _counting(monkeypatch, module, names: tuple[str, ...]) -> dict[str, int]:
    """Count the calls of ``module``'s functions ``names`` (still doing their work)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(module, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("page, drawn", [
    ("identify", ("reliability_figure", "learning_curve_figure")),
    ("data", ("language_stats_figures", "waveform_figure", "mel_figure", "prenatal_spectra_figure")),
])
def test_a_rerun_does_not_draw_the_pages_figures_again(monkeypatch, page, drawn):
    """A cached rerender (<= 0.1 s, issue 17) reuses the figures it drew: drawing them took most of a rerun."""
    import streamlit as st

    from core import plots

    st.cache_resource.clear()
    st.cache_data.clear()
    calls = _counting(monkeypatch, plots, drawn)
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / f"{page}.py"), default_timeout=120).run()
    assert not at.exception and all(calls.values()), calls
    first = dict(calls)
    at.run()
    assert not at.exception and calls == first


def test_a_checkpoint_holding_more_than_plain_data_is_read_the_full_way(tmp_path):
    import torch

    from core.checkpoint import save_checkpoint

    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    path = save_checkpoint({**checkpoint, "shape": torch.Size([2, 3])}, tmp_path / "best.pt")  # a global of torch's
    card = read_card(path)
    assert card.checkpoint["shape"] == torch.Size([2, 3]) and card.labels == checkpoint["labels"]
