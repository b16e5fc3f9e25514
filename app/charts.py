"""Chart builders: pure functions ``DataFrame -> altair.Chart``.

No Streamlit, no torch: every builder takes a tidy DataFrame (columns named in
its docstring) and returns a chart with tooltips and axis titles that say the
unit. Pages reshape backend results into these frames; tests call the builders
directly.
"""

from __future__ import annotations

import functools
import json

import altair as alt
import pandas as pd

from .style import method_color, KEPT_COLOR, NEUTRAL_COLOR, SERIES_RANGE, PRUNED_COLOR, HARM_DOMAIN, HARM_MID, harm_unit, KEPT_FRACTION_SCALE, PRIOR_THRESHOLD, ACCENT_COLOR, CHOSEN_SCALE, DENSE_COLOR, STATUS_SCALE, count_axis, line_scales, method_scale, metric_title, shown_value


_LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, titleLimit=0)  # below the plot: never cut at narrow widths
LEGEND_SPACE = 0  # px: no longer needed: every served chart sizes only its width to the window (PLOT_AUTOSIZE), so a height is the plot's
# Streamlit's theme fits the whole chart (legends, titles, axes) into its height, which squashed the plot of a chart with a
# tall legend to a few pixels. Every chart served here fits its width to the container and keeps its height for the plot area.
PLOT_AUTOSIZE = {"type": "fit-x", "contains": "padding"}
ROW_PX = 22  # px per layer on a layer axis: the theme's labels are about 19 px tall, so 18 px rows overlapped
_TOP_LEGEND = alt.Legend(orient="top", direction="vertical", labelLimit=0, titleLimit=0)  # a third legend above: three side by side do not fit 800 px
# a line-style legend draws the style: a dashed stroke, not the point overlay's dots (which look the same for every dash)
# (a path: Vega's "stroke" symbol draws nothing when a point overlay shares the legend)
_DASH_LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, titleLimit=0, symbolType="M-1,0L1,0", symbolStrokeWidth=2,
                          symbolSize=300, symbolStrokeColor="#333333", symbolFillColor="transparent")
KL_TICKS = [0, 0.001, 0.01, 0.1, 1]
KL_DOMAIN = [0.0, 1.0]  # nats: the KL colour scale is fixed (symlog), so the first small point is not drawn dark while points arrive
_SMALL_LEGEND = alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=120)


def _require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(df.columns)}")


def in_points(df: pd.DataFrame, metric: str, *columns: str) -> pd.DataFrame:
    """``df`` with ``columns`` (default ``value``) in the unit the views show (accuracy fractions become points)."""
    if metric != "accuracy":
        return df
    return df.assign(**{c: df[c].map(lambda v: shown_value(metric, v)) for c in columns or ("value",)})


# ---------------------------------------------------------------- Weights view
def histogram_columns(counts: dict, layer: str | None = None) -> dict:
    """Long form of ``pruning.distribution.split_counts`` output: one row per bin and status
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


def concat_columns(parts: list[dict]) -> pd.DataFrame:
    """One DataFrame from several ``histogram_columns`` dicts (small-multiple panels)."""
    import numpy as np

    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in parts[0]})


def _stack_order(keys: list, status, counts):
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


def _stacked(bins: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Add ``y0, y1``: pruned at the bottom of each bin, kept on top (bars with x and x2 need explicit y and y2)."""
    df = bins.reset_index(drop=True)
    keys = [pd.factorize(df[c])[0] for c in by] + [pd.factorize(df["left"])[0]]
    order, y0, y1 = _stack_order(keys, df["status"].to_numpy(), df["count"].to_numpy())
    out = df.iloc[order].copy()
    out["y1"] = y1
    out["y0"] = y0
    return out


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
    _require(bins, ["left", "right", "count", "status"], "weight_histogram")
    stacked = _stacked(bins, [])
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
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight", legend=_LEGEND),
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
        _require(lines, ["x", "label"], "weight_histogram lines")
        color, dash = line_scales(list(lines["label"]))
        layers.append(
            alt.Chart(lines)
            .mark_rule(strokeWidth=2)
            .encode(
                x="x:Q",
                color=alt.Color("label:N", title="line", scale=color, legend=_TOP_LEGEND),
                strokeDash=alt.StrokeDash("label:N", scale=dash, legend=None),
                tooltip=[alt.Tooltip("label:N"), alt.Tooltip("x:Q", title="weight value", format=".5f")],
            )
        )
    chart = alt.layer(*layers).resolve_scale(color="independent", strokeDash="independent")
    height = 320 + LEGEND_SPACE
    return chart.properties(title=title, height=height) if title else chart.properties(height=height)


