"""End to end in a real browser: Debian's Chromium driven by Playwright against `streamlit run app.py`.

One server and one browser for the whole file; each test visits pages the way a person would.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"": "deepLanguage", "data": "Data", "identify": "Identify", "train": "Train",
         "convergence": "Convergence", "latent_space": "Latent"}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                                   reason="Debian's chromium is not installed (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_dataset(cv_sample, tmp_path_factory):
    """Three languages, eight clips each, in Common Voice layout: trains in seconds."""
    root = tmp_path_factory.mktemp("tiny")
    for lang in ("es", "fr", "ja"):
        (root / lang / "clips").mkdir(parents=True)
        lines = (cv_sample / lang / "validated.tsv").read_text().splitlines()[:9]
        for line in lines[1:]:
            name = line.split("\t")[1]
            shutil.copy(cv_sample / lang / "clips" / name, root / lang / "clips" / name)
        (root / lang / "validated.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def server(server_process):
    return server_process[1]


def start_server(runs_dir: Path) -> tuple[subprocess.Popen, str]:
    """A `streamlit run app.py` process, once it answers, and its URL."""
    port = _free_port()
    env = {**os.environ, "DEEPLANGUAGE_RUNS_DIR": str(runs_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("streamlit did not answer on /_stcore/health within 20 s")


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    """The `streamlit run app.py` process and its URL."""
    process, url = start_server(tmp_path_factory.mktemp("runs"))
    yield process, url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    yield page
    context.close()


def wait_idle(page, timeout_ms: int = 60000) -> None:
    """Until Streamlit has finished running the script (its status widget gone)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


def assert_no_exception(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_every_page_loads_without_an_exception(server, page):
    for path, heading in PAGES.items():
        if path and not (ROOT / "ui" / "pages" / f"{path}.py").exists():
            continue
        page.goto(f"{server}/{path}")
        page.wait_for_selector("h1", timeout=60000)
        wait_idle(page)
        assert_no_exception(page)
        assert heading.lower() in page.locator("h1").first.inner_text().lower()


def test_the_server_watches_the_app_s_code_not_the_tree(server_process, page):
    """Watching the repository (.venv, data/, checkpoints/) overflowed inotify's queue: thousands of lines."""
    process, url = server_process
    page.goto(f"{url}/data")  # a session: its script's modules are being watched now
    page.wait_for_selector("h1", timeout=60000)
    wait_idle(page)
    watches = 0
    for fd in Path(f"/proc/{process.pid}/fdinfo").iterdir():
        try:
            watches += sum(line.startswith("inotify wd:") for line in fd.read_text().splitlines())
        except FileNotFoundError:  # closed since it was listed
            pass
    assert watches == 0, f"{watches} inotify watches"

# Every label the sidebar's navigation ever shows (a link's last line: material icons draw from their names), recorded from before the page's own scripts run.
RECORD_NAVIGATION_JS = """window.__navigation = new Set();
new MutationObserver(() => document.querySelectorAll('[data-testid="stSidebarNav"] a').forEach(
    link => window.__navigation.add(link.innerText.trim().split('\\n').pop().trim()))).observe(document, {childList: true, subtree: true});"""


def test_a_fresh_server_s_first_visit_to_a_page_shows_only_the_app_s_navigation(browser, tmp_path):
    """Streamlit runs a server's first script as a legacy app of pages/ files until app.py's st.navigation says
    otherwise: a first visit straight to /data listed every file (helpers included), if only for a moment."""
    from ui import PAGES

    process, url = start_server(tmp_path / "runs")
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 2400})
        page = context.new_page()
        page.add_init_script(RECORD_NAVIGATION_JS)
        page.goto(f"{url}/data")  # the server's first session
        page.wait_for_selector("h1", timeout=60000)
        wait_idle(page)
        assert page.locator("h1").first.inner_text() == "Data"
        seen = set(page.evaluate("() => [...window.__navigation]"))
        assert seen == {title for _, title, _, _ in PAGES}, seen
        context.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def open_page(page, server, title: str) -> None:
    """Go home, then follow the sidebar navigation link, as a person would."""
    page.goto(server)
    page.wait_for_selector("h1", timeout=60000)
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.wait_for_timeout(300)
    wait_idle(page)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    page.get_by_label(label).first.click()
    page.get_by_role("option", name=option).first.click()
    wait_idle(page)


