"""Every page under streamlit.testing.v1.AppTest: no exception, and the controls change what is shown.

The app is pointed at a tiny random BERT classifier saved to a temporary folder
(``PRUNESCOPE_TEST_MODEL``), so a page run takes well under a second once the
shared store is warm. The store is process-wide, as in a real server: the
two-session test relies on it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TIMEOUT = 180


pytestmark = pytest.mark.usefixtures("tiny_model_folder")  # tests/conftest.py: the app on the tiny BERT


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(f"../pages/{page}.py").run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, label_start: str) -> str:
    for m in at.metric:
        if m.label.startswith(label_start):
            return m.value
    raise AssertionError(f"no metric {label_start!r}; have {[m.label for m in at.metric]}")


def chart_specs(at: AppTest) -> list[str]:
    """The Vega-Lite spec (JSON text) of every chart on the page, in order."""
    return [e.proto.spec for e in at.get("vega_lite_chart")]


def chart_rows(at: AppTest, text: str) -> list[dict]:
    """The data rows of the first chart whose spec contains ``text``: inline in the spec, or sent beside it
    as Arrow (``ui.chart`` serves a builder's data that way)."""
    import pyarrow as pa

    chart = next(e for e in at.get("vega_lite_chart") if text in e.proto.spec)
    rows = [r for data in json.loads(chart.proto.spec).get("datasets", {}).values() for r in data]
    for ds in chart.proto.datasets:
        rows += pa.ipc.open_stream(ds.data.data).read_pandas().to_dict("records")
    return rows


def set_sparsity(at: AppTest, value: float) -> AppTest:
    at.sidebar.slider(key="ps_sparsity").set_value(value).run()
    return at


# ---------------------------------------------------------------- every page
def test_overview_numbers_follow_the_slider():
    at = open_page()
    assert_clean(at)
    assert metric(at, "Prunable layers") == "12"
    before = metric(at, "Weights removed")
    set_sparsity(at, 0.8)
    assert_clean(at)
    assert metric(at, "Weights removed") != before
    assert metric(at, "Overall sparsity").startswith("80")
    assert any("Why the pruned model is not smaller" in i.value for i in at.info)


def test_weights_slider_and_controls():
    at = open_page("weights")
    assert_clean(at)
    before = metric(at, "Pruned in this layer")
    set_sparsity(at, 0.3)
    assert_clean(at)
    assert metric(at, "Pruned in this layer") != before
    assert metric(at, "Layer sparsity").startswith("30")
    layers = at.selectbox(key="ps_layer")
    first_threshold = metric(at, "Magnitude threshold")
    layers.set_value(layers.options[-1]).run()
    assert_clean(at)
    assert metric(at, "Magnitude threshold") != first_threshold
    at.toggle(key="ps_weights_hide").set_value(True).run()
    at.selectbox(key="ps_weights_k").set_value(2).run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 2  # two mixture components


def test_weights_score_picture_for_every_score_method():
    at = open_page("weights")
    assert_clean(at)
    for method in ("magnitude", "wanda", "random"):
        at.selectbox(key="ps_weights_score_method").set_value(method).run()
        assert_clean(at)
        specs = "".join(chart_specs(at))
        assert "input-feature norm ||X_j||" in specs and f"{method} score (log)" in specs
        assert ('"title": "boundary"' in specs) == (method != "random")  # random has no boundary in the plane
    assert any("because their input is louder" in c.value for c in at.caption) is False  # random chosen last
    at.selectbox(key="ps_weights_score_method").set_value("wanda").run()
    assert any("because their input is louder than the median" in c.value for c in at.caption)


def test_the_score_picture_follows_the_sidebar_and_no_mask_gets_another_rules_threshold():
    """Magnitude's mask is a cut in |w|: its histogram draws the threshold t (red). Wanda's is not: the same line
    would be another method's threshold, so the |w| cut that removes as many is drawn and named as such."""
    from app import style

    threshold, cut = (json.dumps(x)[1:-1] for x in (style.THRESHOLD, style.EQUIVALENT_CUT))  # as the spec's JSON writes them
    at = open_page("weights")
    assert at.selectbox(key="ps_weights_score_method").value == "magnitude"
    first = chart_specs(at)[0]
    assert threshold in first and cut not in first
    at.sidebar.selectbox(key="ps_method").set_value("wanda").run()
    assert_clean(at)
    assert at.selectbox(key="ps_weights_score_method").value == "wanda"  # the picture follows the sidebar
    first = chart_specs(at)[0]
    assert cut in first and threshold not in first
    assert any("wanda score (log)" in spec for spec in chart_specs(at))
    at.selectbox(key="ps_weights_score_method").set_value("random").run()  # a choice of its own stays until the sidebar moves
    set_sparsity(at, 0.6)
    assert at.selectbox(key="ps_weights_score_method").value == "random"


def test_weights_small_multiples_in_block_and_role_order():
    at = open_page("weights")
    assert at.toggle(key="ps_weights_grid").value  # 12 layers: on by default
    titles = [json.loads(spec).get("title") for spec in chart_specs(at)]
    titles = [t["text"] for t in titles if isinstance(t, dict) and t.get("text", "").startswith("block ")]
    assert titles == [f"block {b} · {r}" for b in (0, 1) for r in ("q", "k", "v", "attention out", "FFN in", "FFN out")]


def test_masks_slider_views_and_overlap():
    at = open_page("masks")
    assert_clean(at)
    before = metric(at, "Kept in this layer")
    set_sparsity(at, 0.9)
    assert_clean(at)
    assert metric(at, "Kept in this layer") != before
    at.radio(key="ps_masks_view").set_value("top-left corner, one cell per weight").run()
    assert_clean(at)
    assert any("full resolution" in c.value for c in at.caption)
    at.sidebar.selectbox(key="ps_granularity").set_value("2:4").run()
    assert_clean(at)
    assert metric(at, "2:4 groups breaking the pattern") == "0"
    assert metric(at, "Layer sparsity") == "50.0%"


def test_masks_disagreement_picture_beside_the_jaccard_number():
    at = open_page("masks")
    assert_clean(at)
    assert at.selectbox(key="ps_masks_a").value == "magnitude" and at.selectbox(key="ps_masks_b").value == "wanda"
    jaccard = float(metric(at, "Jaccard overlap"))
    both = float(metric(at, "kept by both").rstrip("%"))
    a_only = float(metric(at, "kept by magnitude only").rstrip("%"))
    b_only = float(metric(at, "kept by wanda only").rstrip("%"))
    neither = float(metric(at, "pruned by both").rstrip("%"))
    assert abs(both + a_only + b_only + neither - 100) < 0.3
    assert abs(jaccard - both / (both + a_only + b_only)) < 0.01  # the number and the shares agree
    assert abs(both + a_only - 50) < 0.1 and abs(both + b_only - 50) < 0.1  # each mask keeps 50% of the layer
    assert any('"kept by magnitude only"' in spec for spec in chart_specs(at))


def test_candidates_sample_score_and_choose():
    at = open_page("candidates")
    assert_clean(at)
    at.number_input(key="ps_cand_k").set_value(3)
    at.slider(key="ps_cand_holdout").set_value(32)
    at.button(key="btn_cand_run").click().run()
    assert_clean(at)
    assert metric(at, "Chosen candidate") in {"c1", "c2", "c3"}
    table = at.dataframe[0].value
    assert len(table) == 3
    assert {"value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high"} <= set(table.columns)
    assert (table["n"] == 32).all() and (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    for row in table.to_dict("records"):  # each candidate against the deterministic mask, paired
        assert (row["vs deterministic"] == "within noise") == (row["drop_ci_low"] <= 0 <= row["drop_ci_high"])
    held_out = next(m for m in at.metric if m.label.startswith("Its held-out"))
    assert "95% CI" in held_out.help and "n = 32" in held_out.help
    at.number_input(key="ps_cand_k").set_value(4).run()
    at.button(key="btn_cand_run").click().run()  # new settings sample only from the button
    assert_clean(at)
    assert len(at.dataframe[0].value) == 4
    set_sparsity(at, 0.8)
    assert_clean(at)
    assert len(at.dataframe[0].value) == 4


def test_the_chosen_candidate_is_measured_on_the_test_split_downloaded_and_opened_as_a_run():
    """No winner's curse: the chosen mask and the deterministic one are evaluated on the test split (examples the
    choice never saw, as many as the sidebar's evaluation size); the tie rule is said; the chosen mask's files are the
    ones the CLI writes, and it opens as a run in every view with exactly the sampled masks."""
    from pruning.store.io import load_masks
    from pruning.store.runs import runs_dir

    at = open_page("candidates")
    at.number_input(key="ps_cand_k").set_value(3)
    at.slider(key="ps_cand_holdout").set_value(32)
    at.button(key="btn_cand_run").click().run()
    assert_clean(at)
    assert any(c.value.startswith("Tie rule: the highest held-out score wins") for c in at.caption)
    assert any("winner's curse" in c.value for c in at.caption)
    chosen = metric(at, "Chosen candidate")
    at.toggle(key="ps_cand_test").set_value(True).run()
    assert_clean(at)
    test = next(m for m in at.metric if m.label.startswith("Chosen candidate, test"))
    assert "n = 32" in test.help  # PRUNESCOPE_EVAL_SIZE: the test split, not the 32 held-out training examples by chance
    assert any(m.value.startswith("On the test split the chosen candidate against the deterministic mask:") for m in at.markdown)
    flips = next(c.value for c in at.caption if c.value.startswith("**Flips:** the chosen candidate answers differently"))
    assert "of the 32 examples" in flips  # beside the paired comparison: the answers that changed, on the same 32 test items
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Download masks.safetensors", "Download report.json"} <= labels
    at.button(key="btn_cand_open").click().run()
    assert_clean(at)
    method = at.session_state["ps_method"]
    assert method.startswith("run:") and method.endswith(f"-c{chosen[1:]}")
    folder = runs_dir() / method.rsplit("/", 1)[-1]
    saved = load_masks(folder / "masks.safetensors")
    assert all(int((~m).sum()) * 2 == m.numel() for m in saved.values())  # the sampled mask: every layer at exactly 50%
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    pruned = sum(int((~m).sum()) for m in saved.values())
    assert metric(at, "Weights removed") == f"{pruned:,}"


def test_ramp_runs_and_reports_impossible_sparsity():
    at = open_page("ramp")
    assert_clean(at)
    at.text_input(key="ps_ramp_sparsities").set_value("0.3, 0.6").run()
    at.button(key="btn_ramp_run").click().run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert {"dense", "magnitude", "random"} <= set(table["method"])
    assert len(table) == 1 + 2 * 2
    assert {"value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high"} <= set(table.columns)
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert set(table["vs dense"]) <= {"reference", "within noise", "distinguishable from 0"}  # never a blank cell
    assert table["value"].max() > 1  # accuracy in points, as the chart draws it (the CSV keeps fractions)
    assert table["vs dense"].iloc[0] == "reference"
    for row in table.iloc[1:].to_dict("records"):
        assert (row["vs dense"] == "within noise") == (row["drop_ci_low"] <= 0 <= row["drop_ci_high"])
    at.text_input(key="ps_ramp_sparsities").set_value("0.5, 1.2").run()
    assert not at.exception
    assert any("impossible" in e.value for e in at.error)
    assert at.sidebar.slider(key="ps_sparsity").value == 0.5  # the rest of the app still works


def test_sensitivity_and_allocation_follow_the_slider():
    at = open_page("sensitivity")
    assert_clean(at)
    at.text_input(key="ps_sens_sparsities").set_value("0.5, 0.9").run()
    at.button(key="btn_sens_run").click().run()
    assert_clean(at)
    captions = [c.value for c in at.caption if "parameter-weighted mean" in c.value]
    assert captions and "target 50%" in captions[0]
    set_sparsity(at, 0.7)
    assert_clean(at)
    assert any("target 70%" in c.value for c in at.caption)


def test_learn_small_matrix_is_live():
    at = open_page("learn")
    assert_clean(at)
    assert metric(at, "Weights pruned") == "32 of 64"
    assert len(at.get("page_link")) >= 6  # every term links to the view that shows it on the real model
    set_sparsity(at, 0.25)
    assert metric(at, "Weights pruned") == "16 of 64"
    at.radio(key="ps_learn_pattern").set_value("2:4").run()
    assert_clean(at)
    assert metric(at, "Sparsity") == "50%"
    errors = metric(at, "Output error")
    at.radio(key="ps_learn_criterion").set_value("random").run()
    assert metric(at, "Output error") != errors


# ---------------------------------------------------------------- the page index is the one list of views
ROOT = Path(MAIN).parent.parent


def _index():
    from app.pages_index import PAGES

    return PAGES


@pytest.mark.parametrize("spec", _index(), ids=lambda p: p.url)
def test_every_view_of_the_index_opens_clean_under_its_title(spec):
    at = open_page(spec.file.removesuffix(".py"))
    assert_clean(at)
    assert at.title and at.title[0].value.startswith(spec.title), (spec.title, [t.value for t in at.title])


def test_the_index_names_every_page_file_once():
    files = [p.file for p in _index()]
    assert len(files) == len(set(files)) and len({p.url for p in _index()}) == len(files)
    on_disk = sorted(f.name for f in (ROOT / "pages").glob("*.py"))
    assert sorted(files) == on_disk, "a view is a file in pages/ and one line in app/pages_index.py: add or remove both"


WIDGETS_WITHOUT_A_SETTABLE_VALUE = ("button", "download_button", "form_submit_button", "run_view")  # ui.run_view(ans, label, key, ...) draws a button


def _button_keys(path: Path):
    """``(line, key)`` of every button-like call in ``path`` whose key is a string literal or f-string (its literal start)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name not in WIDGETS_WITHOUT_A_SETTABLE_VALUE:
            continue
        key = next((k.value for k in node.keywords if k.arg == "key"), None)
        if key is None and name == "run_view" and len(node.args) >= 3:
            key = node.args[2]
        if isinstance(key, ast.JoinedStr):
            key = key.values[0] if key.values else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            yield node.lineno, key.value


def test_no_button_key_starts_with_ps():
    """app/main.py assigns every "ps_" key again on each run, so a page widget keeps its value across pages; Streamlit
    refuses that for a button or a download. Their keys start with "btn_" or "dl_" (docs/ARCHITECTURE.md, "Recipe: add a view")."""
    files = [*(ROOT / "pages").glob("*.py"), *(ROOT / "app").rglob("*.py")]
    found = [(f.relative_to(ROOT), line, key) for f in files for line, key in _button_keys(f)]
    assert len(found) > 10  # the scan sees the views' buttons (it is not vacuous)
    bad = [f"{f}:{line} key {key!r}" for f, line, key in found if key.startswith("ps_")]
    assert not bad, "a button or download key must not start with 'ps_' (use 'btn_...' or 'dl_...'): " + "; ".join(bad)


# ---------------------------------------------------------------- a criterion added in a test file
def test_a_toy_criterion_gets_its_label_and_a_colour_in_the_sidebar_overview_and_weights(monkeypatch):
    """The data-free criterion recipe of docs/ARCHITECTURE.md, followed in this file: one score function and one
    register call. No table of the app is edited, yet the sidebar lists it by its label with its colour (the first
    palette colour no method has taken), the Overview draws its per-layer sparsity in that colour, and the Weights
    view offers its score picture with its own words."""
    from app import style
    from pruning import catalog, registry
    from pruning.registry import Method, register
    from pruning.walk import layer_weights
    from pruning.walk import score_method as _score_method

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))

    def _smallest(ctx):  # keep the weights with the SMALLEST |W|: a criterion no built-in method is
        return {n: w.abs().amax() - w.abs() for n, w in layer_weights(ctx).items()}

    register(Method(name="toysmall", label="Toy: smallest |W| kept", summary="Keep the weights with the smallest |W| (a test's criterion).",
                    run=_score_method("toysmall", _smallest), scores=_smallest, granularity="layer", needs_calibration=False))
    taken = {m.colour for m in catalog.all_methods().values() if m.colour}
    colour = next(c for c in style.PALETTE if c not in taken)
    assert style.method_color("toysmall") == colour and style.method_color("toysmall (current)") == colour

    at = open_page()
    method = at.sidebar.selectbox(key="ps_method")
    assert "Toy: smallest |W| kept" in method.options
    method.set_value("toysmall").run()
    assert_clean(at)
    assert any(colour in c.value and "smallest |W|" in c.value for c in at.sidebar.caption)  # its colour beside its summary
    table = at.dataframe[0].value
    assert (table["sparsity: toysmall (current)"] == 0.5).all()  # per layer, exactly half of each layer's weights
    bars = next(spec for spec in chart_specs(at) if "toysmall (current)" in spec)
    assert colour in bars

    at.switch_page("../pages/weights.py").run()
    assert_clean(at)
    assert at.selectbox(key="ps_weights_score_method").value == "toysmall"  # the picture follows the sidebar's method
    assert "Toy: smallest |W| kept" in at.selectbox(key="ps_weights_score_method").options
    assert any("Toy: smallest |W| kept: Keep the weights with the smallest |W|" in c.value for c in at.caption)  # no words of its own: its summary
    assert any("Threshold t = " in c.value and "Toy: smallest |W| kept score" in c.value for c in at.caption)
    assert float(metric(at, "Layer sparsity").rstrip("%")) == 50.0


# ---------------------------------------------------------------- bad input keeps the app working
def choose_other_model(at: AppTest, text: str) -> AppTest:
    at.sidebar.selectbox(key="ps_model_choice").set_value("other (hub name, local folder or GGUF file)").run()
    at.sidebar.text_input(key="ps_model_text").set_value(text).run()
    return at


@pytest.mark.parametrize("text,expected", [("/no/such/folder", "outside the folders this app may read"), ("not a model name!", "could not load")])
def test_unknown_model_shows_an_error_in_place(text, expected):
    at = choose_other_model(open_page("weights"), text)
    assert not at.exception
    assert at.error and expected in at.error[0].value
    at.switch_page("../pages/learn.py").run()  # a page without a model still works
    assert_clean(at)


def test_folder_that_is_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    at = choose_other_model(open_page("masks"), str(tmp_path))
    assert not at.exception
    assert at.error


def test_csv_without_label_column_and_empty_text_file(tmp_path):
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,stars_given\ngood film,5\nbad film,1\n")
    at = open_page()
    at.sidebar.selectbox(key="ps_data_choice").set_value("local file or folder").run()
    at.sidebar.text_input(key="ps_data_text").set_value(str(csv)).run()
    assert not at.exception
    assert at.error and "label" in at.error[0].value.lower()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    at.sidebar.text_input(key="ps_data_text").set_value(str(empty)).run()
    assert not at.exception and at.error
    at.sidebar.selectbox(key="ps_data_choice").set_value("embedded").run()
    assert_clean(at)


def test_impossible_nm_pattern():
    at = open_page("masks")
    at.sidebar.selectbox(key="ps_granularity").set_value("custom N:M").run()
    at.sidebar.text_input(key="ps_custom_nm").set_value("3:2").run()
    assert not at.exception
    assert at.error and "impossible" in at.error[0].value
    at.sidebar.text_input(key="ps_custom_nm").set_value("1:4").run()
    assert_clean(at)
    assert metric(at, "Layer sparsity") == "25.0%"


def test_two_sessions_keep_their_own_masks():
    a, b = open_page("masks"), open_page("masks")
    set_sparsity(a, 0.2)
    set_sparsity(b, 0.9)
    a.run()  # a reruns after b changed its settings: it still sees its own masks
    assert metric(a, "Layer sparsity") == "20.0%"
    assert metric(b, "Layer sparsity") == "90.0%"
    assert metric(a, "Kept in this layer") != metric(b, "Kept in this layer")


def test_sidebar_settings_persist_across_pages():
    at = open_page("weights")
    set_sparsity(at, 0.65)
    at.switch_page("../pages/masks.py").run()
    assert at.sidebar.slider(key="ps_sparsity").value == 0.65
    assert metric(at, "Layer sparsity") == "65.0%"


def _set_params(at: AppTest, method: str, params: dict) -> None:
    for name, value in params.items():
        at.session_state[f"ps_param_{method}_{name}"] = value


MGPP_SMALL = {"steps": 8, "t0": 2, "t1": 6, "interval": 2, "history_points": 4, "holdout": 16, "batch_size": 4}


def test_steps_page_offers_the_stepwise_methods():
    at = open_page("steps")
    assert_clean(at)
    assert "prunes in one shot" in at.info[0].value
    at.button(key="btn_steps_pick_gmp").click().run()
    assert at.sidebar.selectbox(key="ps_method").value == "gmp"
    assert at.sidebar.selectbox(key="ps_granularity").value == "global"  # GMP's paper prunes globally


def test_mgpp_waits_for_run_then_shows_its_schedule_and_snapshots():
    from app import jobs

    at = open_page("steps")
    _set_params(at, "mgpp", MGPP_SMALL)
    at.sidebar.selectbox(key="ps_method").set_value("mgpp").run()
    assert_clean(at)
    # nothing trains before the user asks: a Run button, no job in the shared store
    assert [b.label for b in at.button if b.key == "btn_start_mgpp"] == ["Run MGPP (mixture Gaussian prior)"]
    assert "steps=8" in at.info[0].value
    # beside the method: its claim's measured lines (bench/results/claims-summary.json) and where the verdict is
    from app.docs import claim_lines

    shown = [t.value for t in at.text]
    assert claim_lines("claim-mgpp") and all(line in shown for line in claim_lines("claim-mgpp"))
    assert any("docs/CLAIMS.md#claim-mgpp" in c.value for c in at.caption)
    jobs_before = dict(jobs.store()._items.get("prune", {}))
    assert not [k for k in jobs_before if "mgpp" in k]
    at.button(key="btn_start_mgpp").click().run()
    assert_clean(at)
    assert metric(at, "Snapshot") == "step 8 of 8"
    assert metric(at, "Sparsity (exact zeros)") == "50.0%"
    history = next(d.value for d in at.dataframe if "prior_threshold" in d.value.columns)
    accuracy = float(metric(at, "Held-out accuracy").rstrip("%"))
    assert history["value"].iloc[-1] == pytest.approx(accuracy, abs=0.05)  # the snapshot table in points, as the metric and chart
    # 4 evenly spaced snapshots (0, 8/3, 16/3, 8 rounded) plus t0 = 2 and t1 = 6
    assert at.select_slider(key="ps_steps_snapshot").options == ["0", "2", "3", "5", "6", "8"]
    at.select_slider(key="ps_steps_snapshot").set_value(2).run()
    assert_clean(at)
    # the Overview shows the same trained result (evaluated with its fine-tuned head), without a new run
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    assert metric(at, "Overall sparsity") == "50.0%"
    # another budget is another result: the Run button comes back
    _set_params(at, "mgpp", {**MGPP_SMALL, "steps": 10})
    at.switch_page("../pages/steps.py").run()
    assert [b.key for b in at.button if b.key == "btn_start_mgpp"] == ["btn_start_mgpp"]


def _run_on_steps_page(method: str, params: dict) -> AppTest:
    """Open Method steps, set the method's parameters, choose it in the sidebar and press Run."""
    at = open_page("steps")
    _set_params(at, method, params)
    at.sidebar.selectbox(key="ps_method").set_value(method).run()
    at.button(key=f"btn_start_{method}").click().run()
    assert_clean(at)
    return at


def test_sds_shows_each_stage_and_the_layer_errors():
    at = _run_on_steps_page("sds", {"iters": 5, "adjust_iters": 3, "holdout": 16})
    assert metric(at, "dense") == "0.0% zeros"
    assert metric(at, "sparse again") == "50.0% zeros"
    changed, skipped, beats = (int(metric(at, label).split(" of ")[0]) for label in (
        "Layers the soft-mask adjustment changed", "Layers where the adjustment was skipped", "Layers where the second pruning beats the first"))
    assert skipped == beats  # the paper's rule: skipped exactly where the second pruning already beats the first
    assert changed <= 12 - skipped
    table = next(d.value for d in at.dataframe if "zero_fraction" in d.value.columns)
    drawn = sorted(r["value"] for r in chart_rows(at, "on held-out training data") if "stage" in r and "value" in r)
    assert sorted(table["value"]) == pytest.approx(drawn) and max(drawn) > 1  # the stage table in points, as its chart
    at.radio(key="ps_steps_stage").set_value("dense step").run()
    assert_clean(at)


def test_randomized_selection_shows_each_stage_and_the_chosen_candidate():
    at = _run_on_steps_page("randomized", {"k": 3, "steps": 4, "eval_every": 2, "final_steps": 4, "holdout": 16, "batch_size": 4, "stages": 2})
    assert metric(at, "Stage") == "2 of 2"
    assert metric(at, "Sparsity of this stage") == "50.0%"
    assert metric(at, "Chosen candidate").endswith("of 3")
    winner = next(m for m in at.metric if m.label.startswith("Winner after fine-tuning"))
    assert "95% CI" in winner.help and "n = 16" in winner.help  # 16 held-out examples
    assert [h.value for h in at.subheader][:2] == ["Stage 1: 29.3% sparsity", "Stage 2: 50.0% sparsity"]
    overlap_axes = [json.loads(spec)["encoding"]["y"] for spec in chart_specs(at) if "overlap with the deterministic mask" in spec]
    assert len(overlap_axes) == 2  # one per stage; the candidates differ in the fourth decimal: the axis must not magnify that
    for y in overlap_axes:
        low, high = y["scale"]["domain"]
        assert high - low >= 0.05, (low, high)


def test_snapshots_are_drawn_while_mgpp_runs(monkeypatch):
    """A run long enough for the page to poll it: the live drawing of partial snapshots must not
    fail (an error there would surface as the page's error), and the final view follows."""
    from app import jobs

    calls = []
    original = jobs.wait

    def counting_wait_for(job, kind, key, on_partial=None, poll=0.2):
        if on_partial is not None:
            def spy(entries):
                calls.append(len(entries))
                on_partial(entries)
            return original(job, kind, key, spy, poll=0.05)
        return original(job, kind, key, on_partial, poll)

    monkeypatch.setattr(jobs, "wait", counting_wait_for)
    at = _run_on_steps_page("gmp", {**MGPP_SMALL, "steps": 60, "t1": 50, "history_points": 12, "holdout": 64})
    assert metric(at, "Snapshot") == "step 60 of 60"
    assert calls and calls[-1] >= 1  # drawn live with at least one snapshot


@pytest.mark.parametrize("method", ["gmp", "mgpp"])
def test_gradual_pruning_runs_on_a_budget_of_one_step_with_the_default_schedule(method):
    at = _run_on_steps_page(method, {"steps": 1, "holdout": 16, "batch_size": 4})
    assert metric(at, "Snapshot") == "step 1 of 1"
    assert metric(at, "Sparsity (exact zeros)") == "50.0%"
    ridge = [spec for spec in chart_specs(at) if "[-round(datum.value)]" in spec]  # the stacked histograms over time
    assert len(ridge) == 1 and ("prior threshold" in json.loads(ridge[0]).__repr__()) == (method == "mgpp")


def test_method_parameters_in_a_budget_group_and_an_advanced_group():
    at = open_page("steps")
    at.sidebar.selectbox(key="ps_method").set_value("mgpp").run()
    shown = [n.key for n in at.sidebar.number_input if n.key.startswith("ps_param_mgpp_")]
    assert shown == ["ps_param_mgpp_steps", "ps_param_mgpp_batch_size"]  # the short budget group
    at.sidebar.toggle(key="ps_param_adv_mgpp").set_value(True).run()
    shown = [n.key for n in at.sidebar.number_input if n.key.startswith("ps_param_mgpp_")]
    assert len(shown) == 13 and shown[2:4] == ["ps_param_mgpp_t0", "ps_param_mgpp_t1"]


def test_a_view_opens_from_a_url_with_settings():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"method": "wanda", "sparsity": "0.7", "granularity": "layer", "seed": "3"})
    at.run()
    at.switch_page("../pages/weights.py").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_method").value == "wanda"
    assert at.sidebar.text_input(key="ps_seed_text").value == "3" and at.session_state["ps_seed"] == 3
    assert metric(at, "Layer sparsity") == "70.0%"
    set_sparsity(at, 0.4)  # the address follows the sidebar, so it can be shared
    assert at.query_params["sparsity"] == "0.4" and at.query_params["method"] == "wanda"