def _mixture_curves(curves: pd.DataFrame, y_scale, clip: bool) -> alt.Chart:
    """The dashed curves of a mixture's components (``x, component, density``) over a weight histogram."""
    _require(curves, ["x", "component", "density"], "weight_histogram curves")
    return (
        alt.Chart(curves)
        .mark_line(strokeWidth=2, clip=clip)
        .encode(
            x="x:Q",
            y=alt.Y("density:Q", scale=y_scale),
            strokeDash=alt.StrokeDash("component:N", title="Gaussian curves", legend=_LEGEND),
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
    _require(bins, ["left", "right", "count", "status"], "histogram_panel")
    return (
        alt.Chart(_stacked(bins, []))
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

    _require(bins, ["left", "right", "count", "status"], "histogram_panel_spec")
    left, right = bins["left"].to_numpy(dtype=float), bins["right"].to_numpy(dtype=float)
    status, count = bins["status"].to_numpy(), bins["count"].to_numpy()
    order, y0, y1 = _stack_order([np.unique(left, return_inverse=True)[1]], status, count)
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


def ridgeline(bins: pd.DataFrame, order: list, spike: float | None = None, overlap: float = 1.6) -> alt.Chart:
    """Stacked histograms over time (TensorBoard style): one ridge per snapshot or stage, top to
    bottom in ``order``, kept weights filled blue and exact zeros grey, all on one weight axis.

    ``bins``: ``step, left, right, count, status`` (``step`` a label in ``order``). Each ridge is
    scaled to its own tallest kept bin, so the zeros of a pruned snapshot do not flatten the rest
    (their bar is cut at the ridge height). ``spike``: MGPP's prior threshold w*; the band
    ``|w| < w*`` (the prior's spike) is shaded with its edges drawn.
    """
    _require(bins, ["step", "left", "right", "count", "status"], "ridgeline")
    data = bins.copy()
    tops = data[data["status"] == "kept"].groupby("step")["count"].max()
    data["height"] = (data["count"] / data["step"].map(tops).replace(0, 1)).clip(upper=overlap)
    data["row"] = data["step"].map({label: i for i, label in enumerate(order)})
    data["y0"] = -data["row"].astype(float)
    data["y1"] = data["y0"] + data["height"] * 0.9
    ticks = alt.Axis(values=[-float(i) for i in range(len(order))], labelExpr=_label_expr(order), title=None, grid=True)
    y = alt.Y("y0:Q", axis=ticks, scale=alt.Scale(domain=[-(len(order) - 1) - 0.1, 1.0 + 0.9 * overlap - 0.9], nice=False))
    bars = (
        alt.Chart(data)
        .mark_rect(opacity=0.85)
        .encode(
            x=alt.X("left:Q", title="weight value (the same sampled weights at every step)"),
            x2="right:Q",
            y=y,
            y2="y1:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight", legend=_LEGEND),
            tooltip=[alt.Tooltip("step:N", title="when"), alt.Tooltip("left:Q", title="from", format=".4f"),
                     alt.Tooltip("right:Q", title="to", format=".4f"), alt.Tooltip("status:N"), alt.Tooltip("count:Q", format=",")],
        )
    )
    layers = [bars]
    if spike:
        band = pd.DataFrame({"x": [-spike], "x2": [spike], "label": ["prior's spike |w| < w*"]})
        layers.insert(0, alt.Chart(band).mark_rect(color="#9467bd", opacity=0.15).encode(x="x:Q", x2="x2:Q", tooltip=[alt.Tooltip("label:N")]))
        edges = pd.DataFrame({"x": [-spike, spike], "label": [PRIOR_THRESHOLD] * 2})
        color, dash = line_scales([PRIOR_THRESHOLD])
        layers.append(
            alt.Chart(edges).mark_rule(strokeWidth=1.5).encode(
                x="x:Q", color=alt.Color("label:N", scale=color, title="line", legend=_LEGEND),
                strokeDash=alt.StrokeDash("label:N", scale=dash, legend=None), tooltip=[alt.Tooltip("label:N"), alt.Tooltip("x:Q", format=".3g")]
            )
        )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=max(160, 46 * len(order)) + LEGEND_SPACE)


def _label_expr(order: list) -> str:
    """A Vega label expression that names ridge ``i`` (drawn at y = -i) by ``order[i]``."""
    names = ", ".join("'" + str(x).replace("'", "") + "'" for x in order)
    return f"[{names}][-round(datum.value)] || ''"


# ---------------------------------------------------------------- Masks view
def mask_heatmap(cells: pd.DataFrame, block_rows: int, block_cols: int, title: str = "") -> alt.Chart:
    """A mask as a heatmap; each cell is a block of weights coloured by the fraction kept.

    ``cells``: ``out_from, in_from, kept`` (kept fraction 0-1 of a block of
    ``block_rows x block_cols`` weights starting at that output row / input column).
    """
    _require(cells, ["out_from", "in_from", "kept"], "mask_heatmap")
    df = cells.assign(out_to=cells["out_from"] + block_rows, in_to=cells["in_from"] + block_cols)
    unit = "weight" if block_rows * block_cols == 1 else f"block of {block_rows}x{block_cols} weights"
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X("in_from:Q", title="input column (d_in index)", scale=alt.Scale(nice=False)),
            x2="in_to:Q",
            y=alt.Y("out_from:Q", title="output row (d_out index)", scale=alt.Scale(reverse=True, nice=False)),
            y2="out_to:Q",
            color=alt.Color("kept:Q", title="fraction kept", scale=KEPT_FRACTION_SCALE, legend=alt.Legend(format="%", orient="bottom", titleLimit=0)),
            tooltip=[
                alt.Tooltip("out_from:Q", title="first output row"),
                alt.Tooltip("in_from:Q", title="first input column"),
                alt.Tooltip("kept:Q", title=f"kept ({unit})", format=".0%"),
            ],
        )
        .properties(title=title, height=360 + LEGEND_SPACE)
    )


