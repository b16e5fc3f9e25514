"""Sparsity ramp: the task metric against sparsity for several methods and granularities."""

import pandas as pd
import streamlit as st

from app import charts, downloads, resources, style, sweeps, ui
from app.state import GRANULARITIES


def draw(box, rows: list, metric_hint: str = "accuracy") -> None:
    if not rows:
        box.info("No point computed yet.")
        return
    df = pd.DataFrame(rows)
    dense = df[df["method"] == "dense"]
    points = df[df["method"] != "dense"]
    metric = str(df["metric"].iloc[0]) if "metric" in df else metric_hint
    dense_value = float(dense["value"].iloc[0]) if len(dense) else None
    if len(points):
        box.altair_chart(charts.ramp_chart(points, dense_value, metric), width="stretch")
    else:
        box.info(f"Dense model: {metric} {style.metric_text(metric, dense_value)}. The pruned points follow.")


def render() -> None:
    s, loaded = ui.opening("Sparsity ramp")
    from pruning.registry import all_methods

    methods = all_methods()
    c1, c2, c3 = st.columns([2, 2, 2])
    ui.default("ps_ramp_methods", [m for m in dict.fromkeys(["magnitude", "random", s.method]) if m in methods])
    ui.default("ps_ramp_grans", [s.granularity] if s.granularity in GRANULARITIES else ["layer"])
    ui.default("ps_ramp_sparsities", "0.1, 0.3, 0.5, 0.7, 0.9")
    chosen = c1.multiselect(
        "Methods",
        list(methods),
        format_func=lambda n: methods[n].label,
        key="ps_ramp_methods",
    )
    grans = c2.multiselect(
        "Granularities",
        list(GRANULARITIES),
        key="ps_ramp_grans",
        help="N:M patterns have one fixed sparsity (N/M), so they add one point each.",
    )
    text = c3.text_input("Sparsities", key="ps_ramp_sparsities", help="Comma-separated, each at least 0 and below 1.")
    sparsities = sweeps.parse_sparsities(text)
    if not chosen or not grans:
        st.info("Choose at least one method and one granularity.")
        return
    data = resources.task_data(s, loaded)
    if data is None:
        st.warning("This model is a bare encoder: it has no task metric to sweep.")
        return
    expensive = [methods[m].label for m in chosen if not methods[m].score_based]
    st.caption(
        f"{len(sparsities)} sparsities x {len(chosen)} methods x {len(grans)} granularities, each pruned and evaluated on "
        f"{s.eval_size} examples." + (f" {', '.join(expensive)} prune from scratch at every point (slower)." if expensive else "")
    )
    ans = resources.ramp(s, loaded, data, chosen, grans, sparsities)
    idle = "Press **Run the ramp**: points appear on the chart as they are computed, and stay cached for this model and these settings."
    job, _ = ui.run_view(ans, "Run the ramp", "ps_ramp_run", idle, draw=draw)
    if job is None:
        return
    df = pd.DataFrame(job.value)
    st.dataframe(df, hide_index=True, width="stretch")
    downloads.table_button(st, df, "prunescope_ramp.csv", key="ramp_csv")
    downloads.json_button(st, job.value, "prunescope_ramp.json", key="ramp_json", label="Download JSON")
    st.caption(f"Computed in {job.seconds:.1f} s. Dense model as the dashed reference line.")


ui.guarded(render)
