"""Layer sensitivity: how far the model moves (KL divergence, metric drop) when only one layer is pruned, with
95% intervals; the per-layer sparsity allocation built from it, its downloads, and Apply."""

import pandas as pd
import streamlit as st

from app import allocation as A
from app import downloads, resources, sweeps, ui
from app.charts import sensitivity as charts
from app import intervals as I
from pruning.analysis.sensitivity import point_cost, point_fixed_blocks
from pruning.analysis.stats import within_noise


def draw(box, rows: list, metric: str) -> None:
    pts = [r for r in rows if r["layer"] != "-"]
    if not pts:
        box.info("Dense model evaluated; layers follow.")
        return
    df = pd.DataFrame(pts)
    df["layer"] = df["layer"].map(ui.short_layer)
    dense = next((r["value"] for r in rows if r["layer"] == "-"), None)
    signal = st.session_state.get("ps_sens_signal", "kl")
    value = signal if signal in df.columns else "drop"
    ui.chart(charts.sensitivity_heatmap(df, metric, value=value, dense=dense), box)


def _layer_text(signal: str, metric: str, row: dict, dense: float) -> str:
    """One layer's signal with its 95% interval, in the unit the charts draw it: a perplexity drop as the ratio to dense."""
    if signal != "drop" or metric == "accuracy" or not dense:
        return I.signal_text(signal, metric, row)
    ratio, low, high = ((row[k] + dense) / dense for k in ("drop", "drop_ci_low", "drop_ci_high"))
    noise = f", {I.WITHIN_NOISE}" if within_noise(row["drop_ci_low"], row["drop_ci_high"]) else ""
    return f"{ratio:.2f}x (95% CI {low:.2f}x to {high:.2f}x){noise}"


def signal_choice(df: pd.DataFrame) -> str:
    """The signal that ranks and colours the layers: KL by default, the metric drop on request."""
    options = [c for c in A.SIGNALS if c in df.columns]
    if st.session_state.get("ps_sens_signal") not in options:
        st.session_state["ps_sens_signal"] = options[0]
    return st.radio(
        "Rank and colour by",
        options,
        key="ps_sens_signal",
        horizontal=True,
        format_func=lambda c: A.SIGNALS[c],
        help="KL: how far the pruned model's output distribution moves from the dense model's on the same inputs "
        "(low noise: every example counts, not only the ones whose prediction flips). Metric drop: the task metric lost.",
    )


def ranking(s, df: pd.DataFrame, dense: dict, sparsities: list, metric: str) -> str:
    """The layers ranked by the chosen signal with 95% intervals, and in words how many are told apart from 0."""
    st.subheader("Most sensitive layers")
    c1, c2 = st.columns([2, 3])
    with c1:
        signal = signal_choice(df)
    if st.session_state.get("ps_sens_at") not in sparsities:
        st.session_state["ps_sens_at"] = sparsities[-1]
    at = c2.select_slider("At sparsity", options=sparsities, key="ps_sens_at", format_func=lambda v: f"{v:.0%}")
    one = df[df["sparsity"] == at].assign(layer=lambda d: d["layer"].map(ui.short_layer))
    ui.chart(charts.sensitivity_bars_ci(one, metric, signal, dense=dense["value"]))
    for name in sorted(A.SIGNALS, key=lambda c: c != signal):  # the chosen signal first; the drop is the real noise test
        st.markdown(I.noise_summary(one, name, metric, at))
    worst = one.sort_values(signal, ascending=False).head(3)
    st.caption(
        f"Dense {metric}: {I.metric_text(dense)}. Most sensitive at {at:.0%}: "
        + ", ".join(f"{r['layer']} ({_layer_text(signal, metric, r, dense['value'])})" for r in worst.to_dict("records"))
        + ". The drop is the harm, paired over the same examples: accuracy points lost, or the perplexity as a ratio to the dense model's. "
        "Bars: the value; lines: its 95% interval, grey where it covers 0."
    )
    return signal


def measured_granularity(s) -> str:
    """The granularity within one layer that the measurement uses: the sidebar's, or, once an allocation is
    applied (the sidebar then says "allocated"), the one that allocation was measured at, so Apply keeps the result."""
    source = st.session_state.get(A.SOURCE_KEY)
    if s.granularity != A.ALLOCATED:
        return str(s.request.granularity)
    return source.granularity if source is not None else "layer"


