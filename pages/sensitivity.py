"""Layer sensitivity: the metric drop when only one layer is pruned, and a per-layer sparsity allocation."""

import pandas as pd
import streamlit as st

from app import charts, downloads, resources, style, sweeps, ui

def draw(box, rows: list, metric: str) -> None:
    pts = [r for r in rows if r["layer"] != "-"]
    if not pts:
        box.info("Dense model evaluated; layers follow.")
        return
    df = pd.DataFrame(pts)
    df["layer"] = df["layer"].map(ui.short_layer)
    dense = next((r["value"] for r in rows if r["layer"] == "-"), None)
    box.altair_chart(charts.sensitivity_heatmap(df, metric, dense), width="stretch")


def _harm_text(metric: str, drop: float, dense: float) -> str:
    """One layer's harm in the unit of its metric (``drop``: accuracy fraction lost, or perplexity added)."""
    return f"{drop * 100:+.1f} points" if metric == "accuracy" else f"{(drop + dense) / dense:.2f}x"


def render() -> None:
    s, loaded = ui.opening("Layer sensitivity")
    methods = resources.score_methods()
    from pruning.registry import all_methods

    every = all_methods()
    c1, c2 = st.columns([2, 3])
    options = list(methods) + [m for m in every if m not in methods]
    ui.default("ps_sens_method", s.method if s.method in options else options[0])
    ui.default("ps_sens_sparsities", "0.5, 0.7, 0.9")
    method = c1.selectbox(
        "Method",
        options,
        format_func=lambda n: every[n].label,
        key="ps_sens_method",
        help="Score-based methods compute their scores once for all layers.",
    )
    text = c2.text_input("Sparsities of the one pruned layer", key="ps_sens_sparsities")
    sparsities = sweeps.parse_sparsities(text)
    data = resources.task_data(s, loaded)
    if data is None:
        st.warning("This model is a bare encoder: it has no task metric to measure sensitivity with.")
        return
    layer_rows = resources.layers(s, loaded)
    st.caption(
        f"{len(layer_rows)} layers x {len(sparsities)} sparsities = {len(layer_rows) * len(sparsities)} evaluations of "
        f"{s.eval_size} examples each (validation split)."
    )
    metric = "perplexity" if loaded.task == "causal-lm" else "accuracy"
    ans = resources.sensitivity(s, loaded, data, method, sparsities)
    idle = "Press **Measure sensitivity**: each layer is pruned alone and the model evaluated; results stay cached."
    job, _ = ui.run_view(ans, "Measure sensitivity", "ps_sens_run", idle, draw=lambda box, r: draw(box, r, metric))
    if job is not None:
        results(s, job.value, sparsities, metric, layer_rows)


def results(s, rows: list, sparsities: list, metric: str, layer_rows) -> None:
    """The most sensitive layers at a chosen sparsity and the suggested per-layer allocation."""
    df = pd.DataFrame([r for r in rows if r["layer"] != "-"])
    dense = [r for r in rows if r["layer"] == "-"][0]

    st.subheader("Most sensitive layers")
    if st.session_state.get("ps_sens_at") not in sparsities:
        st.session_state["ps_sens_at"] = sparsities[-1]
    at = st.select_slider("At sparsity", options=sparsities, key="ps_sens_at", format_func=lambda v: f"{v:.0%}")
    one = df[df["sparsity"] == at].assign(layer=lambda d: d["layer"].map(ui.short_layer))
    st.altair_chart(charts.sensitivity_bars(one, metric, dense["value"]), width="stretch")
    worst = one.sort_values("drop", ascending=False).head(3)
    st.caption(
        f"Dense {metric}: {style.metric_text(metric, dense['value'])}. Most sensitive at {at:.0%}: "
        + ", ".join(f"{r.layer} ({_harm_text(metric, r.drop, dense['value'])})" for r in worst.itertuples())
        + ". The harm is in accuracy points lost, or the perplexity as a ratio to the dense model's."
    )

    st.subheader("Suggested per-layer sparsity")
    from pruning.sweep import suggest_allocation

    params = {r.name: r.params for r in layer_rows}
    target = s.request.sparsity  # N/M for an N:M pattern
    alloc = suggest_allocation(rows, target, params)
    alloc_df = pd.DataFrame([{"layer": ui.short_layer(n), "sparsity": v} for n, v in alloc.items()])
    st.altair_chart(charts.allocation_bars(alloc_df, target), width="stretch")
    mean = sum(params[n] * v for n, v in alloc.items()) / max(1, sum(params[n] for n in alloc))
    st.caption(
        f"Sensitive layers are pruned less and robust ones more, so the parameter-weighted mean stays at the sidebar's "
        f"target {target:.0%} (here {mean:.1%}); the dashed line is the uniform target. Move the sparsity slider to re-allocate."
    )
    downloads.table_button(st, pd.DataFrame(rows), "prunescope_sensitivity.csv", key="sens_csv")  # with the dense row, as the CLI writes it
    downloads.json_button(st, {"rows": rows, "suggested_allocation": alloc}, "prunescope_sensitivity.json", key="sens_json", label="Download rows and allocation (JSON)")


ui.guarded(render)
