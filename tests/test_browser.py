"""The app in a real browser: Debian's chromium driven by Playwright.

Starts ``streamlit run app/main.py`` on 127.0.0.1 and a free port, visits every
page through the sidebar navigation (one browser session, so the sidebar
settings carry across pages), moves the sparsity slider with the keyboard,
checks that the shown numbers change and that no exception or error element
appears, and saves a screenshot of each page into a temporary folder.

By default the app runs on a tiny random BERT saved by the test (fast).
``PRUNESCOPE_LAYOUT_MODELS=minilm-rt,smollm2-135m`` runs the layout check
(``-k test_every_chart_fits_and_reads``) on those real models instead, each view with a
small budget in its address (docs/VIEWS.md, "One visual language"). With
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
# Opt-in (CI need not run it): the layout check on real models, e.g. PRUNESCOPE_LAYOUT_MODELS=minilm-rt,smollm2-135m
LAYOUT_MODELS = [m.strip() for m in os.environ.get("PRUNESCOPE_LAYOUT_MODELS", "").split(",") if m.strip()]
REAL_SERVER = REAL or bool(LAYOUT_MODELS)  # the app opens the embedded default, not the tiny BERT
WAIT_MS = 900_000 if REAL_SERVER else 120_000
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
SCREENSHOT_LIMIT = 300_000  # bytes, for docs/screenshots

sys.path.insert(0, str(ROOT))
from app.pages_index import PAGES  # noqa: E402  (the one list of views: title, Run button, follows the slider, draws charts)


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
def app_model(tmp_path_factory, request) -> str:
    """The model the app opens first: the tiny BERT saved by the test, or minilm-rt for screenshots."""
    if REAL_SERVER:
        return "minilm-rt"
    from conftest import saved_folder

    return str(saved_folder(tmp_path_factory, request.getfixturevalue("tiny_bert"), "browser_tiny_bert"))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, app_model) -> Path:
    """Two runs made headless by the CLI (as on another machine), for the Runs view to open and compare."""
    root = tmp_path_factory.mktemp("runs")
    for name, method in (("mag50", "magnitude"), ("rand50", "random")):
        proc = subprocess.run([sys.executable, "-m", "pruning", "prune", "--model", app_model, "--method", method, "--sparsity", "0.5",
                               "--no-model", "--out", str(root / name)], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, app_model, runs_root):
    env = dict(os.environ)
    env.pop("PRUNESCOPE_PROFILE", None)
    env["PRUNESCOPE_RUNS_DIR"] = str(runs_root)
    if not REAL_SERVER:
        env.update(PRUNESCOPE_TEST_MODEL=app_model, PRUNESCOPE_EVAL_SIZE="32", PRUNESCOPE_CALIBRATION="8")
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


# Where a view's screenshot starts: the heading of the results the docs show, below the view's controls.
SHOT_HEADINGS = {"sensitivity": "Most sensitive layers", "compare": "Criteria x updates"}


def _scroll_to_results(page, stem: str) -> None:
    if stem in SHOT_HEADINGS:
        page.get_by_role("heading", name=SHOT_HEADINGS[stem]).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)


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
    for spec in PAGES:
        title, stem = spec.title, spec.url
        if only and stem not in only:
            continue
        if spec is not PAGES[0]:
            goto(page, title)
        page.locator("h1", has_text=title).first.wait_for(timeout=WAIT_MS)  # the index's title is the page's heading
        assert_no_errors(page, title)
        shot = False
        if spec.run:
            page.get_by_role("button", name=spec.run).click()
            settled(page)
            page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=WAIT_MS)
            assert_no_errors(page, title)
            if not spec.follows_slider:  # photographed now: after the slider moves its result is marked out of date
                _scroll_to_results(page, stem)
                screenshot(page, stem, shot_dirs if spec.charts_on_open else shot_dirs[:1])
                shot = True
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
        if spec.follows_slider:
            deadline = time.time() + WAIT_MS / 1000
            while numbers(page) == before and time.time() < deadline:
                time.sleep(0.2)
            assert numbers(page) != before, f"{title}: the numbers did not change when the slider moved"
        assert_no_errors(page, title)
        if spec.charts_on_open:
            assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1, f"{title}: no chart"
        if not shot:
            _scroll_to_results(page, stem)
            screenshot(page, stem, shot_dirs if spec.charts_on_open else shot_dirs[:1])  # the docs show views with their charts
        direction = "ArrowLeft" if direction == "ArrowRight" else "ArrowRight"
    for i, d in enumerate(shot_dirs):
        assert all((Path(d) / f"{p.url}.png").exists() for p in PAGES if (not only or p.url in only) and (i == 0 or p.charts_on_open))
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
    # the click's rerun may start after a first settle on a slow machine: wait for what it draws
    run = page.get_by_role("button", name="Run MGPP")
    run.wait_for(timeout=WAIT_MS)
    settled(page)
    assert run.count() == 1, "a trained method must wait for the Run button"
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    page.locator('[data-testid="stSidebar"]').get_by_text("Parameters of mgpp").click()
    budget = {"steps": 60} if REAL else {"steps": 12}  # the budget group; t0, t1 and the interval scale with it
    advanced = {"history_points": 6, "holdout": 128} if REAL else {"history_points": 4, "holdout": 32}
    side = page.locator('[data-testid="stSidebar"]')
    for label, value in budget.items():
        box = side.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        settled(page)
    assert side.get_by_label("t0", exact=True).count() == 0  # advanced parameters wait behind their toggle
    side.get_by_text("Advanced (").click()
    settled(page)
    for label, value in advanced.items():
        box = side.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        settled(page)
    run.click()
    settled(page)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=WAIT_MS)
    assert_no_errors(page, "Method steps")
    assert f"step {budget['steps']} of {budget['steps']}" in numbers(page)
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 3  # schedule, snapshot, ridgeline (+ training)
    page.get_by_role("heading", name="The same weights over training").scroll_into_view_if_needed()
    screenshot(page, "steps", shot_dirs)
    page.close()


# ---------------------------------------------------------------- every view fits the window and reads
# Every view of the page index (app/pages_index.py), with its results drawn: a view that waits for a Run
# button has it pressed. Method steps is visited once per method that has steps (its charts differ by method).
MIN_PLOT = 160  # px: the plot area of a chart (its axes' frame), legends and titles not counted
MIN_SMALL = 80  # px: one panel of small multiples
MAX_SMALL_Y_TICKS = 2  # y tick labels on one small-multiple panel
SHOTS = os.environ.get("PRUNESCOPE_LAYOUT_SHOTS", "")  # a folder: a full-page screenshot of every view measured


def views() -> list[str]:
    from app.pages_index import PAGES as INDEX
    from pruning.catalog import all_methods

    stepwise = [name for name, m in all_methods().items() if m.steps_view]
    paths = []
    for spec in INDEX:
        if spec.url == "steps":
            paths += [f"steps?method={m}" for m in stepwise]
        elif spec is INDEX[0]:  # the default view lives at the root: /overview is "page not found" (then the root)
            paths.append("")
        elif spec.charts_on_open:  # Runs draws charts only once runs are opened and compared (its own test)
            paths.append(spec.url)
    return paths


OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    for (const el of document.querySelectorAll('[data-testid="stVegaLiteChart"] svg, [data-testid="stVegaLiteChart"] canvas')) {
        const r = el.getBoundingClientRect();
        if (r.width > 0 && (r.right > width + 1 || r.left < -1)) out.push(`${Math.round(r.left)}..${Math.round(r.right)} of ${width}`);
    }
    return out;
}"""

