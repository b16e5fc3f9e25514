"""Weights: a layer's weight histogram, kept and pruned, with a fitted Gaussian mixture and the threshold."""

import numpy as np
import pandas as pd
import streamlit as st

from app import downloads, resources, runs, style, ui
from app.charts import weights as charts
from app.charts.common import histogram_frame
from pruning.analysis.distribution import histogram, score_picture, split_counts, to_numpy
from pruning.loading.models import block_role_order, layer_role
from pruning.registry import ScoreView

BINS = 80
GRID_ON_UP_TO = 48  # layers; a bigger model (SmolLM2: 210) shows the small multiples only when asked, a few blocks at a time
BLOCKS_PER_PAGE = 4
PANEL_WIDTH = 190
RANGE_QUANTILE = 0.99  # the histogram spans +-(this quantile of |w|), where the mass is; the rarer outliers go to the edge bins (said under it)


def render() -> None:
    s, loaded = ui.opening("Weights")
    names = [r.name for r in resources.layers(s, loaded)]
    controls = ui.wrap_row()
    c1, c2, c3, c4 = (ui.tile(controls, w) for w in (420, 170, 140, 190))
    layer = ui.layer_picker(c1, names)
    log_count = c2.radio("Count scale", ["linear", "log"], horizontal=True, key="ps_weights_scale") == "log"
    hide_zeros = c3.toggle("Hide zeros", key="ps_weights_hide", help="After pruning, the pruned weights are zeros; hiding them shows what is left.")
    k = c4.selectbox("Mixture components", ["bic", 1, 2, 3, 4], key="ps_weights_k", format_func=lambda v: "chosen by BIC" if v == "bic" else str(v))

    mask_set = resources.masks(s, loaded)
    mask = mask_set.masks[layer]
    values, values_key = resources.layer_values(s, loaded, mask_set, layer)
    if values_key != "dense":
        st.caption(f"{runs.display(mask_set.method)} changed the kept weights: the histogram shows the weights after its update.")

    binned = resources.binned(s, loaded, layer, values_key, values, BINS, RANGE_QUANTILE)
    counts = split_counts(binned, mask, values, hide_zeros=hide_zeros)
    n_kept = int(np.count_nonzero(to_numpy(mask)))
    layer_sparsity = 1 - n_kept / mask.numel()
    threshold = resources.threshold(s, layer, values_key, values, layer_sparsity)
    fit = resources.mixture(s, loaded, layer, k, values_key, values)
    spike = resources.spike_slab(s, loaded, layer, values_key, values)

    m1, m2, m3, m4 = ui.metric_row(4)
    m1.metric("Pruned in this layer", f"{mask.numel() - n_kept:,}", help=f"of {mask.numel():,} weights")
    m2.metric("Layer sparsity", f"{layer_sparsity:.1%}")
    m3.metric("Magnitude threshold |w|", f"{threshold:.4g}", help="the |w| below which this share of weights lies: the exact cut of per-layer magnitude pruning")
    m4.metric(
        "Mixture crossing w_gmm",
        "none" if spike.w_gmm is None else f"{spike.w_gmm:.4g}",
        help="where the spike and slab of a two-Gaussian mixture FITTED to these weights are equally likely "
        "(not MGPP's prior threshold w*, which comes from the prior's fixed lam, v0, v1: see Method steps)",
    )
    ui.one_pass_note(s, loaded, mask_set, layer)

    mags = np.abs(to_numpy(values))
    outside = (int(np.count_nonzero(mags > binned.edges[-1])), float(mags.max()))
    cut = is_magnitude_cut(mags, to_numpy(mask))
    draw_histogram(layer, binned, counts, mask.numel(), fit, spike, threshold, log_count, hide_zeros, outside, cut)
    fit_tables(fit, spike)
    score_section(s, loaded, layer)
    small_multiples(s, loaded, mask_set, hide_zeros)


def is_magnitude_cut(mags, kept) -> bool:
    """Whether the mask keeps exactly the largest |w| (then ``t`` is its threshold; otherwise the mask has none on this axis)."""
    kept = np.asarray(kept, dtype=bool).reshape(mags.shape)
    if kept.all() or not kept.any():
        return True
    return bool(mags[kept].min() >= mags[~kept].max())


