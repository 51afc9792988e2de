"""core.study.report and `python -m core report`: the JSON summary, the offline HTML, unfinished studies."""

import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from core import runs
from core.audio.features import FeatureConfig
from core.errors import DeepLanguageError
from core.paths import REPO_ROOT
from core.study.layout import StudyConfig, parse_run_name, run_name
from core.study.report import study_summary
from core.study.report_html import write_report
from core.study.report_text import summary_text
from core.study.similarity import language_similarity

TARGETS = ("es", "it", "ja")
CONDITIONS = ("none", "es", "it", "fr", "ja", "es:full", "noise")
STEPS = list(range(0, 401, 20))  # validation passes of the fixed 400-step budget


def write_planted_study(folder, seeds: int = 4, skip: tuple[str, ...] = ()) -> None:
    """A finished matrix study on disk, in the engine's own files (study.json, runs/*/config.json and
    curve.json), whose pretrained runs learn faster the closer their language is to the target
    (by genealogy); the runs named in ``skip`` are left unfinished."""
    config = StudyConfig(targets=TARGETS, pretrain=CONDITIONS, seeds=seeds, pretrain_epochs=(1, 2),
                         autoencoder=False)
    runs.write_json(folder / "study.json", {"study": asdict(config), "features": asdict(FeatureConfig()),
                                            "data_dir": "data/cv-sample", "copy_baselines": {}})
    manifest = pd.DataFrame([{"key": f"{lang}{i}", "path": f"{lang}/{i}.mp3", "language": lang,
                              "speaker": f"{lang}-{i % 4}", "split": ("train", "train", "validation", "test")[i % 4],
                              "n_frames": 300} for lang in ("es", "it", "fr", "ja") for i in range(8)])
    manifest.to_csv(folder / "manifest.tsv", sep="\t", index=False)
    family = language_similarity("family")
    rng = np.random.default_rng(0)
    for name in config.run_names():
        spec = parse_run_name(name)
        language = spec["pretrain"].partition(":")[0]
        closeness = family.loc[language, spec["target"]] if language in family.index else 0.0
        rate = (1 + closeness * spec["pretrain_epochs"]) * math.exp(rng.normal(0, 0.05))
        run_dir = runs.create_run("study-lstm", spec, folder / "runs", name=name)
        if name not in skip:
            losses = [0.2 + 0.8 * math.exp(-step * rate / 100) for step in STEPS]
            runs.write_json(run_dir / "curve.json", {"step": STEPS, "val_loss": losses,
                                                     "train_loss": losses, "seconds_per_step": 0.01})


@pytest.fixture
def study(tmp_path):
    write_planted_study(tmp_path)
    return tmp_path


def test_summary_has_the_json_contract(study):
    summary = study_summary(study)
    json.dumps(summary, allow_nan=False)  # strict JSON: NaN became null
    assert summary["progress"]["complete"] and summary["progress"]["planned"] == 3 * (1 + 6 * 2) * 4
    assert summary["data"]["speech"].startswith("real")
    cells = [c for c in summary["cells"] if c["pretrain"] != "none"]
    assert len(cells) == 3 * 6 * 2  # targets x pretrained conditions x doses
    for cell in cells:
        assert {"pretrain", "target", "n_runs", "steps_to_threshold", "auc", "speedup", "p", "p_holm",
                "effect_size"} <= set(cell)
        assert set(cell["steps_to_threshold"]) == {"mean", "ci95"} and set(cell["auc"]) == {"mean", "ci95"}
        assert cell["n_runs"] == 4 and cell["p_holm"] >= cell["p"]
        low, high = cell["speedup"]["ci95"]
        assert low <= cell["speedup"]["mean"] <= high
    assert {"method", "rho", "p", "ci95"} <= set(summary["similarity"])
    assert any("python -m core report" in command for command in summary["commands"])


