"""Chart builders of the Masks view (also the Overview's and Runs' per-layer sparsity and overlaps).

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from pruning.analysis.distribution import AGREEMENT

from ..style import ACCENT_COLOR, KEPT_COLOR, KEPT_FRACTION_SCALE, PRUNED_COLOR, method_color, method_scale
from .common import LEGEND, LEGEND_SPACE, ROW_PX, require, weight_grid


def mask_heatmap(cells: pd.DataFrame, block_rows: int, block_cols: int, title: str = "") -> alt.Chart:
    """A mask as a heatmap; each cell is a block of weights coloured by the fraction kept.

    ``cells``: ``out_from, in_from, kept`` (kept fraction 0-1 of a block of
    ``block_rows x block_cols`` weights starting at that output row / input column).
    """
    require(cells, ["out_from", "in_from", "kept"], "mask_heatmap")
    df = cells.assign(out_to=cells["out_from"] + block_rows, in_to=cells["in_from"] + block_cols)
    unit = "weight" if block_rows * block_cols == 1 else f"block of {block_rows}x{block_cols} weights"
    return (
        weight_grid(
            df,
            alt.Color("kept:Q", title="fraction kept", scale=KEPT_FRACTION_SCALE, legend=alt.Legend(format="%", orient="bottom", titleLimit=0)),
            alt.Tooltip("kept:Q", title=f"kept ({unit})", format=".0%"),
        )
        .properties(title=title, height=360 + LEGEND_SPACE)
    )


def sparsity_bars(df: pd.DataFrame, target: float | None = None) -> alt.Chart:
    """Per-layer sparsity, one bar per layer (and method).

    ``df``: ``layer, method, sparsity`` (fraction 0-1).
    """
    require(df, ["layer", "method", "sparsity"], "sparsity_bars")
    order = list(dict.fromkeys(df["layer"]))
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("layer:N", sort=order, title="layer", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            yOffset="method:N",
            x=alt.X("sparsity:Q", title="sparsity (% of the layer's weights removed)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("method:N", title="method", scale=method_scale(df["method"]), legend=LEGEND),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("method:N"), alt.Tooltip("sparsity:Q", format=".2%")],
        )
    )
    if target is None:
        return bars.properties(height=max(200, ROW_PX * len(order)) + LEGEND_SPACE)
    rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(color=ACCENT_COLOR, strokeDash=[4, 3]).encode(
        x="target:Q", tooltip=[alt.Tooltip("target:Q", title="target sparsity", format=".0%")]
    )
    return alt.layer(bars, rule).properties(height=max(200, ROW_PX * len(order)) + LEGEND_SPACE)


def overlap_matrix(df: pd.DataFrame, title: str = "", value_title: str = "Jaccard overlap of kept weights") -> alt.Chart:
    """A square heatmap of pairwise overlaps with the value written in each cell.

    ``df``: ``a, b, value`` (0-1), one row per ordered pair.
    """
    require(df, ["a", "b", "value"], "overlap_matrix")
    order = list(dict.fromkeys(list(df["a"]) + list(df["b"])))
    base = alt.Chart(df).encode(
        x=alt.X("b:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30 if len(order) > 4 else 0, labelLimit=0, orient="top")),
        y=alt.Y("a:N", sort=order, title=None, axis=alt.Axis(labelLimit=0)),
    )
    legend = alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=160)
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", title=value_title, scale=alt.Scale(domain=[0, 1], scheme="viridis"), legend=legend),
        tooltip=[alt.Tooltip("a:N"), alt.Tooltip("b:N"), alt.Tooltip("value:Q", title=value_title, format=".3f")],
    )
    height = max(120, min(480, 56 * len(order))) + LEGEND_SPACE + 40  # + the labels on top
    if len(order) > 12:  # too many cells to write in
        return cells.properties(title=title, height=height)
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text("value:Q", format=".2f"),
        color=alt.condition("datum.value > 0.6", alt.value("black"), alt.value("white")),
    )
    return alt.layer(cells, text).properties(title=title, height=height)


def layer_overlap_lines(df: pd.DataFrame) -> alt.Chart:
    """Jaccard overlap per layer for each pair of methods.

    ``df``: ``layer, pair, jaccard``.
    """
    require(df, ["layer", "pair", "jaccard"], "layer_overlap_lines")
    order = list(dict.fromkeys(df["layer"]))
    return (
        alt.Chart(df)
        .mark_point(filled=True, size=50)
        .encode(
            y=alt.Y("layer:N", sort=order, title="layer", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            x=alt.X("jaccard:Q", title="Jaccard overlap of kept weights (0-1)", scale=alt.Scale(domain=[0, 1])),
            shape=alt.Shape("pair:N", title="method pair", legend=LEGEND),
            color=alt.value("#333333"),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("pair:N"), alt.Tooltip("jaccard:Q", format=".3f")],
        )
        .properties(height=max(200, ROW_PX * len(order)) + LEGEND_SPACE)
    )


def agreement_picture(cells: pd.DataFrame, a: str, b: str, title: str = "") -> alt.Chart:
    """One weight per cell, coloured by which of two masks keeps it (A = method ``a``, B = method ``b``):
    kept by both in the kept blue, pruned by both in the pruned grey, kept by one only in that method's colour.

    ``cells``: ``row, col, agreement`` (one of ``AGREEMENT``).
    """
    require(cells, ["row", "col", "agreement"], "agreement_picture")
    names = {"kept by A only": f"kept by {a} only", "kept by B only": f"kept by {b} only"}
    data = cells.assign(label=cells["agreement"].map(lambda v: names.get(v, v)))
    scale = alt.Scale(domain=[names.get(d, d) for d in AGREEMENT], range=[KEPT_COLOR, method_color(a), method_color(b), PRUNED_COLOR])
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X("col:O", title="input column", axis=alt.Axis(values=list(range(0, int(cells["col"].max()) + 1, 8)), labelAngle=0)),
            y=alt.Y("row:O", title="output row", axis=alt.Axis(values=list(range(0, int(cells["row"].max()) + 1, 8)))),
            color=alt.Color("label:N", title=None, scale=scale, legend=LEGEND),
            tooltip=[alt.Tooltip("row:O", title="output row"), alt.Tooltip("col:O", title="input column"), alt.Tooltip("label:N", title="weight")],
        )
        .properties(title=title, height=320 + LEGEND_SPACE)
    )