def test_the_seed_takes_every_value_the_cli_takes():
    at = open_page()
    at.sidebar.text_input(key="ps_seed_text").set_value(str(2**63 - 1)).run()
    assert_clean(at)
    assert at.session_state["ps_seed"] == 2**63 - 1 and f"seed {2**63 - 1}" in " ".join(c.value for c in at.caption)
    at.sidebar.text_input(key="ps_seed_text").set_value(str(2**63)).run()  # one past the CLI's bound: named, the seed kept
    assert not at.exception and at.session_state["ps_seed"] == 2**63 - 1
    assert any("2\\*\\*63-1" in e.value and "stays" in e.value for e in at.sidebar.error)


def test_bad_values_in_the_url_are_named_dropped_from_it_and_the_defaults_shown():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"method": "nonsense", "sparsity": "1.5", "granularity": "3:2", "seed": "x", "eval": "0",
                            "layer": "no.such.layer", "run": "../../etc", "count_scale": "sideways"})
    at.run()
    at.switch_page("../pages/weights.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warnings = " ".join(w.value for w in at.sidebar.warning)
    for key in ("method='nonsense'", "sparsity='1.5'", "granularity='3:2'", "seed='x'", "eval='0'", "run='../../etc'"):
        assert key in warnings
    assert at.sidebar.selectbox(key="ps_method").value == "magnitude"
    assert at.sidebar.slider(key="ps_sparsity").value == 0.5
    shown = dict(at.query_params)  # the address now holds what is shown: the defaults, none of the refused values
    assert shown["method"] == "magnitude" and shown["sparsity"] == "0.5" and shown["granularity"] == "layer"
    assert shown["seed"] == "0" and shown["eval"] == "32" and "run" not in shown
    assert shown["layer"] == at.selectbox(key="ps_layer").value == at.selectbox(key="ps_layer").options[0]
    assert shown["count_scale"] == "linear"
    assert "nonsense" not in str(shown) and "no.such.layer" not in str(shown)


def test_url_values_that_cannot_work_together_are_dropped():
    """Parameters the method refuses, and a granularity no link can carry (an allocation lives in its session):
    each is named and dropped, and the page draws with the defaults."""
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"method": "mgpp", "p.steps": "-5", "p.nosuch": "1", "granularity": "allocated", "sparsity": "0.6"})
    at.run()
    at.switch_page("../pages/steps.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "p.nosuch='1'" in warnings and "p.steps='-5'" in warnings and "granularity='allocated'" in warnings
    assert "does not carry an applied allocation" in warnings and "Layer sensitivity" in warnings  # what to do instead
    assert at.sidebar.selectbox(key="ps_method").value == "mgpp"
    assert at.sidebar.slider(key="ps_sparsity").value == 0.6
    assert not any(k.startswith("p.") for k in at.query_params) and at.query_params["granularity"] == "layer"


def test_a_model_in_the_url_that_does_not_load_is_dropped_for_the_default(tmp_path):
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"model": str(tmp_path / "no_such_model"), "sparsity": "0.6"})
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("model=" in w.value and "no\\_such\\_model" in w.value for w in at.sidebar.warning)  # as text: _ escaped
    assert at.sidebar.selectbox(key="ps_model_choice").value == os.environ["PRUNESCOPE_TEST_MODEL"]
    assert at.query_params["model"] == os.environ["PRUNESCOPE_TEST_MODEL"] and at.query_params["sparsity"] == "0.6"
    assert metric(at, "Overall sparsity") == "60.0%"