DRAWN = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].every(
    b => { const m = b.querySelector('svg.marks, canvas'); return m && m.getBoundingClientRect().height > 0; })"""

# Per drawn chart: its title (or first text), the plot areas (a group's background: one per view, per
# facet cell or per concatenated panel; legends, axes and titles left out), and per axis the boxes of its
# visible tick labels. Canvas charts (Streamlit draws big data with canvas) report their height only.
MEASURE = """() => {
    const charts = [];
    const inside = (el, sel) => el.parentElement && el.parentElement.closest(sel);
    document.querySelectorAll('[data-testid="stVegaLiteChart"]').forEach((box, index) => {
        const svg = box.querySelector('svg.marks');
        const canvas = box.querySelector('canvas');
        const name = (box.querySelector('g.role-title text') || {}).textContent || `chart ${index + 1}`;
        const small = (box.getAttribute('aria-label') || '').startsWith('small multiple');  // the spec's description
        if (!svg) {
            const r = canvas ? canvas.getBoundingClientRect() : box.getBoundingClientRect();
            charts.push({name, small, canvas: true, plots: [{w: r.width, h: r.height, leaf: true}], axes: []});
            return;
        }
        const plots = [];
        svg.querySelectorAll('g.mark-group').forEach(g => {
            if (!(g.classList.contains('role-frame') || g.classList.contains('role-scope'))) return;
            if (inside(g, '.role-legend, .role-axis, .role-title')) return;
            const bg = g.querySelector(':scope > g > path.background');
            if (!bg) return;
            const nested = [...g.querySelectorAll('g.mark-group.role-scope')].some(c => !inside(c, '.role-legend') && c !== g);
            const r = bg.getBoundingClientRect();
            if (r.width > 0 && r.height > 0) plots.push({w: r.width, h: r.height, leaf: !nested, cell: g.classList.contains('role-scope')});
        });
        const axes = [];
        svg.querySelectorAll('g.role-axis').forEach(a => {
            if (inside(a, '.role-legend')) return;
            const labels = [];
            a.querySelectorAll('g.role-axis-label text').forEach(t => {
                const o = t.getAttribute('opacity');
                if (o !== null && parseFloat(o) === 0) return;
                if (!t.textContent.trim()) return;
                const r = t.getBoundingClientRect();
                labels.push({text: t.textContent, l: r.left, r: r.right, t: r.top, b: r.bottom});
            });
            axes.push(labels);
        });
        charts.push({name, small, canvas: false, plots, axes});
    });
    return charts;
}"""


def _overlaps(labels: list) -> list:
    out = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            w = min(a["r"], b["r"]) - max(a["l"], b["l"])
            h = min(a["b"], b["b"]) - max(a["t"], b["t"])
            if w > 1 and h > 1:
                out.append((a["text"], b["text"]))
    return out


def _vertical(labels: list) -> bool:
    """A y axis: its labels stacked (their tops differ more than their left edges)."""
    if len(labels) < 2:
        return False
    return max(x["t"] for x in labels) - min(x["t"] for x in labels) > max(x["l"] for x in labels) - min(x["l"] for x in labels)


def readability_problems(charts: list) -> list[str]:
    """What a reader cannot read: plot areas under their minimum height, overlapping tick labels, small
    multiples with more y ticks than they can hold."""
    problems = []
    for c in charts:
        leaves = [p for p in c["plots"] if p["leaf"]]
        cells = [p for p in leaves if p.get("cell")]
        small = c["small"] or len(cells) >= 3  # small multiples: a panel of a wrapping row (marked), or a facet
        least = MIN_SMALL if small else MIN_PLOT
        for p in leaves:
            if p["h"] + 0.5 < least:
                problems.append(f"{c['name']!r}: plot area {p['w']:.0f}x{p['h']:.0f} px (at least {least} px tall)")
                break
        for labels in c["axes"]:
            if _overlaps(labels):
                problems.append(f"{c['name']!r}: tick labels overlap: {_overlaps(labels)[:3]}")
                break
        if small:
            worst = max((len(a) for a in c["axes"] if _vertical(a)), default=0)
            if worst > MAX_SMALL_Y_TICKS:
                problems.append(f"{c['name']!r}: {worst} y tick labels on a small panel (at most {MAX_SMALL_Y_TICKS})")
    return problems


def full_page_screenshot(page, path: Path, width: int) -> None:
    """The whole view (Streamlit scrolls inside its main block, so the window is made as tall as the view)."""
    tall = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"] *')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": width, "height": min(int(tall) + 100, 12000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(300)


def _show_results(page, path: str) -> None:
    """Press the view's Run button (the first primary button of the page) when its results wait for it."""
    main = page.locator('[data-testid="stMain"]')
    for _ in range(3):  # on a loaded machine a rerun may swallow the click: press again while nothing is drawn
        run = main.locator('button[kind="primary"]')
        if not run.count() or main.locator('[data-testid="stVegaLiteChart"]').count():
            return
        run.first.click()
        settled(page)


