"""Sparsity ramp: the task metric against sparsity for several methods and granularities."""

import pandas as pd
import streamlit as st

from app import allocation as A
from app import downloads, resources, sweeps, ui
from app.charts import ramp as charts
from app import intervals as I
from app.state import GRANULARITIES


CHANCE = "ramp_chance"  # this page run's majority-class share (the draw callback runs while the job fills the chart)


def draw(box, rows: list, metric_hint: str = "accuracy") -> None:
    if not rows:
        box.info("No point computed yet.")
        return
    df = pd.DataFrame(rows)
    dense = df[df["method"] == "dense"]
    points = df[df["method"] != "dense"]
    metric = str(df["metric"].iloc[0]) if "metric" in df else metric_hint
    reference = dense.iloc[0].to_dict() if len(dense) else None
    if len(points):
        ui.chart(charts.ramp_chart_ci(points, reference, metric, chance=st.session_state.get(CHANCE)), box)
    else:
        box.info(f"Dense model: {metric} {I.metric_text(reference)}. The pruned points follow.")


def render() -> None:
    s, loaded = ui.opening("Sparsity ramp")
    from pruning.catalog import all_methods

    methods = all_methods()
    controls = ui.wrap_row()  # each control wide enough for its tags ("magnitude", not "itude"); they wrap at 800 px
    c1, c2, c3 = (ui.tile(controls, w) for w in (420, 300, 260))
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
    ui.data_note(data)
    expensive = [methods[m].label for m in chosen if not methods[m].score_based]
    st.caption(
        f"{len(sparsities)} sparsities x {len(chosen)} methods x {len(grans)} granularities, each pruned and evaluated on "
        f"{s.eval_size} examples." + (f" {', '.join(expensive)} prune from scratch at every point (slower)." if expensive else "")
    )
    st.session_state[CHANCE] = resources.majority_share(s, loaded, data)
    ans = resources.ramp(s, loaded, data, chosen, grans, sparsities)
    idle = "Press **Run the ramp**: points appear on the chart as they are computed, and stay cached for this model and these settings."
    job, _ = ui.run_view(ans, "Run the ramp", "btn_ramp_run", idle, draw=draw)
    if job is not None:
        table(job)
    source = st.session_state.get(A.SOURCE_KEY)
    if source is not None:
        allocated_section(s, loaded, data, chosen, sparsities, source)


def table(job) -> None:
    """The ramp's points with their intervals and the paired drop against dense, and their downloads."""
    df = pd.DataFrame(job.value)
    shown, config = ui.shown_table(df.assign(**{"vs dense": I.noise_column(df, df["method"] == "dense")}), str(df["metric"].iloc[0]))
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config)
    table_downloads(job.value, "prunescope_ramp", key="ramp")
    st.caption(
        f"Computed in {job.seconds:.1f} s. Dense model as the dashed reference line, its 95% interval as the grey band; "
        "each point's vertical line is its 95% interval (Wilson for accuracy, a bootstrap over windows for perplexity). "
        "drop: the harm against the dense model on the same examples, with its paired interval; 'within noise' where it covers 0. "
        "Every point comes from the method itself (Wanda walks the blocks in order), not from the one-pass slider scores."
    )


def table_downloads(rows: list, stem: str, key: str) -> None:
    """The points as the CLI's sweep writes them: CSV and JSON under the engine's column names
    (value, ci_low, ci_high, n, drop, drop_ci_low, drop_ci_high), without the view's words."""
    c1, c2 = st.columns(2)
    downloads.table_button(c1, pd.DataFrame(rows), f"{stem}.csv", key=f"{key}_csv")
    downloads.json_button(c2, rows, f"{stem}.json", key=f"{key}_json", label="Download JSON")


def draw_allocated(box, rows: list) -> None:
    if rows:
        df = pd.DataFrame(rows)
        ui.chart(charts.ramp_chart_ci(df, None, str(df["metric"].iloc[0])), box)


def allocated_section(s, loaded, data, chosen: list, sparsities: list, source) -> None:
    """The allocation applied on the Layer sensitivity page against uniform pruning at each sparsity, paired."""
    st.subheader("Allocated against uniform")
    st.caption(
        f"The allocation {source.describe()} is rebuilt for each sparsity (its parameter-weighted mean equals it) and "
        f"compared with every layer at that sparsity, both pruned by the method itself and evaluated on the same {s.eval_size} examples."
    )
    ans = resources.allocated_ramp(s, loaded, data, chosen, sparsities, source)
    idle = "Press **Compare allocated and uniform**: two points per method and sparsity, with the paired difference."
    job, _ = ui.run_view(ans, "Compare allocated and uniform", "btn_ramp_alloc_run", idle, draw=draw_allocated)
    if job is None:
        return
    df = pd.DataFrame(job.value)
    shown, config = ui.shown_table(df.assign(**{"vs uniform": I.noise_column(df, df["granularity"] == "layer")}), str(df["metric"].iloc[0]))
    st.dataframe(shown, hide_index=True, width="stretch", column_config=config)
    table_downloads(job.value, "prunescope_allocated", key="ramp_alloc")
    st.caption("drop: what the allocation costs against uniform pruning on the same examples (negative: the allocation is better).")


ui.guarded(render)