def test_a_shared_link_reproduces_the_view_in_a_fresh_session():
    """Settings changed in one session (sidebar, a method parameter, evaluation size, the view's own widgets): its
    address opened in a fresh session shows the same settings and the same numbers."""
    at = open_page("weights")
    at.sidebar.selectbox(key="ps_method").set_value("wanda").run()
    set_sparsity(at, 0.7)
    at.sidebar.number_input(key="ps_eval_size").set_value(64).run()
    layer = at.selectbox(key="ps_layer").options[3]
    at.selectbox(key="ps_layer").set_value(layer).run()
    at.radio(key="ps_weights_scale").set_value("log").run()
    at.selectbox(key="ps_weights_score_method").set_value("random").run()
    assert_clean(at)
    link = dict(at.query_params)
    assert link["layer"] == layer and link["criterion"] == "random" and link["eval"] == "64" and link["count_scale"] == "log"
    numbers = [metric(at, name) for name in ("Pruned in this layer", "Layer sparsity", "Magnitude threshold")]

    fresh = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    fresh.query_params.update(link)
    fresh.run()
    fresh.switch_page("../pages/weights.py").run()
    assert_clean(fresh)
    assert not fresh.sidebar.warning
    assert fresh.selectbox(key="ps_layer").value == layer
    assert fresh.selectbox(key="ps_weights_score_method").value == "random"
    assert fresh.radio(key="ps_weights_scale").value == "log"
    assert fresh.sidebar.number_input(key="ps_eval_size").value == 64
    assert [metric(fresh, name) for name in ("Pruned in this layer", "Layer sparsity", "Magnitude threshold")] == numbers
    assert dict(fresh.query_params) == link


