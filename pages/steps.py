"""Method steps: what the trained methods do over time, drawn while they run and after.

A method says how its steps are shown (``Method.steps_view``); this page has one drawer
per kind and no method names. "schedule" (MGPP, GMP): the cubic sparsity schedule, the same
sample of weights at every snapshot (histogram, the prior's two components if the method
has one, a fitted Gaussian mixture), the held-out metric and the losses. "stages" (SDS):
the weights and the metric after each of its steps, and the per-layer reconstruction
errors. "candidates" (randomized selection): per stage, each candidate's score and overlap.
"""

import pandas as pd
import streamlit as st

from app import resources, runs, sidebar, style, ui
from app.charts import steps as charts
from app.charts.candidates import candidate_bars
from app.charts.common import histogram_frame
from app.charts.weights import weight_histogram
from app import intervals as I
from app.docs import claim_lines, claim_ref
from pruning.procedures import views as V
from pruning.procedures.mgpp import schedule_curve, schedule_of

BINS, GRID_BINS = 60, 40
MIXTURE_CHOICES = [2, 1, 3, 4, "bic"]
PRIOR = ("lam", "v0", "v1")  # a method with these parameters fine-tunes with a spike-and-slab prior


def claim_verdict(anchor: str) -> None:
    """Does it beat its baseline at the paper's own budget? The measured lines, and where the verdict is."""
    lines = claim_lines(anchor)
    with st.expander("Measured at the paper's own budget", expanded=False):
        for line in lines or ["no point measured in this checkout"]:
            st.text(line)
        st.caption(f"Settings, every point and our verdict: {claim_ref(anchor)}")


def stepwise_methods() -> dict:
    """The registered methods whose steps this view draws (``Method.steps_view`` set)."""
    from pruning.catalog import all_methods

    return {n: m for n, m in all_methods().items() if m.steps_view}


def pick_one(s) -> None:
    """The sidebar's method prunes in one shot: say so and offer the methods that have steps."""
    st.title("Method steps")
    st.markdown(
        "Some methods do not prune in one shot: they fine-tune the model while a schedule prunes more and more "
        "weights, or prune, re-densify and prune again, or sample several masks and keep the best after a short "
        "fine-tune. This view draws what each step did, while the method runs and after."
    )
    st.info(f"The method in the sidebar, **{runs.display(s.method)}**, prunes in one shot: it has no steps to show. Pick one that has:")
    methods = stepwise_methods()
    for col, (name, m) in zip(st.columns(len(methods)), methods.items()):
        col.button(m.label, key=f"btn_steps_pick_{name}", on_click=sidebar.choose_method, args=(name,), help=m.summary, width="stretch")


def render() -> None:
    s = ui.settings()
    method = resources.method_info(s.method)
    if not method.steps_view:
        pick_one(s)
        return
    changed = ", ".join(f"{k}={v}" for k, v in s.params) or "defaults"
    s, loaded = ui.opening("Method steps", extra=f"parameters: {changed} (sidebar, under the method)")
    params = dict(s.request.param_dict)
    st.caption(method.summary + " Budget and schedule: the method's parameters in the sidebar.")
    if method.claim:
        claim_verdict(method.claim)
    ui.default("ps_steps_k", 2)
    draw = drawer(method.steps_view, params, s)
    live = st.empty()

    def draw_live(entries: list) -> None:
        with live.container():
            st.caption("Drawn live: each step appears as the method records it.")
            if not entries:
                st.caption("Waiting for the first step ...")
            else:
                draw(entries, None, None)

    mask_set = resources.masks(s, loaded, on_partial=draw_live)
    live.empty()
    draw(None, mask_set.info, mask_set)
    ui.links(("overview", "Test-set metric of the result"), ("weights", "Every layer's weights"), ("masks", "The final masks"))


