"""Server memory per upload: serve the app on loopback, upload the same large clip N times on the Identify page
in Chromium, and report the server's peak and final resident memory (RSS) for each upload.

Run: .venv/bin/python bench/upload_memory.py [--uploads 5] [--seconds 240 | --too-long] [--baseline main]
     [--env MALLOC_ARENA_MAX=2 ...]
The clip is a synthesized 44.1 kHz stereo 16-bit wav (240 s = 40 MiB, under the 50 MB limit); nothing leaves
127.0.0.1. Peak RSS is the kernel's high-water mark (VmHWM), reset before each upload through
/proc/PID/clear_refs, so it counts every byte the server touched, however briefly.
Target (issue 11): the fifth upload costs no more than the first (cost = peak - RSS before it), and the
final RSS does not ratchet up by the file's size per upload. Ratios are against the first upload, and with
--baseline against the same uploads to the app as it is at a git ref, in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MIB = 1 << 20
GROWTH_LIMIT_MIB = 64  # issue 17: RSS after five uploads within this of RSS after one


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _rss(pid: int) -> float:
    return _status_kib(pid, "VmRSS") * 1024 / MIB


def _peak(pid: int) -> float:
    return _status_kib(pid, "VmHWM") * 1024 / MIB


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


def _speechlike_wav(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> None:
    """A voiced buzz that switches on and off three times a second, written in 10 s blocks."""
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16", format="WAV") as out:
        for start in np.arange(0, seconds, 10.0):
            t = np.arange(int(min(10.0, seconds - start) * rate)) / rate + start
            tone = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > 0)
            out.write(np.stack([0.2 * tone, 0.15 * tone][:channels], axis=1).astype(np.float32))


def _serve(root: Path, port: int, runs_dir: str, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "DEEPLANGUAGE_RUNS_DIR": runs_dir, "PYTHONDONTWRITEBYTECODE": "1", **(extra_env or {})}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("streamlit did not answer on /_stcore/health within 30 s")


def _wait_idle(page, timeout_ms: int = 300000) -> None:
    page.wait_for_timeout(700)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=timeout_ms)


PROMPT = "Upload a clip, record one"  # what the page says while it has no clip


def _wait_for_answer(page, timeout_ms: int = 300000) -> str:
    """The first alert's text once the page has answered (its prompt for a clip gone, its "s of audio"
    caption or its too-long error drawn, the script idle). Works on any version of the page, for --baseline."""
    page.wait_for_function(
        "(prompt) => { const alerts = [...document.querySelectorAll('[data-testid=\"stAlert\"]')];"
        " const captions = [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')];"
        " return !alerts.some(a => a.innerText.startsWith(prompt)) && (captions.some(c => c.innerText.includes("
        "' s of audio')) || alerts.some(a => a.innerText.includes('the limit is'))); }",
        arg=PROMPT, timeout=timeout_ms)
    _wait_idle(page, timeout_ms)
    return page.locator('[data-testid="stAlert"]').first.inner_text()


def measure(root: Path, clip: Path, n_uploads: int, tmp: Path, extra_env: dict | None = None
            ) -> list[tuple[float, float, float]]:
    """Serve the app in ``root`` (with ``extra_env``) and upload ``clip`` ``n_uploads`` times: (before, peak,
    final) MiB for each."""
    from playwright.sync_api import sync_playwright

    tmp.mkdir(exist_ok=True)
    port = _free_port()
    server = _serve(root, port, str(tmp / "runs"), extra_env)
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"http://127.0.0.1:{port}/identify")
            page.wait_for_selector("h1", timeout=60000)
            _wait_idle(page)
            print(f"  server RSS after opening the page: {_rss(server.pid):.0f} MiB")
            for i in range(n_uploads):
                before = _rss(server.pid)
                _reset_peak(server.pid)
                started = time.perf_counter()
                # The same bytes under a new name each time (a browser may skip re-choosing the very same file).
                copy = tmp / f"large_{i + 1}.wav"
                if not copy.exists():
                    os.link(clip, copy)
                page.set_input_files('[data-testid="stFileUploader"] input', str(copy))
                verdict = _wait_for_answer(page)
                seconds = time.perf_counter() - started
                time.sleep(2.0)  # let the server settle before reading its final RSS
                rows.append((before, _peak(server.pid), _rss(server.pid)))
                print(f"  upload {i + 1}: before {before:5.0f} MiB  peak {rows[-1][1]:5.0f} MiB  "
                      f"final {rows[-1][2]:5.0f} MiB  cost (peak - before) {rows[-1][1] - before:4.0f} MiB  "
                      f"{seconds:5.1f} s  page: {verdict.splitlines()[0][:40]}")
                # Remove it, as a person would before uploading the next clip.
                page.locator('[data-testid="stFileChipDeleteBtn"] button').first.click()
                page.get_by_text(PROMPT).first.wait_for(timeout=60000)
                _wait_idle(page)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return rows


def summarize(label: str, rows: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Print and return the first upload's cost and the final RSS growth per upload after it (MiB)."""
    first, last = rows[0][1] - rows[0][0], rows[-1][1] - rows[-1][0]
    growth = (rows[-1][2] - rows[0][2]) / max(1, len(rows) - 1)
    grown = rows[-1][2] - rows[0][2]
    print(f"{label}: upload {len(rows)} costs {last:.0f} MiB = {last / first:.2f}x the first ({first:.0f} MiB); "
          f"final RSS {growth:+.0f} MiB per upload after the first "
          f"({'OK' if last <= first * 1.1 else 'FAIL: the last upload costs more than the first'}); "
          f"after {len(rows)}: {grown:+.0f} MiB over after one "
          f"({'OK' if grown <= GROWTH_LIMIT_MIB else 'FAIL'}: issue 17's bound is {GROWTH_LIMIT_MIB} MiB)")
    return first, growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=5, help="how many times to upload the clip (default 5)")
    parser.add_argument("--seconds", type=float, default=240.0,
                        help="length of the 44.1 kHz stereo wav (default 240 s = 40 MiB)")
    parser.add_argument("--too-long", action="store_true",
                        help="upload 1400 s of 16 kHz mono wav instead (43 MiB): refused for its length, "
                             "from its header")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                        help="also serve this checkout with these environment variables (repeatable), e.g. "
                             "MALLOC_ARENA_MAX=2 or GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576: "
                             "glibc's allocator settings, measured beside the app as it is")
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also measure the app as it is at GIT_REF (e.g. main), exported with git archive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "large.wav"
        seconds, rate, channels = (1400.0, 16000, 1) if args.too_long else (args.seconds, 44100, 2)
        _speechlike_wav(clip, seconds, rate, channels)
        print(f"clip: {clip.stat().st_size / MIB:.1f} MiB, {seconds:.0f} s of {rate / 1000:g} kHz "
              f"{'mono' if channels == 1 else 'stereo'} wav")
        results = {}
        if args.baseline:
            base = tmp / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            print(f"{args.baseline} (exported):")
            results[args.baseline] = measure(base, clip, args.uploads, tmp / "b")
        print("this checkout:")
        results["this checkout"] = measure(ROOT, clip, args.uploads, tmp / "c")
        for i, variables in enumerate(args.env):
            extra = dict(pair.split("=", 1) for pair in variables.split(","))
            print(f"this checkout with {variables}:")
            results[variables] = measure(ROOT, clip, args.uploads, tmp / f"e{i}", extra)
    summary = {label: summarize(label, rows) for label, rows in results.items()}
    if args.baseline:
        (base_first, base_growth), (first, growth) = summary[args.baseline], summary["this checkout"]
        print(f"this checkout / {args.baseline}: first upload's cost {first / base_first:.2f}x, "
              f"final RSS growth per upload {growth:+.0f} vs {base_growth:+.0f} MiB")


if __name__ == "__main__":
    main()
