"""The Compare view under streamlit.testing.v1.AppTest (a tiny random BERT, as in test_app_pages.py)."""

from __future__ import annotations

import io
import threading
import time

import pytest

import pandas as pd
from test_app_pages import assert_clean, chart_specs, downloads, open_page

pytestmark = pytest.mark.usefixtures("tiny_model_folder")  # tests/conftest.py: the app on the tiny BERT


def csv_rows(files) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(files["compare.csv"]))


def chart_data(at, index: int) -> pd.DataFrame:
    """The data the ``index``-th chart of the page draws (Streamlit sends it beside the spec, as Arrow)."""
    import pyarrow as pa

    chart = at.get("vega_lite_chart")[index]
    return pd.concat([pa.ipc.open_stream(ds.data.data).read_pandas() for ds in chart.proto.datasets])


def choose(at, criteria, updates, allocations, reference):
    at.multiselect(key="ps_cmp_criteria").set_value(criteria)
    at.multiselect(key="ps_cmp_updates").set_value(updates)
    at.multiselect(key="ps_cmp_allocations").set_value(allocations).run()
    at.selectbox(key="ps_cmp_reference").set_value(reference).run()
    assert_clean(at)


def test_the_matrix_runs_with_intervals_paired_against_the_reference_and_downloads(downloads):
    from pruning.analysis.compare import ROW_COLUMNS

    at = open_page("compare")
    assert_clean(at)
    assert any("Press **Run the comparison**" in i.value for i in at.info)  # nothing runs before the button
    assert not chart_specs(at)
    choose(at, ["magnitude", "wanda"], ["none", "obs"], ["uniform", "owl"], "magnitude+none")
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)

    rows = csv_rows(downloads)
    assert list(rows.columns) == list(ROW_COLUMNS)  # the CLI's columns
    # 2 criteria x 2 updates, then OWL with the reference's criterion and both updates
    assert list(rows["cell"]) == ["magnitude+none", "magnitude+obs", "wanda+none", "wanda+obs", "magnitude+none@owl", "magnitude+obs@owl"]
    assert (rows["status"] == "done").all() and (rows["n"] == 32).all()  # PRUNESCOPE_EVAL_SIZE: every cell on the same 32 examples
    assert ((rows["ci_low"] <= rows["value"]) & (rows["value"] <= rows["ci_high"])).all()
    ref = rows[rows["cell"] == "magnitude+none"].iloc[0]
    # as on the Overview: the tiny random classifier at 50% gets 17 of the 32 sentences right; Wilson's 95% interval
    # of 17/32 is 0.3645 .. 0.6913 (by hand: centre 0.5279, half-width 0.1634)
    assert ref["value"] == 17 / 32 and (round(ref["ci_low"], 4), round(ref["ci_high"], 4)) == (0.3645, 0.6913)
    assert (ref["drop"], ref["drop_ci_low"], ref["drop_ci_high"]) == (0.0, 0.0, 0.0) and bool(ref["within_noise"])
    for r in rows.to_dict("records"):
        assert bool(r["within_noise"]) == (r["drop_ci_low"] <= 0 <= r["drop_ci_high"]), r["cell"]
        assert r["reference"] == "magnitude+none"
    assert (rows["sparsity"].round(2) == 0.5).all()  # every cell, OWL's too, at the sidebar's 50%

    matrix = chart_data(at, 0).drop_duplicates("cell").set_index("cell")  # criteria x updates, every cell with its interval and n
    assert sorted(matrix.index) == ["magnitude+none", "magnitude+obs", "wanda+none", "wanda+obs"]
    assert set(matrix["row"]) == {"Magnitude", "Wanda"}  # the registry's labels
    for cell, r in matrix.iterrows():
        mine = rows[rows["cell"] == cell].iloc[0]
        assert r["line1"] == f"{100 * mine['value']:.1f}%" and r["line2"] == f"95% CI {100 * mine['ci_low']:.1f} to {100 * mine['ci_high']:.1f}"
        assert r["line4"].endswith("n = 32")
    assert matrix.loc["magnitude+none", "line3"] == "the reference" and matrix.loc["magnitude+none", "status"] == "reference"
    allocations = chart_data(at, 1).drop_duplicates("cell")
    assert list(allocations["cell"]) == ["magnitude+none", "magnitude+obs", "magnitude+none@owl", "magnitude+obs@owl"]
    assert list(allocations["row"]) == ["uniform (layer)"] * 2 + ["OWL"] * 2
    table = at.dataframe[0].value
    assert list(table["vs reference"][table["cell"] == "magnitude+none"]) == ["reference"]
    for r in table[table["cell"] != "magnitude+none"].to_dict("records"):
        assert r["vs reference"] in ("within noise", "distinguishable from 0")


