"""Stability: is this mask decided, or a coin flip? The request pruned R times, R calibration draws or seeds."""

import pandas as pd
import streamlit as st

from app import downloads, ui
from app import stability as S
from app.charts import stability as SC
from app import resources
from app.style import metric_text, shown_value

INTRO = (
    "One calibration draw gives one mask. Draw **R** calibration sets (disjoint slices of the calibration data, or seeded "
    "resamples), or R seeds for a seeded method, prune once per draw at the sidebar's sparsity and granularity, and see how "
    "much of the mask, and which of the model's answers, depend on the draw. A weight kept by every draw or pruned by every "
    "draw is *decided*; one kept by some draws only is *undecided*. A *flip* is an evaluation item whose answer changes "
    "(a classifier's label, a language model's top-1 next token)."
)
KINDS = {"calib": "Disjoint calibration slices", "resample": "Seeded calibration resamples", "seed": "Seeds (one calibration set)"}


def choice(s) -> S.StabilityChoice:
    methods = S.stable_methods()
    controls = ui.wrap_row()
    c1, c2, c3 = ui.tile(controls, 320), ui.tile(controls, 150), ui.tile(controls, 260)
    ui.default("ps_stab_methods", [m for m in dict.fromkeys(["magnitude", "wanda", s.method]) if m in methods])
    ui.default("ps_stab_draws", 8)
    ui.default("ps_stab_kind", "calib")
    st.session_state["ps_stab_methods"] = [m for m in st.session_state["ps_stab_methods"] if m in methods]  # the address may name others
    st.session_state["ps_stab_draws"] = min(16, max(2, int(st.session_state["ps_stab_draws"])))
    if st.session_state["ps_stab_kind"] not in KINDS:
        st.session_state["ps_stab_kind"] = "calib"
    chosen = c1.multiselect("Methods", list(methods), format_func=lambda n: methods[n].label, key="ps_stab_methods", help="Several methods at the same budget are ranked by stability.")
    draws = c2.number_input("Draws R", min_value=2, max_value=16, key="ps_stab_draws", help="Each draw is one prune and one evaluation.")
    kind = c3.selectbox("What changes between draws", list(KINDS), format_func=KINDS.get, key="ps_stab_kind")
    return S.StabilityChoice(tuple(chosen), int(draws), str(kind))


def render() -> None:
    s, loaded = ui.opening("Stability", INTRO)
    c = choice(s)
    if not c.methods:
        st.info("Choose at least one method.")
        return
    data = resources.task_data(s, loaded)
    if data is None:
        st.warning("This model is a bare encoder: it has no task metric, so its answers cannot flip.")
        return
    ui.data_note(data)
    st.caption(
        f"Each draw takes {s.request.calib_samples} calibration samples (the sidebar's calibration size); disjoint slices need "
        f"{c.draws} x {s.request.calib_samples} distinct samples. Methods without calibration and without a seed (magnitude) "
        "give the same mask every draw: the check that the rest is not noise."
    )
    ans = S.stability(s, loaded, data, c)
    idle = f"Press the button to prune {c.draws} times per method and evaluate each pruned model on {s.eval_size} items."
    job, stale = ui.run_view(ans, "Run stability", "btn_stab_run", idle, draw=draw_partial, stale=True)
    if job is not None:
        if stale:
            st.caption("Out of date: computed at earlier settings.")
        show(loaded, job.value)


def draw_partial(box, rows) -> None:
    """While it runs: the draws finished so far."""
    if not rows:
        box.info("No draw finished yet.")
    elif isinstance(rows, list) and rows and isinstance(rows[0], dict):
        table, config = ui.shown_table(pd.DataFrame(rows)[["method", "draw", "metric", "value", "flips"]], str(rows[0].get("metric", "")))
        box.dataframe(table, hide_index=True, column_config=config)
    else:
        box.empty()


def show(loaded, results) -> None:
    summary(results)
    st.subheader("Per layer: how alike are the draws' masks?")
    ui.chart(SC.jaccard_bars(SC.jaccard_frame(results)))
    st.caption(
        "Bars: the mean Jaccard overlap of the kept weights over every pair of draws (1 = every draw keeps the same weights); "
        "lines: plus and minus its standard deviation over the pairs. Random masks at sparsity s overlap by (1-s)/(1+s) "
        "(1/3 at 50%): a bar near that is a coin flip."
    )
    layer_picture(results)
    draws_section(results)
    flips_section(results)
    downloads_section(loaded, results)