def drawer(view: str, params: dict, s):
    """``draw(entries, info, done)`` for a steps view: live (the ``entries`` so far; no ``info``, and
    no widgets since ``done`` is None) or final (``info`` and ``done``, the finished run's MaskSet)."""
    if view == "schedule":
        prior = {k: params[k] for k in PRIOR} if all(k in params for k in PRIOR) else None
        schedule = schedule_of(params, s.request.sparsity, str(s.request.granularity))

        def draw(entries, info, done):
            if info is None:
                draw_schedule(entries, schedule, prior, done=None, seed=s.seed)
            else:
                draw_schedule(info["history"], info["schedule"], info.get("prior"), done=done, seed=s.seed)

    elif view == "candidates":

        def draw(entries, info, done):
            draw_candidates(entries if info is None else info["stages"], info, params)

    else:  # "stages"

        def draw(entries, info, done):
            draw_stages(entries if info is None else info["steps"], info, done=done, seed=s.seed)

    return draw


# ---------------------------------------------------------------- "schedule" (MGPP, GMP)
def draw_schedule(history: list, schedule: dict, prior: dict | None, done, seed: int) -> None:
    """Schedule, weight snapshots and training curves; ``done`` (the finished MaskSet) is None while the run is live (no widgets)."""
    last = history[-1]
    c1, c2, c3, c4 = ui.metric_row(4)
    c1.metric("Snapshot", f"step {last['step']} of {schedule['steps']}")
    c2.metric("Sparsity (exact zeros)", ui.pct(last["sparsity"]), help=f"target {schedule['s_f']:.1%}; the cubic schedule's value now: {last['target_sparsity']:.1%}")
    metric = last.get("metric") or "metric"
    value = last.get("value")
    shown = "n/a" if value is None else (ui.pct(value) if metric == "accuracy" else f"{value:,.2f}")
    where = "on a held-out slice of the TRAINING data" + (f": {I.metric_text(last, held_out=True)}" if "ci_low" in last else "")
    c3.metric(f"Held-out {metric}", shown, help=where)
    if prior is not None and last.get("prior_threshold") is not None:
        c4.metric(
            "Prior threshold w*",
            f"{last['prior_threshold']:.3g}",
            help="from the prior's own lam_t, v0, v1: weights inside ±w* are more likely under the spike, and the prior pulls them to zero "
            "(not the mixture crossing w_gmm of the Weights view, which is fitted to the weights)",
        )
    else:
        c4.metric("Training loss", "n/a" if last.get("loss") is None else f"{last['loss']:.3f}")

    st.subheader("Sparsity schedule")
    curve = pd.DataFrame(schedule_curve(schedule, prior["lam"] if prior else None))
    reached = pd.DataFrame(V.reached_sparsity(history) + V.spike_share(history))
    marks = pd.DataFrame([{"step": schedule["t0"], "label": "t0: first pruning"}, {"step": schedule["t1"], "label": "t1: last pruning, mask frozen"}])
    ui.chart(charts.schedule_chart(curve, reached, marks))
    st.caption(
        f"Cubic schedule from s_i = {schedule['s_i']:.0%} at t0 = {schedule['t0']} to s_f = {schedule['s_f']:.0%} at t1 = {schedule['t1']}, "
        f"pruning every {schedule['interval']} steps in between (magnitude pruning at the sidebar's granularity; the paper prunes globally). Until t1 the pruned weights "
        "are only zeroed: the next optimizer step moves them again, so the exact zeros measured at a snapshot (diamonds) fall back "
        "between prunings; from t1 the mask is frozen and re-applied every step."
        + (
            " Circles: the share of the sampled weights inside the prior's spike (|w| < w*, the prior threshold), where its pull towards zero is strong: "
            "compare it with the diamonds to see how many regrowing weights the prior holds near zero. The slab weight lam is "
            "annealed linearly to 0.001 lam between t0 and t1, which widens ±w*."
            if prior
            else ""
        )
    )

    snapshots(history, prior, done, seed)