def test_japanese_and_chinese_text_gets_a_cjk_font_after_streamlit_s_own(server, page):
    """Without a CJK face named, a machine whose sans-serif lacks the glyphs drew the sample's sentences as boxes."""
    open_page(page, server, "Data")
    fonts = page.get_by_test_id("stText").first.evaluate("e => getComputedStyle(e).fontFamily")
    names = [name.strip().strip('"') for name in fonts.split(",")]
    assert names[0] == "Source Sans" and "Noto Sans CJK JP" in names and "Noto Sans CJK SC" in names, fonts


def test_data_page_shows_a_clip_in_full_band_and_low_pass(server, page, cv_sample):
    open_page(page, server, "Data")
    choose(page, "Dataset", "Common Voice sample (real speech, 12 languages)")
    page.get_by_text("Log-mel, low-pass < 500 Hz").first.wait_for(timeout=60000)
    assert page.get_by_text("Log-mel, full band").count() >= 1
    assert page.locator("audio").count() >= 2
    assert_no_exception(page)


def test_identify_page_predicts_an_uploaded_clip(server, page, cv_sample):
    open_page(page, server, "Identify")
    page.get_by_text("Upload a clip (up to 50 MB and 10 minutes)").first.wait_for(timeout=60000)  # the limit
    clip = sorted((cv_sample / "es" / "clips").glob("*.mp3"))[0]
    page.set_input_files('[data-testid="stFileUploader"] input', str(clip))  # the first tab's uploader
    page.get_by_text("Probability of each language").first.wait_for(timeout=60000)
    verdict = page.locator('[data-testid="stAlert"]').first.inner_text()
    assert verdict.startswith("Language: es ("), verdict  # real Spanish speech: the shipped model says so (99 %)
    page.get_by_text(f"Answered: {clip.name}").first.wait_for(timeout=30000)
    # A sample clip of a speaker the model never heard, one click away; then the upload stays the older input.
    page.get_by_role("button", name="Try a clip").click()
    page.get_by_text("Sample clip:").first.wait_for(timeout=60000)
    page.get_by_text("Answered: data/cv-sample/").first.wait_for(timeout=30000)
    # The other tabs: how far to trust the model (a reliability diagram, or a note why there is none) and teaching.
    page.get_by_role("tab", name="How far to trust it").click()
    page.get_by_text("How much speech per language would you need?").first.wait_for(timeout=30000)
    page.get_by_role("tab", name="Teach it a language").click()
    page.get_by_role("button", name="Teach and save").wait_for(timeout=30000)
    assert_no_exception(page)


