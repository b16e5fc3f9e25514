"""What the chart builders of every view share, and :func:`served`: how a page hands a chart to Streamlit.

Legends, the layer-row height, column checks, the views' units, stacked histogram bars, interval rules
and bands. Pure functions: no Streamlit, no torch.
"""

from __future__ import annotations

import functools

import altair as alt
import pandas as pd

from ..style import NEUTRAL_COLOR, shown_value

LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, titleLimit=0)  # below the plot: never cut at narrow widths
TOP_LEGEND = alt.Legend(orient="top", direction="vertical", labelLimit=0, titleLimit=0)  # a third legend above: three side by side do not fit 800 px
# a line-style legend draws the style: a dashed stroke, not the point overlay's dots (which look the same for every dash)
# (a path: Vega's "stroke" symbol draws nothing when a point overlay shares the legend)
DASH_LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, titleLimit=0, symbolType="M-1,0L1,0", symbolStrokeWidth=2,
                         symbolSize=300, symbolStrokeColor="#333333", symbolFillColor="transparent")
SMALL_LEGEND = alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=120)
LEGEND_SPACE = 0  # px: no longer needed: every served chart sizes only its width to the window (PLOT_AUTOSIZE), so a height is the plot's
ROW_PX = 22  # px per layer on a layer axis: the theme's labels are about 19 px tall, so 18 px rows overlapped
# Streamlit's theme fits the whole chart (legends, titles, axes) into its height, which squashed the plot of a chart with a
# tall legend to a few pixels. Every served chart fits its width to the container and keeps its height for the plot area.
PLOT_AUTOSIZE = {"type": "fit-x", "contains": "padding"}


def served(chart):
    """``chart`` as a page draws it (``ui.chart`` calls this; nothing else does): its ``to_dict()``, which
    ``st.altair_chart`` calls on every rerun, skips Altair's schema validation, and its top level gets
    :data:`PLOT_AUTOSIZE` unless the builder set its own size rule. Validation is about half of a chart's
    conversion, paid on every slider move under Streamlit's process-wide Altair lock (so by every session in
    turn); each builder's spec is validated by its test instead (``type(chart).to_dict(chart)``). The chart
    is changed in place (only its ``to_dict``) and returned; anything that is not an Altair chart passes through."""
    if isinstance(chart, alt.TopLevelMixin):
        object.__setattr__(chart, "to_dict", functools.partial(_served_dict, chart))
    return chart


def _served_dict(chart, *args, validate=False, context=None, **kwargs) -> dict:
    """The chart's spec without validation; at the top level, with :data:`PLOT_AUTOSIZE` unless it sets its own."""
    spec = type(chart).to_dict(chart, *args, validate=False, context=context, **kwargs)
    if context is None and "autosize" not in spec:
        spec["autosize"] = dict(PLOT_AUTOSIZE)
    return spec


def require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(df.columns)}")


def in_points(df: pd.DataFrame, metric: str, *columns: str) -> pd.DataFrame:
    """``df`` with ``columns`` (default ``value``) in the unit the views show (accuracy fractions become points)."""
    if metric != "accuracy":
        return df
    return df.assign(**{c: df[c].map(lambda v: shown_value(metric, v)) for c in columns or ("value",)})


def histogram_columns(counts: dict, layer: str | None = None) -> dict:
    """Long form of ``pruning.analysis.distribution.split_counts`` output: one row per bin and status
    (``left, right, count, status`` and, with ``layer``, a panel label)."""
    import numpy as np

    n = len(counts["left"])
    cols = {
        "left": np.tile(counts["left"], 2),
        "right": np.tile(counts["right"], 2),
        "count": np.concatenate([counts["kept"], counts["pruned"]]),
        "status": np.repeat(np.array(["kept", "pruned"], dtype=object), n),
    }
    if layer is not None:
        cols["layer"] = np.full(2 * n, layer, dtype=object)
    return cols


def histogram_frame(counts: dict) -> pd.DataFrame:
    return pd.DataFrame(histogram_columns(counts))


