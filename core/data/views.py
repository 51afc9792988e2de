"""What the Data page shows of a manifest, bounded whatever the dataset's size: one page of a language's clips,
and per-language figures aggregated to a few numbers each (57k clips once sent 17 MB of plot data)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLIPS_PER_PAGE = 50  # rows of the clip list shown at once


def n_pages(manifest: pd.DataFrame, language: str, per_page: int = CLIPS_PER_PAGE) -> int:
    """How many pages ``language``'s clips fill (at least one)."""
    return max(1, -(-int((manifest["language"] == language).sum()) // per_page))


def clip_page(manifest: pd.DataFrame, language: str, page: int, per_page: int = CLIPS_PER_PAGE) -> pd.DataFrame:
    """The ``page``-th (from 1, clamped to the last) slice of ``language``'s clips, in manifest order."""
    clips = manifest[manifest["language"] == language]
    page = min(max(1, int(page)), n_pages(manifest, language, per_page))
    return clips.iloc[(page - 1) * per_page:page * per_page].reset_index(drop=True)


def box_stats(values: pd.Series, groups: pd.Series) -> pd.DataFrame:
    """Per group: ``n``, ``q1``, ``median``, ``q3`` and Tukey's whiskers ``lower``/``upper`` (the furthest values
    within 1.5 IQR of the box): what a box plot draws, without sending every value. NaN values are left out."""
    rows = []
    for group, part in values.groupby(groups, sort=True):
        x = part.dropna().to_numpy(dtype=float)
        if not len(x):
            continue
        q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75])
        reach = 1.5 * (q3 - q1)
        inside = x[(x >= q1 - reach) & (x <= q3 + reach)]
        rows.append({"group": group, "n": len(x), "q1": q1, "median": median, "q3": q3,
                     "lower": inside.min(), "upper": inside.max()})
    return pd.DataFrame(rows, columns=["group", "n", "q1", "median", "q3", "lower", "upper"])


def language_stats(manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The Data page's plots as small tables: ``counts`` (language, "count of" clips/speakers, n), ``speakers``
    (box stats of clips per speaker, per language) and ``durations`` (box stats of seconds, per language)."""
    per_language = manifest.groupby("language").agg(clips=("path", "size"), speakers=("speaker", "nunique"))
    per_speaker = manifest.groupby(["language", "speaker"]).size()
    return {
        "counts": per_language.reset_index().melt("language", var_name="count of", value_name="n"),
        "speakers": box_stats(per_speaker, per_speaker.index.get_level_values("language")),
        "durations": box_stats(manifest["duration"], manifest["language"]),
    }