def sparsity_bars(df: pd.DataFrame, target: float | None = None) -> alt.Chart:
    """Per-layer sparsity, one bar per layer (and method).

    ``df``: ``layer, method, sparsity`` (fraction 0-1).
    """
    _require(df, ["layer", "method", "sparsity"], "sparsity_bars")
    order = list(dict.fromkeys(df["layer"]))
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("layer:N", sort=order, title="layer", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            yOffset="method:N",
            x=alt.X("sparsity:Q", title="sparsity (% of the layer's weights removed)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("method:N", title="method", scale=method_scale(df["method"]), legend=_LEGEND),
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
    _require(df, ["a", "b", "value"], "overlap_matrix")
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
    _require(df, ["layer", "pair", "jaccard"], "layer_overlap_lines")
    order = list(dict.fromkeys(df["layer"]))
    return (
        alt.Chart(df)
        .mark_point(filled=True, size=50)
        .encode(
            y=alt.Y("layer:N", sort=order, title="layer", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            x=alt.X("jaccard:Q", title="Jaccard overlap of kept weights (0-1)", scale=alt.Scale(domain=[0, 1])),
            shape=alt.Shape("pair:N", title="method pair", legend=_LEGEND),
            color=alt.value("#333333"),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("pair:N"), alt.Tooltip("jaccard:Q", format=".3f")],
        )
        .properties(height=max(200, ROW_PX * len(order)) + LEGEND_SPACE)
    )


# ---------------------------------------------------------------- Random candidates view
def candidate_bars(df: pd.DataFrame, value: str, value_title: str, fmt: str = ".3f", metric: str | None = None, span: tuple | None = None,
                   min_span: float = 0.0) -> alt.Chart:
    """One dot per candidate mask, the chosen one highlighted.

    Dots, not bars: the axis is zoomed to the candidates' range (they often differ in the third
    decimal), and a bar on a zoomed axis would exaggerate the differences.
    ``df``: ``candidate, <value>, chosen`` (chosen: bool). With ``metric="accuracy"`` the values
    (fractions) are drawn in points. ``span``: the (low, high) the axis must hold, in the values'
    unit (default: the values' range), e.g. with intervals drawn over the dots.
    """
    _require(df, ["candidate", value, "chosen"], "candidate_bars")
    if metric == "accuracy":
        df, value_title, fmt = in_points(df, metric, value), f"{value_title} (points)", ".2f"
        span = span and tuple(shown_value(metric, v) for v in span)
    data = df.assign(role=df["chosen"].map({True: "chosen", False: "other"}))
    lo, hi = span or (float(data[value].min()), float(data[value].max()))
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = (hi - lo) * 0.15 or abs(hi) * 0.01 or 0.01
    return (
        alt.Chart(data)
        .mark_point(filled=True, size=160, opacity=1.0)
        .encode(
            x=alt.X("candidate:N", title="candidate mask", sort=list(data["candidate"])),
            y=alt.Y(f"{value}:Q", title=value_title, scale=alt.Scale(domain=[lo - pad, hi + pad], zero=False)),
            color=alt.Color("role:N", scale=CHOSEN_SCALE, title=None, legend=_LEGEND),
            tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip(f"{value}:Q", title=value_title, format=fmt), alt.Tooltip("role:N")],
        )
        .properties(height=260 + LEGEND_SPACE)
    )


# ---------------------------------------------------------------- Sparsity ramp view
def ramp_chart(df: pd.DataFrame, dense: float | None = None, metric: str = "accuracy") -> alt.Chart:
    """Metric against sparsity, one line per method and granularity, the dense model as a reference line.

    ``df``: ``method, granularity, sparsity, value``.
    """
    _require(df, ["method", "granularity", "sparsity", "value"], "ramp_chart")
    title = metric_title(metric)
    df = in_points(df, metric)
    y_scale = alt.Scale(type="log") if metric == "perplexity" else alt.Scale(zero=False)
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=60, filled=True))
        .encode(
            x=alt.X("sparsity:Q", title="sparsity (% of targeted weights removed)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("value:Q", title=title + (", log scale" if metric == "perplexity" else ""), scale=y_scale),
            color=alt.Color("method:N", title="method", scale=method_scale(df["method"]), legend=_LEGEND),
            strokeDash=alt.StrokeDash("granularity:N", title="granularity", legend=_DASH_LEGEND),
            tooltip=[
                alt.Tooltip("method:N"),
                alt.Tooltip("granularity:N"),
                alt.Tooltip("sparsity:Q", format=".0%"),
                alt.Tooltip("value:Q", title=metric, format=".4g"),
            ],
        )
    )
    if dense is None:
        return lines.properties(height=380 + LEGEND_SPACE)
    rule = (
        alt.Chart(pd.DataFrame({"value": [shown_value(metric, dense)], "label": ["dense model"]}))
        .mark_rule(color=DENSE_COLOR, strokeDash=[6, 4])
        .encode(y="value:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("value:Q", title=metric, format=".4g")])
    )
    return alt.layer(lines, rule).properties(height=380 + LEGEND_SPACE)


# ---------------------------------------------------------------- Layer sensitivity view
def sensitivity_unit(metric: str, value: str = "drop", dense: float | None = None) -> str:
    """What a sensitivity signal is drawn in: the KL divergence from the dense model, or the drop in the
    one unit of its metric (accuracy points lost, the perplexity ratio to ``dense``; perplexity added without it)."""
    if value == "kl":
        return "KL divergence from the dense model (nats)"
    return harm_unit(metric) if metric == "accuracy" or dense else "perplexity added"


def harm_frame(df: pd.DataFrame, metric: str, value: str = "drop", dense: float | None = None, suffixes=("",)) -> pd.DataFrame:
    """``df`` with ``harm<suffix>`` in :func:`sensitivity_unit` for each column ``<value><suffix>``: the KL as
    is, accuracy points lost (``drop`` is a fraction), or the perplexity ratio to dense (``drop`` is
    pruned - dense, so it needs ``dense``). ``suffixes=("", "_ci_low", "_ci_high")`` converts an interval too."""
    def harm(column: pd.Series) -> pd.Series:
        if value == "drop" and metric == "accuracy":
            return column * 100.0
        if value == "drop" and dense:
            return (column + dense) / dense
        return column

    return df.assign(**{f"harm{sfx}": harm(df[f"{value}{sfx}"]) for sfx in suffixes})


def sensitivity_bars(df: pd.DataFrame, metric: str = "accuracy", value: str = "drop", dense: float | None = None) -> alt.Chart:
    """Harm (or, with ``value="kl"``, the KL divergence) when only one layer is pruned, most sensitive first.

    ``df``: ``layer, <value>`` (positive = worse than dense: accuracy fraction lost, or perplexity added).
    A drop is drawn in accuracy points lost, or as the perplexity ratio to ``dense``.
    """
    _require(df, ["layer", value], "sensitivity_bars")
    data = harm_frame(df, metric, value, dense)
    order = list(data.sort_values("harm", ascending=False)["layer"])
    unit = sensitivity_unit(metric, value, dense)
    base = 1.0 if value == "drop" and metric != "accuracy" and dense else 0.0
    title = f"{'drop' if value == 'drop' else 'change'} when only this layer is pruned ({unit})"
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("layer:N", sort=order, title="layer (most sensitive first)", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            x=alt.X("harm:Q", title=title, scale=alt.Scale(zero=not base), axis=alt.Axis(format="~g")),
            x2=alt.datum(base),
            color=alt.value(ACCENT_COLOR),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("harm:Q", title=unit, format=".4g")],
        )
        .properties(height=max(200, ROW_PX * len(order)))
    )