def test_after_the_sparsity_moves_the_last_matrix_stays_marked_out_of_date(downloads):
    """The cells are at the sparsity they ran at: when the sidebar moves, the finished matrix stays on screen with a
    warning that it is the previous settings' result, and Run measures the new sparsity."""
    from test_app_pages import set_sparsity

    at = open_page("compare")
    choose(at, ["magnitude"], ["none"], ["uniform"], "magnitude+none")
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)
    assert (csv_rows(downloads)["sparsity"].round(2) == 0.5).all()
    set_sparsity(at, 0.7)
    assert_clean(at)
    assert any("Settings changed" in w.value and "previous settings" in w.value for w in at.warning)
    assert list(chart_data(at, 0).drop_duplicates("cell")["cell"]) == ["magnitude+none"]  # the 50% matrix, still drawn
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)
    assert not any("Settings changed" in w.value for w in at.warning)
    assert (csv_rows(downloads)["sparsity"].round(2) == 0.7).all()


def test_stop_keeps_the_finished_cells(monkeypatch, downloads):
    import pruning.analysis.compare as engine
    from app import jobs

    real = engine.compare
    seen = {}

    def held(loaded, base, cells, data=None, reference=None, *, on_cell=None, should_stop=None, **kw):
        def cell(row):
            on_cell(row)
            seen["cells"] = seen.get("cells", 0) + 1
            while seen["cells"] >= 2 and not should_stop():  # hold after two cells until stopped
                time.sleep(0.01)

        return real(loaded, base, cells, data, reference, on_cell=cell, should_stop=should_stop, **kw)

    monkeypatch.setattr(engine, "compare", held)
    at = open_page("compare")
    choose(at, ["magnitude", "random"], ["none", "obs"], ["uniform"], "random+none")
    session = at.session_state["ps_session_id"]
    follower = threading.Thread(target=lambda: at.button(key="btn_cmp_run").click().run())
    follower.start()  # the page follows the job, drawing each finished cell and a Stop button
    deadline = time.time() + 120
    while time.time() < deadline:
        running = [(k, j) for k, j in dict(jobs.store()._items.get("compare", {})).items() if j.running and len(j.partial) >= 2]
        if running:
            break
        time.sleep(0.05)
    key, job = running[0]
    time.sleep(1.2)  # the page draws what it has (it polls twice a second)
    jobs.stop("compare", key, session)  # what the Stop button does
    follower.join(120)
    assert job.done.is_set() and job.value.stopped and len(job.value.rows) == 2
    assert jobs.store().peek("compare", key) is None
    at.run()  # the next run does not start it again; the two finished cells stay on screen
    assert_clean(at)
    assert any(i.value.startswith("Stopped: 2 of 4 cells finished") for i in at.info)
    assert jobs.store().peek("compare", key) is None
    kept = csv_rows(downloads)
    assert set(kept["cell"]) == {"random+none", "magnitude+none"}  # the reference runs first, then the cells in order
    assert list(kept[kept["cell"] == "random+none"]["drop"]) == [0.0]
    matrix = chart_data(at, 0).drop_duplicates("cell").set_index("cell")
    assert len(matrix) == 4 and list(matrix["line2"][matrix["status"] == "running or waiting"]) == ["waiting"] * 2  # drawn, not left out


def test_a_criterion_registered_in_a_test_is_a_row_with_its_own_label(monkeypatch, downloads):
    """The Compare half of "add a criterion": one score function, one register call, and the view offers it."""
    from pruning import catalog, registry
    from pruning.walk import score_method as _score_method
    from pruning.loading.models import layer_weight

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))  # the registration ends with the test

    def column_score(w):  # every weight scores its input column's total |W|: whole columns go first
        w = w.abs()
        return w.sum(dim=0, keepdim=True).expand_as(w).clone()

    def column_scores(ctx) -> dict:
        return {name: column_score(layer_weight(ctx.loaded.model, name)) for name in ctx.layers}

    registry.register(
        registry.Method("toycolumns", "Toy column norm", "Prunes whole input columns of small total |W|.",
                        run=_score_method("toycolumns", column_scores, lambda ctx, n, w, stats: column_score(w)),
                        scores=column_scores, takes_update=True)
    )
    at = open_page("compare")
    assert "Toy column norm" in at.multiselect(key="ps_cmp_criteria").options
    choose(at, ["magnitude", "toycolumns"], ["none", "obs"], ["uniform"], "magnitude+none")
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)
    rows = csv_rows(downloads)
    toy = rows[rows["criterion"] == "toycolumns"]
    assert list(toy["criterion_label"]) == ["Toy column norm"] * 2 and (toy["status"] == "done").all()
    assert "Toy column norm" in set(chart_data(at, 0)["row"])  # a row of the matrix under its own label