def test_the_planted_effects_come_out(study):
    summary = study_summary(study)
    cell = {(c["pretrain"], c["target"], c["pretrain_epochs"]): c for c in summary["cells"]}
    # es -> es at 2 epochs learns (1 + 1 x 2) = 3x as fast; ja -> es is unrelated: no speed-up.
    assert cell[("es", "es", 2)]["speedup"]["mean"] == pytest.approx(3.0, rel=0.15)
    assert cell[("ja", "es", 2)]["speedup"]["ci95"][0] < 1.0 < cell[("ja", "es", 2)]["speedup"]["ci95"][1]
    assert cell[("es", "es", 2)]["p_t_holm"] < 0.05
    dose = {(d["pretrain"], d["pretrain_epochs"]): d["speedup"] for d in summary["dose"]}
    assert dose[("it", 2)] > dose[("it", 1)] > 1.0
    assert summary["similarity"]["method"] == "family" and summary["similarity"]["rho"] > 0.5


def write_probes(folder, drop: str | None = None) -> None:
    """A probes.tsv as core.study.probes writes it: "es" runs' latents probe better than "none" runs' on
    every seed (4 a side), and the autoencoder beside them; ``drop``: leave that column out."""
    rows = []
    for condition, accuracies in (("none", [0.60, 0.62, 0.64, 0.66]), ("es", [0.80, 0.82, 0.84, 0.86]),
                                  ("ae", [0.50, 0.52, 0.54, 0.56])):
        for seed, accuracy in enumerate(accuracies):
            rows.append({"run": f"{condition}-{seed}", "pretrain": condition, "target": "es", "seed": seed,
                         "pretrain_epochs": 2, "condition": condition, "kind": "h", "task": "target-vs-rest",
                         "accuracy": accuracy, "ci_low": accuracy - 0.1, "ci_high": accuracy + 0.1, "chance": 0.5,
                         "null_mean": 0.49, "majority": 0.75, "p_value": 0.01, "n": 120, "n_classes": 2,
                         "n_speakers": 40, "n_splits": 5, "n_permutations": 20, "dropped": ""})
    table = pd.DataFrame(rows)
    table.drop(columns=[drop] if drop else []).to_csv(folder / "probes.tsv", sep="\t", index=False)


def test_the_one_summary_carries_the_probes_their_tests_and_the_text_the_cli_prints(study):
    write_probes(study)
    summary = study_summary(study)
    probes = {p["condition"]: p for p in summary["probes"]}
    assert set(probes) == {"none", "es", "ae"}
    assert probes["es"]["accuracy"] == pytest.approx(0.83) and probes["es"]["n_seeds"] == 4
    assert probes["es"]["ci_low"] < 0.80 and probes["es"]["ci_high"] > 0.86  # t-interval over seeds
    assert probes["es"]["null_mean"] == pytest.approx(0.49) and probes["es"]["p_value"] < 0.01  # Fisher-combined
    tests = summary["probe_tests"]
    assert [t["condition"] for t in tests] == ["es"]  # the autoencoder is a reference, not a condition
    assert tests[0]["rank_biserial"] == 1 and tests[0]["p_value"] == pytest.approx(2 / 70)  # exact, 4 vs 4
    assert json.loads(json.dumps(summary)) == study_summary(study)  # the cache holds the same summary
    text = summary_text(summary)
    assert "0.830 [" in text and "vs none p=0.029 r=+1.00" in text
    speedup = next(c for c in summary["cells"] if (c["pretrain"], c["target"], c["pretrain_epochs"]) == ("es", "es", 2))
    assert f"speed-up {speedup['speedup']['mean']:.2f}" in text


def test_a_broken_probes_table_is_named_not_an_empty_probe_list(study, capsys):
    from core.__main__ import main

    write_probes(study, drop="accuracy")
    with pytest.raises(DeepLanguageError, match=r"probes\.tsv lacks the column accuracy; probe the study again"):
        study_summary(study, use_cache=False)
    assert main(["report", "--study", str(study), "--json"]) == 1
    err = capsys.readouterr().err
    assert "lacks the column accuracy" in err and "Traceback" not in err
    (study / "probes.tsv").write_text("run\tcondition\n\"unclosed\n")
    with pytest.raises(DeepLanguageError, match="not a readable probes table"):
        study_summary(study, use_cache=False)