def test_a_method_parameter_travels_in_the_url():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"method": "mgpp", "p.steps": "30"})
    at.run()
    assert not at.sidebar.warning
    assert at.session_state["ps_param_mgpp_steps"] == 30
    assert at.query_params["p.steps"] == "30"


def test_bad_method_parameter_is_a_message():
    at = open_page("steps")
    _set_params(at, "mgpp", {**MGPP_SMALL, "t1": 20})  # t1 after the last step
    at.sidebar.selectbox(key="ps_method").set_value("mgpp").run()
    assert not at.exception
    assert at.error and "t0 <= t1 <= steps" in at.error[0].value


def test_parse_sparsities():
    from app.sweeps import parse_sparsities
    from pruning.errors import PruneScopeError

    assert parse_sparsities("0.5, 30%, 0.5,0.9") == [0.3, 0.5, 0.9]
    for bad in ("1.0", "-0.1", "abc", " , "):
        with pytest.raises(PruneScopeError):
            parse_sparsities(bad)


def test_trained_results_are_evaluated_with_their_fine_tuned_parameters(tiny_bert, tiny_sentiment):
    """A trained method fine-tunes biases, LayerNorms and the head too: the app's overrides must carry them."""
    import torch

    from app.resources import MaskSet, overrides
    from pruning.prune import prune
    from pruning.request import PruneRequest

    params = {"steps": 3, "t0": 1, "t1": 2, "interval": 1, "history_points": 2, "holdout": 16, "batch_size": 4}
    result = prune(tiny_bert, PruneRequest.make("gmp", 0.5, "layer", params), data=tiny_sentiment)
    assert result.other_params  # the classifier head at least
    mask_set = MaskSet("gmp", 0.5, "layer", result.masks, result.weights, other=result.other_params)
    ours, reference = overrides(tiny_bert, mask_set), result.overrides(tiny_bert)
    assert set(ours) == set(reference)
    assert all(torch.equal(ours[k], reference[k]) for k in ours)