def stack_order(keys: list, status, counts):
    """``(order, y0, y1)``: rows sorted by ``keys`` (factorized columns) with pruned before kept in each
    group, and each row's bar from ``y0`` to ``y1`` stacked within its group."""
    import numpy as np

    rank = np.where(np.asarray(status) == "pruned", 0, 1)
    order = np.lexsort([rank] + keys[::-1])
    groups = np.zeros(len(rank), dtype=np.int64)
    for k in keys:
        groups = groups * (int(k.max()) + 1 if len(k) else 1) + k
    g = groups[order]
    counts = np.asarray(counts)[order]
    total = np.cumsum(counts)
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1] if len(g) else np.array([], dtype=int)
    before = np.repeat(total[starts] - counts[starts], np.diff(np.r_[starts, len(g)])) if len(g) else total
    y1 = total - before
    return order, y1 - counts, y1


def stacked_bins(bins: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Add ``y0, y1``: pruned at the bottom of each bin, kept on top (bars with x and x2 need explicit y and y2)."""
    df = bins.reset_index(drop=True)
    keys = [pd.factorize(df[c])[0] for c in by] + [pd.factorize(df["left"])[0]]
    order, y0, y1 = stack_order(keys, df["status"].to_numpy(), df["count"].to_numpy())
    out = df.iloc[order].copy()
    out["y1"] = y1
    out["y0"] = y0
    return out


def interval_rules(df: pd.DataFrame, x: str):
    """The 95% intervals of the rows that have one (``ci_low``, ``ci_high``) as vertical rules, or None."""
    if not {"ci_low", "ci_high"} <= set(df.columns):
        return None
    rows = df.dropna(subset=["ci_low", "ci_high"])
    if not len(rows):
        return None
    return (
        alt.Chart(rows)
        .mark_rule(strokeWidth=2, color=NEUTRAL_COLOR, opacity=0.7)
        .encode(x=x, y="ci_low:Q", y2="ci_high:Q",
                tooltip=[alt.Tooltip("ci_low:Q", title="95% interval from", format=".4g"), alt.Tooltip("ci_high:Q", title="to", format=".4g")])
    )


INTERVAL = "95% interval"


def ci_tooltips(low: str = "ci_low", high: str = "ci_high", fmt: str = ".4g") -> list:
    return [alt.Tooltip(f"{low}:Q", title=f"{INTERVAL} from", format=fmt), alt.Tooltip(f"{high}:Q", title="to", format=fmt)]


def reference_band(reference: dict, label: str, metric: str, fmt: str = ".4g") -> alt.Chart:
    """A horizontal band from ``ci_low`` to ``ci_high`` over the whole width, for a reference model."""
    frame = pd.DataFrame([{"label": label, "value": reference["value"], "ci_low": reference["ci_low"], "ci_high": reference["ci_high"]}])
    return (
        alt.Chart(frame)
        .mark_rect(opacity=0.15, color="black")
        .encode(
            y="ci_low:Q",
            y2="ci_high:Q",
            tooltip=[
                alt.Tooltip("label:N"),
                alt.Tooltip("value:Q", title=metric, format=fmt),
                *ci_tooltips(fmt=fmt),
            ],
        )
    )


def weight_grid(df: pd.DataFrame, color, value_tooltip) -> alt.Chart:
    """A weight matrix drawn as rectangles, one per block of weights (``out_from, out_to, in_from, in_to``): output
    rows down, input columns across, coloured by ``color``; its tooltip names the block and ``value_tooltip``."""
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X("in_from:Q", title="input column (d_in index)", scale=alt.Scale(nice=False)),
            x2="in_to:Q",
            y=alt.Y("out_from:Q", title="output row (d_out index)", scale=alt.Scale(reverse=True, nice=False)),
            y2="out_to:Q",
            color=color,
            tooltip=[alt.Tooltip("out_from:Q", title="first output row"), alt.Tooltip("in_from:Q", title="first input column"), value_tooltip],
        )
    )
