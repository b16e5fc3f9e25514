"""Runs: the run folders under the runs directory; open one (it then shows in every view) and compare two."""

import pandas as pd
import streamlit as st

from app import downloads, resources, runs, ui
from app.charts import masks as charts
from app.stability import flips_sentence
from app.text import md


def _root(default: str):
    from pruning.store.roots import check_allowed

    ui.default("ps_runs_dir", default)
    text = st.text_input(
        "Runs directory",
        key="ps_runs_dir",
        help="Folders written by `python -m pruning prune --out <dir>/<name>`, or downloads from this app put in a folder.",
    )
    return check_allowed(text or default, "runs directory")


def _summary_table(rows: list) -> None:
    table = pd.DataFrame(rows).drop(columns=["path"])
    config = {c: st.column_config.NumberColumn(format="%.4g") for c in ("sparsity", "dense", "pruned") if c in table}
    st.dataframe(table, hide_index=True, width="stretch", column_config=config)


def _number(value) -> float:
    """A number from report.json (a shared file): anything else shows as NaN, never breaks the page."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _show_run(s, loaded, folder) -> None:
    run = runs.load(s, loaded, folder)
    value = runs.value_of(run.folder)
    r = run.report
    ev = r.get("evaluation") or {}
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Method", md(f"{r.get('method')} ({r.get('granularity')})"))
    kept, total = run.counts()  # from the mask file, not the report's claims
    m2.metric("Overall sparsity", f"{1 - kept / max(total, 1):.2%}", help=f"{total - kept:,} of {total:,} weights pruned (counted in the mask file)")
    if ev.get("pruned"):
        d, p = ev["dense"], ev["pruned"]
        m3.metric(md(f"{p.get('metric')} when saved"), f"{_number(p.get('value')):.4g}", delta=f"{_number(p.get('value')) - _number(d.get('value')):+.4g} from dense", delta_color="normal" if p.get("metric") == "accuracy" else "inverse")
    m4.metric("Updated weights", f"{len(run.weights or {})} layers", help="layers whose kept weights the method changed (read from the saved model)")
    notes = [f"Masks checked against **{md(loaded.name)}**: every layer name, shape and dtype matches."]
    if run.untouched:
        notes.append(f"{len(run.untouched)} layers were not pruned by this run (kept whole).")
    if r.get("updates_weights") and not run.weights:
        notes.append("The method changed the kept weights, but the folder has no `model/`: the views apply the masks to the dense weights.")
    if r.get("model") != loaded.name:
        notes.append(f"It was made on **{md(r.get('model'))}**; the sidebar's model has the same layers.")
    st.markdown(" ".join(notes))
    st.button(
        f"Show {md(runs.label(value))} in every view",
        key="btn_runs_use",
        on_click=lambda: st.session_state.update(ps_method=value),
        help="Sets the sidebar's method to this run: Overview, Weights and Masks then show its saved masks.",
    )
    layers = pd.DataFrame(run.layer_table())
    if len(layers):
        layers["shape"] = layers["shape"].map(lambda v: " x ".join(map(str, v)))
        st.dataframe(layers, hide_index=True, width="stretch")
    downloads.mask_set_buttons(st, loaded, runs.mask_set(s, loaded, value), key="runs_open")


def _compare(s, loaded, root, names: list) -> None:
    from pruning.store.runs import compare_masks, metric_difference

    c1, c2 = st.columns(2)
    ui.default("ps_runs_a", names[0])
    ui.default("ps_runs_b", names[min(1, len(names) - 1)])
    a = c1.selectbox("Run A", names, key="ps_runs_a")
    b = c2.selectbox("Run B", names, key="ps_runs_b")
    set_a = runs.mask_set(s, loaded, runs.value_of(root / a))
    set_b = runs.mask_set(s, loaded, runs.value_of(root / b))
    rows = resources.of_masks((set_a, set_b), "run comparison", lambda: compare_masks(set_a.masks, set_b.masks))
    total = rows[-1]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Kept by both", f"{total['both']:,}")
    m2.metric("Kept by A only", f"{total['A only']:,}")
    m3.metric("Kept by B only", f"{total['B only']:,}")
    m4.metric("Overlap (Jaccard)", f"{total['jaccard']:.3f}")
    data = resources.task_data(s, loaded)
    if data is not None:
        ev_a, ev_b = resources.evaluation(s, loaded, data, set_a), resources.evaluation(s, loaded, data, set_b)
        diff = metric_difference(ev_a, ev_b)
        interval = "" if diff["ci_low"] is None else f" (paired 95% interval {diff['ci_low']:+.4g} to {diff['ci_high']:+.4g})"
        interval += ", within noise" if diff.get("within_noise") else ""
        st.markdown(
            f"**{diff['metric']}** on {diff['n']} examples of this session's dataset: A {diff['a']:.4g}, B {diff['b']:.4g}; "
            f"B minus A **{diff['difference']:+.4g}**{interval}."
        )
        st.caption(flips_sentence(ev_a, ev_b, "run A", "run B"))
    per_layer = pd.DataFrame(rows[:-1])
    lines = per_layer.assign(layer=per_layer["layer"].map(ui.short_layer), pair=f"{a} / {b}")
    ui.chart(charts.layer_overlap_lines(lines[["layer", "pair", "jaccard"]]))
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    downloads.table_button(st, pd.DataFrame(rows), "prunescope_run_comparison.csv", key="runs_compare")


def render() -> None:
    s, loaded = ui.opening("Runs")
    from pruning.store.runs import list_runs, runs_dir

    root = _root(str(runs_dir()))
    rows = list_runs(root)
    if not rows:
        st.info(f"No run folder under {md(root)} yet. `python -m pruning prune --model ... --out <folder>/<name>` writes one.")
        return
    _summary_table(rows)
    names = [r["run"] for r in rows if "problem" not in r]
    for bad in (r for r in rows if "problem" in r):
        st.warning(md(f"{bad['run']}: {bad['problem']}"))
    if not names:
        return
    st.subheader("Open a run")
    c1, c2 = st.columns([3, 1])
    pick = c1.selectbox("Run", names, key="ps_runs_pick")
    if c2.button("Open run", type="primary", key="btn_runs_open"):
        runs.load(s, loaded, root / pick)  # checked here: a wrong file is a message, never a method choice
        if runs.value_of(root / pick) not in runs.opened():
            runs.remember(root / pick)
            st.rerun()  # the sidebar now offers the run as a method
    if runs.value_of(root / pick) in runs.opened():
        _show_run(s, loaded, root / pick)
    if len(names) > 1:
        st.subheader("Compare two runs")
        _compare(s, loaded, root, names)


ui.guarded(render)
