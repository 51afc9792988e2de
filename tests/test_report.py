"""core.study.report and `python -m core report`: the JSON summary, the offline HTML, unfinished studies."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from core.paths import REPO_ROOT
from core.study.layout import DEMO_STUDY_DIR
from core.study.report import study_summary
from core.study.report_html import write_report

KEPT = ("config.json", "result.json", "metrics.jsonl")  # what the summary reads of a run; no checkpoints


@pytest.fixture
def study(tmp_path):
    """A copy of the shipped demo study (its finished runs' results and curves, no model files)."""
    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("study.json", "manifest.tsv"):
        shutil.copy(DEMO_STUDY_DIR / name, folder / name)
    for run in (DEMO_STUDY_DIR / "runs").iterdir():
        for name in KEPT:
            if (run / name).exists():
                (folder / "runs" / run.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(run / name, folder / "runs" / run.name / name)
    return folder


def test_summary_has_the_json_contract(study):
    summary = study_summary(study)
    json.dumps(summary, allow_nan=False)  # strict JSON: NaN became null
    assert summary["progress"]["complete"]
    assert summary["data"]["speech"].startswith("synthetic")
    cells = [c for c in summary["cells"] if c["pretrain"] != "none"]
    assert cells
    for cell in cells:
        assert {"pretrain", "target", "n_runs", "steps_to_threshold", "auc", "speedup", "p", "p_holm",
                "effect_size"} <= set(cell)
        assert set(cell["steps_to_threshold"]) == {"mean", "ci95"} and set(cell["auc"]) == {"mean", "ci95"}
        assert cell["p_holm"] >= cell["p"]
        low, high = cell["speedup"]["ci95"]
        assert low <= cell["speedup"]["mean"] <= high
    assert {"method", "rho", "p", "ci95"} <= set(summary["similarity"])
    assert any("python -m core report" in command for command in summary["commands"])


def test_summary_is_cached_until_a_result_changes(study):
    first = study_summary(study)
    assert (study / "report_summary.json").exists()
    assert study_summary(study) == first
    (study / "runs" / "es-s0" / "result.json").unlink()
    assert study_summary(study)["progress"]["n_missing"] == 1


def test_an_unfinished_study_reports_what_is_finished_and_names_the_missing_runs(study):
    for run in ("it-s1", "none-s2"):
        (study / "runs" / run / "result.json").unlink()
    summary = study_summary(study)
    progress = summary["progress"]
    assert not progress["complete"] and progress["n_missing"] == 2
    assert any(line.startswith("it -> es, seed 1") for line in progress["missing"])
    assert any(line.startswith("none -> es, seed 2") for line in progress["missing"])
    it_cell = next(c for c in summary["cells"] if c["pretrain"] == "it")
    assert it_cell["n_runs"] == 2
    html = write_report(study, study / "report.html").read_text()
    assert "Unfinished" in html and "it -&gt; es, seed 1" in html


def test_the_html_report_is_self_contained(study):
    html = write_report(study, study / "report.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, flags=re.IGNORECASE), "no external script"
    assert not re.search(r"<link[^>]*href\s*=\s*['\"]?https?:", html, flags=re.IGNORECASE)
    assert html.count("Plotly.newPlot") >= 3  # matrix, curves, dose at least
    assert "plotly.js v" in html or "plotly.js" in html  # the library itself is inside
    for section in ("Data and splits", "The matrix", "Curves", "Dose-response", "similar languages",
                    "Linear probes", "Regenerate", "Threshold"):
        assert section in html, section


@pytest.mark.slow
def test_cli_prints_one_json_object_and_writes_html(study, tmp_path):
    out = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(study), "--json"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "cells" in json.loads(out.stdout)
    html = tmp_path / "r.html"
    out = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(study), "--out", str(html)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and html.stat().st_size > 1_000_000  # plotly inlined
    missing = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(tmp_path), "--json"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "not a study" in missing.stderr and "Traceback" not in missing.stderr