def test_time_left_follows_the_share_done():
    from app.jobs import remaining

    assert remaining(10.0, 0.01) == ""  # too early to say
    assert remaining(10.0, 0.5) == ", about 10 s left"
    assert remaining(60.0, 0.1) == ", about 9 min left"  # 540 s
    assert remaining(60.0, 1.0) == ""


# ---------------------------------------------------------------- runs made by the CLI, opened in the app
@pytest.fixture(scope="module")
def cli_runs(tiny_model_folder, tiny_csv):
    """Two runs written by ``python -m pruning prune`` into the runs directory, and one with a wrong mask file."""
    import torch
    from safetensors.torch import save_file

    from pruning.cli import main

    root = Path(os.environ["PRUNESCOPE_RUNS_DIR"])
    for name, method in (("mag50", "magnitude"), ("rand50", "random")):
        assert main(["prune", "--model", str(tiny_model_folder), "--method", method, "--sparsity", "0.5", "--dataset", str(tiny_csv),
                     "--eval", "--eval-size", "16", "--out", str(root / name)]) == 0
    bad = root / "wrong"
    bad.mkdir()
    (bad / "report.json").write_text((root / "mag50" / "report.json").read_text())
    save_file({"bert.encoder.layer.0.attention.self.query": torch.ones(5, 7, dtype=torch.bool)}, str(bad / "masks.safetensors"))
    return root


def test_runs_view_opens_a_cli_run_and_shows_it_in_every_view(cli_runs):
    from pruning.store.io import read_report

    at = open_page("runs")
    assert_clean(at)
    at.selectbox(key="ps_runs_pick").set_value("mag50").run()
    at.button(key="btn_runs_open").click().run()
    assert_clean(at)
    report = read_report(cli_runs / "mag50" / "report.json")
    assert metric(at, "Overall sparsity") == f"{report['overall_sparsity']:.2%}"
    assert "mag50" in " ".join(map(str, at.sidebar.selectbox(key="ps_method").options))
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download masks.safetensors" in labels and "Download report.json" in labels
    at.button(key="btn_runs_use").click().run()
    assert at.session_state["ps_method"].endswith("mag50")
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    assert metric(at, "Weights removed") == f"{report['total'] - report['kept']:,}"
    for page in ("weights", "masks"):
        at.switch_page(f"../pages/{page}.py").run()
        assert_clean(at)


def test_a_run_is_named_in_the_url_by_its_folder_under_the_runs_directory(cli_runs):
    at = open_page("runs")
    at.selectbox(key="ps_runs_pick").set_value("mag50").run()
    at.button(key="btn_runs_open").click().run()
    at.button(key="btn_runs_use").click().run()
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    link = dict(at.query_params)
    assert link["run"] == "mag50" and "method" not in link
    assert str(cli_runs) not in str(link)  # never the server's absolute path
    removed = metric(at, "Weights removed")
    fresh = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    fresh.query_params.update(link)
    fresh.run()
    assert_clean(fresh)
    assert fresh.session_state["ps_method"].endswith("mag50")
    assert metric(fresh, "Weights removed") == removed


def test_an_opened_run_is_described_compared_and_named_as_itself(cli_runs):
    """With the sidebar at another granularity, an opened run is described with its own (from its report), joins the
    Masks view's comparison, and legends and labels name it by its folder, never by its path."""
    at = open_page("masks")  # the Masks view visited before the run is opened: its comparison must still take the run in
    at.sidebar.selectbox(key="ps_granularity").set_value("row").run()
    at.switch_page("../pages/runs.py").run()
    at.selectbox(key="ps_runs_pick").set_value("mag50").run()
    at.button(key="btn_runs_open").click().run()
    at.button(key="btn_runs_use").click().run()
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    line = next(c.value for c in at.caption if c.value.startswith("model **"))
    assert "**run mag50**" in line and "granularity **layer** (the run's own)" in line and "granularity **row**" not in line
    assert any("at **layer** granularity" in m.value for m in at.markdown)
    assert str(cli_runs) not in "".join(chart_specs(at))
    at.switch_page("../pages/masks.py").run()
    assert_clean(at)
    chosen = at.multiselect(key="ps_masks_methods").value
    assert chosen[0].endswith("mag50") and len(chosen) >= 2
    specs = "".join(chart_specs(at))
    assert "run mag50" in specs and str(cli_runs) not in specs


def test_a_wrong_mask_file_is_a_clear_message(cli_runs):
    at = open_page("runs")
    at.selectbox(key="ps_runs_pick").set_value("wrong").run()
    at.button(key="btn_runs_open").click().run()
    assert not at.exception
    assert at.error and "has shape (5, 7)" in at.error[0].value and "another model" in at.error[0].value


# Report fields of a run folder received from someone else: Markdown, HTML, links, Streamlit directives.
HOSTILE = {
    "method": "**Masks checked against FAKE** ![x](http://127.0.0.1:9/method.png)",
    "granularity": "<img src='http://127.0.0.1:9/g.png'>",
    "model": "[a link](http://127.0.0.1:9/model) :red[faked] $x^2$",
}