def _harm_scale(metric: str, value: str) -> alt.Scale:
    """The heatmap's colour scale: for a drop, fixed up front (``style.HARM_DOMAIN``) so it does not change
    while the points arrive; for the KL (no fixed range), from 0 up."""
    if value == "kl":
        return alt.Scale(scheme="reds", type="symlog", constant=1e-3, domain=KL_DOMAIN, clamp=True)
    kind = "accuracy" if metric == "accuracy" else "perplexity"
    return alt.Scale(scheme="redblue", reverse=True, domain=HARM_DOMAIN[kind], domainMid=HARM_MID[kind], clamp=True,
                     type="linear" if kind == "accuracy" else "log")


def sensitivity_heatmap(df: pd.DataFrame, metric: str = "accuracy", value: str = "drop", dense: float | None = None) -> alt.Chart:
    """Layer x sparsity heatmap of the harm (or, with ``value="kl"``, the KL divergence), in :func:`sensitivity_unit`.

    ``df``: ``layer, sparsity, <value>`` (as in :func:`sensitivity_bars`).
    """
    _require(df, ["layer", "sparsity", value], "sensitivity_heatmap")
    order = list(dict.fromkeys(df["layer"]))
    data = harm_frame(df, metric, value, dense)
    data = data.assign(sparsity_label=(data["sparsity"] * 100).round().astype(int).astype(str) + "%")
    labels = list(dict.fromkeys(data.sort_values("sparsity")["sparsity_label"]))
    unit = sensitivity_unit(metric, value, dense)
    note = "" if value == "kl" else " (blue: better than dense)"
    legend = alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=220)
    if value == "kl":  # a symlog gradient bunches its automatic labels at the top: one label per decade
        legend = alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=260, values=KL_TICKS, format="~g")
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X("sparsity_label:O", sort=labels, title="sparsity of that one layer", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("layer:N", sort=order, title="layer", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            color=alt.Color("harm:Q", title=f"{unit}{note}", scale=_harm_scale(metric, value), legend=legend),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("sparsity:Q", format=".0%"), alt.Tooltip("harm:Q", title=unit, format=".4g")],
        )
        .properties(height=max(200, ROW_PX * len(order)) + LEGEND_SPACE)
    )