def allocation(s, rows: list, layer_rows, signal: str) -> dict:
    """The per-layer allocation built from ``signal``, its downloads, and Apply (the sidebar's "allocated"); returns it."""
    st.subheader("Suggested per-layer sparsity")
    measured = {r["layer"] for r in rows if r["layer"] != "-"}
    params = {r.name: r.params for r in layer_rows if r.name in measured}
    partial = len(measured) < len(layer_rows)
    target = s.request.sparsity  # N/M for an N:M pattern
    source = A.AllocationSource.from_rows(s.model_key, st.session_state["ps_sens_method"], signal, rows, params, measured_granularity(s))
    alloc = source.at(target)
    alloc_df = pd.DataFrame([{"layer": ui.short_layer(n), "sparsity": v} for n, v in alloc.items()])
    ui.chart(charts.allocation_bars(alloc_df, target))
    st.caption(
        f"Built from the {A.SIGNALS[signal]}: sensitive layers are pruned less and robust ones more, so the parameter-weighted "
        f"mean stays at the sidebar's target {target:.0%} (here {A.mean_sparsity(alloc, params):.1%}); the dashed line is the "
        "uniform target. Move the sparsity slider to re-allocate."
    )
    c1 = c2 = c3 = ui.wrap_row()  # each button as wide as its label, wrapping on a narrow window (never cut into twins)
    c1.download_button("Download allocation (JSON)", A.to_json(alloc).encode(), file_name="prunescope_allocation.json", mime="application/json", key="dl_alloc_json", help="{layer: sparsity}: python -m pruning prune --allocation FILE.json", width="content")
    c2.download_button("Download allocation (CSV)", A.to_csv(alloc, params).encode(), file_name="prunescope_allocation.csv", mime="text/csv", key="dl_alloc_csv", width="content")
    if partial:
        st.caption(f"Measured: {len(measured)} of {len(layer_rows)} layers. An allocation for the sidebar needs every layer: "
                   "**Measure every layer** above, then Apply.")
    c3.button("Apply as the sidebar's granularity", type="primary", key="btn_alloc_apply", on_click=apply, args=(source,), disabled=partial, width="content",
              help="Overview and the ramp then compare this allocation against uniform pruning at the same overall sparsity.")
    if st.session_state.get(A.SOURCE_KEY) == source and s.granularity == A.ALLOCATED:
        st.success(
            "Applied: the sidebar's granularity is now **allocated** (each layer at its own sparsity above). The Overview and "
            f"the Sparsity ramp compare it against uniform pruning. This measurement stays at granularity {source.granularity} within each layer."
        )
    return alloc


def apply(source) -> None:
    st.session_state[A.SOURCE_KEY] = source
    st.session_state["ps_granularity"] = A.ALLOCATED


def measurement_downloads(rows: list, signal: str, alloc: dict) -> None:
    """The measurement as the CLI's ``sensitivity`` writes it: every row (the dense one too) as CSV, and the JSON summary."""
    from pruning.analysis.sensitivity import distinguishable_layers

    told = distinguishable_layers(rows, signal)
    summary = {"rows": rows, "signal": signal, "distinguishable_layers": told, "suggested_allocation": alloc}
    c1 = c2 = ui.wrap_row()  # each button as wide as its label, wrapping at 800 px (a half column cut the JSON one)
    downloads.table_button(c1, pd.DataFrame(rows), "prunescope_sensitivity.csv", key="sens_csv")
    downloads.json_button(c2, summary, "prunescope_sensitivity.json", key="sens_json", label="Download rows and allocation (JSON)")