# On a real model each view's address carries a small budget, so its Run finishes in minutes on a small CPU
# (the charts are the same ones at any budget): the evaluation size, and the trained methods' steps.
TRAINED_BUDGET = "p.steps=6&p.batch_size=4&p.history_points=4&p.holdout=32"
REAL_BUDGETS = {
    "weights": "all_layers=true",  # SmolLM2's 210 layers start without their small multiples: draw them too
    "candidates": "cand_holdout=32",
    "steps?method=mgpp": TRAINED_BUDGET,
    "steps?method=gmp": TRAINED_BUDGET,
    "steps?method=randomized": "p.k=3&p.steps=2&p.eval_every=1&p.n_last=1&p.final_steps=2&p.batch_size=4&p.holdout=32",
    "steps?method=sds": "p.iters=10&p.adjust_iters=5&p.holdout=32",
    "ramp": "ramp_sparsities=0.3,0.6,0.9",
    "stability": "stab_methods=magnitude,wanda&stab_draws=2",
}
# A perplexity window of SmolLM2 costs seconds on a small CPU: 8 windows (the least the sidebar takes), a few held-out
# windows for the trained methods, Layer sensitivity on its last two blocks (each point then re-runs one or two of its
# 30 blocks; the default's four blocks across depth cost far more), Stability with magnitude alone.
MODEL_BUDGETS = {
    "smollm2-135m": {
        "eval": "8",
        "sensitivity": "sens_blocks=28,29",
        "stability": "stab_methods=magnitude",
        "ramp": "ramp_sparsities=0.5,0.9",
        "steps?method=mgpp": "p.holdout=4",
        "steps?method=gmp": "p.holdout=4",
        "steps?method=randomized": "p.holdout=4",
        "steps?method=sds": "p.lm_holdout=2",
        "candidates": "cand_holdout=16",
    }
}