def allocation_bars(df: pd.DataFrame, target: float) -> alt.Chart:
    """Suggested per-layer sparsity with the uniform target as a reference.

    ``df``: ``layer, sparsity``.
    """
    _require(df, ["layer", "sparsity"], "allocation_bars")
    plot = df.assign(method="suggested")
    return sparsity_bars(plot, target=target)


# ---------------------------------------------------------------- Learn view
def matrix_heatmap(df: pd.DataFrame, title: str, value_title: str, fmt: str = ".1f", scheme: str = "redblue", domain_mid: float | None = 0.0) -> alt.Chart:
    """A small matrix with its numbers written in; pruned cells (``kept`` False) are crossed out in grey.

    ``df``: ``row, col, value`` and optionally ``kept`` (bool).
    """
    _require(df, ["row", "col", "value"], "matrix_heatmap")
    data = df.copy()
    if "kept" not in data.columns:
        data["kept"] = True
    data["state"] = data["kept"].map({True: "kept", False: "pruned"})
    scale = alt.Scale(scheme=scheme, domainMid=domain_mid) if domain_mid is not None else alt.Scale(scheme=scheme)
    base = alt.Chart(data).encode(
        x=alt.X("col:O", title="input j"),
        y=alt.Y("row:O", title="output i"),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.condition("datum.kept", alt.Color("value:Q", title=value_title, scale=scale, legend=_SMALL_LEGEND), alt.value(PRUNED_COLOR)),
        tooltip=[
            alt.Tooltip("row:O", title="row i"),
            alt.Tooltip("col:O", title="column j"),
            alt.Tooltip("value:Q", title=value_title, format=fmt),
            alt.Tooltip("state:N", title="weight"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("value:Q", format=fmt),
        color=alt.condition("datum.kept", alt.value("black"), alt.value("#555555")),
    )
    return alt.layer(cells, text).properties(title=title, width=alt.Step(30), height=alt.Step(28))


def error_curve(df: pd.DataFrame, current: float | None = None) -> alt.Chart:
    """Output error of the small layer against sparsity, per criterion.

    ``df``: ``criterion, sparsity, error`` (relative error 0-1).
    """
    _require(df, ["criterion", "sparsity", "error"], "error_curve")
    lines = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("sparsity:Q", title="sparsity (% of weights removed)", axis=alt.Axis(format="%")),
            y=alt.Y("error:Q", title="relative output error ||WX - W'X|| / ||WX||", axis=alt.Axis(format="%")),
            color=alt.Color("criterion:N", title="criterion", scale=method_scale(df["criterion"]), legend=_LEGEND),
            tooltip=[alt.Tooltip("criterion:N"), alt.Tooltip("sparsity:Q", format=".0%"), alt.Tooltip("error:Q", format=".1%")],
        )
    )
    if current is None:
        return lines.properties(height=260 + LEGEND_SPACE)
    rule = alt.Chart(pd.DataFrame({"sparsity": [current]})).mark_rule(color=ACCENT_COLOR, strokeDash=[4, 3]).encode(
        x="sparsity:Q", tooltip=[alt.Tooltip("sparsity:Q", title="current sparsity", format=".0%")]
    )
    return alt.layer(lines, rule).properties(height=260 + LEGEND_SPACE)


