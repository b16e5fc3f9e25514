"""Chart builders of the Weights view: the layer's histogram, the small multiples, the score picture.

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import functools
import json

import altair as alt
import pandas as pd

from ..style import ACCENT_COLOR, KEPT_FRACTION_SCALE, STATUS_SCALE, count_axis, line_scales
from .common import LEGEND, LEGEND_SPACE, TOP_LEGEND, require, stack_order, stacked_bins


def weight_histogram(
    bins: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    lines: pd.DataFrame | None = None,
    log_count: bool = False,
    title: str = "",
    y_max: float | None = None,
) -> alt.Chart:
    """Histogram of weights, kept and pruned in two colours, with optional mixture curves and vertical lines.

    ``bins``: ``left, right, count, status`` (status "kept" or "pruned").
    ``curves``: ``x, component, density`` (density in weights per bin).
    ``lines``: ``x, label`` (e.g. the pruning threshold and the mixture crossing w_gmm).
    ``y_max`` fixes the count axis (curves taller than it, such as a prior's narrow spike, are cut at the top).
    """
    require(bins, ["left", "right", "count", "status"], "weight_histogram")
    stacked = stacked_bins(bins, [])
    top = float(y_max or (stacked["y1"].max() if len(stacked) else 1.0))
    y_title = "count (weights per bin, log scale)" if log_count else "count (weights per bin)"
    y_enc = count_axis(top, log_count, y_title)
    if y_max:
        y_enc["scale"] = alt.Scale(type=y_enc["scale"].type, domain=[0, y_max], clamp=True)
    bars = (
        alt.Chart(stacked)
        .mark_bar(opacity=0.9)
        .encode(
            x=alt.X("left:Q", title="weight value", scale=alt.Scale(zero=False)),
            x2="right:Q",
            y=alt.Y("y1:Q", **y_enc),
            y2="y0:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight", legend=LEGEND),
            tooltip=[
                alt.Tooltip("left:Q", title="from", format=".4f"),
                alt.Tooltip("right:Q", title="to", format=".4f"),
                alt.Tooltip("status:N", title="weights"),
                alt.Tooltip("count:Q", title="count", format=","),
            ],
        )
    )
    layers: list[alt.Chart] = [bars]
    if curves is not None and len(curves):
        layers.append(_mixture_curves(curves, y_enc["scale"], clip=bool(y_max)))
    if lines is not None and len(lines):
        require(lines, ["x", "label"], "weight_histogram lines")
        color, dash = line_scales(list(lines["label"]))
        layers.append(
            alt.Chart(lines)
            .mark_rule(strokeWidth=2)
            .encode(
                x="x:Q",
                color=alt.Color("label:N", title="line", scale=color, legend=TOP_LEGEND),
                strokeDash=alt.StrokeDash("label:N", scale=dash, legend=None),
                tooltip=[alt.Tooltip("label:N"), alt.Tooltip("x:Q", title="weight value", format=".5f")],
            )
        )
    chart = alt.layer(*layers).resolve_scale(color="independent", strokeDash="independent")
    height = 320 + LEGEND_SPACE
    return chart.properties(title=title, height=height) if title else chart.properties(height=height)


def _mixture_curves(curves: pd.DataFrame, y_scale, clip: bool) -> alt.Chart:
    """The dashed curves of a mixture's components (``x, component, density``) over a weight histogram."""
    require(curves, ["x", "component", "density"], "weight_histogram curves")
    return (
        alt.Chart(curves)
        .mark_line(strokeWidth=2, clip=clip)
        .encode(
            x="x:Q",
            y=alt.Y("density:Q", scale=y_scale),
            strokeDash=alt.StrokeDash("component:N", title="Gaussian curves", legend=LEGEND),
            detail="component:N",
            color=alt.value("#333333"),
            tooltip=[
                alt.Tooltip("component:N"),
                alt.Tooltip("x:Q", title="weight", format=".4f"),
                alt.Tooltip("density:Q", title="expected count per bin", format=",.1f"),
            ],
        )
    )


def histogram_panel(bins: pd.DataFrame, title: str, width: int = 190, height: int = 100) -> alt.Chart:
    """One small kept/pruned histogram (a panel of the all-layers small multiples; the page lays the
    panels out in a wrapping row, so they fill any width).

    ``bins``: ``left, right, count, status``.
    """
    require(bins, ["left", "right", "count", "status"], "histogram_panel")
    return (
        alt.Chart(stacked_bins(bins, []))
        .mark_bar()
        .encode(
            x=alt.X("left:Q", title=None, axis=alt.Axis(tickCount=3, format="~g")),
            x2="right:Q",
            y=alt.Y("y1:Q", title=None, axis=alt.Axis(tickCount=3, format=",d")),
            y2="y0:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, legend=None),
            tooltip=[
                alt.Tooltip("left:Q", title="from", format=".4f"),
                alt.Tooltip("right:Q", title="to", format=".4f"),
                alt.Tooltip("status:N"),
                alt.Tooltip("count:Q", format=","),
            ],
        )
        .properties(title=alt.TitleParams(title, fontSize=11, limit=width), width=width, height=height)
    )


@functools.lru_cache(maxsize=16)
def _panel_template(width: int, height: int) -> str:
    """The Vega-Lite spec of an empty :func:`histogram_panel`, without its data (JSON, built once)."""
    empty = pd.DataFrame({"left": [0.0], "right": [1.0], "count": [0], "status": ["kept"]})
    spec = histogram_panel(empty, "", width, height).to_dict()
    spec.pop("datasets", None)
    spec.pop("data", None)
    return json.dumps(spec)


def histogram_panel_spec(bins: pd.DataFrame, title: str, width: int = 190, height: int = 100) -> dict:
    """:func:`histogram_panel` as a Vega-Lite spec with its rows inline, for ``st.vega_lite_chart``,
    from a template built once: a page that draws dozens of panels on every slider move skips
    building and validating an Altair chart, and a table conversion, for each."""
    import numpy as np

    require(bins, ["left", "right", "count", "status"], "histogram_panel_spec")
    left, right = bins["left"].to_numpy(dtype=float), bins["right"].to_numpy(dtype=float)
    status, count = bins["status"].to_numpy(), bins["count"].to_numpy()
    order, y0, y1 = stack_order([np.unique(left, return_inverse=True)[1]], status, count)
    spec = json.loads(_panel_template(int(width), int(height)))
    spec["autosize"] = {"type": "pad"}  # width and height are the panel's plot area (Streamlit's theme would squeeze them)
    spec["description"] = f"small multiple: {title}"  # the SVG's aria-label; the browser test holds small multiples to their own minimum
    spec["title"]["text"] = title
    top = int(y1.max()) if len(y1) else 0
    spec["encoding"]["y"]["axis"]["values"] = [0, top] if top > 0 else [0]  # two y ticks: a small panel holds no more
    spec["data"] = {
        "values": [
            {"left": float(left[i]), "right": float(right[i]), "count": int(count[i]), "status": str(status[i]), "y0": int(a), "y1": int(b)}
            for i, a, b in zip(order.tolist(), y0.tolist(), y1.tolist())
        ]
    }
    return spec


_POW10 = "format(pow(10, datum.value), '.2~g')"


def score_plane(cells: pd.DataFrame, boundary: pd.DataFrame | None = None, method: str = "") -> alt.Chart:
    """|W_ij| against the input-feature norm ||X_j||, both on log axes: each cell coloured by the
    share of its weights that is kept (grey = all pruned, blue = all kept), fainter where it holds
    few weights; ``boundary`` (the score threshold's curve) drawn in red.

    ``cells``: ``x0, x1, y0, y1`` (log10 edges), ``count``, ``kept``, ``kept_fraction``;
    ``boundary``: ``x, y`` (log10).
    """
    require(cells, ["x0", "x1", "y0", "y1", "count", "kept_fraction"], "score_plane")
    axis_x = alt.Axis(labelExpr=_POW10, tickMinStep=0.5, title="input-feature norm ||X_j|| over the calibration tokens (log)")
    axis_y = alt.Axis(labelExpr=_POW10, tickMinStep=0.5, title="weight magnitude |W_ij| (log)")
    rects = (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("x0:Q", axis=axis_x, scale=alt.Scale(zero=False, nice=False)),
            x2="x1:Q",
            y=alt.Y("y0:Q", axis=axis_y, scale=alt.Scale(zero=False, nice=False)),
            y2="y1:Q",
            color=alt.Color("kept_fraction:Q", title="share of the cell's weights kept", scale=KEPT_FRACTION_SCALE,
                            legend=alt.Legend(format="%", orient="bottom", direction="horizontal", titleLimit=0, gradientLength=160)),
            opacity=alt.Opacity("count:Q", scale=alt.Scale(type="log", range=[0.35, 1.0]), legend=None),
            tooltip=[
                alt.Tooltip("count:Q", title="weights in the cell", format=","),
                alt.Tooltip("kept_fraction:Q", title="kept", format=".0%"),
            ],
        )
    )
    layers = [rects]
    if boundary is not None and len(boundary):
        require(boundary, ["x", "y"], "score_plane boundary")
        label = f"{method} score = threshold t" if method else "score = threshold t"
        layers.append(
            alt.Chart(boundary.assign(label=label))
            .mark_line(color=ACCENT_COLOR, strokeWidth=2.5)
            .encode(x="x:Q", y="y:Q", tooltip=[alt.Tooltip("label:N", title="boundary")])
        )
    return alt.layer(*layers).properties(height=340 + LEGEND_SPACE)