def snapshots(history: list, prior: dict | None, done, seed: int) -> None:
    """The same sampled weights at every snapshot (one chosen closer: a slider once the run is done, then all of them) and the training curves."""
    last = history[-1]
    st.subheader("The same weights over training")
    limit = V.common_limit([h["sample"] for h in history])
    steps = [h["step"] for h in history]
    if done is None:
        chosen = last
    else:
        if st.session_state.get("ps_steps_snapshot") not in steps:
            st.session_state["ps_steps_snapshot"] = steps[-1]
        c1, c2 = st.columns([3, 1])
        step = c1.select_slider("Snapshot at step", options=steps, key="ps_steps_snapshot")
        c2.selectbox("Mixture components", MIXTURE_CHOICES, key="ps_steps_k", format_func=lambda v: "chosen by BIC" if v == "bic" else str(v))
        chosen = history[steps.index(step)]
    k = st.session_state.get("ps_steps_k", 2)
    lines = []
    if prior is not None and chosen.get("prior_threshold"):
        lines = [{"x": x, "label": style.PRIOR_THRESHOLD} for x in (-chosen["prior_threshold"], chosen["prior_threshold"])]
    prior_now = None if prior is None else {**prior, "lam": chosen.get("lambda") or prior["lam"]}
    _snapshot_chart(chosen["sample"], limit, f"step {chosen['step']}", done, k, seed, prior_now, lines)
    labels = [f"step {h['step']}" for h in history]
    ridges = pd.DataFrame(V.ridge_rows([(x, h["sample"]) for x, h in zip(labels, history)], limit, GRID_BINS))
    spike = last.get("prior_threshold") if prior is not None else None
    ui.chart(charts.ridgeline(ridges, labels, spike=spike))
    st.caption(
        f"Stacked histograms over training (first snapshot on top): the same {len(last['sample']):,} randomly chosen targeted weights at every "
        f"snapshot, on one axis (±{limit:.3g}; rarer values in the edge bins), each ridge scaled to its own tallest bar of kept weights. "
        "Grey: exactly zero (pruned), its bar cut at the ridge's height."
        + (f" Shaded: the prior's spike |w| < w* at the last snapshot (w* = {spike:.3g})." if spike else "")
        + " Above, the snapshot you pick: curves of a Gaussian mixture fitted to the non-zero weights"
        + (", and the prior's spike and slab (the spike, variance v0, is a near-vertical line at 0, cut at the top)" if prior else "")
        + ", in expected counts per bin."
    )

    st.subheader("Training")
    curves = pd.DataFrame(V.training_curves(history))
    if len(curves):
        row = ui.wrap_row()
        for chart in charts.training_charts(curves):
            ui.chart(chart, ui.tile(row, 460))
    with st.expander("Every snapshot as a table"):
        table, config = _table_in_points(pd.DataFrame(V.history_rows(history)))
        st.dataframe(table, hide_index=True, width="stretch", column_config=config)