def draw_histogram(layer: str, binned, counts, n: int, fit, spike, threshold: float, log_count: bool, hide_zeros: bool,
                   outside: tuple = (0, 0.0), cut: bool = True) -> None:
    """The layer's histogram, kept and pruned, with the mixture's curves, the threshold (or, for a mask that is no
    cut in |w|, the |w| cut that removes as many, marked as such) and the mixture crossing w_gmm."""
    width = float(binned.edges[1] - binned.edges[0])
    centers = np.linspace(binned.edges[0], binned.edges[-1], 241)
    curves = pd.DataFrame(fit.curves(centers, scale=n * width))
    label = style.THRESHOLD if cut else style.EQUIVALENT_CUT
    lines = [{"x": t, "label": label} for t in (-threshold, threshold)] if threshold > 0 else []
    if spike.w_gmm is not None:
        lines += [{"x": c, "label": style.MIXTURE_CROSSING} for c in (-spike.w_gmm, spike.w_gmm)]
    chart = charts.weight_histogram(histogram_frame(counts), curves, pd.DataFrame(lines), log_count=log_count, title=layer)
    ui.chart(chart)
    st.caption(
        f"{n:,} weights in {BINS} bins of width {width:.3g} over ±{binned.edges[-1]:.3g}, the {RANGE_QUANTILE:.0%} quantile of |w|: "
        f"zoomed to where the mass is. Outside it: {outside[0]:,} weights ({outside[0] / max(1, n):.2%}), reaching ±{outside[1]:.3g}, "
        "counted in the two outermost bins. Blue: kept, grey: pruned"
        + (" (hidden)" if hide_zeros else "")
        + f". Curves: a {fit.k}-component Gaussian mixture fitted to {fit.n_fitted:,} sampled weights, in expected counts per bin. "
        "The mixture crossing ±w_gmm is where a weight is equally likely under the narrow (spike) and wide (slab) zero-mean "
        "Gaussian of a two-component fit to these weights; MGPP's prior threshold ±w* (Method steps) is the same idea for the "
        "prior's fixed parameters, usually far narrower."
    )


def fit_tables(fit, spike) -> None:
    """The mixture's components (and BIC) beside the spike-and-slab fit."""
    left, right = st.columns([1, 1])
    with left:
        st.markdown("**Mixture components**")
        comp = pd.DataFrame([{"component": i + 1, "weight": c.weight, "mean": c.mean, "std": c.std} for i, c in enumerate(fit.components)])
        st.dataframe(
            comp,
            hide_index=True,
            column_config={
                "weight": st.column_config.NumberColumn(format="%.3f"),
                "mean": st.column_config.NumberColumn(format="%.2e"),
                "std": st.column_config.NumberColumn(format="%.3e"),
            },
        )
        if len(fit.bic) > 1:
            st.caption("BIC by number of components (lower is better): " + ", ".join(f"{n}: {b:,.0f}" for n, b in fit.bic.items()))
    with right:
        st.markdown("**Spike and slab (two zero-mean Gaussians)**")
        st.dataframe(
            pd.DataFrame(
                [
                    {"part": "spike (narrow)", "weight": 1 - spike.lam, "std": spike.v0**0.5},
                    {"part": "slab (wide)", "weight": spike.lam, "std": spike.v1**0.5},
                ]
            ),
            hide_index=True,
            column_config={"weight": st.column_config.NumberColumn(format="%.3f"), "std": st.column_config.NumberColumn(format="%.3e")},
        )


