"""The app in a real browser: Debian's chromium driven by Playwright.

Starts ``streamlit run app/main.py`` on 127.0.0.1 and a free port, visits every
page through the sidebar navigation (one browser session, so the sidebar
settings carry across pages), moves the sparsity slider with the keyboard,
checks that the shown numbers change and that no exception or error element
appears, and saves a screenshot of each page into a temporary folder.

By default the app runs on a tiny random BERT saved by the test (fast). With
``PRUNESCOPE_SCREENSHOTS=1`` it runs on the real embedded default (minilm-rt,
fine-tuned on first use; evaluation size 64) and also writes small PNGs into
``docs/screenshots/`` for the README; ``PRUNESCOPE_SCREENSHOT_PAGES=weights,masks``
limits the run to some pages.

Chromium comes from Debian (``apt-get install chromium``, done by
``scripts/setup.sh --dev``); ``playwright install`` is never used.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
REAL = bool(os.environ.get("PRUNESCOPE_SCREENSHOTS"))
WAIT_MS = 900_000 if REAL else 120_000
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
SCREENSHOT_LIMIT = 300_000  # bytes, for docs/screenshots

# (page title in the navigation, file stem, button to press first, does the slider change its numbers?)
PAGES = [
    ("Overview", "overview", None, True),
    ("Weights", "weights", None, True),
    ("Masks", "masks", None, True),
    ("Random candidates", "candidates", "Sample and score the candidates", False),
    ("Sparsity ramp", "ramp", "Run the ramp", False),
    ("Layer sensitivity", "sensitivity", "Measure sensitivity", True),
    ("Learn", "learn", None, True),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium_path():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: scripts/setup.sh --dev installs it (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    return CHROMIUM


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    env = dict(os.environ)
    env.pop("PRUNESCOPE_PROFILE", None)
    if not REAL:
        tiny = request.getfixturevalue("tiny_bert")
        folder = tmp_path_factory.mktemp("browser_tiny_bert")
        tiny.model.save_pretrained(folder)
        tiny.tokenizer.save_pretrained(folder)
        env.update(PRUNESCOPE_TEST_MODEL=str(folder), PRUNESCOPE_EVAL_SIZE="32", PRUNESCOPE_CALIBRATION="8")
    else:
        env.setdefault("PRUNESCOPE_EVAL_SIZE", "64")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "streamlit.log", "w")
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start; see {log.name}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shot_dirs(tmp_path_factory):
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if REAL:
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        dirs.append(docs)
    return dirs


# ---------------------------------------------------------------- helpers
def settled(page, timeout=WAIT_MS) -> None:
    """Wait until the script has run and stopped (no rerun in flight)."""
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning';
        }""",
        timeout=timeout,
    )
    time.sleep(0.3)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]').getAttribute('data-test-script-state') === 'notRunning'",
        timeout=timeout,
    )


def numbers(page) -> str:
    """Everything numeric the page shows: metric values and captions."""
    metrics = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    return " | ".join(metrics + captions)


def slider(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]').first


def move_slider(page, key: str, presses: int) -> None:
    s = slider(page)
    s.focus()
    for _ in range(presses):
        s.press(key)


def set_slider(page, target: float, tries: int = 60) -> None:
    """Press arrow keys until the slider shows ``target`` (a rerun may swallow a key press)."""
    for _ in range(tries):
        value = float(slider(page).input_value())
        if abs(value - target) < 1e-6:
            return
        move_slider(page, "ArrowRight" if value < target else "ArrowLeft", 1)
        page.wait_for_timeout(150)
    raise AssertionError(f"the slider did not reach {target}")


def assert_no_errors(page, where: str) -> None:
    errors = page.locator(ERRORS)
    assert errors.count() == 0, f"{where}: {errors.all_inner_texts()}"


def screenshot(page, name: str, dirs) -> None:
    page.evaluate(
        """() => {
            if (document.activeElement) document.activeElement.blur();
            const side = document.querySelector('[data-testid="stSidebarContent"]');
            if (side) side.scrollTo(0, 0);
        }"""
    )
    page.wait_for_timeout(300)
    for i, d in enumerate(dirs):
        path = Path(d) / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        if i > 0:
            _shrink(path)


