"""A study's report as ONE self-contained HTML file: plotly's JavaScript is inlined once, nothing is
fetched, so it opens and draws with the network off. Built from :func:`core.study.report.study_summary`
and the study's curves; its figures come from core.plots (study: the matrix and the probes; transfer:
curves per target, dose-response, similarity)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from core.files import write_text
from core.plots import study as study_plots
from core.plots import transfer
from core.study.layout import load_study
from core.study.report import study_curves_long, study_summary
from core.study.report_text import NO_PROBES_YET

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
         "text-align:right}th{background:#f3f3f3}code,pre{background:#f6f6f6;padding:2px 4px}"
         "pre{white-space:pre-wrap}.warn{color:#a33}")


TEMPLATE = "plotly"  # every report figure's, so the page's download and the CLI's file are the same bytes


def write_report(study_dir: str | Path, out: str | Path) -> Path:
    """Write the study's report to ``out`` (atomically) and return its path."""
    write_text(out, report_html(study_dir))
    return Path(out)


def report_html(study_dir: str | Path) -> str:
    """The study's report as one HTML string (e.g. for a page's download button)."""
    curves = study_curves_long(study_dir, load_study(study_dir)["config"])
    return render_report(study_summary(study_dir), curves)


def render_report(summary: dict, curves: pd.DataFrame) -> str:
    """The whole HTML page of a summary and its validation curves (long form)."""
    figures = _Figures()
    progress = summary["progress"]
    parts = [f"<h1>Transfer-matrix study: {_e(summary['study'])}</h1>",
             f"<p>{_e(progress['finished'])} of {_e(progress['planned'])} planned runs finished.</p>"]
    if not progress["complete"]:
        parts.append(f"<p class='warn'>Unfinished: this report covers the finished runs only. "
                     f"{_e(progress['n_missing'])} runs are missing:</p><pre>{_e(chr(10).join(progress['missing']))}"
                     + (" ..." if len(progress["missing"]) < _count(progress["n_missing"]) else "") + "</pre>")
    parts += _setup_sections(summary)
    parts.append("<h2>The matrix</h2><p>Speed-up = steps to threshold without pretraining / with it, same "
                 "target and seed (paired), geometric mean over seeds; &gt; 1 means faster. Null: speed-up 1. "
                 "p exact: sign-flip permutation test over seeds (with n seeds it cannot go below 2/2^n, 0.0625 "
                 "for 5); p t: paired t-test of the log speed-ups; each Holm-adjusted over all cells. d_z: "
                 "Cohen's effect size of the log speed-ups.</p>")
    doses = sorted({c["pretrain_epochs"] for c in summary["cells"] if c["pretrain"] != "none"})
    parts += [figures.add(study_plots.speedup_matrix_figure(summary["cells"], dose)) for dose in doses]
    parts.append(_table(_cell_rows(summary["cells"])))
    parts.append("<h2>Curves</h2>")
    for target in sorted(curves["target"].unique()) if len(curves) else []:
        parts.append(figures.add(transfer.condition_curves_figure(curves, target,
                                                                     summary["threshold"]["per_target"].get(target))))
    parts += ["<h2>Dose-response</h2>", figures.add(transfer.dose_figure(summary["dose"])),
              _table(pd.DataFrame(summary["dose"]))]
    parts += _similarity_sections(summary, figures)
    parts.append("<h2>Linear probes</h2>")
    if summary.get("identify_latents"):
        parts.append(f"<p>{_e(identify_note(summary['identify_latents']))}</p>")
    if summary["probes"]:
        probes = pd.DataFrame(summary["probes"])
        by_target = probes.groupby("target", sort=False) if "target" in probes and probes["target"].notna().all() \
            else [(None, probes)]
        for target, part in by_target:  # a matrix study probes each target's runs separately
            parts.append(f"<h3>Runs trained on target {_e(target)}</h3>" if target is not None else "")
            parts += [figures.add(study_plots.probe_bars_figure(part, task)) for task in part["task"].unique()]
        parts.append(_table(probes))
    else:
        parts.append(f"<p>{_e(summary.get('probe_note') or NO_PROBES_YET)}</p>")
    parts += ["<h2>Regenerate</h2><pre>" + _e("\n".join(summary["commands"])) + "</pre>",
              "<h2>Definitions</h2>", _table(pd.DataFrame(list(summary["definitions"].items()),
                                                          columns=["name", "meaning"]))]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Study report: "
            f"{_e(summary['study'])}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")