# ---------------------------------------------------------------- Steps view (trained seed methods)
def schedule_chart(curve: pd.DataFrame, reached: pd.DataFrame | None = None, marks: pd.DataFrame | None = None) -> alt.Chart:
    """MGPP/GMP schedule over training steps: the cubic target, the sparsity in force, the prior's
    weight, what was measured at each snapshot (black points, one shape per series), and rules at t0 and t1.

    ``curve``: ``step, series, value`` (fractions 0-1); ``reached``: ``step, series, value`` (points);
    ``marks``: ``step, label``.
    """
    _require(curve, ["step", "series", "value"], "schedule_chart")
    color = alt.Color("series:N", title=None, scale=alt.Scale(range=SERIES_RANGE), legend=_LEGEND)
    x = alt.X("step:Q", title="training step", axis=alt.Axis(format="d", tickMinStep=1))
    y = alt.Y("value:Q", title="fraction (sparsity, or lam_t / lam)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    tooltip = [alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".1%")]
    layers = [alt.Chart(curve).mark_line(strokeWidth=2).encode(x=x, y=y, color=color, tooltip=tooltip)]
    if reached is not None and len(reached):
        _require(reached, ["step", "series", "value"], "schedule_chart reached")
        layers.append(
            alt.Chart(reached)
            .mark_point(size=80, filled=True, color="black")
            .encode(
                x="step:Q",
                y=y,
                shape=alt.Shape("series:N", title=None, scale=alt.Scale(range=["diamond", "circle", "square"]), legend=_TOP_LEGEND),
                tooltip=tooltip,
            )
        )
    if marks is not None and len(marks):
        _require(marks, ["step", "label"], "schedule_chart marks")
        layers.append(
            alt.Chart(marks).mark_rule(color="#888888", strokeDash=[4, 3]).encode(x="step:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("step:Q")])
        )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=300 + 2 * LEGEND_SPACE)


def training_charts(df: pd.DataFrame) -> list[alt.Chart]:
    """Held-out metric and losses over training steps, one chart per panel (the page puts them side
    by side in columns, so each fits its column's width).

    ``df``: ``step, series, value, panel`` (``panel`` "accuracy", "perplexity" or "loss").
    """
    _require(df, ["step", "series", "value", "panel"], "training_charts")
    charts = []
    for panel in dict.fromkeys(df["panel"]):
        part = df[df["panel"] == panel]
        cis = [c for c in ("ci_low", "ci_high") if c in part.columns and part[c].notna().any()]
        part = in_points(part.astype({c: float for c in cis}), panel, "value", *cis)
        title = metric_title(panel) if panel != "loss" else "loss (cross-entropy, nats)"
        line = (
            alt.Chart(part)
            .mark_line(point=True)
            .encode(
                x=alt.X("step:Q", title="training step"),
                y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False), axis=alt.Axis(format=",.4~g")),
                color=alt.Color("series:N", title=None, scale=alt.Scale(range=SERIES_RANGE), legend=_LEGEND),
                tooltip=[alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".4g")],
            )
            .properties(height=240 + LEGEND_SPACE)
        )
        bars = _interval_rules(part, "step:Q")
        charts.append(line if bars is None else alt.layer(line, bars).properties(height=240 + LEGEND_SPACE))
    return charts