def _shrink(path: Path) -> None:
    """Keep a docs screenshot small: a 256-colour palette PNG, scaled down if still too big."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    scale = 1.0
    while True:
        out = img if scale == 1.0 else img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        out.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size < SCREENSHOT_LIMIT or scale < 0.5:
            return
        scale *= 0.85


def goto(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    settled(page)


# ---------------------------------------------------------------- tests
def test_every_page_moves_with_the_slider(browser, app_url, shot_dirs):
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(app_url)
    settled(page)
    assert page.locator("h1", has_text="Overview").count() == 1
    direction = "ArrowRight"
    only = [p for p in os.environ.get("PRUNESCOPE_SCREENSHOT_PAGES", "").split(",") if p]
    for title, stem, button, follows_slider in PAGES:
        if only and stem not in only:
            continue
        if stem != "overview":
            goto(page, title)
        assert_no_errors(page, title)
        if button:
            if REAL and stem == "sensitivity":  # 36 layers x 2 sparsities keeps the real run to a few minutes
                box = page.get_by_label("Sparsities of the one pruned layer")
                box.fill("0.5, 0.9")
                box.press("Enter")
                settled(page)
            page.get_by_role("button", name=button).click()
            settled(page)
            page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=WAIT_MS)
            assert_no_errors(page, title)
        before = numbers(page)
        value = float(slider(page).input_value())
        move_slider(page, direction, 2)
        page.wait_for_function(
            """(v) => {
                const s = document.querySelector('[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]');
                return s && Math.abs(parseFloat(s.value) - v) > 1e-6;
            }""",
            arg=value,
        )
        settled(page)
        if follows_slider:
            deadline = time.time() + WAIT_MS / 1000
            while numbers(page) == before and time.time() < deadline:
                time.sleep(0.2)
            assert numbers(page) != before, f"{title}: the numbers did not change when the slider moved"
        assert_no_errors(page, title)
        if stem != "learn":
            assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1, f"{title}: no chart"
        screenshot(page, stem, shot_dirs)
        direction = "ArrowLeft" if direction == "ArrowRight" else "ArrowRight"
    for d in shot_dirs:
        assert all((Path(d) / f"{stem}.png").exists() for _, stem, _, _ in PAGES if not only or stem in only)
    page.close()


def test_two_sessions_never_see_each_others_masks(browser, app_url):
    a = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    b = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    for p in (a, b):
        p.set_default_timeout(WAIT_MS)
        p.goto(app_url + "/masks")
        settled(p)
    set_slider(a, 0.6)
    set_slider(b, 0.3)
    for p in (a, b):
        settled(p)

    def layer_sparsity(p) -> str:
        labels = p.locator('[data-testid="stMetric"]')
        for i in range(labels.count()):
            text = labels.nth(i).inner_text()
            if text.startswith("Layer sparsity"):
                return text.split("\n")[-1]
        raise AssertionError("no Layer sparsity metric")

    deadline = time.time() + WAIT_MS / 1000
    while not (layer_sparsity(a).startswith("60") and layer_sparsity(b).startswith("30")) and time.time() < deadline:
        time.sleep(0.2)
    assert layer_sparsity(a).startswith("60"), layer_sparsity(a)
    assert layer_sparsity(b).startswith("30"), layer_sparsity(b)
    set_slider(a, 0.65)  # a moves again; b must not follow
    settled(a)
    b.wait_for_timeout(500)
    assert layer_sparsity(b).startswith("30")
    assert_no_errors(a, "session a")
    assert_no_errors(b, "session b")
    a.context.close()
    b.context.close()


def test_method_steps_runs_mgpp_on_a_budget_set_in_the_sidebar(browser, app_url, shot_dirs):
    """A new user's path to MGPP: pick it on the Steps page, set a small budget in the sidebar,
    press Run, and see the schedule and the snapshots (drawn live, then final)."""
    only = [p for p in os.environ.get("PRUNESCOPE_SCREENSHOT_PAGES", "").split(",") if p]
    if only and "steps" not in only:
        pytest.skip("screenshots limited to other pages")
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app_url + "/steps")
    settled(page)
    page.get_by_role("button", name="MGPP (mixture Gaussian prior)").click()
    settled(page)
    run = page.get_by_role("button", name="Run MGPP")
    assert run.count() == 1, "a trained method must wait for the Run button"
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    page.locator('[data-testid="stSidebar"]').get_by_text("Parameters of mgpp").click()
    budget = {"t0": 10, "t1": 40, "interval": 5, "history_points": 6, "holdout": 128, "steps": 60} if REAL else {
        "t0": 2, "t1": 8, "interval": 2, "history_points": 4, "holdout": 32, "steps": 12}
    for label, value in budget.items():
        box = page.locator('[data-testid="stSidebar"]').get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        settled(page)
    run.click()
    settled(page)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=WAIT_MS)
    assert_no_errors(page, "Method steps")
    assert f"step {budget['steps']} of {budget['steps']}" in numbers(page)
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 3  # schedule, snapshot, grid (+ training)
    page.get_by_role("heading", name="The same weights over training").scroll_into_view_if_needed()
    screenshot(page, "steps", shot_dirs)
    page.close()