def _setup_sections(summary: dict) -> list[str]:
    data = summary["data"]
    parts = ["<h2>Data and splits</h2>",
             f"<p>Speech: <b>{_e(data['speech'])}</b>, from <code>{_e(data['dir'])}</code>; "
             f"{_e(data.get('n_clips', '?'))} clips, {_e(data.get('n_speakers', '?'))} speakers. Splits are by speaker "
             "(no speaker in two splits) and shared by every run.</p>"]
    if data.get("splits"):
        splits = pd.DataFrame(data["splits"])
        splits["clips / speakers"] = splits["clips"].astype(str) + " / " + splits["speakers"].astype(str)
        table = splits.pivot(index="language", columns="split", values="clips / speakers")
        table.columns.name = None
        parts.append("<p>Clips / speakers per language and split:</p>" + _table(table.reset_index()))
    threshold = summary["threshold"]
    values = ", ".join(f"{t} {_float(v)}" for t, v in threshold["per_target"].items() if v is not None) or "n/a"
    parts += ["<h2>Model, filters, threshold</h2>",
              _table(pd.DataFrame([{**summary["model"]}])),
              f"<p>Pretraining conditions: {_e(', '.join(summary['filters']['conditions']))}; low-pass cutoff "
              f"{_e(summary['filters']['lowpass_cutoff_hz'])} Hz (plain language = low-pass; <code>:full</code> = "
              "full band; <code>:utero</code> = in-utero attenuation; <code>noise</code> = speech-shaped "
              "noise).</p>",
              f"<p>Threshold (validation MSE per target): {_e(values)}. Rule: {_e(threshold['rule'])}.</p>"]
    return parts


def identify_note(about: dict) -> str:
    """One sentence on the "identify" latents: which model, how many clips, how reduced."""
    reduced = (f", reduced to {about['n_components']} principal components ({about['explained_variance']:.0%} of "
               f"the variance)" if about.get("n_components") else "")
    return (f"identify = {about['label']}: the shipped identifier's embedding ({about['dim']} dimensions) of "
            f"{about['n_clips']} latent-sample clips{reduced}. A pretrained reference space beside the LSTM's, "
            f"never trained on this study.")


def _similarity_sections(summary: dict, figures: "_Figures") -> list[str]:
    primary = summary["similarity"]
    parts = ["<h2>Do similar languages converge faster?</h2>",
             "<p>Spearman rho between a pair's similarity and its mean log speed-up (pretraining language "
             "different from the target; low-pass language conditions). Null: rho = 0, the similarity's "
             "language labels exchangeable; p from a Mantel permutation of labels (all k! of them for k languages, "
             "so p cannot go below 1/k!: p_min); 95% CI from a bootstrap over seeds; p_holm: Holm over the "
             "similarity measures. The two Whisper measures come from a pretrained encoder's view of the study's own "
             "clips (the reference space). Primary method (fixed in "
             f"advance): <b>{_e(primary['method'])}</b>.</p>"]
    rows = []
    for test in summary["similarity_methods"]:
        parts.append(figures.add(transfer.similarity_figure(test)) if test.get("pairs")
                     else f"<p>{_e(test['method'])}: {_e(test.get('reason', 'no test'))}</p>")
        auc = test.get("auc") or {}
        rows.append({**{key: test.get(key) for key in ("method", "rho", "ci95", "p", "p_holm", "p_min", "n_pairs",
                                                      "n_languages", "n_permutations", "pretrain_epochs")},
                     "AUC rho": auc.get("rho"), "AUC p": auc.get("p"), "AUC p Holm": auc.get("p_holm"),
                     "source (data, speakers)": test.get("source")})
    return parts + [_table(pd.DataFrame(rows))]


def _cell_rows(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        rows.append({"pretrain": c["pretrain"], "target": c["target"], "epochs": c["pretrain_epochs"],
                     "runs": c["n_runs"], "converged": c.get("n_converged"),
                     "steps (mean)": c["steps_to_threshold"]["mean"], "steps CI": c["steps_to_threshold"]["ci95"],
                     "speed-up": c["speedup"]["mean"], "speed-up CI": c["speedup"]["ci95"],
                     "AUC speed-up": (c.get("auc_speedup") or {}).get("mean"),
                     "p exact": c["p"], "p exact Holm": c["p_holm"], "p t": c.get("p_t"),
                     "p t Holm": c.get("p_t_holm"), "d_z": c["effect_size"]})
    return pd.DataFrame(rows)


def _table(table: pd.DataFrame) -> str:
    def show(value):
        if isinstance(value, float):
            return "" if value != value else f"{value:.3g}"  # NaN (no value) -> blank
        if isinstance(value, list):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return "" if value is None else str(value)

    return table.map(show).to_html(index=False, escape=True, border=0) if len(table) else "<p>(none)</p>"


class _Figures:
    """Each figure as a div; plotly.js inlined with the first one only."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, figure) -> str:
        self.n += 1
        # Named, not the process's default: a Streamlit server sets its own theme as the default, whose
        # colours are placeholders its front end fills in (near-black anywhere else).
        figure.layout.template = None  # first dropped: its JSON is then the same however the figure was made
        figure.update_layout(template=TEMPLATE)
        return figure.to_html(full_html=False, include_plotlyjs=self.n == 1, div_id=f"figure-{self.n}",
                              config={"displaylogo": False})


def _e(text) -> str:
    return html.escape(str(text))


def summary_json(summary: dict) -> str:
    """The summary as one JSON object (what `report --json` prints)."""
    return json.dumps(summary, indent=1)


def _float(value) -> str:
    """A number as 4 decimals; anything else (a hand-edited report_summary.json) as its text, escaped later."""
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def _count(value) -> int:
    return value if isinstance(value, int) else 0