def _interval_rules(df: pd.DataFrame, x: str):
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


def stage_bars(df: pd.DataFrame, metric: str, order: list | None = None) -> alt.Chart:
    """The task metric after each stage of a method (SDS: dense, sparse, dense step, sparse again).

    ``df``: ``stage, value``.
    """
    _require(df, ["stage", "value"], "stage_bars")
    order = order or list(dict.fromkeys(df["stage"]))
    fmt = ".1f" if metric == "accuracy" else ",.2f"
    df = in_points(df, metric, "value", *[c for c in ("ci_low", "ci_high") if c in df.columns])
    base = alt.Chart(df).encode(
        x=alt.X("stage:N", sort=order, title="after stage", axis=alt.Axis(labelAngle=0)),
        y=alt.Y(
            "value:Q",
            title=metric_title(metric) + " on held-out training data",
            scale=alt.Scale(domain=[0, 100]) if metric == "accuracy" else alt.Scale(zero=True),
        ),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("value:Q", title=metric, format=fmt)],
    )
    bars = base.mark_bar(color=NEUTRAL_COLOR, opacity=0.6)
    labels = base.mark_text(dy=-8, align="left", dx=4).encode(text=alt.Text("value:Q", format=fmt))
    rules = _interval_rules(df, alt.X("stage:N", sort=order))
    return alt.layer(bars, labels, *([] if rules is None else [rules])).properties(height=260)


def layer_error_chart(df: pd.DataFrame, order: list | None = None) -> alt.Chart:
    """Per-layer relative reconstruction error at each SDS stage (log scale).

    ``df``: ``layer, stage, error``; ``order``: the layers in model order.
    """
    _require(df, ["layer", "stage", "error"], "layer_error_chart")
    order = order or list(dict.fromkeys(df["layer"]))
    data = df.assign(error=df["error"].clip(lower=1e-8))
    return (
        alt.Chart(data)
        .mark_line(point=True, strokeWidth=1.5)
        .encode(
            x=alt.X("layer:N", sort=order, title="layer (model order)", axis=alt.Axis(labelAngle=-60, labelLimit=160, labelOverlap=True)),
            y=alt.Y("error:Q", title="relative error ||W_d X - W X||^2 / ||W_d X||^2 (log)", scale=alt.Scale(type="log")),
            color=alt.Color("stage:N", title="weights", scale=alt.Scale(range=["#888888", "#333333", ACCENT_COLOR]), legend=_LEGEND),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("stage:N"), alt.Tooltip("error:Q", format=".3e")],
        )
        .properties(height=300 + LEGEND_SPACE)
    )


def early_curves_chart(df: pd.DataFrame, metric: str, n_last: int | None = None) -> alt.Chart:
    """Held-out metric of each candidate during its early-evaluation fine-tune, the chosen one in red.

    ``df``: ``candidate, step, value, chosen``.
    """
    _require(df, ["candidate", "step", "value", "chosen"], "early_curves_chart")
    data = in_points(df, metric).assign(role=df["chosen"].map({True: "chosen", False: "other"}))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="fine-tuning step of the candidate" + (f" (score = mean of the last {n_last} points)" if n_last else "")),
            y=alt.Y("value:Q", title=metric_title(metric) + " on held-out training data", scale=alt.Scale(zero=False)),
            color=alt.Color("role:N", scale=CHOSEN_SCALE, title=None, legend=_LEGEND),
            detail="candidate:N",
            strokeWidth=alt.condition("datum.chosen", alt.value(3), alt.value(1.5)),
            tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", title=metric, format=".4g"), alt.Tooltip("role:N")],
        )
        .properties(height=280 + LEGEND_SPACE)
    )


# ---------------------------------------------------------------- the score picture (Weights view)
_POW10 = "format(pow(10, datum.value), '.2~g')"