def score_histogram(bins: pd.DataFrame, threshold: float, method: str = "") -> alt.Chart:
    """The layer's scores on a log axis, kept and pruned stacked, with the threshold in red.

    ``bins``: ``left, right, count, status`` (score units).
    """
    require(bins, ["left", "right", "count", "status"], "score_histogram")
    stacked = stacked_bins(bins[bins["left"] > 0], [])
    top = float(stacked["y1"].max()) if len(stacked) else 1.0
    bars = (
        alt.Chart(stacked)
        .mark_bar()
        .encode(
            x=alt.X("left:Q", title=f"{method} score (log)".strip(), scale=alt.Scale(type="log"), axis=alt.Axis(format="~g")),
            x2="right:Q",
            y=alt.Y("y1:Q", **count_axis(top, False, "count (weights per bin)")),
            y2="y0:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight", legend=LEGEND),
            tooltip=[alt.Tooltip("left:Q", title="from", format=".3g"), alt.Tooltip("right:Q", title="to", format=".3g"),
                     alt.Tooltip("status:N"), alt.Tooltip("count:Q", format=",")],
        )
    )
    if threshold <= 0:
        return bars.properties(height=260 + LEGEND_SPACE)
    rule = alt.Chart(pd.DataFrame({"x": [threshold], "label": ["threshold t"]})).mark_rule(color=ACCENT_COLOR, strokeWidth=2).encode(
        x="x:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("x:Q", title="score", format=".4g")]
    )
    return alt.layer(bars, rule).properties(height=260 + LEGEND_SPACE)
