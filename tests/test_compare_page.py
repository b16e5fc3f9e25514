"""The Compare view under streamlit.testing.v1.AppTest (a tiny random BERT, as in test_app_pages.py)."""

from __future__ import annotations

import io
import threading
import time

import pytest

pytest.importorskip("streamlit.testing.v1")

import pandas as pd  # noqa: E402

from test_app_pages import assert_clean, chart_specs, downloads, open_page, tiny_model_folder  # noqa: E402,F401 - fixtures


def csv_rows(files) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(files["compare.csv"]))


def choose(at, criteria, updates, allocations, reference):
    at.multiselect(key="ps_cmp_criteria").set_value(criteria)
    at.multiselect(key="ps_cmp_updates").set_value(updates)
    at.multiselect(key="ps_cmp_allocations").set_value(allocations).run()
    at.selectbox(key="ps_cmp_reference").set_value(reference).run()
    assert_clean(at)


def test_the_matrix_runs_with_intervals_paired_against_the_reference_and_downloads(downloads):
    from pruning.compare import ROW_COLUMNS

    at = open_page("compare")
    assert_clean(at)
    assert any("Press **Run the comparison**" in i.value for i in at.info)  # nothing runs before the button
    assert not chart_specs(at)
    choose(at, ["magnitude", "wanda"], ["none", "obs"], ["uniform", "owl"], "magnitude+none")
    at.button(key="ps_cmp_run").click().run()
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

    specs = "".join(chart_specs(at))
    for label in ("Magnitude", "Wanda", "reference", "n = 32"):
        assert label in specs, label
    table = at.dataframe[0].value
    assert list(table["vs reference"][table["cell"] == "magnitude+none"]) == ["reference"]
    for r in table[table["cell"] != "magnitude+none"].to_dict("records"):
        assert r["vs reference"] in ("within noise", "distinguishable from 0")


def test_stop_keeps_the_finished_cells(monkeypatch, downloads):
    import pruning.compare as engine
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
    follower = threading.Thread(target=lambda: at.button(key="ps_cmp_run").click().run())
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
    assert list(kept["cell"]) == ["random+none", "magnitude+none"]  # the reference runs first
    assert list(kept[kept["cell"] == "random+none"]["drop"]) == [0.0]
    specs = "".join(chart_specs(at))
    assert "waiting" in specs  # the two cells that did not run are drawn as such, not left out


def test_a_criterion_registered_in_a_test_is_a_row_with_its_own_label(monkeypatch, downloads):
    """The Compare half of "add a criterion": one score function, one register call, and the view offers it."""
    from pruning import registry
    from pruning.methods import _score_method
    from pruning.models import layer_weight

    monkeypatch.setattr(registry, "_METHODS", dict(registry.all_methods()))  # the registration ends with the test

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
    at.button(key="ps_cmp_run").click().run()
    assert_clean(at)
    rows = csv_rows(downloads)
    toy = rows[rows["criterion"] == "toycolumns"]
    assert list(toy["criterion_label"]) == ["Toy column norm"] * 2 and (toy["status"] == "done").all()
    assert '"Toy column norm"' in "".join(chart_specs(at))  # a row of the matrix under its own label