def summary(results) -> None:
    for res in results:
        o, m, b = res.overall, res.metric, res.between
        metric = res.rows[0]["metric"]
        st.markdown(f"**{res.request.method}**: {res.verdict}.")
        cells = ui.metric_row(5)
        cells[0].metric("Mean Jaccard between draws", f"{o['jaccard']:.3f}", help=f"all layers together; sd {o['jaccard_sd']:.4f}, lowest pair {o['jaccard_min']:.4f}")
        cells[1].metric("Undecided weights", ui.pct(o["undecided"]), help=f"kept by all draws {o['kept_by_all']:.2%}, pruned by all {o['pruned_by_all']:.2%}")
        cells[2].metric(
            f"Mean {metric} of the draws", metric_text(metric, m["mean"]),
            help=f"95% t interval of the mean [{metric_text(metric, m['mean_ci_low'])}, {metric_text(metric, m['mean_ci_high'])}]; "
            f"sd {m['sd']:.4g}; {m['pairs_beyond_noise']} of {m['pairs']} pairs of draws differ beyond evaluation noise (paired 95% interval excludes 0)",
        )
        flips = [r["flips"] for r in res.rows]
        span = ui.pct(flips[0]) if min(flips) == max(flips) else f"{min(flips):.1%}-{max(flips):.1%}"
        cells[3].metric("Answers changed vs dense", span, help=f"share of the {res.rows[0]['items']:,} items whose answer differs from the dense model's, lowest and highest draw")
        cells[4].metric("Answers changed between draws", ui.pct(b["flips_mean"]), help=f"mean over the {len(b['pairs'])} pairs of draws; range {b['flips_min']:.2%}-{b['flips_max']:.2%}")
    if len(results) > 1:
        from pruning.analysis.stability import rank_methods

        st.markdown("**Ranked by stability** (highest mean Jaccard first, at the same sparsity and granularity):")
        ranked = pd.DataFrame(rank_methods(results))
        metric = str(ranked["metric"].iloc[0])
        if metric == "accuracy":  # in points, as the draws' chart below
            ranked = ranked.assign(**{c: ranked[c].map(lambda v: shown_value(metric, v)) for c in ("metric_mean", "metric_sd")})
        config = {c: st.column_config.NumberColumn(f"{c} (points)", format="%.2f") for c in ("metric_mean", "metric_sd")} if metric == "accuracy" else {}
        st.dataframe(ranked, hide_index=True, column_config=config)


def layer_picture(results) -> None:
    st.subheader("One layer: which weights are decided?")
    methods = [r.request.method for r in results]
    row = ui.wrap_row()
    c1, c2, c3 = ui.tile(row, 200), ui.tile(row, 420), ui.tile(row, 240)
    method = c1.selectbox("Method", methods, key="ps_stab_method") if len(methods) > 1 else methods[0]
    res = results[methods.index(method)]
    names = [r["layer"] for r in res.layers]
    if st.session_state.get("ps_stab_layer") not in names:  # the least decided layer first
        st.session_state["ps_stab_layer"] = min(res.layers, key=lambda r: (r["jaccard"], r["layer"]))["layer"]
    layer = c2.selectbox("Layer", names, key="ps_stab_layer")
    value = c3.radio("Colour", ["keep", "undecided"], format_func={"keep": "keep frequency", "undecided": "undecided share"}.get, key="ps_stab_value", horizontal=True)
    info = res.layers[names.index(layer)]
    block = tuple(info["picture"]["block"])
    pics = ui.wrap_row()
    left, right = ui.tile(pics, 460), ui.tile(pics, 380)
    ui.chart(SC.keep_heatmap(SC.picture_frame(info, value), block, value, title=ui.short_layer(layer)), left)
    ui.chart(SC.keep_histogram(SC.histogram_frame(info), title=f"{len(res.rows)} draws"), right)
    ui.chart(SC.row_lines(SC.row_frame(info)), right)
    st.caption(
        f"{ui.short_layer(layer)}: mean Jaccard {info['jaccard']:.4f} (lowest pair {info['jaccard_min']:.4f}); kept by all draws "
        f"{info['kept_by_all']:.2%}, pruned by all {info['pruned_by_all']:.2%}, undecided {info['undecided']:.2%}. "
        + ("Each cell is one weight." if block == (1, 1) else f"Each cell is the mean over a block of {block[0]}x{block[1]} weights.")
    )


def draws_section(results) -> None:
    st.subheader("The model: the metric of each draw")
    df = SC.draws_frame(results)
    metric = str(df["metric"].iloc[0])
    ui.chart(SC.draw_points(df, metric))
    st.caption("Each draw's metric with its 95% interval (evaluation noise); the spread between the points is what the draw changes.")
    table, config = ui.shown_table(pd.DataFrame([row for r in results for row in r.rows]), metric)  # in points, as the chart above
    st.dataframe(table, hide_index=True, column_config=config)


def flips_section(results) -> None:
    st.subheader("The examples that flip most often")
    for res in results:
        if not res.fragile:
            st.caption(f"{res.request.method}: no item's answer differs from the dense model's in any draw.")
            continue
        st.markdown(f"**{res.request.method}**: items whose answer differs from the dense model's in the most draws (of {len(res.rows)}).")
        st.dataframe(pd.DataFrame(res.fragile).drop(columns=["draws"]), hide_index=True)
    st.caption(
        "flipped: in how many draws the answer differs from the dense model's; to_wrong: of those, how many go from right to "
        "wrong; to_right: wrong to right; answers: what the pruned draws answer instead, most common first."
    )


def downloads_section(loaded, results) -> None:
    from pruning.analysis.stability import draw_rows, layer_table, report

    row = ui.wrap_row()
    c1, c2, c3 = (ui.tile(row, 260) for _ in range(3))
    downloads.json_button(c1, report(loaded.name, results), "stability.json", "stab_json", "Download stability.json")
    downloads.table_button(c2, pd.DataFrame(layer_table(results)), "stability.csv", "stab_layers", "Download stability.csv (layers)")
    downloads.table_button(c3, pd.DataFrame(draw_rows(results)), "stability.draws.csv", "stab_draws", "Download stability.draws.csv")
    st.caption("The files `python -m pruning stability` writes.")


ui.guarded(render)