def _resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_five_uploads_leave_the_server_no_bigger_than_one(server_process, page, tmp_path):
    """Issue 17: five uploads of a 35 MB wav took the server from 551 to 924 MiB, never returned; after five it
    must be within 64 MiB of after one. With this 10 MiB wav it grew 75 MiB before ui/server.py, 16 after."""
    import numpy as np
    import soundfile as sf

    process, url = server_process
    rate, seconds = 44100, 60
    t = np.arange(rate * seconds) / rate
    tone = sum(np.sin(2 * np.pi * k * 130 * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > 0)
    clip = tmp_path / "large.wav"
    sf.write(clip, np.stack([0.2 * tone, 0.15 * tone], axis=1).astype(np.float32), rate, subtype="PCM_16")
    open_page(page, server_process[1], "Identify")
    after = []
    for i in range(5):
        upload = tmp_path / f"upload-{i}.wav"  # a new name each time, as a person's next file would have
        os.link(clip, upload)
        page.set_input_files('[data-testid="stFileUploader"] input', str(upload))
        page.get_by_text(f"Answered: {upload.name}").first.wait_for(timeout=180000)
        wait_idle(page, 180000)  # the answer's timeline may still be drawing: a click now queues behind that run
        page.locator('[data-testid="stFileChipDeleteBtn"] button').first.click()  # removed, as a person would
        page.get_by_text("Upload a clip, record one").first.wait_for(timeout=60000)
        wait_idle(page)
        time.sleep(1.0)
        after.append(_resident_mib(process.pid))
    assert after[-1] - after[0] <= 64, f"resident MiB after each upload: {[round(m) for m in after]}"
    assert_no_exception(page)


def test_identify_page_refuses_an_upload_over_the_limit(server, page, tmp_path):
    big = tmp_path / "big.wav"
    with open(big, "wb") as handle:
        handle.truncate(60 * 1024 * 1024)  # a sparse 60 MB file: over the 50 MB limit, costs no disk
    open_page(page, server, "Identify")
    page.set_input_files('[data-testid="stFileUploader"] input', str(big))
    page.get_by_text("or smaller").first.wait_for(timeout=30000)  # refused in the browser, never sent
    wait_idle(page)
    assert page.get_by_text("Answered: big.wav").count() == 0
    assert_no_exception(page)


def test_train_page_launches_a_short_run_and_watches_it_finish(server, page, tiny_dataset):
    open_page(page, server, "Train")
    choose(page, "Dataset", "A folder on this machine")
    page.get_by_label("Dataset folder").fill(str(tiny_dataset))
    page.get_by_label("Dataset folder").press("Enter")
    wait_idle(page)
    for label, value in {"Epochs": "2", "Batch size": "4"}.items():
        page.get_by_label(label, exact=True).fill(value)
        page.get_by_label(label, exact=True).press("Enter")
        wait_idle(page)
    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("Launched identify-").first.wait_for(timeout=30000)
    progress = page.get_by_test_id("stProgress").first
    deadline = time.time() + 240
    while not progress.inner_text().startswith("finished") and time.time() < deadline:
        page.wait_for_timeout(1000)
    assert progress.inner_text().startswith("finished"), progress.inner_text()
    page.get_by_text("Curves appear").wait_for(state="detached", timeout=10000)
    assert_no_exception(page)


def test_convergence_and_latent_space_pages_show_the_shipped_study(server, page):
    from core.study.browse import SHIPPED, study_label
    from core.study.layout import portable

    study = next(iter(SHIPPED))  # tracked: a lost one fails here
    page.goto(f"{server}/convergence?study={portable(study)}")
    page.get_by_text("Speed-up over no pretraining").first.wait_for(timeout=90000)
    wait_idle(page)
    cell_box = page.get_by_test_id("stSelectbox").filter(has_text="click one in the matrix")
    first = cell_box.locator("input").input_value()
    page.locator(".gtitle", has_text=f"{first}: validation loss").first.wait_for(timeout=30000)
    # Click the last cell of the matrix, as a person would: its curves replace the first cell's.
    markers = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point")
    markers.first.wait_for(state="attached", timeout=30000)
    box = markers.nth(markers.count() - 1).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    deadline = time.time() + 30  # the click reruns the script, which then sets the cell
    while (chosen := cell_box.locator("input").input_value()) == first and time.time() < deadline:
        page.wait_for_timeout(300)
    assert chosen != first or markers.count() == 1
    wait_idle(page)
    page.locator(".gtitle", has_text=f"{chosen}: validation loss").first.wait_for(timeout=30000)
    assert_no_exception(page)

    page.get_by_test_id("stSidebarNav").get_by_text("Latent space", exact=True).click()  # same session
    wait_idle(page)
    page.get_by_text("held-out clips").first.wait_for(timeout=60000)
    study_box = page.get_by_test_id("stSelectbox").filter(has_text="Study").first
    assert study_box.locator("input").input_value() == study_label(study)  # the same study
    page.get_by_text("held-out clips").first.wait_for(timeout=60000)
    page.get_by_text("Linear probes").first.wait_for(timeout=30000)
    page.get_by_text("all-languages").first.click()
    wait_idle(page)
    page.get_by_text("dashed: chance").first.wait_for(timeout=30000)
    assert_no_exception(page)

# Every point of the latent scatter: its data coordinates and its centre on the page, read from plotly itself.
POINTS_JS = """el => {
    const rect = el.getBoundingClientRect(), xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis;
    return el._fullData.flatMap(trace => Array.from(trace.x, (x, i) => ({
        x: x, y: trace.y[i],
        px: rect.left + xa._offset + xa.d2p(x), py: rect.top + ya._offset + ya.d2p(trace.y[i])})));
}"""


def gap_edge(positions: list[float], low: float, high: float) -> int:
    """A whole pixel in the widest gap between sorted ``positions`` from quantile ``low`` to ``high``:
    a box edge there has no point on it (the browser rounds the mouse to whole pixels)."""
    part = positions[int(low * len(positions)):int(high * len(positions)) + 1]
    i = max(range(len(part) - 1), key=lambda i: part[i + 1] - part[i])
    return round((part[i] + part[i + 1]) / 2)


def test_latent_space_page_plays_a_clicked_clip_and_exports_a_box_selection(server, page):
    import csv
    import io

    from core.study.browse import SHIPPED
    from core.study.layout import portable

    study = next(iter(SHIPPED))
    page.goto(f"{server}/latent_space?study={portable(study)}")
    page.get_by_text("held-out clips").first.wait_for(timeout=90000)
    wait_idle(page)
    scatter = page.locator(".js-plotly-plot").first
    scatter.locator(".scatterlayer .point").first.wait_for(state="attached", timeout=30000)
    points = scatter.evaluate(POINTS_JS)
    # A click on a point plays its clip.
    page.mouse.click(points[0]["px"], points[0]["py"])
    page.locator("audio[src]").first.wait_for(state="attached", timeout=60000)
    wait_idle(page)
    assert_no_exception(page)

    # A box around the middle of the cloud: its clips, and only they, are in the downloaded CSV.
    points = scatter.evaluate(POINTS_JS)  # where they are now, beside the clip's player
    scatter.hover()
    scatter.locator('.modebar-btn[data-title="Box Select"]').click()
    xs, ys = sorted(p["px"] for p in points), sorted(p["py"] for p in points)
    left, right = gap_edge(xs, 0.15, 0.35), gap_edge(xs, 0.65, 0.85)
    top, bottom = gap_edge(ys, 0.15, 0.35), gap_edge(ys, 0.65, 0.85)
    inside = [(p["x"], p["y"]) for p in points if left < p["px"] < right and top < p["py"] < bottom]
    assert len(inside) >= 2
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move((left + right) / 2, (top + bottom) / 2, steps=5)
    page.mouse.move(right, bottom, steps=5)
    page.mouse.up()
    button = page.get_by_role("button", name="Download the selection (CSV)")
    button.wait_for(timeout=60000)
    wait_idle(page)
    assert_no_exception(page)
    with page.expect_download(timeout=30000) as download:
        button.click()
    rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    got = [(float(r["x"]), float(r["y"])) for r in rows]  # the CSV prints float32 coordinates to 7-8 digits
    near = lambda a, b: abs(a[0] - b[0]) < 1e-4 and abs(a[1] - b[1]) < 1e-4  # noqa: E731
    assert len(got) == len(inside) and all(any(near(g, i) for i in inside) for g in got)
    assert all(r["clip"].endswith(".mp3") for r in rows)