def _merged(*queries: str) -> str:
    """Query strings joined, a later value of a name replacing an earlier one."""
    out: dict = {}
    for q in queries:
        for part in filter(None, q.split("&")):
            name, _, value = part.partition("=")
            out[name] = value
    return "&".join(f"{k}={v}" for k, v in out.items())


def layout_url(app_url: str, path: str, model: str | None) -> str:
    """The view's address: as it is on the tiny model; on a real model, that model with the view's small budget."""
    if model is None:
        return f"{app_url}/{path}"
    own = MODEL_BUDGETS.get(model, {})
    extra = _merged(f"model={model}", f"eval={own.get('eval', '64')}", REAL_BUDGETS.get(path, ""), own.get(path, ""))
    return f"{app_url}/{path}{'&' if '?' in path else '?'}{extra}"


@pytest.mark.skipif(REAL and not LAYOUT_MODELS, reason="layout check on the tiny model, or on PRUNESCOPE_LAYOUT_MODELS")
@pytest.mark.parametrize("model", LAYOUT_MODELS or [None])
@pytest.mark.parametrize("width", [1400, 800])
def test_every_chart_fits_and_reads(browser, app_url, width, model, shot_dirs):
    """Every view at this width, with results drawn: no chart runs past the window, every plot area is
    tall enough to read, no tick labels overlap. A full-page screenshot of each goes to the temporary folder
    (``<model>-<width>-<view>.png``) for a person to look at."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    only = [p for p in os.environ.get("PRUNESCOPE_LAYOUT_VIEWS", "").split(",") if p]
    found = []
    for path in views():
        if only and (path or "overview").split("?")[0] not in only and path not in only:
            continue
        page.goto(layout_url(app_url, path, model))
        settled(page)
        _show_results(page, path)
        try:
            page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=WAIT_MS)
        except Exception:  # noqa: BLE001 - say which view and what it shows instead
            raise AssertionError(f"{path} at {width} px: no chart; the page shows {page.locator('[data-testid=stMain]').inner_text()[:600]!r}") from None
        page.wait_for_timeout(800)  # let Vega lay out at the container's width
        assert_no_errors(page, path)
        charts = page.locator('[data-testid="stVegaLiteChart"]').count()
        wide = page.evaluate(OVERFLOW)
        if wide:
            found.append(f"{path or 'overview'}: {len(wide)} of {charts} charts run past the window: {wide[:5]}")
        problems = []
        for _ in range(3):  # Vega lays a redrawn chart out asynchronously: a problem must still be there a moment later
            page.wait_for_function(DRAWN)
            measured = page.evaluate(MEASURE)
            problems = readability_problems(measured)
            if not problems:
                break
            page.wait_for_timeout(1500)
        folder = Path(SHOTS) if SHOTS else Path(shot_dirs[0])  # a person looks at them; PRUNESCOPE_LAYOUT_SHOTS keeps them
        full_page_screenshot(page, folder / f"{model or 'tiny'}-{width}-{(path or 'overview').replace('?method=', '-')}.png", width)
        print(f"{path or 'overview'} at {width} px:", [(c["name"], [round(p["h"]) for p in c["plots"] if p["leaf"]][:6]) for c in measured])
        found += [f"{path or 'overview'}: {p}" for p in problems]
    page.context.close()
    assert not found, f"{model or 'tiny model'} at {width} px:\n" + "\n".join(found)


def test_a_view_opens_from_a_url_with_its_settings(browser, app_url):
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{app_url}/weights?method=wanda&sparsity=0.7")
    settled(page)
    assert page.locator("h1", has_text="Weights").count() == 1
    assert float(slider(page).input_value()) == pytest.approx(0.7)
    assert "method wanda" in numbers(page)  # the settings line under the title
    assert metric_value(page, "Layer sparsity") == "70.0%"  # waits for the metric to be drawn
    move_slider(page, "ArrowLeft", 1)  # the address follows the sidebar
    settled(page)
    page.wait_for_function("() => location.search.includes('sparsity=0.65')")
    page.goto(f"{app_url}/masks?method=nonsense&sparsity=7")
    settled(page)
    alerts = page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentWarning"]')
    alerts.first.wait_for(timeout=WAIT_MS)
    warnings = " ".join(alerts.all_inner_texts())
    assert "method='nonsense'" in warnings and "sparsity='7'" in warnings
    assert_no_errors(page, "masks from a bad URL")
    page.context.close()


def test_score_picture_of_wanda(browser, app_url, shot_dirs):
    """The Weights view's score picture for Wanda (also a README screenshot): |W| against ||X_j|| with the boundary."""
    only = [p for p in os.environ.get("PRUNESCOPE_SCREENSHOT_PAGES", "").split(",") if p]
    if only and "score" not in only:
        pytest.skip("screenshots limited to other pages")
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{app_url}/weights?method=wanda&sparsity=0.5")
    settled(page)
    heading = page.get_by_role("heading", name="Why these weights: the score picture")
    heading.wait_for()
    assert_no_errors(page, "score picture")
    assert page.get_by_text("because their input is louder than the median").count() == 1
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")  # the heading at the top, the picture below it
    page.wait_for_timeout(500)
    screenshot(page, "score", shot_dirs)
    page.context.close()


