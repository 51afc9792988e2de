"""The Data page's first paint at 1x/4x/16x/64x the embedded sample (the replicas of bench/read_scale.py).

Run: nice -n 10 .venv/bin/python bench/data_page_scale.py [--sizes 1,4,16,64] [--root /tmp/deeplanguage-scale]

One fresh AppTest per size (a new session, Streamlit's caches cleared), the dataset typed as a folder: the time
from the first script run to the painted page (its figures, the first page of clips, the first clip's views),
with the dataset's manifest already on disk (core.data.manifests) and, separately, without it. Prints the
bytes of plot data the page sends, the ratio of each time to the 1x time measured in this run, and the 3 s target.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from bench.read_scale import replicate  # noqa: E402
from core.data import manifests  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402
from pages.common import CUSTOM  # noqa: E402

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "data.py")
TARGET_S = 3.0


def first_paint(folder: Path) -> tuple[float, int]:
    st.cache_data.clear()
    at = AppTest.from_file(PAGE, default_timeout=600)
    at.session_state["data_choice"] = CUSTOM
    at.session_state["data_path"] = str(folder)
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    assert not at.exception, at.exception
    return seconds, sum(len(chart.proto.spec) for chart in at.get("plotly_chart"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--root", type=Path, default=Path("/tmp/deeplanguage-scale"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    biggest = replicate(CV_SAMPLE_DIR, args.root / f"cv-{max(sizes)}x", max(sizes))
    first_paint(replicate(CV_SAMPLE_DIR, args.root / f"cv-{sizes[0]}x", sizes[0], biggest))  # imports, untimed
    base = None
    for size in sizes:
        folder = replicate(CV_SAMPLE_DIR, args.root / f"cv-{size}x", size, biggest)
        manifests.clear(folder)
        cold, _ = first_paint(folder)
        cached, plot_bytes = first_paint(folder)
        base = base or cached
        print(f"{size:3d}x  first paint {cached:6.2f} s with the manifest on disk ({cached / base:5.1f}x 1x, "
              f"{cached / TARGET_S:.2f}x the 3 s target), {cold:6.2f} s reading it first; "
              f"plot data {plot_bytes / 1e3:.0f} kB", flush=True)


if __name__ == "__main__":
    main()