def score_plane(cells: pd.DataFrame, boundary: pd.DataFrame | None = None, method: str = "") -> alt.Chart:
    """|W_ij| against the input-feature norm ||X_j||, both on log axes: each cell coloured by the
    share of its weights that is kept (grey = all pruned, blue = all kept), fainter where it holds
    few weights; ``boundary`` (the score threshold's curve) drawn in red.

    ``cells``: ``x0, x1, y0, y1`` (log10 edges), ``count``, ``kept``, ``kept_fraction``;
    ``boundary``: ``x, y`` (log10).
    """
    _require(cells, ["x0", "x1", "y0", "y1", "count", "kept_fraction"], "score_plane")
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
        _require(boundary, ["x", "y"], "score_plane boundary")
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
    _require(bins, ["left", "right", "count", "status"], "score_histogram")
    stacked = _stacked(bins[bins["left"] > 0], [])
    top = float(stacked["y1"].max()) if len(stacked) else 1.0
    bars = (
        alt.Chart(stacked)
        .mark_bar()
        .encode(
            x=alt.X("left:Q", title=f"{method} score (log)".strip(), scale=alt.Scale(type="log"), axis=alt.Axis(format="~g")),
            x2="right:Q",
            y=alt.Y("y1:Q", **count_axis(top, False, "count (weights per bin)")),
            y2="y0:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight", legend=_LEGEND),
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


# ---------------------------------------------------------------- where two masks disagree (Masks view)
AGREEMENT = ("kept by both", "kept by A only", "kept by B only", "pruned by both")


def agreement_picture(cells: pd.DataFrame, a: str, b: str, title: str = "") -> alt.Chart:
    """One weight per cell, coloured by which of two masks keeps it (A = method ``a``, B = method ``b``):
    kept by both in the kept blue, pruned by both in the pruned grey, kept by one only in that method's colour.

    ``cells``: ``row, col, agreement`` (one of ``AGREEMENT``).
    """
    _require(cells, ["row", "col", "agreement"], "agreement_picture")
    names = {"kept by A only": f"kept by {a} only", "kept by B only": f"kept by {b} only"}
    data = cells.assign(label=cells["agreement"].map(lambda v: names.get(v, v)))
    scale = alt.Scale(domain=[names.get(d, d) for d in AGREEMENT], range=[KEPT_COLOR, method_color(a), method_color(b), PRUNED_COLOR])
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X("col:O", title="input column", axis=alt.Axis(values=list(range(0, int(cells["col"].max()) + 1, 8)), labelAngle=0)),
            y=alt.Y("row:O", title="output row", axis=alt.Axis(values=list(range(0, int(cells["row"].max()) + 1, 8)))),
            color=alt.Color("label:N", title=None, scale=scale, legend=_LEGEND),
            tooltip=[alt.Tooltip("row:O", title="output row"), alt.Tooltip("col:O", title="input column"), alt.Tooltip("label:N", title="weight")],
        )
        .properties(title=title, height=320 + LEGEND_SPACE)
    )


# ---------------------------------------------------------------- serving charts
def unvalidated(chart):
    """``chart`` whose ``to_dict()``, which ``st.altair_chart`` calls on every rerun, skips Altair's
    schema validation: about half of a chart's conversion, paid on every slider move (and under
    Streamlit's process-wide Altair lock, so by every session in turn). Each builder's spec is
    validated by its test instead (``type(chart).to_dict(chart)``); anything else passes through."""
    if isinstance(chart, list):  # a builder that returns one chart per panel
        return [unvalidated(c) for c in chart]
    if isinstance(chart, alt.TopLevelMixin):
        object.__setattr__(chart, "to_dict", functools.partial(_served_dict, chart))
    return chart


def _served_dict(chart, *args, validate=False, context=None, **kwargs) -> dict:
    """The chart's spec without validation; at the top level, with :data:`PLOT_AUTOSIZE` unless it sets its own."""
    spec = type(chart).to_dict(chart, *args, validate=False, context=context, **kwargs)
    if context is None and "autosize" not in spec:
        spec["autosize"] = dict(PLOT_AUTOSIZE)
    return spec


def serve_unvalidated(namespace: dict) -> None:
    """Wrap every public function defined in the module ``namespace`` so that the charts it returns
    are :func:`unvalidated` (called at the end of each chart-builder module)."""
    import inspect

    for name, fn in list(namespace.items()):
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != namespace["__name__"]:
            continue
        if name in ("unvalidated", "serve_unvalidated"):
            continue

        def wrapped(*args, _build=fn, **kwargs):
            return unvalidated(_build(*args, **kwargs))

        namespace[name] = functools.wraps(fn)(wrapped)


serve_unvalidated(globals())
