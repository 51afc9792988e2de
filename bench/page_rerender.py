"""Page rerender: a second run of the Convergence and Latent space pages (everything cached) vs the first.

Run: .venv/bin/python bench/page_rerender.py [STUDY_DIR]   (default: the study the pages open on)
Target: a cached rerender <= 0.3 s. Ratios are second run / first run, measured here.
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core.study.layout  # noqa: E402
from core.study import browse  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

TARGET_S = 0.3


def main() -> None:
    if len(sys.argv) > 1:
        study = Path(sys.argv[1]).resolve()
        core.study.layout.STUDIES_DIR = study.parent  # list this study (and its siblings)
    else:
        choices = browse.study_choices()
        study = choices[browse.default_study(choices, None)]
    print(f"study: {browse.study_label(study)} ({study})")
    for page in ("convergence", "latent_space"):
        at = AppTest.from_file(str(ROOT / "ui" / "pages" / f"{page}.py"), default_timeout=120)
        at.query_params["study"] = core.study.layout.portable(study)  # the pages open on it
        started = time.perf_counter()
        at.run()
        first = time.perf_counter() - started
        if at.exception:
            raise SystemExit(f"{page} failed: {at.exception}")
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            at.run()
            seconds.append(time.perf_counter() - started)
        second = sorted(seconds)[len(seconds) // 2]
        print(f"{page:<13} first {first:6.2f} s   cached rerender (median of 5) {second:6.3f} s = "
              f"{second / first:.3f}x the first, {second / TARGET_S:.2f}x the 0.3 s target")


if __name__ == "__main__":
    main()