def small_multiples(s, loaded, mask_set, hide_zeros: bool) -> None:
    """Every layer's histogram, in block order and by role, as panels that wrap to the window's width."""
    downloads.mask_set_buttons(st, loaded, mask_set, key="weights")

    st.subheader("All layers")
    rows = block_role_order(resources.layers(s, loaded))
    ui.default("ps_weights_grid", len(rows) <= GRID_ON_UP_TO)
    if not st.toggle(f"Show every layer (small multiples, {len(rows)} layers)", key="ps_weights_grid"):
        return
    blocks = sorted({r.block for r in rows if r.block is not None})
    if len(rows) > GRID_ON_UP_TO and blocks:
        starts = blocks[::BLOCKS_PER_PAGE]
        labels = {b: f"blocks {b}-{min(b + BLOCKS_PER_PAGE - 1, blocks[-1])}" for b in starts}
        if st.session_state.get("ps_weights_grid_page") not in starts:
            st.session_state["ps_weights_grid_page"] = starts[0]
        first = st.select_slider("Blocks", options=starts, format_func=labels.get, key="ps_weights_grid_page")
        rows = [r for r in rows if r.block is not None and first <= r.block < first + BLOCKS_PER_PAGE]
    row = ui.wrap_row()
    for r in rows:
        idx, sample = resources.small_sample(s, loaded, r.name)
        kept = to_numpy(mask_set.masks[r.name]).ravel()[idx]
        bins = histogram_frame(histogram(sample, kept, bins=30, hide_zeros=hide_zeros))
        title = f"block {r.block} · {layer_role(r.name)[1]}" if r.block is not None else ui.short_layer(r.name)
        ui.tile(row, PANEL_WIDTH + 45).vega_lite_chart(spec=charts.histogram_panel_spec(bins, title, width=PANEL_WIDTH), width="content")
    st.caption(
        "Each panel: a fixed random sample of 4,000 weights of the layer (all of them when smaller), kept (blue) and pruned (grey); "
        "blocks in order, and inside a block q, k, v, attention out, FFN in, FFN out. Each panel has its own axes."
    )


def score_section(s, loaded, layer: str) -> None:
    """The score picture: |W| against ||X_j|| with the kept/pruned boundary, and the score histogram."""
    st.subheader("Why these weights: the score picture")
    methods = resources.score_methods()
    ui.default("ps_weights_score_method", s.method if s.method in methods else ("wanda" if "wanda" in methods else next(iter(methods))))
    last = st.session_state.get("ps_weights_score_follows")
    st.session_state["ps_weights_score_follows"] = s.method
    if last is not None and last != s.method and s.method in methods:  # the sidebar's method changed: the picture follows it
        st.session_state["ps_weights_score_method"] = s.method
    c1, c2 = st.columns([1, 2])
    method = c1.selectbox("Criterion", list(methods), key="ps_weights_score_method", format_func=lambda n: methods[n].label,
                          help="any score-based method, at the sidebar's sparsity and granularity")
    info = methods[method]
    explain = info.explain or ScoreView()
    ui.default("ps_weights_score_on", True)
    if not st.toggle("Show the score picture", key="ps_weights_score_on"):
        return
    norms = resources.input_norms(s, loaded)
    mask_set = resources.masks(s, loaded, method=method)
    scores = resources.ranker(s, loaded, method).scores[layer]
    weight = resources.dense_weight(s, loaded, layer)
    pic = resources.of_masks(
        mask_set, f"score picture {layer}", lambda: score_picture(weight, norms[layer], mask_set.masks[layer], scores, explain.power)
    )
    c2.caption(  # a score that grows with the input norm keeps small weights on loud inputs
        f"{pic.kept_small_loud:,} weights below the layer's median |W| are kept by {info.label} because their input is louder than the median: "
        "a cut in |W| alone would drop them." if (explain.power or 0) > 0 else f"Threshold t = {pic.threshold:.4g} on the {info.label} score."
    )
    row = ui.wrap_row()
    left, right = ui.tile(row, 560), ui.tile(row, 380)
    boundary = pd.DataFrame(pic.boundary)
    ui.chart(charts.score_plane(pd.DataFrame(pic.cells), boundary if len(boundary) else None, method), left)
    hist = histogram_frame({k: np.asarray(v) for k, v in pic.scores.items()})
    ui.chart(charts.score_histogram(hist, pic.threshold, method), right)
    cut = "" if s.granularity == "layer" else f" With {s.granularity} granularity the cut is not one number per layer: the line is the layer's equivalent cut."
    approx = f" {info.label}'s scores here come from one pass of the dense model: the approximation the masks above are labelled with." if resources.one_pass_approximation(info) else ""
    note = explain.note or f"{info.label}: {info.summary}"  # a criterion that says nothing of its picture is described by its summary
    st.caption(note + cut + approx + " Input norms from the dense model over the sidebar's calibration set; zero weights left out.")


ui.guarded(render)