def metric_value(page, label: str) -> str:
    """The value of the metric whose label starts with ``label``, waiting (up to WAIT_MS) for it to be drawn:
    on a loaded machine a rerun's elements can arrive after the status widget says the run ended."""
    page.locator('[data-testid="stMetricLabel"]', has_text=label).first.wait_for(timeout=WAIT_MS)
    metrics = page.locator('[data-testid="stMetric"]')
    for i in range(metrics.count()):
        if metrics.nth(i).locator('[data-testid="stMetricLabel"]').inner_text().strip().startswith(label):
            return metrics.nth(i).locator('[data-testid="stMetricValue"]').inner_text().strip()
    raise AssertionError(f"no metric {label!r}")


def test_a_cli_run_opens_in_every_view_and_two_runs_compare(browser, app_url, runs_root):
    """A run made headless (here by the CLI, as on a GPU box) is opened in the browser, shown by the
    Overview as the sidebar's method, and compared with a second run."""
    from pruning.store.io import load_masks, read_report

    report = read_report(runs_root / "mag50" / "report.json")
    a, b = (load_masks(runs_root / n / "masks.safetensors") for n in ("mag50", "rand50"))
    both = sum(int((a[n] & b[n]).sum()) for n in a)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(app_url + "/runs")
    settled(page)
    assert_no_errors(page, "Runs")
    page.get_by_role("button", name="Open run", exact=True).click()  # the first run, mag50, is picked
    settled(page)
    assert_no_errors(page, "Runs, mag50 opened")
    assert metric_value(page, "Overall sparsity") == f"{report['overall_sparsity']:.2%}"
    page.get_by_role("button", name="Show run mag50 in every view").click()
    settled(page)
    goto(page, "Overview")
    assert_no_errors(page, "Overview of run mag50")
    assert metric_value(page, "Weights removed") == f"{report['total'] - report['kept']:,}"
    goto(page, "Runs")
    assert metric_value(page, "Kept by both") == f"{both:,}"
    assert_no_errors(page, "Runs, comparison")
    page.close()