def _table_in_points(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Rows with a ``metric`` column in the unit the charts above draw them (accuracy in points, said in the header)."""
    known = rows["metric"].dropna() if "metric" in rows.columns else pd.Series([], dtype=object)
    return ui.shown_table(rows, str(known.iloc[0]) if len(known) else "")


def _snapshot_chart(sample, limit: float, title: str, done, k, seed: int, prior: dict | None, lines: list) -> None:
    """One sample's histogram with a mixture fitted to its non-zero weights (and the prior's curves); the fit of a
    finished run (``done``) is computed once per snapshot (``title``)."""
    counts = V.sample_histogram(sample, limit, BINS)
    width = 2 * limit / BINS
    x = V.curve_grid(limit)
    if done is None:  # live: not cached, the sample is still changing
        fit = V.nonzero_fit(sample, k, seed)
    else:
        fit = resources.of_masks(done, f"fit of {title}, k={k}, seed {seed}", lambda: V.nonzero_fit(sample, k, seed))
    rows = []
    if fit is not None:
        nonzero = int(sum(1 for v in sample if v != 0))
        rows += [{**r, "component": f"fit: {r['component']}"} for r in fit.curves(x, scale=nonzero * width)]
    if prior is not None:
        rows += V.prior_curves(prior["lam"], prior["v0"], prior["v1"], x, scale=len(sample) * width)
    kept_top = float(max(counts["kept"]))
    y_max = 1.3 * kept_top if kept_top > 0 else float(max(counts["pruned"])) or 1.0
    chart = weight_histogram(histogram_frame(counts), pd.DataFrame(rows), pd.DataFrame(lines), title=title, y_max=y_max)
    ui.chart(chart)
    zeros = int(sum(counts["pruned"]))
    if zeros:
        st.caption(f"{zeros:,} of the {len(sample):,} sampled weights are exactly zero: the grey bar at 0 is cut at the top so the rest stays readable.")


# ---------------------------------------------------------------- "candidates" (randomized selection)
def draw_candidates(stages: list, info: dict | None, params: dict) -> None:
    """Per stage: each candidate's selection score and overlap with the deterministic mask, and
    (early selection) its held-out metric during the short fine-tune."""
    last = stages[-1]
    det = last.get("deterministic_metric") or {}
    metric = det.get("metric", "metric")
    fmt = ui.pct if metric == "accuracy" else (lambda v: f"{v:,.2f}")
    early = last.get("selection") == "early"
    c1, c2, c3, c4 = ui.metric_row(4)
    c1.metric("Stage", f"{len(stages)} of {len(info['schedule']) if info else '...'}", help="sparsity rises stage by stage, each starting from the previous winner")
    c2.metric("Sparsity of this stage", ui.pct(last["sparsity"]))
    c3.metric("Chosen candidate", f"c{last['chosen'] + 1} of {len(last.get('selection_scores') or [])}")
    if early and last.get("winner_after_fine_tuning"):
        winner = last["winner_after_fine_tuning"]
        c4.metric(f"Winner after fine-tuning ({metric})", fmt(winner["value"]), help=f"held-out slice of the TRAINING data: {I.metric_text(winner, held_out=True)}")
    elif det.get("value") is not None:
        c4.metric(f"Deterministic mask ({metric})", fmt(det["value"]), help=f"the criterion's own mask, no sampling, no training: {I.metric_text(det, held_out=True)}")
    for i, stage in enumerate(stages):
        if len(stages) > 1:
            st.subheader(f"Stage {i + 1}: {stage['sparsity']:.1%} sparsity")
        rows = pd.DataFrame(V.candidate_rows(stage))
        row = ui.wrap_row()
        left, right = ui.tile(row, 440), ui.tile(row, 440)
        title = "early-evaluation score" if stage.get("selection") == "early" else f"held-out {metric}, no training"
        ui.chart(candidate_bars(rows, "score", title, ".4g", metric=metric), left)
        if rows["overlap"].notna().all():
            # at least 0.05 of axis, as in Random candidates: candidates that differ in the fifth decimal must not look apart
            ui.chart(candidate_bars(rows, "overlap", "overlap with the deterministic mask", ".3f", min_span=0.05), right)
        curves = pd.DataFrame(V.early_curve_rows(stage))
        if len(curves):
            ui.chart(charts.early_curves_chart(curves, metric, params.get("n_last")))
    st.caption(
        "Each candidate is a mask sampled around the base criterion's scores (the Random candidates view shows the sampling). "
        + (
            f"Early selection fine-tunes every candidate for {params.get('steps')} steps with its mask fixed, evaluates it every "
            f"{params.get('eval_every')} steps on held-out TRAINING data and scores it by the mean of the last {params.get('n_last')} "
            f"evaluations; the winner (red) is then fine-tuned for {params.get('final_steps')} more steps."
            if early
            else "Cheap selection scores each candidate's masked model on held-out TRAINING data without any training; the best (red) is kept."
        )
    )


# ---------------------------------------------------------------- "stages" (SDS)
def draw_stages(steps: list, info: dict | None, done, seed: int) -> None:
    """Weights and metric after each stage; with ``info`` (finished run) also the per-layer errors."""
    rows = pd.DataFrame(V.sds_stage_rows(steps))
    labels = list(rows["stage"])
    c = ui.metric_row(len(V.SDS_STAGES))
    for col, r in zip(c, rows.to_dict("records")):
        value = r["value"]
        shown = "" if value is None else (f" · {ui.pct(value)}" if r["metric"] == "accuracy" else f" · ppl {value:,.1f}")
        detail = f"; held-out {I.metric_text(r, held_out=True)}" if shown and pd.notna(r.get("ci_low")) else (f"; held-out {r['metric']}{shown}" if shown else "")
        col.metric(r["stage"], f"{r['zero_fraction']:.1%} zeros", help=r["what"] + detail)

    st.subheader("Weights after each step")
    limit = V.common_limit([x["sample"] for x in steps])
    ridges = pd.DataFrame(V.ridge_rows([(x["stage"], x["sample"]) for x in steps], limit, GRID_BINS))
    ui.chart(charts.ridgeline(ridges, labels))
    st.caption(
        f"Stacked histograms, one ridge per step (top to bottom): the same {len(steps[0]['sample']):,} randomly chosen targeted weights "
        f"after each step, on one axis (±{limit:.3g}), each ridge scaled to its own tallest bar of kept weights. "
        "Grey: exactly zero. The dense step lets every weight move again (L1 keeps it sparse-friendly), so its ridge has few zeros."
    )
    if done is not None:
        ui.default("ps_steps_stage", labels[-1])
        if st.session_state.get("ps_steps_stage") not in labels:
            st.session_state["ps_steps_stage"] = labels[-1]
        c1, c2 = st.columns([3, 1])
        stage = c1.radio("Look closer at", labels, key="ps_steps_stage", horizontal=True)
        c2.selectbox("Mixture components", MIXTURE_CHOICES, key="ps_steps_k", format_func=lambda v: "chosen by BIC" if v == "bic" else str(v))
        chosen = steps[labels.index(stage)]
        _snapshot_chart(chosen["sample"], limit, stage, done, st.session_state.get("ps_steps_k", 2), seed, None, [])

    metric_rows = rows.dropna(subset=["value"])
    st.subheader("Metric after each step")
    if len(metric_rows):
        metric = metric_rows["metric"].iloc[0]
        cols = ["stage", "value"] + [c for c in ("ci_low", "ci_high") if c in metric_rows.columns]
        ui.chart(charts.stage_bars(metric_rows[cols], metric, order=labels))
        held = (info or {}).get("held_out") or {}
        st.caption(f"Held-out slice of the TRAINING data ({held.get('examples', '?')} examples); the test-set figure of the final model is on the Overview.")
    else:
        st.caption("Not tracked in this run (parameter track_metric is off).")
    table, config = _table_in_points(rows)
    st.dataframe(table, hide_index=True, width="stretch", column_config={**config, "zero_fraction": st.column_config.NumberColumn(format="percent")})

    if info is not None:
        draw_layer_errors(info)


def draw_layer_errors(info: dict) -> None:
    """A finished SDS run: how many layers the adjustment changed or skipped (its rule), and each layer's error."""
    st.subheader("Per-layer reconstruction error")
    n = len(info["layers"])
    c1, c2, c3 = ui.metric_row(3)
    rule = info["adjust_rule"]
    c1.metric("Layers the soft-mask adjustment changed", f"{info['layers_adjusted']} of {n}", help=f"adjust_rule = {rule}")
    c2.metric(
        "Layers where the adjustment was skipped",
        f"{info['layers_adjustment_skipped']} of {n}",
        help="the paper's rule: where the second pruning already beats the first, its weights are kept as they are",
    )
    c3.metric("Layers where the second pruning beats the first", f"{info['layers_where_second_pruning_beats_first']} of {n}")
    errors = pd.DataFrame(V.sds_layer_errors(info["layers"]))
    errors["layer"] = errors["layer"].map(ui.short_layer)
    ui.chart(charts.layer_error_chart(errors, order=[ui.short_layer(x) for x in info["layers"]]))
    st.caption(
        "Relative error of each layer's output against the dense layer, on the re-pruned model's inputs: after the first "
        "one-shot pruning, after the second one (on the re-densified weights), and after the adjustment (final). "
        "Lower is better; SDS helps where the second and final points sit below the first."
    )


ui.guarded(render)