def test_a_study_without_probes_says_why_in_every_rendering(study):
    summary = study_summary(study)
    assert summary["probes"] == [] and summary["probe_tests"] == []
    assert "No probes in this study yet" in summary_text(summary)
    assert "No probes in this study yet" in write_report(study, study / "report.html").read_text()


def test_summary_is_cached_until_a_result_changes(study):
    first = study_summary(study)
    assert (study / "report_summary.json").exists()
    assert study_summary(study) == first
    (study / "runs" / run_name("es", "it", 0, 1) / "curve.json").unlink()
    assert study_summary(study)["progress"]["n_missing"] == 1


def test_an_unfinished_study_reports_what_is_finished_and_names_the_missing_runs(tmp_path):
    write_planted_study(tmp_path, skip=(run_name("it", "es", 1, 2), run_name("none", "ja", 3, 0)))
    summary = study_summary(tmp_path)
    progress = summary["progress"]
    assert not progress["complete"] and progress["n_missing"] == 2
    assert "it -> es, seed 1, 2 pretraining epochs" in progress["missing"]
    assert "none -> ja, seed 3, 0 pretraining epochs" in progress["missing"]
    it_cell = next(c for c in summary["cells"] if (c["pretrain"], c["target"], c["pretrain_epochs"]) == ("it", "es", 2))
    assert it_cell["n_runs"] == 3
    html = write_report(tmp_path, tmp_path / "report.html").read_text()
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
    primary = study_summary(study)["similarity"]["method"]
    assert f"Primary method (fixed in advance): <b>{primary}</b>" in html  # filled in, not the template's braces


@pytest.mark.slow
def test_cli_prints_one_json_object_and_writes_html(study, tmp_path_factory):
    out = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(study), "--json"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "cells" in json.loads(out.stdout)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    html = elsewhere / "r.html"
    out = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(study), "--out", str(html)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and html.stat().st_size > 1_000_000  # plotly inlined
    missing = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(elsewhere), "--json"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "not a study" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow  # a fresh interpreter writes the CLI's report
def test_the_page_s_report_is_the_cli_s_byte_for_byte_whatever_plotly_template_streamlit_set(study, tmp_path):
    import plotly.io as pio
    import streamlit  # noqa: F401  (importing it makes its theme plotly's default template, as in the server)

    from core.study.report_html import report_html

    assert pio.templates.default == "streamlit"
    out = subprocess.run([sys.executable, "-m", "core", "report", "--study", str(study), "--out",
                          str(tmp_path / "cli.html")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    page = report_html(study)  # what the Convergence page's download button serves
    assert "#000001" not in page  # Streamlit's theme placeholders
    assert page.encode() == (tmp_path / "cli.html").read_bytes()

def test_a_study_with_no_finished_run_still_reports(study):
    shutil.rmtree(study / "runs")
    summary = study_summary(study)
    assert summary["cells"] == [] and summary["progress"]["finished"] == 0
    assert summary["progress"]["n_missing"] == summary["progress"]["planned"] > 0
    assert summary["similarity"]["rho"] is None and summary["similarity"]["reason"]
    assert "Unfinished" in write_report(study, study / "report.html").read_text()


def test_the_regenerating_command_carries_every_changed_setting(tmp_path):
    from core.study.report import study_command

    config = StudyConfig(targets=("es", "it"), pretrain=("none", "ja"), seeds=5, pretrain_epochs=(1, 4),
                         hidden_size=32, autoencoder=False, crop_frames=40)
    command = study_command(tmp_path, {"config": config, "data_dir": "data/cv-sample"})
    assert command.startswith("python -m core study --data data/cv-sample --targets es,it --pretrain none,ja "
                              "--seeds 5 --pretrain-epochs 1,4")
    assert "--hidden-size 32" in command and "--no-autoencoder" in command
    assert "no flag): crop_frames=40" in command
    assert "--cutoff" not in command  # unchanged settings stay out
