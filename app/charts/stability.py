"""Chart builders of the Stability view: pure ``DataFrame -> altair.Chart`` functions, and the frames they take.

No Streamlit, no torch. The frames come from a :class:`pruning.analysis.stability.StabilityResult`
(its ``layers`` rows and their ``picture``), reshaped by the ``*_frame`` functions here.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..style import ACCENT_COLOR, KEPT_FRACTION_SCALE, NEUTRAL_COLOR, method_scale, shown_value
from .common import require, weight_grid

_LEGEND = alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=160)
LEGEND_SPACE = 0  # px: every chart here sizes only its width to the window (PLOT_SIZE), so a height is the plot's own
PLOT_SIZE = alt.AutoSizeParams(type="fit-x", contains="padding")  # as common.served sizes the other views' charts


def short(name: str) -> str:
    for prefix in ("bert.encoder.layer.", "model.layers.", "transformer.h.", "encoder.layer.", "roberta.encoder.layer."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# ---------------------------------------------------------------- frames
def jaccard_frame(results) -> pd.DataFrame:
    """One row per method and layer: ``method, layer, jaccard, low, high, jaccard_min, undecided``
    (``low``/``high``: the mean pairwise Jaccard minus / plus its standard deviation over pairs, clipped to [0, 1])."""
    rows = []
    for res in results:
        for r in res.layers:
            rows.append(
                {
                    "method": res.request.method,
                    "layer": short(r["layer"]),
                    "jaccard": r["jaccard"],
                    "low": max(0.0, r["jaccard"] - r["jaccard_sd"]),
                    "high": min(1.0, r["jaccard"] + r["jaccard_sd"]),
                    "jaccard_min": r["jaccard_min"],
                    "undecided": r["undecided"],
                }
            )
    return pd.DataFrame(rows)


def picture_frame(layer_row: dict, value: str = "keep") -> pd.DataFrame:
    """The cells of one layer's picture: ``row, col, value`` (block indices), ``value`` the block mean of
    ``keep`` (keep frequency) or ``undecided`` (share of undecided weights)."""
    grid = layer_row["picture"][value]
    return pd.DataFrame([{"row": i, "col": j, "value": v} for i, line in enumerate(grid) for j, v in enumerate(line)])


def row_frame(layer_row: dict) -> pd.DataFrame:
    """Per output row of one layer: ``row, keep, undecided``."""
    p = layer_row["picture"]
    return pd.DataFrame({"row": range(len(p["row_keep"])), "keep": p["row_keep"], "undecided": p["row_undecided"]})


def histogram_frame(layer_row: dict) -> pd.DataFrame:
    """Keep-frequency histogram of one layer (or the ``overall`` dict): ``draws, share, weights, status``
    (how many of the R draws keep a weight; status kept by all / pruned by all / undecided)."""
    hist = layer_row["histogram"]
    r, total = len(hist) - 1, max(1, sum(hist))
    status = lambda c: "kept by all" if c == r else ("pruned by all" if c == 0 else "undecided")  # noqa: E731
    return pd.DataFrame([{"draws": c, "share": n / total, "weights": n, "status": status(c)} for c, n in enumerate(hist)])


def draws_frame(results) -> pd.DataFrame:
    """One row per method and draw: ``method, draw, value, ci_low, ci_high, flips, flips_ci_low, flips_ci_high``."""
    keep = ["method", "draw", "metric", "value", "ci_low", "ci_high", "flips", "flips_ci_low", "flips_ci_high"]
    return pd.DataFrame([{k: row[k] for k in keep} for res in results for row in res.rows])


# ---------------------------------------------------------------- charts
def jaccard_bars(df: pd.DataFrame) -> alt.Chart:
    """Per-layer mean pairwise Jaccard of the kept sets, one bar per method and layer, with a rule from
    mean - sd to mean + sd over the pairs of draws. ``df``: :func:`jaccard_frame`."""
    require(df, ["method", "layer", "jaccard", "low", "high"], "jaccard_bars")
    order = list(dict.fromkeys(df["layer"]))
    methods = list(dict.fromkeys(df["method"]))
    y = alt.Y("layer:N", sort=order, title=None, axis=alt.Axis(labelLimit=0))
    base = alt.Chart(df).encode(y=y, yOffset=alt.YOffset("method:N", sort=methods))
    tooltip = [alt.Tooltip("method:N"), alt.Tooltip("layer:N"), alt.Tooltip("jaccard:Q", format=".4f", title="mean Jaccard"),
               alt.Tooltip("jaccard_min:Q", format=".4f", title="lowest pair"), alt.Tooltip("undecided:Q", format=".1%")]
    bars = base.mark_bar().encode(
        x=alt.X("jaccard:Q", title="mean pairwise Jaccard of kept weights (1 = the same mask every draw)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("method:N", scale=method_scale(methods), legend=alt.Legend(orient="bottom", title=None)),
        tooltip=tooltip,
    )
    spread = base.mark_rule(color="black").encode(x="low:Q", x2="high:Q")
    step = 12 * max(1, len(methods)) + 4
    return alt.layer(bars, spread).properties(height=alt.Step(step) if len(order) < 80 else 8 * len(order) * len(methods), autosize=PLOT_SIZE)


def keep_heatmap(cells: pd.DataFrame, block: tuple[int, int], value: str = "keep", title: str = "") -> alt.Chart:
    """One layer's keep frequency (or undecided share) as a heatmap of the weight matrix in blocks of
    ``block = (rows, cols)`` weights, on the axes of the Masks view (output row and input column
    indices). ``cells``: :func:`picture_frame`."""
    require(cells, ["row", "col", "value"], "keep_heatmap")
    br, bc = block
    df = cells.assign(out_from=cells["row"] * br, out_to=(cells["row"] + 1) * br, in_from=cells["col"] * bc, in_to=(cells["col"] + 1) * bc)
    if value == "keep":
        scale, what = KEPT_FRACTION_SCALE, "keep frequency (share of draws keeping the weight)"
    else:
        scale, what = alt.Scale(domain=[0, 1], range=["#ffffff", ACCENT_COLOR]), "share of undecided weights"
    unit = "weight" if br == bc == 1 else f"block of {br}x{bc} weights"
    return (
        weight_grid(df, alt.Color("value:Q", title=what, scale=scale, legend=_LEGEND),
                    alt.Tooltip("value:Q", format=".3f", title=f"{what}, mean over the {unit}"))
        .properties(title=title, height=340 + LEGEND_SPACE, autosize=PLOT_SIZE)
    )


def keep_histogram(df: pd.DataFrame, title: str = "") -> alt.Chart:
    """Share of weights kept by exactly c of the R draws, c = 0..R. ``df``: :func:`histogram_frame`."""
    require(df, ["draws", "share", "weights", "status"], "keep_histogram")
    scale = alt.Scale(domain=["pruned by all", "undecided", "kept by all"], range=["#b8b8b8", ACCENT_COLOR, "#2166ac"])
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("draws:O", title="draws that keep the weight", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("share:Q", title="share of weights", axis=alt.Axis(format=".0%")),
            color=alt.Color("status:N", scale=scale, legend=alt.Legend(orient="bottom", title=None)),
            tooltip=[alt.Tooltip("draws:O", title="kept by draws"), alt.Tooltip("weights:Q", format=","), alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(title=title, height=200 + LEGEND_SPACE, autosize=PLOT_SIZE)
    )


def row_lines(df: pd.DataFrame) -> alt.Chart:
    """Per output row: the share of undecided weights. ``df``: :func:`row_frame`."""
    require(df, ["row", "undecided"], "row_lines")
    return (
        alt.Chart(df)
        .mark_area(color=NEUTRAL_COLOR, opacity=0.7)
        .encode(
            x=alt.X("row:Q", title="output row"),
            y=alt.Y("undecided:Q", title="undecided", axis=alt.Axis(format=".0%")),
            tooltip=[alt.Tooltip("row:Q"), alt.Tooltip("undecided:Q", format=".2%"), alt.Tooltip("keep:Q", format=".3f", title="mean keep frequency")],
        )
        .properties(title="undecided share of each output row", height=200, autosize=PLOT_SIZE)
    )


def draw_points(df: pd.DataFrame, metric: str) -> alt.Chart:
    """The metric of each draw with its 95% interval, per method. ``df``: :func:`draws_frame`."""
    require(df, ["method", "draw", "value", "ci_low", "ci_high"], "draw_points")
    shown = df.assign(**{c: df[c].map(lambda v: shown_value(metric, v)) for c in ("value", "ci_low", "ci_high")})
    methods = list(dict.fromkeys(df["method"]))
    unit = " (points)" if metric == "accuracy" else ""
    base = alt.Chart(shown).encode(
        x=alt.X("draw:O", title="draw", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("method:N", sort=methods),
        color=alt.Color("method:N", scale=method_scale(methods), legend=alt.Legend(orient="bottom", title=None)),
    )
    y = alt.Y("value:Q", title=f"{metric}{unit}", scale=alt.Scale(zero=False))
    points = base.mark_point(filled=True, size=60).encode(
        y=y, tooltip=[alt.Tooltip("method:N"), alt.Tooltip("draw:O"), alt.Tooltip("value:Q", format=".4g"), alt.Tooltip("ci_low:Q", format=".4g"), alt.Tooltip("ci_high:Q", format=".4g")]
    )
    rules = base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q")
    return alt.layer(rules, points).properties(height=240 + LEGEND_SPACE, autosize=PLOT_SIZE)