# ---------------------------------------------------------------- the chart builders, on hand-made rows
def _row(cell, value, drop, low, high, n=200):
    return {"cell": cell, "status": "done", "value": value, "ci_low": value - 0.05, "ci_high": value + 0.05, "n": n,
            "drop": drop, "drop_ci_low": low, "drop_ci_high": high}


GRID = [{"key": f"{c}+{u}", "row": c.title(), "col": u} for c in ("magnitude", "wanda") for u in ("none", "obs")]


def test_the_matrix_keeps_every_cell_and_its_colour_scale_while_it_fills():
    from app.charts import compare as CC

    rows = [
        _row("magnitude+none", 0.80, 0.0, 0.0, 0.0),  # the reference
        _row("magnitude+obs", 0.75, 0.05, 0.01, 0.09),  # 5 points worse, interval excludes 0
        _row("wanda+none", 0.78, 0.02, -0.01, 0.05),  # within noise
        _row("wanda+obs", 0.86, -0.06, -0.10, -0.02),  # 6 points better
    ]
    specs = []
    for k in range(len(rows) + 1):
        frame = CC.cell_frame(GRID, rows[:k], "magnitude+none", "accuracy")
        assert len(frame) == 4 and list(frame["status"][k:]) == ["running or waiting"] * (4 - k)  # every cell drawn from the start
        chart = CC.matrix_heatmap(frame, "accuracy", "criterion", "update", ["Magnitude", "Wanda"], ["none", "obs"])
        specs.append(type(chart).to_dict(chart))  # validated against the Vega-Lite schema
    domains = [[layer["encoding"]["color"]["scale"]["domain"] for layer in spec["layer"][:2]] for spec in specs]
    assert all(d == domains[0] for d in domains) and domains[0][1] == [-10.0, 10.0]  # fixed before the first cell
    frame = CC.cell_frame(GRID, rows, "magnitude+none", "accuracy").set_index("cell")
    assert list(frame["status"]) == ["reference", "distinguishable", "within noise", "distinguishable"]
    assert frame.loc["magnitude+obs", "shade"] == pytest.approx(5.0) and frame.loc["wanda+obs", "shade"] == pytest.approx(-6.0)
    assert pd.isna(frame.loc["wanda+none", "shade"])  # no colour claims a difference the interval does not show
    assert frame.loc["magnitude+obs", "line3"] == "5.0 pts below the reference"  # reads as the legend's "points lost"
    assert frame.loc["wanda+obs", "line3"] == "6.0 pts above the reference"
    assert frame.loc["wanda+none", "line4"] == "within noise, n = 200" and frame.loc["magnitude+none", "line3"] == "the reference"
    assert frame.loc["magnitude+obs", "line2"] == "95% CI 70.0 to 80.0"


def test_perplexity_cells_are_coloured_by_their_ratio_to_the_reference():
    from app.charts import compare as CC

    rows = [_row("magnitude+none", 20.0, 0.0, 0.0, 0.0), _row("wanda+none", 30.0, 10.0, 8.0, 12.0), _row("magnitude+obs", 15.0, -5.0, -6.0, -4.0)]
    frame = CC.cell_frame(GRID, rows, "magnitude+none", "perplexity").set_index("cell")
    assert frame.loc["wanda+none", "shade"] == pytest.approx(1.5) and frame.loc["magnitude+obs", "shade"] == pytest.approx(0.75)
    assert (frame.loc["wanda+none", "harm_low"], frame.loc["wanda+none", "harm_high"]) == (pytest.approx(1.4), pytest.approx(1.6))
    chart = CC.differences_chart(frame.reset_index().assign(cell=lambda d: d["cell"]), "perplexity")
    spec = type(chart).to_dict(chart)
    assert spec["layer"][0]["encoding"]["x"]["field"] == "harm"  # the reference's 1x, dashed