def render() -> None:
    s, loaded = ui.opening("Layer sensitivity")
    methods = resources.score_methods()
    from pruning.catalog import all_methods

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
    ui.data_note(data)
    layer_rows = resources.layers(s, loaded)
    metric = "perplexity" if loaded.task == "causal-lm" else "accuracy"
    held_out = (
        "windows each, from the calibration part of the text (disjoint from the text Overview evaluates)"
        if metric == "perplexity"
        else "examples each (validation split; Overview evaluates the test split)"
    )
    chosen = which_layers(layer_rows)
    size = eval_size_choice(s, loaded.task, metric)
    n_points = len(chosen) * len(sparsities)
    ans = resources.sensitivity(s, loaded, data, method, sparsities, granularity=measured_granularity(s),
                                layers=tuple(r.name for r in chosen), done_rows=lambda: kept_rows(None), eval_size=size) if chosen else None
    kept = kept_rows(ans.key) if ans is not None else []
    st.markdown(
        f"{len(chosen)} of {len(layer_rows)} layers x {len(sparsities)} sparsities = {n_points} evaluations of "
        f"{size} {held_out}." + time_sentence(s, loaded.task, layer_rows, chosen, sparsities, kept, size)
    )
    if not chosen:
        st.info("Choose at least one block and one layer role.")
        return

    def live(box, rows):
        st.session_state[PARTIAL] = (ans.key, list(rows))  # kept if the run is stopped
        draw(box, rows, metric)

    idle = "Press **Measure sensitivity**: each layer is pruned alone and the model evaluated; results stay cached."
    if kept:
        idle = (f"Stopped: {sum(r['layer'] != '-' for r in kept)} of {n_points} points were measured (drawn below). "
                "**Measure sensitivity** measures the rest and keeps these.")
    job, _ = ui.run_view(ans, "Measure sensitivity", "btn_sens_run", idle, draw=live)
    if job is None and kept:
        draw(st.container(), kept, metric)
    if job is not None:
        st.session_state.pop(PARTIAL, None)
        results(s, job.value, sparsities, metric, layer_rows)
    measured_allocations(s, loaded, data)


def time_sentence(s, task: str, layer_rows, chosen, sparsities, kept: list[dict], size: int) -> str:
    """The run's estimated time before the click, from this server's measured costs by block position (points a
    stopped run kept are not counted), or why there is none yet."""
    blocks = sorted({r.block for r in layer_rows if r.block is not None})
    done = {(r["layer"], round(float(r["sparsity"]), 6)) for r in kept if r["layer"] != "-"}  # a stopped run's points: not measured again
    fixed = point_fixed_blocks(task, len(blocks))
    work = sum(point_cost(r.block, len(blocks), fixed) for r in chosen for x in sparsities if (r.name, round(float(x), 6)) not in done)
    estimate = resources.sensitivity_estimate(s, work, len(blocks), eval_size=size)
    if not estimate:
        return (" No estimate yet: nothing has been evaluated on this model and data on this server (the Overview's "
                "dense evaluation gives the first); the progress bar's time left appears with the first points.")
    rest = f" ({len(done)} measured before the Stop; the time is for the rest)" if done else ""
    per_point = ("; every point also pays the output head and the KL over the whole vocabulary, about "
                 f"{fixed / max(1, len(blocks)):.1f} dense passes" if fixed else "")
    return (f" Estimated time: **about {_duration(estimate[0])}**{rest} ({estimate[1]}; a layer near the output costs a "
            f"fraction of one near the input{per_point}).")


def measured_allocations(s, loaded, data) -> None:
    """The registered allocations that measure the model in one pass (OWL): measure one and apply it as the sidebar's
    "allocated", beside the allocation this view's sensitivity builds."""
    from pruning.allocations.registry import measured

    rules = measured()
    if not rules:
        return
    st.subheader("Or an allocation measured in one pass")
    st.caption("These look at the dense model once (its calibration inputs) instead of pruning each layer alone: "
               "faster, but they never see what pruning a layer does to the output.")
    source = st.session_state.get(A.SOURCE_KEY)
    row = ui.wrap_row()
    for name, rule in rules.items():
        tile = ui.tile(row, 320)
        tile.markdown(f"**{rule.label}**: {rule.summary}")
        if tile.button(f"Measure {rule.label} and apply", key=f"btn_measure_{name}", width="content",
                       help=f"{rule.reference}. One pass of the sidebar's calibration data; then every layer's sparsity follows the target slider."):
            st.session_state[A.PENDING_KEY] = resources.measured_allocation(s, loaded, data, name)
            st.rerun()  # the sidebar applies it before it draws its granularity select
        if isinstance(source, A.MeasuredSource) and source.name == name and source.fits(s.model_key) and s.granularity == A.ALLOCATED:
            alloc = source.at(s.request.sparsity)
            spread = f"{min(alloc.values()):.0%} to {max(alloc.values()):.0%}" if alloc else "-"
            tile.success(f"Applied: the sidebar's granularity is **allocated** ({rule.label}); layer sparsities {spread} "
                         f"at the target {s.request.sparsity:.0%}.")


PARTIAL = "ps_sens_partial"  # (job key, rows) of the last run drawn live: what a Stop leaves
EVAL_BASIS = "ps_sens_eval_basis"  # (model, sidebar's size) the view's size was defaulted for