def test_a_shared_run_folder_is_shown_as_text_and_its_counts_come_from_the_masks(cli_runs, tmp_path):
    import json
    import shutil

    from markdown_it import MarkdownIt

    root = tmp_path / "shared_runs"
    shutil.copytree(cli_runs / "mag50", root / "hostile")
    report = json.loads((root / "hostile" / "report.json").read_text())
    report.update(HOSTILE, overall_sparsity=0.99, kept=1)  # claims the masks do not back
    report["evaluation"]["pruned"]["metric"] = "![m](http://127.0.0.1:9/metric.png)"
    (root / "hostile" / "report.json").write_text(json.dumps(report))

    at = open_page("runs")
    at.text_input(key="ps_runs_dir").set_value(str(root)).run()
    at.selectbox(key="ps_runs_pick").set_value("hostile").run()
    at.button(key="btn_runs_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # every string Streamlit renders as Markdown, rendered as a browser would: no image, link or HTML element
    shown = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success") for e in getattr(at, kind)]
    shown += [m.label for m in at.metric] + [m.value for m in at.metric] + [m.proto.help for m in at.metric]
    shown += [b.label for b in at.button]
    html = [MarkdownIt("commonmark", {"html": False}).render(text) for text in shown]  # Streamlit renders no raw HTML
    assert not any(tag in h for h in html for tag in ("<img", "<a ", "<script")), [h for h in html if "<img" in h or "<a " in h]
    # the fields are there, as their own text (HTML-escaped by the renderer), and no directive survives unescaped
    page = " ".join(html)
    assert "**Masks checked against FAKE**" in page and "[a link](http://127.0.0.1:9/model)" in page
    assert "&lt;img src='http://127.0.0.1:9/g.png'&gt;" in page
    assert not any(":red[" in text for text in shown) and any("\\:red\\[faked\\]" in text for text in shown)
    # the sparsity shown is counted in the mask file (the run pruned half), not the report's 0.99
    assert metric(at, "Overall sparsity") == "50.00%"


def test_two_runs_compare_side_by_side(cli_runs):
    from pruning.store.io import load_masks

    a, b = load_masks(cli_runs / "mag50" / "masks.safetensors"), load_masks(cli_runs / "rand50" / "masks.safetensors")
    both = sum(int((a[n] & b[n]).sum()) for n in a)
    a_only = sum(int((a[n] & ~b[n]).sum()) for n in a)
    at = open_page("runs")
    at.selectbox(key="ps_runs_a").set_value("mag50").run()
    at.selectbox(key="ps_runs_b").set_value("rand50").run()
    assert_clean(at)
    assert metric(at, "Kept by both") == f"{both:,}"
    assert metric(at, "Kept by A only") == f"{a_only:,}"
    assert any("B minus A" in m.value for m in at.markdown)

# ---------------------------------------------------------------- intervals (issue 8)
def test_overview_shows_intervals_and_within_noise():
    at = open_page()
    assert_clean(at)
    # the tiny random classifier predicts 17 of the first 32 sentences right, pruned or not:
    # Wilson's 95% interval of 17/32 is 0.3645 .. 0.6913 (by hand: centre 0.5279, half-width 0.1634)
    outcome = next(m.value for m in at.markdown if "went from" in m.value)
    assert "53.1% (95% CI 36.4% to 69.1%, n = 32) to 53.1% (95% CI 36.4% to 69.1%, n = 32)" in outcome
    assert "Measured on the same examples: accuracy change +0.0 points (95% CI +0.0 to +0.0), within noise" in outcome
    delta = next(m.delta for m in at.metric if m.label.startswith("accuracy"))
    assert delta == "+0.0 points, within noise"


@pytest.fixture
def downloads(monkeypatch):
    """What the page's download buttons hand to the browser: ``{file name: bytes}``."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        files[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return files


def test_sensitivity_ranks_by_kl_with_intervals_and_the_allocation_downloads_and_applies(downloads):
    import json

    at = open_page("sensitivity")
    at.text_input(key="ps_sens_sparsities").set_value("0.5, 0.9").run()
    at.button(key="btn_sens_run").click().run()
    assert_clean(at)
    assert at.radio(key="ps_sens_signal").value == "kl"  # KL ranks by default; the metric drop is the other choice
    assert any("layers are distinguishable from zero by the KL divergence" in m.value for m in at.markdown)
    assert any("Dense accuracy:" in c.value and "95% CI" in c.value for c in at.caption)
    # the tiny BERT's 12 layers: q, k, v, attention out (32 x 32) and FFN in, FFN out (64 x 32) in 2 blocks
    params = {f"bert.encoder.layer.{b}.{n}": (2048 if n.endswith("dense") and "attention" not in n else 1024)
              for b in (0, 1) for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                                         "attention.output.dense", "intermediate.dense", "output.dense")}
    alloc = json.loads(downloads["prunescope_allocation.json"])
    assert set(alloc) == set(params)
    assert sum(params[n] * v for n, v in alloc.items()) / sum(params.values()) == pytest.approx(0.5, abs=1e-3)
    csv_rows = downloads["prunescope_allocation.csv"].decode().splitlines()
    assert csv_rows[0] == "layer,sparsity,parameters" and len(csv_rows) == 13
    table = downloads["prunescope_sensitivity.csv"].decode().splitlines()[0].split(",")
    assert {"value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high", "kl"} <= set(table)

    at.button(key="btn_alloc_apply").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "allocated"
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    assert metric(at, "Overall sparsity") == "50.0%"  # the allocation keeps the target as its parameter-weighted mean
    assert any("The allocation against uniform: accuracy change" in m.value for m in at.markdown)
    at.switch_page("../pages/ramp.py").run()
    at.text_input(key="ps_ramp_sparsities").set_value("0.3, 0.7").run()
    at.button(key="btn_ramp_alloc_run").click().run()
    assert_clean(at)
    table = at.dataframe[-1].value  # per method and sparsity: uniform (the reference) and allocated, paired
    assert len(table) == 2 * 2 * 2 and list(table["granularity"][:2]) == ["layer", "allocated"]
    assert set(table["vs uniform"][table["granularity"] == "layer"]) == {"reference"}
    for row in table[table["granularity"] == "allocated"].to_dict("records"):
        assert (row["vs uniform"] == "within noise") == (row["drop_ci_low"] <= 0 <= row["drop_ci_high"])


def test_apply_keeps_the_measurement_on_screen_and_says_applied():
    """Apply changes the sidebar's granularity to "allocated": the measurement the user waited for stays
    (it was made at the granularity it names), and the page says what Apply did."""
    at = open_page("sensitivity")
    at.text_input(key="ps_sens_sparsities").set_value("0.5, 0.9").run()
    at.button(key="btn_sens_run").click().run()
    assert_clean(at)
    ranked = [c.value for c in at.caption if c.value.startswith("Dense accuracy:")]
    assert ranked
    at.button(key="btn_alloc_apply").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "allocated"
    assert [c.value for c in at.caption if c.value.startswith("Dense accuracy:")] == ranked  # same rows, not a new run
    assert not any("Press **Measure sensitivity**" in i.value for i in at.info)
    assert any(m.value.startswith("Applied: the sidebar's granularity is now **allocated**") for m in at.success)


def test_owl_measured_in_one_pass_applies_as_the_sidebar_allocation_and_follows_the_slider():
    """A measured allocation (OWL) from the Layer sensitivity page: one button measures it on the sidebar's calibration and
    applies it; the sidebar's "allocated" then rebuilds it for every target by OWL's own rule (the blocks' outlier ratios,
    measured once), and the Overview prunes at the target's overall sparsity."""
    from pruning.allocations.owl import block_sparsities

    from app.allocation import SOURCE_KEY, MeasuredSource

    at = open_page("sensitivity")
    at.button(key="btn_measure_owl").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "allocated"
    source = at.session_state[SOURCE_KEY]
    assert isinstance(source, MeasuredSource) and source.name == "owl" and source.label == "OWL"
    info = json.loads(source.info_json)
    blocks = [b["block"] for b in info["blocks"]]
    ratios = [b["outlier_ratio"] for b in info["blocks"]]
    assert len(blocks) == 2 and set(info["layers"].values()) == set(blocks)
    for target in (0.5, 0.7):
        want = block_sparsities(ratios, target, 0.08)
        assert source.at(target) == {layer: want[blocks.index(block)] for layer, block in info["layers"].items()}
    assert any(m.value.startswith("Applied: the sidebar's granularity is **allocated** (OWL)") for m in at.success)
    at.switch_page("../pages/overview.py").run()
    assert_clean(at)
    assert metric(at, "Overall sparsity") == "50.0%"  # both blocks the same size: OWL's mean over blocks is the target


def test_an_allocation_of_another_model_is_explained_with_a_way_back(tmp_path):
    """An allocation applied on one model, then another model chosen: a warning that names both models and a
    button back to uniform pruning, never an error about unknown layers."""
    from app.allocation import SOURCE_KEY, AllocationSource

    at = open_page("overview")
    model = at.session_state["ps_model_choice"]
    other = AllocationSource.from_rows(("some-other-model", None), "magnitude", "kl",
                                       [{"layer": "bert.encoder.layer.0.attention.self.query", "sparsity": 0.5, "kl": 0.1}],
                                       {"bert.encoder.layer.0.attention.self.query": 1024})
    at.session_state[SOURCE_KEY] = other  # as if applied on that model, then the model switched
    at.run()
    at.sidebar.selectbox(key="ps_granularity").set_value("allocated").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warned = [w.value for w in at.warning if "some-other-model" in w.value]
    assert warned and "cannot be pruned with it" in warned[0]
    at.button(key="btn_alloc_uniform").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "layer"
    assert metric(at, "Overall sparsity") == "50.0%"
    assert at.session_state["ps_model_choice"] == model


def test_slider_views_label_wanda_one_pass_and_show_its_agreement_with_the_exact_masks():
    at = open_page("weights")
    at.sidebar.selectbox(key="ps_method").set_value("wanda").run()
    assert_clean(at)
    notes = [c.value for c in at.caption if c.value.startswith("**Approximation:**")]
    assert len(notes) == 1  # labelled where the numbers are, whether or not the exact masks are ready
    for _ in range(60):  # the exact masks are computed in the background; the page never waits for them
        if "Agreement with the exact Wanda masks" in notes[0]:
            break
        time.sleep(0.5)
        at.run()
        notes = [c.value for c in at.caption if c.value.startswith("**Approximation:**")]
    # the first layer of the first block sees the dense inputs in both computations: identical masks
    assert at.selectbox(key="ps_layer").value == "bert.encoder.layer.0.attention.self.query"
    assert "**1.000** in this layer (0.0% of its weights decided differently)" in notes[0]
    at.switch_page("../pages/masks.py").run()
    assert_clean(at)
    assert any("Agreement with the exact Wanda masks" in c.value for c in at.caption)
    at.sidebar.selectbox(key="ps_method").set_value("magnitude").run()
    assert not [c for c in at.caption if c.value.startswith("**Approximation:**")]  # magnitude's ranks are exact


def test_a_single_file_dataset_says_which_half_is_evaluated(tmp_path):
    rows = "\n".join(f"{'good fun film' if i % 2 else 'bad dull film'} {i},{i % 2}" for i in range(40))
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\n" + rows + "\n")
    at = open_page()
    at.sidebar.selectbox(key="ps_data_choice").set_value("local file or folder").run()
    at.sidebar.text_input(key="ps_data_text").set_value(str(csv)).run()
    assert_clean(at)
    note = next(c.value for c in at.caption if c.value.startswith("Data: "))
    train, evaluated = note[len("Data: "):].split("; ")
    assert train.endswith("of the 40 rows of reviews.csv (chosen by a fixed hash): calibration and training")
    n_train = int(train.split(" ")[0])
    assert evaluated.startswith(f"the other {40 - n_train} rows: evaluation")
    outcome = next(m.value for m in at.markdown if "went from" in m.value)
    assert f"n = {40 - n_train})" in outcome  # the metric is measured on the evaluated half only


# ---------------------------------------------------------------- jobs: Stop, one job per kind and session, Run buttons
def _held_until_stopped(job):
    """A job that reports progress (so a stop is noticed) until it is stopped, for at most 60 s."""
    for i in range(6000):
        job.progress(i, 6000, "working")
        time.sleep(0.01)
    return "finished"


def test_store_runs_one_job_of_a_kind_per_session_and_keeps_shared_ones():
    from app import jobs

    store = jobs.Store()
    first = store.get_or_start("sweep", "k1", "first", _held_until_stopped, "A")
    assert store.get_or_start("sweep", "k1", "first", _held_until_stopped, "B") is first  # B follows the same job
    assert first.followers == {"A", "B"}
    second = store.get_or_start("sweep", "k2", "second", _held_until_stopped, "A")  # A's new setting
    assert first.running and store.peek("sweep", "k1") is first  # B still follows it
    other_kind = store.get_or_start("candidates", "k1", "pool", _held_until_stopped, "A")
    assert second.running  # a job of another kind does not replace it
    store.get_or_start("sweep", "k3", "third", _held_until_stopped, "B")  # now nobody follows k1
    assert first.done.wait(10) and isinstance(first.error, jobs.Stopped)
    assert store.peek("sweep", "k1") is None and second.running
    store.stop("A", "sweep", "k2")  # A's Stop button
    assert second.done.wait(10) and isinstance(second.error, jobs.Stopped)
    assert store.peek("sweep", "k2") is None and store.was_stopped("A", "sweep", "k2")
    again = store.get_or_start("sweep", "k2", "second", _held_until_stopped, "A")  # Run again starts a new job
    assert again is not second and again.running and not store.was_stopped("A", "sweep", "k2")
    for session, kind, key in (("A", "sweep", "k2"), ("B", "sweep", "k3"), ("A", "candidates", "k1")):
        store.stop(session, kind, key)
    assert other_kind.done.wait(10) and again.done.wait(10)


def _hold_ramp(monkeypatch, held_sparsities: list):
    """Make the ramp at ``held_sparsities`` stay mid-way (reporting progress) until it is stopped."""
    import pruning.analysis.sweep as sweep

    real = sweep.sparsity_ramp

    def held(loaded, data, methods, granularities, sparsities, progress=None, **kw):
        def slowed(done, total, message):
            deadline = time.time() + 60
            while list(sparsities) == held_sparsities and time.time() < deadline:
                progress(done, total, "held by the test")
                time.sleep(0.01)
            progress(done, total, message)

        return real(loaded, data, methods, granularities, sparsities, progress=slowed, **kw)

    monkeypatch.setattr(sweep, "sparsity_ramp", held)


def _running_job(kind: str, timeout: float = 60):
    from app import jobs

    deadline = time.time() + timeout
    while time.time() < deadline:
        for key, job in dict(jobs.store()._items.get(kind, {})).items():
            if isinstance(job, jobs.Job) and job.running and job.message == "held by the test":
                return key, job
        time.sleep(0.05)
    raise AssertionError(f"no running {kind} job")


def test_stop_a_running_ramp_then_run_it_again(monkeypatch):
    import threading

    from app import jobs

    _hold_ramp(monkeypatch, [0.2, 0.4])
    at = open_page("ramp")
    at.text_input(key="ps_ramp_sparsities").set_value("0.2, 0.4").run()
    session = at.session_state["ps_session_id"]
    follower = threading.Thread(target=lambda: at.button(key="btn_ramp_run").click().run())
    follower.start()  # the page follows the job, drawing its progress and its Stop button
    key, job = _running_job("sweep")
    assert session in job.followers
    jobs.stop("sweep", key, session)  # what that Stop button does
    follower.join(120)
    assert job.done.is_set() and isinstance(job.error, jobs.Stopped)
    assert jobs.store().peek("sweep", key) is None  # gone from the store
    assert not at.exception and any("stopped" in i.value for i in at.info)
    at.run()  # the next run does not start it again by itself
    assert jobs.store().peek("sweep", key) is None
    assert any("Press **Run the ramp**" in i.value for i in at.info)
    monkeypatch.undo()  # no longer held
    at.button(key="btn_ramp_run").click().run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 1 + 2 * 2


def test_sensitivity_measures_chosen_blocks_and_roles_with_an_estimate_first(downloads):
    at = open_page()  # the Overview evaluates the dense model: the first measurement of this machine's speed
    at.switch_page("../pages/sensitivity.py").run()
    assert_clean(at)
    assert at.multiselect(key="ps_sens_blocks").value == [0, 1]  # a shallow model: every block by default
    assert any("Estimated time: **about" in m.value for m in at.markdown)  # before any click
    at.text_input(key="ps_sens_sparsities").set_value("0.5, 0.9").run()
    at.multiselect(key="ps_sens_blocks").set_value([1]).run()
    at.multiselect(key="ps_sens_roles").set_value(["q", "FFN out"]).run()
    assert any(m.value.startswith("2 of 12 layers x 2 sparsities = 4 evaluations") for m in at.markdown)
    at.button(key="btn_sens_run").click().run()
    assert_clean(at)
    rows = pd_rows(downloads)
    assert sorted({r for r in rows["layer"] if r != "-"}) == ["bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.output.dense"]
    assert at.button(key="btn_alloc_apply").disabled  # an allocation for the sidebar needs every layer
    at.button(key="btn_sens_all").click().run()
    assert at.multiselect(key="ps_sens_blocks").value == [0, 1] and len(at.multiselect(key="ps_sens_roles").value) == 6


def test_the_sensitivity_and_stability_choices_travel_in_the_url():
    """The blocks and layer roles Layer sensitivity measures, and what Stability draws, change what those views show:
    a shared link carries them; blocks, roles or methods the model or the app lacks fall back to the defaults."""
    at = open_page("sensitivity")
    at.multiselect(key="ps_sens_blocks").set_value([1]).run()
    at.multiselect(key="ps_sens_roles").set_value(["q", "FFN out"]).run()
    assert_clean(at)
    link = dict(at.query_params)
    assert link["sens_blocks"] == "1" and link["sens_roles"] == "q,FFN out"
    fresh = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    fresh.query_params.update(link)
    fresh.run()
    fresh.switch_page("../pages/sensitivity.py").run()
    assert_clean(fresh)
    assert not fresh.sidebar.warning
    assert fresh.multiselect(key="ps_sens_blocks").value == [1]
    assert fresh.multiselect(key="ps_sens_roles").value == ["q", "FFN out"]
    assert any(m.value.startswith("2 of 12 layers x 3 sparsities = 6 evaluations") for m in fresh.markdown)

    other = AppTest.from_file(MAIN, default_timeout=TIMEOUT)  # a link made on a deeper model: block 29, a role BERT lacks
    other.query_params.update({"sens_blocks": "29", "sens_roles": "FFN gate"})
    other.run()
    other.switch_page("../pages/sensitivity.py").run()
    assert_clean(other)
    assert other.multiselect(key="ps_sens_blocks").value == [0, 1] and len(other.multiselect(key="ps_sens_roles").value) == 6

    stab = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    stab.query_params.update({"stab_methods": "random,nonsense", "stab_draws": "3", "stab_kind": "seed"})
    stab.run()
    stab.switch_page("../pages/stability.py").run()
    assert_clean(stab)
    assert stab.multiselect(key="ps_stab_methods").value == ["random"]
    assert stab.number_input(key="ps_stab_draws").value == 3 and stab.selectbox(key="ps_stab_kind").value == "seed"
    assert stab.query_params["stab_methods"] == "random" and stab.query_params["stab_draws"] == "3"


def test_sensitivity_measures_on_its_own_evaluation_size_which_travels_in_the_url(downloads):
    """The view's own number of examples: the sidebar's for a classifier (32 here), 16 when set; the result rows say
    every point was evaluated on 16, the caption says the intervals are wider, and a shared link opens at 16."""
    from app.resources import sensitivity_eval_size

    assert sensitivity_eval_size("causal-lm", 256) == 8 and sensitivity_eval_size("causal-lm", 4) == 4  # an LM: 8 windows at most
    assert sensitivity_eval_size("classification", 256) == 256
    at = open_page("sensitivity")
    assert at.number_input(key="ps_sens_eval").value == at.sidebar.number_input(key="ps_eval_size").value == 32
    at.number_input(key="ps_sens_eval").set_value(16).run()
    at.text_input(key="ps_sens_sparsities").set_value("0.5").run()
    at.multiselect(key="ps_sens_blocks").set_value([1]).run()
    at.multiselect(key="ps_sens_roles").set_value(["q"]).run()
    assert any(m.value.startswith("1 of 12 layers x 1 sparsities = 1 evaluations of 16 examples") for m in at.markdown)
    assert any("fewer than the sidebar's 32" in c.value and "wider" in c.value for c in at.caption)
    at.button(key="btn_sens_run").click().run()
    assert_clean(at)
    rows = pd_rows(downloads)
    assert len(rows) == 2 and list(rows["n"]) == [16, 16]  # the dense row and the one point, each on 16 examples
    link = dict(at.query_params)
    assert link["sens_eval"] == "16" and link["eval"] == "32"
    fresh = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    fresh.query_params.update(link)
    fresh.run()
    fresh.switch_page("../pages/sensitivity.py").run()
    assert_clean(fresh)
    assert fresh.number_input(key="ps_sens_eval").value == 16
    bad = AppTest.from_file(MAIN, default_timeout=TIMEOUT)  # a size the control does not take: back to the default
    bad.query_params.update({"sens_eval": "3"})
    bad.run()
    bad.switch_page("../pages/sensitivity.py").run()
    assert_clean(bad)
    assert bad.number_input(key="ps_sens_eval").value == 32


def test_the_sensitivity_estimate_is_measured_at_the_views_size_or_scaled_from_another():
    """Hand-checkable: a run at 16 items measured 0.5 s per block and 10 s before its first point, so 100 blocks take
    10 + 50 = 60 s. A dense evaluation of 4 s at 16 items over 30 blocks: 4 + 4/30 x 60 = 12 s for 60 blocks, and the
    same from a dense evaluation of 64 s at 256 items scaled by 16/256, said so. Nothing measured: no number."""
    from app.resources import estimate_from

    assert estimate_from(100, 30, 16, {16: (0.5, 10.0)}, {})[0] == pytest.approx(60.0)
    assert estimate_from(60, 30, 16, {}, {16: 4.0})[0] == pytest.approx(12.0)
    seconds, how = estimate_from(60, 30, 16, {}, {256: 64.0})
    assert seconds == pytest.approx(12.0) and "nothing measured at 16 items yet" in how and "256" in how
    assert estimate_from(100, 30, 32, {16: (0.5, 10.0)}, {})[0] == pytest.approx(120.0)  # twice the items, twice the time
    assert estimate_from(60, 30, 16, {}, {}) is None


def pd_rows(files):
    """The sensitivity rows the page offers as CSV (the dense row first)."""
    import io

    import pandas as pd

    return pd.read_csv(io.BytesIO(files["prunescope_sensitivity.csv"]))


def test_sensitivity_stopped_keeps_its_rows_and_goes_on_from_them(monkeypatch, downloads):
    """Stop after two points: the page keeps the dense row and both points, draws them, and Measure measures only the rest."""
    import threading

    import pruning.analysis.sweep as sweep
    from app import jobs

    real = sweep.layer_sensitivity
    seen = {}

    def held(loaded, data, request, sparsities, progress=None, on_point=None, done_rows=None, **kw):
        seen["done_rows"] = list(done_rows or [])
        count = [0]

        def point(row):
            on_point(row)
            count[0] += 1
            while count[0] >= 2 and not seen.get("released") and len(seen["done_rows"]) == 0:
                progress(0, 1, "held by the test")  # raises Stopped once stopped
                time.sleep(0.01)

        return real(loaded, data, request, sparsities, progress=progress, on_point=point, done_rows=done_rows, **kw)

    monkeypatch.setattr(sweep, "layer_sensitivity", held)
    at = open_page("sensitivity")
    at.text_input(key="ps_sens_sparsities").set_value("0.5, 0.9").run()
    at.multiselect(key="ps_sens_blocks").set_value([0]).run()
    at.multiselect(key="ps_sens_roles").set_value(["q", "k"]).run()
    session = at.session_state["ps_session_id"]
    follower = threading.Thread(target=lambda: at.button(key="btn_sens_run").click().run())
    follower.start()
    key, job = _running_job("sensitivity")
    while len(job.partial) < 2:
        time.sleep(0.05)
    time.sleep(1.2)  # the page draws what it has (it polls twice a second)
    jobs.stop("sensitivity", key, session)
    follower.join(120)
    assert isinstance(job.error, jobs.Stopped)
    at.run()
    assert not at.exception and not at.error
    assert any(i.value.startswith("Stopped: 2 of 4 points were measured") for i in at.info)
    assert any("(2 measured before the Stop; the time is for the rest)" in m.value for m in at.markdown)  # estimated: the rest only
    assert chart_specs(at)  # the kept rows are drawn
    at.button(key="btn_sens_run").click().run()
    assert_clean(at)
    kept = seen["done_rows"]
    assert kept == job.partial[:2]  # both finished points, handed to the run that goes on
    rows = pd_rows(downloads)
    assert len(rows) == 1 + 4 and rows["layer"][0] == "-" and list(rows["layer"][1:3]) == [r["layer"] for r in kept]  # two kept, two new


def test_a_new_setting_replaces_the_sessions_running_job(monkeypatch):
    from app import jobs

    _hold_ramp(monkeypatch, [0.15, 0.35])
    at = open_page("ramp")
    at.text_input(key="ps_ramp_sparsities").set_value("0.15, 0.35").run()
    at.button(key="btn_ramp_run").click()
    with pytest.raises(RuntimeError, match="timed out"):
        at.run(timeout=15)  # the user moves on while the script still follows the job
    old_key, old = _running_job("sweep")
    at.text_input(key="ps_ramp_sparsities").set_value("0.3, 0.6")
    at.button(key="btn_ramp_run").click().run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 1 + 2 * 2
    assert old.done.wait(10) and isinstance(old.error, jobs.Stopped)
    assert jobs.store().peek("sweep", old_key) is None


def test_candidates_start_only_from_the_run_button():
    from app import jobs

    def pools() -> set:
        return set(jobs.store()._items.get("candidates", {}))

    at = open_page("candidates")
    at.number_input(key="ps_cand_k").set_value(2)
    at.slider(key="ps_cand_holdout").set_value(16)
    at.select_slider(key="ps_cand_r").set_value(3e-4).run()
    before = pools()
    at.button(key="btn_cand_run").click().run()
    assert_clean(at)
    assert len(pools() - before) == 1 and len(at.dataframe[0].value) == 2
    assert not [w.value for w in at.warning]
    after_run = pools()
    set_sparsity(at, 0.35)
    at.select_slider(key="ps_cand_r").set_value(1e-3).run()
    assert_clean(at)
    assert pools() == after_run  # slider moves sample nothing
    assert any("Settings changed" in w.value for w in at.warning)
    assert len(at.dataframe[0].value) == 2  # the earlier result stays, marked out of date
    at.button(key="btn_cand_run").click().run()
    assert_clean(at)
    assert len(pools() - after_run) == 1 and not [w.value for w in at.warning]


# ---------------------------------------------------------------- the sidebar builds one request
def test_choosing_a_method_sets_its_papers_granularity():
    at = open_page("masks")
    at.sidebar.selectbox(key="ps_method").set_value("wanda").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "row"  # Wanda compares within each output row
    at.sidebar.selectbox(key="ps_granularity").set_value("layer").run()  # the user can still change it
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "layer"
    at.sidebar.selectbox(key="ps_method").set_value("magnitude").run()
    assert at.sidebar.selectbox(key="ps_granularity").value == "layer"


def test_an_impossible_setting_is_an_error_in_the_sidebar_and_the_page():
    at = open_page("weights")
    at.sidebar.selectbox(key="ps_granularity").set_value("custom N:M").run()
    at.sidebar.text_input(key="ps_custom_nm").set_value("5:4").run()  # cannot prune 5 of every 4
    assert not at.exception
    assert [e.value for e in at.sidebar.error] and "5:4" in at.sidebar.error[0].value
    assert [e.value for e in at.main.error] == [at.sidebar.error[0].value]
    at.sidebar.text_input(key="ps_custom_nm").set_value("2:4").run()
    assert_clean(at)
    assert metric(at, "Layer sparsity") == "50.0%"


def test_a_criterion_registered_in_a_test_is_a_sidebar_choice(monkeypatch):
    """The sidebar half of "add a criterion": one score function and one register call, and the app offers it."""
    from pruning import catalog, registry
    from pruning.walk import score_method
    from pruning.loading.models import layer_weight

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))  # the registration ends with the test

    def column_scores(ctx) -> dict:  # every weight scores its input column's total |W|: whole columns go first
        out = {}
        for name in ctx.layers:
            w = layer_weight(ctx.loaded.model, name).abs()
            out[name] = w.sum(dim=0, keepdim=True).expand_as(w).clone()
        return out

    registry.register(
        registry.Method("toycolumns", "Toy column norm", "Prunes whole input columns of small total |W|.",
                        run=score_method("toycolumns", column_scores), scores=column_scores)
    )
    at = open_page("masks")
    assert "Toy column norm" in at.sidebar.selectbox(key="ps_method").options
    at.sidebar.selectbox(key="ps_method").set_value("toycolumns").run()
    assert_clean(at)
    assert metric(at, "Layer sparsity") == "50.0%"
    assert any("method **toycolumns**" in c.value for c in at.main.caption)  # the settings line of the page


def test_device_choice_lists_only_existing_devices_and_a_missing_one_is_an_error(monkeypatch):
    import torch

    from pruning.loading import devices

    at = open_page("overview")
    assert at.sidebar.selectbox(key="ps_device").options == ["auto"] + devices.available_devices()
    # a device that is listed but cannot be used (a GPU gone away): one st.error, no traceback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cuda:0"])
    at.run()
    at.sidebar.selectbox(key="ps_device").set_value("cuda:0").run()
    assert not at.exception
    assert at.error and "CUDA is not available" in at.error[0].value
    at.sidebar.selectbox(key="ps_device").set_value("cpu").run()
    assert_clean(at)
