"""A study's summary (:func:`core.study.report.study_summary`) as the plain text that `python -m core
study` and `python -m core probe` print: the same numbers as the JSON, the HTML report and the pages."""

from __future__ import annotations

NO_PROBES_YET = "No probes in this study yet (they run after every training run has finished)."


def summary_text(summary: dict) -> str:
    """The summary's threshold, cells, similarity test and probes, one line each."""
    progress, threshold = summary["progress"], summary["threshold"]
    targets = list(threshold["per_target"]) or sorted({c["target"] for c in summary["cells"]})
    lines = [f"study {summary['study']}: {progress['finished']} of {progress['planned']} planned runs finished; "
             f"targets {', '.join(targets)}; thresholds (validation MSE) "
             + (", ".join(f"{t} {_number(v, '.4f')}" for t, v in threshold["per_target"].items()) or "n/a")]
    if not progress["complete"]:
        lines.append(f"unfinished: {progress['n_missing']} runs missing; the numbers cover the finished runs")
    lines += _cell_lines(summary["cells"]) + _similarity_lines(summary["similarity"])
    lines += _probe_lines(summary)
    return "\n".join(lines)


def _cell_lines(cells: list[dict]) -> list[str]:
    if not cells:
        return ["\nno finished runs yet"]
    lines = ["\nsteps to threshold (mean [95% CI], bootstrap over seeds) and speed-up = steps(none) / steps(cell), "
             "paired by seed, geometric mean [95% CI]; p: exact sign-flip, p_t: paired t-test, both Holm over cells:"]
    for c in cells:
        steps, speedup = c["steps_to_threshold"], c["speedup"]
        line = (f"  {c['pretrain']:<10} -> {c['target']:<6} epochs {c['pretrain_epochs']:<3} "
                f"steps {_number(steps['mean'], '.1f')} {_interval(steps['ci95'], '.1f')}  "
                f"converged {c['n_converged']}/{c['n_runs']}")
        if c["pretrain"] != "none":
            line += (f"  speed-up {_number(speedup['mean'], '.2f')} {_interval(speedup['ci95'], '.2f')}"
                     f"  p={_number(c['p'], '.3f')} (Holm {_number(c['p_holm'], '.3f')}, min {_number(c.get('p_min'), '.3f')})"
                     f"  p_t={_number(c.get('p_t'), '.3g')} (Holm {_number(c.get('p_t_holm'), '.3g')})"
                     f"  d_z={_number(c['effect_size'], '+.2f')}")
        lines.append(line)
    return lines


def _similarity_lines(test: dict) -> list[str]:
    head = f"\nsimilar languages converge faster? ({test['method']}, Spearman rho of similarity vs log speed-up): "
    if test.get("rho") is None:
        return [head + test.get("reason", "no test")]
    return [head + f"rho {_number(test['rho'], '+.2f')} {_interval(test.get('ci95'), '+.2f')}  "
                   f"Mantel p={_number(test['p'], '.3f')} (min {_number(test.get('p_min'), '.3f')})  "
                   f"pairs {test.get('n_pairs')}"]


def _probe_lines(summary: dict) -> list[str]:
    if not summary["probes"]:
        return ["\n" + (summary.get("probe_note") or NO_PROBES_YET)]
    tests = {(t["task"], t["kind"], t["target"], t["condition"]): t for t in summary.get("probe_tests", [])}
    lines = ["\nlinear probes (balanced accuracy, speaker-grouped CV; mean [95% CI] over seeds; chance; "
             "Fisher-combined permutation p; vs none: exact Mann-Whitney over seeds, rank-biserial r > 0 = higher):"]
    for row in summary["probes"]:
        test = tests.get((row["task"], row["kind"], row["target"], row["condition"]))
        lines.append(f"  {row['task']:<15} {row['kind']:<8} {row['target'] or '':<6} {row['condition']:<10} "
                     f"{_number(row['accuracy'], '.3f')} {_interval([row['ci_low'], row['ci_high']], '.3f')}  "
                     f"chance {_number(row['chance'], '.3f')} (shuffled {_number(row['null_mean'], '.3f')})  "
                     f"majority {_number(row['majority'], '.3f')}  p={_number(row['p_value'], '.3g')}  "
                     f"seeds {row['n_seeds']}"
                     + (f"  vs none p={_number(test['p_value'], '.3f')} r={_number(test['rank_biserial'], '+.2f')}"
                        if test else ""))
    return lines


def _number(value, spec: str) -> str:
    """A number in ``spec``; None (the summary's NaN: no value) as "n/a"."""
    return "n/a" if value is None else format(value, spec)


def _interval(bounds, spec: str) -> str:
    return f"[{_number(bounds[0], spec)}, {_number(bounds[1], spec)}]" if bounds else "[n/a]"