def test_the_allocation_applied_on_layer_sensitivity_is_compared_with_uniform_and_owl(downloads):
    at = open_page("compare")
    assert "Layer sensitivity" not in at.multiselect(key="ps_cmp_allocations").options  # none built yet
    at.switch_page("../pages/sensitivity.py").run()
    at.text_input(key="ps_sens_sparsities").set_value("0.5, 0.9").run()
    at.button(key="btn_sens_run").click().run()
    at.button(key="btn_alloc_apply").click().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="ps_granularity").value == "allocated"
    at.switch_page("../pages/compare.py").run()
    assert_clean(at)
    assert at.multiselect(key="ps_cmp_allocations").options[:3] == ["uniform (layer)", "Layer sensitivity", "OWL"]
    assert at.multiselect(key="ps_cmp_allocations").options[3:] == ["global", "per-output-row", "2:4 semi-structured", "4:8 semi-structured"]
    choose(at, ["magnitude"], ["none"], ["uniform", "sensitivity", "owl"], "magnitude+none")
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)
    rows = csv_rows(downloads).set_index("cell")
    assert list(rows.index) == ["magnitude+none", "magnitude+none@sensitivity", "magnitude+none@owl"]
    assert list(rows["granularity"]) == ["layer", "allocated", "allocated"]  # the matrix prunes uniformly, per layer
    # the sensitivity allocation keeps the target as its parameter-weighted mean: the masks' overall sparsity
    assert rows.loc["magnitude+none@sensitivity", "sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert list(chart_data(at, 1).drop_duplicates("cell")["row"]) == ["uniform (layer)", "Layer sensitivity", "OWL"]


def test_the_views_choices_live_in_the_address_and_a_name_no_registry_has_is_dropped():
    from streamlit.testing.v1 import AppTest
    from test_app_pages import MAIN, TIMEOUT

    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"cmp_criteria": "wanda,nonsense,magnitude", "cmp_updates": "obs", "cmp_reference": "magnitude+obs"})
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert_clean(at)
    assert at.multiselect(key="ps_cmp_criteria").value == ["wanda", "magnitude"]  # "nonsense" is no registered criterion
    assert at.multiselect(key="ps_cmp_updates").value == ["obs"] and at.selectbox(key="ps_cmp_reference").value == "magnitude+obs"
    at.multiselect(key="ps_cmp_updates").set_value(["none", "obs"]).run()
    assert at.query_params["cmp_updates"] == "none,obs"  # the address follows the widgets, so it can be shared


def test_a_cell_that_cannot_run_says_why_in_the_matrix_and_the_table(downloads):
    at = open_page("compare")
    at.sidebar.selectbox(key="ps_granularity").set_value("2:4").run()  # an N:M pattern fixes every layer's sparsity
    choose(at, ["magnitude"], ["none"], ["uniform", "owl"], "magnitude+none")
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)
    rows = csv_rows(downloads).set_index("cell")
    assert rows.loc["magnitude+none", "status"] == "done" and rows.loc["magnitude+none", "granularity"] == "2:4"
    skipped = rows.loc["magnitude+none@owl"]
    assert skipped["status"] == "skipped" and "N:M pattern 2:4" in skipped["reason"]
    cell = chart_data(at, 1).drop_duplicates("cell").set_index("cell").loc["magnitude+none@owl"]
    assert (cell["status"], cell["line1"]) == ("cannot run", "cannot run")
    table = at.dataframe[0].value.set_index("cell")
    assert table.loc["magnitude+none@owl", "vs reference"] == skipped["reason"]


def test_a_language_model_is_compared_by_perplexity_with_ratios(tiny_llama, tmp_path_factory, downloads):
    from conftest import saved_folder
    from streamlit.testing.v1 import AppTest
    from test_app_pages import MAIN, TIMEOUT

    folder = saved_folder(tmp_path_factory, tiny_llama, "compare_tiny_llama")  # under the allowed temporary root
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"model": str(folder), "cmp_criteria": "magnitude,wanda", "cmp_updates": "none", "cmp_reference": "magnitude+none"})
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert_clean(at)
    at.button(key="btn_cmp_run").click().run()
    assert_clean(at)
    rows = csv_rows(downloads).set_index("cell")
    assert set(rows["metric"]) == {"perplexity"} and (rows["value"] > 1).all()
    matrix = chart_data(at, 0).drop_duplicates("cell").set_index("cell")
    wanda = rows.loc["wanda+none"]
    assert matrix.loc["wanda+none", "line1"] == f"{wanda['value']:,.2f}"
    assert matrix.loc["wanda+none", "line3"] == f"{wanda['drop']:+,.2f} ppl vs reference"
    assert matrix.loc["wanda+none", "harm"] == pytest.approx(wanda["value"] / rows.loc["magnitude+none", "value"], rel=1e-6)