def eval_size_choice(s, task: str, metric: str) -> int:
    """The number of examples or windows each point is measured on: its own control, defaulted again when the model
    or the sidebar's evaluation size changes (a value from the address is kept when it is a number the control takes)."""
    basis, default = (s.model_key, s.eval_size), resources.sensitivity_eval_size(task, s.eval_size)
    value = st.session_state.get("ps_sens_eval")
    seen = st.session_state.get(EVAL_BASIS)
    if (seen is not None and seen != basis) or not isinstance(value, int) or not 8 <= value <= 20000:
        st.session_state["ps_sens_eval"] = default
    st.session_state[EVAL_BASIS] = basis
    unit = "windows" if metric == "perplexity" else "examples"
    size = int(st.number_input(
        f"Evaluation size here ({unit} per point)", min_value=8, max_value=20000, step=8, key="ps_sens_eval",
        help="This view's own evaluation size: every layer x sparsity is one evaluation on this many items.",
    ))
    if size < s.eval_size:
        st.caption(f"Each point is measured on {size} {unit}, fewer than the sidebar's {s.eval_size}, so a run takes a "
                   "fraction of the time; the intervals are wider than they would be on the sidebar's size. Raise it for a closer look.")
    return size


def kept_rows(key) -> list:
    """Rows a stopped run at these settings finished (``key=None``: whatever was kept, for the job that resumes)."""
    kept = st.session_state.get(PARTIAL)
    if not kept or (key is not None and kept[0] != key):
        return []
    return list(kept[1])


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


SAMPLED_UP_TO = 12  # blocks; a deeper model (SmolLM2: 30) measures a few blocks across its depth unless asked for all


def sampled_blocks(blocks: list) -> list:
    """Blocks spread across depth (first, a third, two thirds, last) for a deep model; every block of a shallow one."""
    if len(blocks) <= SAMPLED_UP_TO:
        return list(blocks)
    return sorted({blocks[round(i * (len(blocks) - 1) / 3)] for i in range(4)})


def _measure_all(blocks: list, roles: list) -> None:
    st.session_state["ps_sens_blocks"] = list(blocks)
    st.session_state["ps_sens_roles"] = list(roles)


def which_layers(layer_rows) -> list:
    """The layers to measure: chosen blocks and layer roles (a deep model starts with blocks sampled across depth)."""
    from pruning.loading.models import layer_role

    blocks = sorted({r.block for r in layer_rows if r.block is not None})
    roles = list(dict.fromkeys(layer_role(r.name)[1] for r in sorted(layer_rows, key=lambda r: layer_role(r.name)[0])))
    ui.default("ps_sens_blocks", sampled_blocks(blocks))
    ui.default("ps_sens_roles", roles)
    for key, options, fallback in (("ps_sens_blocks", blocks, sampled_blocks(blocks)), ("ps_sens_roles", roles, roles)):
        known = [x for x in st.session_state[key] if x in options]  # the address may name blocks or roles this model lacks
        st.session_state[key] = known if known or not st.session_state[key] else fallback
    c1, c2 = st.columns(2)
    chosen_blocks = c1.multiselect("Blocks", blocks, key="ps_sens_blocks", help="Each chosen block's layers are measured.")
    chosen_roles = c2.multiselect("Layer roles", roles, key="ps_sens_roles", help="q, k, v, attention out, FFN in, FFN out: which layers of each block.")
    every = set(chosen_blocks) == set(blocks) and set(chosen_roles) == set(roles)
    st.button("Measure every layer", key="btn_sens_all", on_click=_measure_all, args=(blocks, roles), disabled=every, width="content",
              help="All blocks and roles: the full run (its time is estimated below once chosen).")  # its own line: a third column cut it at 800 px
    return [r for r in layer_rows if (r.block is None or r.block in chosen_blocks) and layer_role(r.name)[1] in chosen_roles]


def results(s, rows: list, sparsities: list, metric: str, layer_rows) -> None:
    """The most sensitive layers at a chosen sparsity and the suggested per-layer allocation."""
    df = pd.DataFrame([r for r in rows if r["layer"] != "-"])
    dense = [r for r in rows if r["layer"] == "-"][0]

    signal = ranking(s, df, dense, sparsities, metric)
    alloc = allocation(s, rows, layer_rows, signal)
    measurement_downloads(rows, signal, alloc)


ui.guarded(render)
