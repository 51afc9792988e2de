"""What the pages do on load, and what they leave for later (speed itself is measured by bench/page_times.py)."""

import subprocess
import sys

from streamlit.testing.v1 import AppTest

import core.study.report_html
from tests.conftest import ROOT


def test_the_study_pages_read_a_study_without_importing_torch():
    """torch took most of the study pages' first load; they only read files."""
    code = ("import sys, core.study.browse, core.study.probes, core.plots, ui.common, ui.study; "
            "sys.exit(sorted({'torch', 'distributed'} & set(sys.modules)) or None)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_convergence_page_writes_its_report_only_when_asked(monkeypatch):
    written = []
    monkeypatch.setattr(core.study.report_html, "report_html", lambda folder: written.append(folder) or "<html>")
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "convergence.py"), default_timeout=120).run()
    assert not at.exception
    assert at.get("download_button") and written == []  # offered, not written
