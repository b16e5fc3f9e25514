"""Weights: a layer's weight histogram, kept and pruned, with a fitted Gaussian mixture and the threshold."""

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, resources, ui
from pruning.distribution import histogram, split_counts, to_numpy

BINS = 80
RANGE_QUANTILE = 0.9995  # the histogram spans +-(this quantile of |w|); rarer outliers go to the edge bins


def render() -> None:
    s, loaded = ui.opening("Weights")
    names = [r.name for r in resources.layers(s, loaded)]
    c1, c2, c3, c4 = st.columns([3, 1.3, 1.3, 1.3])
    layer = ui.layer_picker(c1, names)
    log_count = c2.radio("Count scale", ["linear", "log"], horizontal=True, key="ps_weights_scale") == "log"
    hide_zeros = c3.toggle("Hide zeros", key="ps_weights_hide", help="After pruning, the pruned weights are zeros; hiding them shows what is left.")
    k = c4.selectbox("Mixture components", ["bic", 1, 2, 3, 4], key="ps_weights_k", format_func=lambda v: "chosen by BIC" if v == "bic" else str(v))

    mask_set = resources.masks(s, loaded)
    mask = mask_set.masks[layer]
    values, values_key = resources.layer_values(s, loaded, mask_set, layer)
    if values_key != "dense":
        st.caption(f"{mask_set.method} changed the kept weights: the histogram shows the weights after its update.")

    binned = resources.binned(s, loaded, layer, values_key, values, BINS, RANGE_QUANTILE)
    counts = split_counts(binned, mask, values, hide_zeros=hide_zeros)
    n_kept = int(np.count_nonzero(to_numpy(mask)))
    layer_sparsity = 1 - n_kept / mask.numel()
    threshold = resources.threshold(s, layer, values_key, values, layer_sparsity)
    fit = resources.mixture(s, loaded, layer, k, values_key, values)
    spike = resources.spike_slab(s, loaded, layer, values_key, values)

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Pruned in this layer", f"{mask.numel() - n_kept:,}", help=f"of {mask.numel():,} weights")
    m2.metric("Layer sparsity", f"{layer_sparsity:.1%}")
    m3.metric("Magnitude threshold |w|", f"{threshold:.4g}", help="the |w| below which this share of weights lies: the exact cut of per-layer magnitude pruning")
    m4.metric("Spike/slab crossing |w*|", "none" if spike.crossing is None else f"{spike.crossing:.4g}")
    ui.one_pass_note(s, loaded, mask_set, layer)

    draw_histogram(layer, binned, counts, mask.numel(), fit, spike, threshold, log_count, hide_zeros)
    fit_tables(fit, spike)
    all_layers(s, loaded, names, mask_set, hide_zeros)


def draw_histogram(layer: str, binned, counts, n: int, fit, spike, threshold: float, log_count: bool, hide_zeros: bool) -> None:
    """The layer's histogram, kept and pruned, with the mixture's curves, the threshold and the spike/slab crossing."""
    width = float(binned.edges[1] - binned.edges[0])
    centers = np.linspace(binned.edges[0], binned.edges[-1], 241)
    curves = pd.DataFrame(fit.curves(centers, scale=n * width))
    lines = [{"x": t, "label": "pruning threshold ±t"} for t in (-threshold, threshold)] if threshold > 0 else []
    if spike.crossing is not None:
        lines += [{"x": c, "label": "spike/slab crossing ±w*"} for c in (-spike.crossing, spike.crossing)]
    chart = charts.weight_histogram(charts.histogram_frame(counts), curves, pd.DataFrame(lines), log_count=log_count, title=layer)
    st.altair_chart(chart, width="stretch")
    st.caption(
        f"{n:,} weights in {BINS} bins of width {width:.3g} over ±{binned.edges[-1]:.3g} "
        f"(the {RANGE_QUANTILE:.2%} quantile of |w|; the rarer outliers are counted in the outermost bins). Blue: kept, orange: pruned"
        + (" (hidden)" if hide_zeros else "")
        + f". Curves: a {fit.k}-component Gaussian mixture fitted to {fit.n_fitted:,} sampled weights, in expected counts per bin. "
        "The spike/slab crossing is where a weight is equally likely under the narrow (spike) and wide (slab) zero-mean "
        "Gaussian of a two-component fit: MGPP's prior pushes weights inside it toward zero."
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


def all_layers(s, loaded, names: list, mask_set, hide_zeros: bool) -> None:
    """Small multiples: a fixed sample of every layer's weights, kept and pruned."""
    st.subheader("All layers")
    ui.default("ps_weights_grid", True)
    if st.toggle("Show every layer (small multiples)", key="ps_weights_grid"):
        parts = []
        for name in names:
            idx, sample = resources.small_sample(s, loaded, name)
            kept = to_numpy(mask_set.masks[name]).ravel()[idx]
            parts.append(charts.histogram_columns(histogram(sample, kept, bins=30, hide_zeros=hide_zeros), ui.short_layer(name)))
        grid = charts.concat_columns(parts)
        st.altair_chart(charts.histogram_grid(grid), width="content")
        st.caption("Each panel: a fixed random sample of 4,000 weights of the layer (all of them when smaller), kept and pruned.")


ui.guarded(render)