def test_a_shared_run_is_shown_as_text_and_no_request_leaves_the_page(browser, app_url, runs_root):
    """A run folder received from someone else whose report.json holds Markdown images, links and HTML:
    the Runs view shows the fields as text, and the browser asks nothing of any other address."""
    import json
    import shutil

    folder = runs_root / "shared" / "zz"  # sorts after the other runs, so their tests keep their picks
    shutil.copytree(runs_root / "mag50", folder)
    report = json.loads((folder / "report.json").read_text())
    report.update(
        method="**Masks checked against FAKE** ![x](http://127.0.0.1:9/method.png)",
        granularity="<img src='http://127.0.0.1:9/g.png'>",
        model="[a link](http://127.0.0.1:9/model) :red[faked]",
    )
    (folder / "report.json").write_text(json.dumps(report))
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    elsewhere = []
    page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith((app_url, "data:", "blob:", "about:")) else None)
    page.goto(app_url + "/runs")
    settled(page)
    box = page.get_by_label("Runs directory", exact=True)
    box.fill(str(folder.parent))
    box.press("Enter")
    settled(page)
    page.get_by_role("button", name="Open run", exact=True).click()
    # the click's rerun may begin after a first settle on a busy machine: wait for what it draws
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=\"stMain\"]').innerText.includes(t)", arg="**Masks checked against FAKE**", timeout=WAIT_MS
    )
    settled(page)
    assert_no_errors(page, "Runs, shared run opened")
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "**Masks checked against FAKE** ![x](http://127.0.0.1:9/method.png)" in text
    assert "[a link](http://127.0.0.1:9/model) :red[faked]" in text
    assert page.locator('[data-testid="stMain"] img[src*="127.0.0.1:9"], [data-testid="stMain"] a[href*="127.0.0.1:9"]').count() == 0
    assert elsewhere == []
    page.close()
