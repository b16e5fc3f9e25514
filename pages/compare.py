"""Compare: is it the criterion, the allocation or the update? A matrix of cells at one sparsity, each with its
metric, 95% interval and n, and its paired difference against a chosen reference cell."""

import pandas as pd
import streamlit as st

from app import allocation as A
from app import compare as C
from app.charts import compare as CC
from app import downloads, resources, ui
from app import intervals as I
from app.docs import doc_ref

INTRO = (
    "A one-shot pruning method is three choices: **which weights** (the criterion), **how many per layer** (the "
    "allocation) and **what happens to the weights that stay** (the update). At the sidebar's sparsity, granularity "
    "and calibration, each cell below prunes with one criterion and one update and evaluates the model on the same "
    "examples, so every cell is compared with the **reference cell** item by item (a paired 95% interval): a "
    "difference whose interval covers 0 is *within noise*. The second matrix does the same for the allocations, "
    "with the reference's criterion."
)
PARTIAL = "ps_cmp_partial"  # (job key, rows) of the last run drawn live: what a Stop leaves on screen


def choice(s, source) -> C.CompareChoice:
    crit, upd, allocs = C.criteria(), C.updates(), C.allocations(s, source)
    first = [m for m in dict.fromkeys(["magnitude", "wanda", s.method]) if m in crit] or list(crit)[:2]
    ui.default("ps_cmp_criteria", first)
    ui.default("ps_cmp_updates", [u for u in ("none", "obs") if u in upd] or list(upd)[:1])
    ui.default("ps_cmp_allocations", [C.UNIFORM])
    for key, options in (("ps_cmp_criteria", crit), ("ps_cmp_updates", upd), ("ps_cmp_allocations", allocs)):
        st.session_state[key] = [x for x in st.session_state[key] if x in options]  # one from the address that is gone
    row = ui.wrap_row()
    c1, c2, c3, c4 = ui.tile(row, 340), ui.tile(row, 250), ui.tile(row, 300), ui.tile(row, 260)
    criteria = c1.multiselect("Criteria (rows)", list(crit), format_func=lambda n: crit[n].label, key="ps_cmp_criteria",
                              help="Which weights each cell keeps: every registered one-shot criterion.")
    chosen_updates = c2.multiselect("Updates (columns)", list(upd), format_func=lambda n: upd[n].label, key="ps_cmp_updates",
                                    help="What happens to the kept weights: every registered update.")
    chosen_allocs = c3.multiselect(
        "Allocations", list(allocs), format_func=allocs.get, key="ps_cmp_allocations",
        help="How many weights each layer keeps. Uniform is the sidebar's granularity; the others run with the reference's "
        "criterion and every chosen update. Layer sensitivity appears once an allocation built on that view was applied "
        "on this model (it stays offered after going back to uniform).",
    )
    cells = [C.cell_label(c, u) for c in criteria for u in chosen_updates]
    if st.session_state.get("ps_cmp_reference") not in cells and cells:
        st.session_state["ps_cmp_reference"] = cells[0]
    names = {C.cell_label(c, u): f"{crit[c].label} + {upd[u].label}" for c in criteria for u in chosen_updates}
    reference = c4.selectbox("Reference cell", cells, format_func=names.get, key="ps_cmp_reference",
                             help="Every other cell's paired difference is measured against this one, on the same examples.")
    return C.CompareChoice(tuple(criteria), tuple(chosen_updates), tuple(chosen_allocs or [C.UNIFORM]), str(reference or ""))


def render() -> None:
    s, loaded = ui.opening("Compare", INTRO)
    data = resources.task_data(s, loaded)
    if data is None:
        st.warning("This model is a bare encoder: it has no task metric to compare the cells with.")
        return
    source = st.session_state.get(A.SOURCE_KEY)
    c = choice(s, source)
    if not c.criteria or not c.updates:
        st.info("Choose at least one criterion and one update.")
        return
    ui.data_note(data)
    metric = "perplexity" if loaded.task == "causal-lm" else "accuracy"
    first, second = C.grids(s, c, source)
    n = len(first) + len(second) - (len(c.updates) if second else 0)
    st.caption(
        f"{n} cells, each one prune and one evaluation on {s.eval_size} {'examples' if metric == 'accuracy' else 'text windows'} "
        f"(plus the dense model once), at sparsity {C.base_request(s).sparsity:.0%} and granularity {C.uniform_granularity(s)}. "
        f"They run as one job, the reference first; each cell appears as it finishes. How to read it: {doc_ref('VIEWS.md', 'compare')}."
    )
    ans = C.compare(s, loaded, data, c, source)
    kept = kept_rows(ans.key)

    def live(box, value):
        rows = rows_of(value)
        if isinstance(value, list) or getattr(value, "stopped", False):
            st.session_state[PARTIAL] = (ans.key, list(rows))  # kept on screen if the run is stopped
        else:
            st.session_state.pop(PARTIAL, None)  # finished: the cached result is shown from now on
        draw(box.container(), first, second, rows, c.reference, metric)

    idle = "Press **Run the comparison**: every cell is pruned and evaluated in one job (with a Stop button); results stay cached."
    if kept:
        idle = f"Stopped: {len(kept)} of {n} cells finished (drawn below). **Run the comparison** computes them all again."
    # stale: after the sidebar changes (another sparsity), the last finished matrix stays on screen, marked out of date
    job, stale = ui.run_view(ans, "Run the comparison", "btn_cmp_run", idle, draw=live, stale=not kept)
    if job is None:
        if kept:
            draw(st.container(), first, second, kept, c.reference, metric)
            details(first, second, kept, c, metric, stopped=True)
        return
    result = job.value
    if stale:
        draw(st.container(), first, second, result.rows, c.reference, metric)
    if result.stopped:
        st.info(f"Stopped: {len(result.rows)} of {n} cells finished; they are shown above and in the table.")
    details(first, second, result.rows, c, metric, dense=result.dense, stopped=result.stopped)


