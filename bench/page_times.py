"""First load and cached rerender of every page, against the Home page measured in the same run.

Run: .venv/bin/python bench/page_times.py [--reruns 3] [--pages data convergence ...]
Each page runs in a fresh Python process (as the first visitor of a freshly started server finds it: streamlit
imported, the page's own modules and data not yet), through app.py under streamlit.testing's AppTest, with its
default widgets:
"cold" is that first run, "warm" the median of the reruns after it. Target (issue 17): cold <= 3 s, warm <= 0.1 s.
Ratios are against Home's cold and warm times, measured here in the same run. Disk caches (data/cache, a study's
projections) are whatever this checkout holds: run it twice to see the pages on a warm disk.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the pages import ui/, as under `streamlit run app.py`
PAGES = ("home", "data", "identify", "train", "runs", "convergence", "latent_space")
COLD_TARGET_S, WARM_TARGET_S = 3.0, 0.1


def time_page(page: str, reruns: int) -> dict:
    """In this process: the page's first run and its reruns (seconds)."""
    import streamlit  # noqa: F401  (the server has it imported before any page runs)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)  # as the server runs it: app.py's navigation
    if page != "home":
        at.switch_page(f"ui/pages/{page}.py")
    started = time.perf_counter()
    at.run()
    cold = time.perf_counter() - started
    warm = []
    for _ in range(reruns):
        started = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - started)
    error = at.exception[0].message if at.exception else None
    return {"page": page, "cold": cold, "warm": sorted(warm)[len(warm) // 2], "error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=3, help="cached reruns after the first (median reported)")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=PAGES)
    parser.add_argument("--one", choices=PAGES, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.one:
        print(json.dumps(time_page(args.one, args.reruns)))
        return
    rows = []
    for page in ["home", *(p for p in args.pages if p != "home")]:
        done = subprocess.run([sys.executable, __file__, "--one", page, "--reruns", str(args.reruns)],
                              cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{page} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.splitlines()[-1]))
    home = rows[0]
    print(f"{'page':<13} {'cold s':>7} {'x Home':>7} {'warm s':>7} {'x Home':>7}   targets: cold <= {COLD_TARGET_S} s, "
          f"warm <= {WARM_TARGET_S} s")
    for row in rows:
        verdict = "ok" if row["cold"] <= COLD_TARGET_S and row["warm"] <= WARM_TARGET_S else "OVER"
        print(f"{row['page']:<13} {row['cold']:7.2f} {row['cold'] / home['cold']:7.1f} {row['warm']:7.3f} "
              f"{row['warm'] / home['warm']:7.1f}   {verdict}" + (f"   error: {row['error']}" if row["error"] else ""))
    # Seconds on a shared machine swing with its load; the ratios to Home, measured alongside, swing less.
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
