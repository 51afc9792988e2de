"""The Identify page's second tab: how far to trust the chosen model.

Not a page (ui/__init__.py lists the pages): ui/pages/identify.py calls it.
"""

from pathlib import Path

import streamlit as st

from core import DeepLanguageError, plots
from core.identify.card import calibration_report, load_learning_curve
from core.identify import session


# The figures are drawn once per model and curve file, not on every rerun of the page (0.1 s of each); a
# resource, not data: a copy from st.cache_data is unpickled and so validated again, which costs nearly as much.
# st.plotly_chart only reads a figure.
@st.cache_resource(show_spinner=False)
def reliability(calibration: dict):
    return plots.reliability_figure(calibration)


@st.cache_resource(show_spinner=False)
def learning_curves(own: str, baseline: str | None, modified: tuple[float, ...]) -> tuple[dict, dict | None, object]:
    """The curves at ``own`` and ``baseline`` and their figure; ``modified`` (the files' times) renews it."""
    curve = load_learning_curve(own)
    scratch = load_learning_curve(baseline) if baseline else None
    return curve, scratch, plots.learning_curve_figure(curve, baseline=scratch)


def show_trust(bundle) -> None:
    """Reliability diagram, ECE and what "ok" promises for this model; the shipped recipe's learning curve."""
    try:
        report = calibration_report(bundle)
    except DeepLanguageError as error:
        st.info(f"No reliability figures for this model. {error}")
    else:
        promise = session.ok_promise(report)
        st.plotly_chart(reliability(report), key="identify_reliability")
        speech = "synthetic" if bundle.trained_on.get("synthetic") else "real"
        st.markdown(
            f"**What \"ok\" promises.** Measured on {promise['n_clips']} clips of {promise['speakers']} speakers "
            f"({speech} speech from {Path(bundle.trained_on.get('data_dir') or '?').name}), each scored by a model "
            f"that never heard its speaker ({report.get('source', 'validation speakers')}): the model answered "
            f"\"ok\" to {promise['coverage']:.0%} of them, and {promise['precision']:.0%} of those answers were right "
            f"(95 % CI {promise['low']:.0%}-{promise['high']:.0%}, over clips; chance is {1 / len(bundle.labels):.0%})."
            f" Expected calibration error: {report['ece_before']:.1%} before calibration, {report['ece_after']:.1%} "
            f"after (temperature {report['temperature']:.2f}). Other answers are \"uncertain\".")
    if bundle.checkpoint.get("enrolled"):
        taught = ", ".join(record["language"] for record in bundle.checkpoint["enrolled"])
        st.warning(f"This model was taught {taught} on top of its training: those languages were never measured "
                   "here, and the confidence rule above comes from the model it was taught from.")
    st.subheader("How much speech per language would you need?")
    own, baseline = session.learning_curves(bundle.path, bundle.checkpoint["model"]["kind"])
    if not own.exists():
        st.info(f"This model has no learning curve. Make one with `python -m core evaluate --learning-curve "
                f"--checkpoint {own.parent / 'best.pt'} --data DATA --out {own}`.")
        return
    try:
        curve, scratch, figure = learning_curves(
            str(own), baseline and str(baseline), tuple(p.stat().st_mtime for p in (own, baseline) if p))
    except DeepLanguageError as error:
        st.info(str(error))
        return
    st.plotly_chart(figure, key="identify_learning_curve")
    needed = curve.get("minutes_for_80")
    st.caption(
        ("Red: the from-scratch GMM recipe on the same clips and folds; the gap is what pretraining buys. "
         if scratch else "")
        + f"This model's recipe, retrained on less of the real Common Voice sample ({len(curve['languages'])} languages: "
        f"{', '.join(curve['languages'])}; {curve.get('n_speakers', '?')} speakers), scored in "
        f"{curve.get('n_folds', '?')}-fold cross-validation on speakers held out of training; band: 95 % bootstrap "
        f"CI over speakers; chance {curve['chance']:.0%}. "
        + (f"The fitted power law reaches 80 % at about {needed:.0f} minutes per language (an extrapolation). "
           if needed else "The fitted power law never reaches 80 %. ")
        + _restricted_caption(curve.get("restricted"))
        + f"Made by `{curve.get('command', 'python -m core evaluate --learning-curve')}`.")


def _restricted_caption(restricted: dict | None) -> str:
    if not restricted:
        return ""
    reach = {float(a): need for a, need in restricted["minutes_for"].items()}
    said = "; ".join(f"{a:.0%} at about {need:.0f} minutes" for a, need in sorted(reach.items())
                     if need and a > max(restricted["accuracy"]))
    return (f"Orange: the same answers renormalised over {', '.join(restricted['languages'])} (as choosing those "
            f"languages does), on their {restricted['n_clips']} clips; chance {restricted['chance']:.0%}"
            + (f"; its power law reaches {said} per language. " if said else ". "))