def rows_of(value) -> list:
    """The finished rows: the job's partial list while it runs, the result's rows once it is done."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else list(value.rows)


def kept_rows(key) -> list:
    kept = st.session_state.get(PARTIAL)
    return list(kept[1]) if kept and kept[0] == key else []


def draw(box, first, second, rows, reference, metric) -> None:
    """The two matrices, every cell present from the start (finished ones filled in)."""
    frame = CC.cell_frame(first, rows, reference, metric)
    box.subheader("Criteria x updates")
    ui.chart(matrix(frame, first, "criterion", "update", metric), box)
    if second:
        box.subheader("Allocations x updates, with the reference's criterion")
        ui.chart(matrix(CC.cell_frame(second, rows, reference, metric), second, "allocation", "update", metric), box)
    box.caption(
        "Each cell: the metric with its 95% interval; the paired change against the reference (outlined in red), "
        + ("in accuracy points" if metric == "accuracy" else "in perplexity")
        + ", and whether its 95% interval covers 0 (within noise); n, the number of evaluated items. Colour: harm against the "
        "reference (accuracy points lost, or the perplexity as a ratio to the reference's; red worse, blue better) only where the "
        "difference is distinguishable from noise, grey where it is within noise, on a scale fixed before the "
        f"first cell ({CC.HARM_DOMAIN['accuracy'][1]:.0f} points either way, or {CC.HARM_DOMAIN['perplexity'][1]:.0f}x; beyond it the colour stays at its end)."
    )


def matrix(frame, grid, row_title, col_title, metric):
    rows = list(dict.fromkeys(g["row"] for g in grid))
    cols = list(dict.fromkeys(g["col"] for g in grid))
    return CC.matrix_heatmap(frame, metric, row_title, col_title, rows, cols)


def details(first, second, rows, c, metric, dense=None, stopped=False) -> None:
    """Every cell's paired difference with its interval, the table and the CSV the CLI writes."""
    from pruning.analysis.compare import ROW_COLUMNS

    if not rows:
        return
    seen = {}
    for g in first + second:  # the allocations' uniform row is the matrix's cells: named once, as there
        seen.setdefault(g["key"], g)
    frame = CC.cell_frame(list(seen.values()), rows, c.reference, metric)
    frame["cell"] = [f"{g['row']} + {g['col']}" if g in first else f"{g['row']}: {g['col']}" for g in seen.values()]
    st.subheader("Against the reference, with 95% intervals")
    ui.chart(CC.differences_chart(frame, metric))
    if dense:
        st.caption(f"Dense model: {I.metric_text(dense)}.")
    st.caption(words(rows, c.reference, metric))
    table = pd.DataFrame(rows)
    shown = table[["cell", "criterion_label", "update_label", "allocation", "status", "sparsity", "value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high"]].copy()
    ok = shown["status"] == "done"
    shown["vs reference"] = ""
    if ok.any():
        shown.loc[ok, "vs reference"] = I.noise_column(shown[ok], list(shown[ok]["cell"] == c.reference))
    shown.loc[~ok, "vs reference"] = table.loc[~ok, "reason"]
    data, config = ui.shown_table(shown, metric)
    st.dataframe(data, column_config=config, hide_index=True)
    row = ui.wrap_row()
    csv = pd.DataFrame([{k: r.get(k) for k in ROW_COLUMNS} for r in rows], columns=list(ROW_COLUMNS))
    downloads.table_button(row, csv, "compare.csv", "cmp_csv", "Download compare.csv")
    st.caption("The columns `python -m pruning compare` writes" + (" (the cells finished before the Stop)." if stopped else "."))


def words(rows, reference, metric) -> str:
    """How many cells are distinguishable from the reference, in words."""
    done = [r for r in rows if r.get("status") == "done" and r["cell"] != reference]
    if not done:
        return "Only the reference cell has finished."
    apart = [r for r in done if not r["within_noise"]]
    text = f"{len(apart)} of {len(done)} cells are distinguishable from the reference {reference} (their paired 95% interval excludes 0)"
    if apart:
        far = max(apart, key=lambda r: abs(r["drop"]))
        text += f"; the farthest, {far['cell']}: {I.change_text(metric, far)}"
    return text + "."


ui.guarded(render)
