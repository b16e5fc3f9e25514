"""Sparsity ramp: the task metric against sparsity for several methods and granularities."""

import pandas as pd
import streamlit as st

from app import resources, sweeps, ui
from app import interval_charts as IC
from app import intervals as I
from app.state import GRANULARITIES

KIND = "sweep"


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
        box.altair_chart(IC.ramp_chart_ci(points, reference, metric), width="stretch")
    else:
        box.info(f"Dense model: {metric} {I.metric_text(reference)}. The pruned points follow.")


def render() -> None:
    st.title("Sparsity ramp")
    s = ui.settings()
    loaded = ui.model(s)
    ui.settings_line(s, loaded)
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
    ui.data_note(data)
    key = (s.model_key, s.data_key, tuple(chosen), tuple(grans), tuple(sparsities), s.calibration, s.seed, s.eval_size)
    job = resources.store().peek(KIND, key)
    expensive = [methods[m].label for m in chosen if not methods[m].score_based]
    st.caption(
        f"{len(sparsities)} sparsities x {len(chosen)} methods x {len(grans)} granularities, each pruned and evaluated on "
        f"{s.eval_size} examples." + (f" {', '.join(expensive)} prune from scratch at every point (slower)." if expensive else "")
    )
    run = st.button("Run the ramp", type="primary", key="ps_ramp_run", disabled=job is not None and not job.done.is_set())
    box = st.empty()
    if job is None and not run:
        box.info("Press **Run the ramp**: points appear on the chart as they are computed, and stay cached for this model and these settings.")
        return
    if job is None:
        needs_calib = any(methods[m].needs_calibration for m in chosen)
        calib = resources.calibration(s, loaded, data) if needs_calib else None

        def work(job):
            from pruning.sweep import sparsity_ramp

            return sparsity_ramp(
                loaded,
                data,
                chosen,
                grans,
                sparsities,
                calibration=calib,
                seed=s.seed,
                max_examples=s.eval_size,
                progress=job.progress,
                on_point=job.partial.append,
            )

        job = resources.store().get_or_start(KIND, key, "Sparsity ramp", work)
    rows = sweeps.follow(job, KIND, key, lambda r: draw(box, r))
    draw(box, rows)
    df = pd.DataFrame(rows)
    st.dataframe(df.assign(**{"vs dense": I.noise_column(df)}), hide_index=True, width="stretch")
    st.download_button("Download CSV", df.to_csv(index=False).encode(), file_name="prunescope_ramp.csv", mime="text/csv", key="ps_ramp_csv")
    st.caption(
        f"Computed in {job.seconds:.1f} s. Dense model as the dashed reference line, its 95% interval as the grey band; "
        "each point's vertical line is its 95% interval (Wilson for accuracy, a bootstrap over windows for perplexity). "
        "drop: the harm against the dense model on the same examples, with its paired interval; 'within noise' where it covers 0. "
        "Every point comes from the method itself (Wanda walks the blocks in order), not from the one-pass slider scores."
    )


ui.guarded(render)
