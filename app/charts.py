"""Chart builders: pure functions ``DataFrame -> altair.Chart``.

No Streamlit, no torch: every builder takes a tidy DataFrame (columns named in
its docstring) and returns a chart with tooltips and axis titles that say the
unit. Pages reshape backend results into these frames; tests call the builders
directly.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

KEPT_COLOR = "#1f77b4"
PRUNED_COLOR = "#ff7f0e"
STATUS_SCALE = alt.Scale(domain=["kept", "pruned"], range=[KEPT_COLOR, PRUNED_COLOR])
CHOSEN_SCALE = alt.Scale(domain=["chosen", "other"], range=["#d62728", "#9ecae1"])


def _require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(df.columns)}")


def metric_title(metric: str) -> str:
    """Axis title with the unit of a task metric."""
    return {
        "accuracy": "accuracy (fraction correct, higher is better)",
        "perplexity": "perplexity (lower is better)",
    }.get(metric, metric)


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


def _stacked(bins: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Add ``y0, y1``: pruned at the bottom of each bin, kept on top (bars with x and x2 need explicit y and y2)."""
    import numpy as np

    df = bins.reset_index(drop=True)
    keys = [pd.factorize(df[c])[0] for c in by] + [pd.factorize(df["left"])[0]]
    rank = np.where(df["status"].to_numpy() == "pruned", 0, 1)
    order = np.lexsort([rank] + keys[::-1])
    groups = np.zeros(len(df), dtype=np.int64)
    for k in keys:
        groups = groups * (int(k.max()) + 1 if len(k) else 1) + k
    g = groups[order]
    counts = df["count"].to_numpy()[order]
    total = np.cumsum(counts)
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1] if len(g) else np.array([], dtype=int)
    before = np.repeat(total[starts] - counts[starts], np.diff(np.r_[starts, len(g)])) if len(g) else total
    out = df.iloc[order].copy()
    out["y1"] = total - before
    out["y0"] = out["y1"] - counts
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
    ``lines``: ``x, label`` (e.g. the pruning threshold and the spike/slab crossing).
    ``y_max`` fixes the count axis (curves taller than it, such as a prior's narrow spike, are cut at the top).
    """
    _require(bins, ["left", "right", "count", "status"], "weight_histogram")
    domain = {"domain": [0, y_max], "clamp": True} if y_max else {}
    y_scale = alt.Scale(type="symlog", **domain) if log_count else alt.Scale(**domain)
    y_title = "count (weights per bin, log scale)" if log_count else "count (weights per bin)"
    bars = (
        alt.Chart(_stacked(bins, []))
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X("left:Q", title="weight value", scale=alt.Scale(zero=False)),
            x2="right:Q",
            y=alt.Y("y1:Q", title=y_title, scale=y_scale),
            y2="y0:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight"),
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
        layers.append(_mixture_curves(curves, y_scale, clip=bool(y_max)))
    if lines is not None and len(lines):
        _require(lines, ["x", "label"], "weight_histogram lines")
        layers.append(
            alt.Chart(lines)
            .mark_rule(strokeWidth=2)
            .encode(
                x="x:Q",
                color=alt.Color("label:N", title="line", scale=alt.Scale(range=["#d62728", "#2ca02c", "#9467bd"])),
                tooltip=[alt.Tooltip("label:N"), alt.Tooltip("x:Q", title="weight value", format=".5f")],
            )
        )
    chart = alt.layer(*layers).resolve_scale(color="independent")
    return chart.properties(title=title, height=320) if title else chart.properties(height=320)


def _mixture_curves(curves: pd.DataFrame, y_scale, clip: bool) -> alt.Chart:
    """The dashed curves of a mixture's components (``x, component, density``) over a weight histogram."""
    _require(curves, ["x", "component", "density"], "weight_histogram curves")
    return (
        alt.Chart(curves)
        .mark_line(strokeWidth=2, clip=clip)
        .encode(
            x="x:Q",
            y=alt.Y("density:Q", scale=y_scale),
            strokeDash=alt.StrokeDash("component:N", title="Gaussian mixture", legend=alt.Legend(labelLimit=340)),
            detail="component:N",
            color=alt.value("#333333"),
            tooltip=[
                alt.Tooltip("component:N"),
                alt.Tooltip("x:Q", title="weight", format=".4f"),
                alt.Tooltip("density:Q", title="expected count per bin", format=",.1f"),
            ],
        )
    )


def histogram_grid(bins: pd.DataFrame, columns: int = 6, order: list | None = None, shared_x: bool = False) -> alt.Chart:
    """Small multiples: one kept/pruned histogram per layer (or per training step: any label in ``layer``).

    ``bins``: ``layer, left, right, count, status``. ``order``: panel order (default: sorted labels).
    ``shared_x``: one weight axis for every panel (to compare snapshots of the same weights).
    """
    _require(bins, ["layer", "left", "right", "count", "status"], "histogram_grid")
    return (
        alt.Chart(_stacked(bins, ["layer"]))
        .mark_bar()
        .encode(
            x=alt.X("left:Q", title="weight value"),
            x2="right:Q",
            y=alt.Y("y1:Q", title="count (sampled weights)"),
            y2="y0:Q",
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight"),
            tooltip=[
                alt.Tooltip("layer:N"),
                alt.Tooltip("left:Q", title="from", format=".4f"),
                alt.Tooltip("right:Q", title="to", format=".4f"),
                alt.Tooltip("status:N"),
                alt.Tooltip("count:Q", format=","),
            ],
        )
        .properties(width=150, height=90)
        .facet(facet=alt.Facet("layer:N", title=None, sort=order or "ascending", header=alt.Header(labelFontSize=10)), columns=columns)
        .resolve_scale(x="shared" if shared_x else "independent", y="independent")
    )


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
            color=alt.Color("kept:Q", title="fraction kept", scale=alt.Scale(domain=[0, 1], scheme="blues")),
            tooltip=[
                alt.Tooltip("out_from:Q", title="first output row"),
                alt.Tooltip("in_from:Q", title="first input column"),
                alt.Tooltip("kept:Q", title=f"kept ({unit})", format=".0%"),
            ],
        )
        .properties(title=title, height=360)
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
            color=alt.Color("method:N", title="method", scale=alt.Scale(scheme="tableau10")),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("method:N"), alt.Tooltip("sparsity:Q", format=".2%")],
        )
    )
    if target is None:
        return bars.properties(height=max(200, 14 * len(order)))
    rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(color="#d62728", strokeDash=[4, 3]).encode(
        x="target:Q", tooltip=[alt.Tooltip("target:Q", title="target sparsity", format=".0%")]
    )
    return alt.layer(bars, rule).properties(height=max(200, 14 * len(order)))


def overlap_matrix(df: pd.DataFrame, title: str = "", value_title: str = "Jaccard overlap of kept weights") -> alt.Chart:
    """A square heatmap of pairwise overlaps with the value written in each cell.

    ``df``: ``a, b, value`` (0-1), one row per ordered pair.
    """
    _require(df, ["a", "b", "value"], "overlap_matrix")
    order = list(dict.fromkeys(list(df["a"]) + list(df["b"])))
    base = alt.Chart(df).encode(
        x=alt.X("b:N", sort=order, title=None),
        y=alt.Y("a:N", sort=order, title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", title=value_title, scale=alt.Scale(domain=[0, 1], scheme="viridis")),
        tooltip=[alt.Tooltip("a:N"), alt.Tooltip("b:N"), alt.Tooltip("value:Q", title=value_title, format=".3f")],
    )
    step = alt.Step(44 if len(order) <= 12 else 18)
    if len(order) > 12:  # too many cells to write in
        return cells.properties(title=title, width=step, height=step)
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("value:Q", format=".2f"),
        color=alt.condition("datum.value > 0.6", alt.value("black"), alt.value("white")),
    )
    return alt.layer(cells, text).properties(title=title, width=step, height=step)


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
            color=alt.Color("pair:N", title="method pair", scale=alt.Scale(scheme="tableau10")),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("pair:N"), alt.Tooltip("jaccard:Q", format=".3f")],
        )
        .properties(height=max(200, 14 * len(order)))
    )


# ---------------------------------------------------------------- Random candidates view
def candidate_bars(df: pd.DataFrame, value: str, value_title: str, fmt: str = ".3f", span: tuple | None = None) -> alt.Chart:
    """One dot per candidate mask, the chosen one highlighted.

    Dots, not bars: the axis is zoomed to the candidates' range (they often differ in the third
    decimal), and a bar on a zoomed axis would exaggerate the differences.
    ``df``: ``candidate, <value>, chosen`` (chosen: bool). ``span``: the (low, high) the axis must
    hold (default: the values' range), e.g. with intervals drawn over the dots.
    """
    _require(df, ["candidate", value, "chosen"], "candidate_bars")
    data = df.assign(role=df["chosen"].map({True: "chosen", False: "other"}))
    lo, hi = span or (float(data[value].min()), float(data[value].max()))
    pad = (hi - lo) * 0.15 or abs(hi) * 0.01 or 0.01
    return (
        alt.Chart(data)
        .mark_point(filled=True, size=160, opacity=1.0)
        .encode(
            x=alt.X("candidate:N", title="candidate mask", sort=list(data["candidate"])),
            y=alt.Y(f"{value}:Q", title=value_title, scale=alt.Scale(domain=[lo - pad, hi + pad], zero=False)),
            color=alt.Color("role:N", scale=CHOSEN_SCALE, title=None),
            tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip(f"{value}:Q", title=value_title, format=fmt), alt.Tooltip("role:N")],
        )
        .properties(height=260)
    )


# ---------------------------------------------------------------- Sparsity ramp view
def ramp_chart(df: pd.DataFrame, dense: float | None = None, metric: str = "accuracy") -> alt.Chart:
    """Metric against sparsity, one line per method and granularity, the dense model as a reference line.

    ``df``: ``method, granularity, sparsity, value``.
    """
    _require(df, ["method", "granularity", "sparsity", "value"], "ramp_chart")
    title = metric_title(metric)
    y_scale = alt.Scale(type="log") if metric == "perplexity" else alt.Scale(zero=False)
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=60, filled=True))
        .encode(
            x=alt.X("sparsity:Q", title="sparsity (% of targeted weights removed)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("value:Q", title=title + (", log scale" if metric == "perplexity" else ""), scale=y_scale),
            color=alt.Color("method:N", title="method", scale=alt.Scale(scheme="tableau10")),
            strokeDash=alt.StrokeDash("granularity:N", title="granularity"),
            tooltip=[
                alt.Tooltip("method:N"),
                alt.Tooltip("granularity:N"),
                alt.Tooltip("sparsity:Q", format=".0%"),
                alt.Tooltip("value:Q", title=metric, format=".4g"),
            ],
        )
    )
    if dense is None:
        return lines.properties(height=380)
    rule = (
        alt.Chart(pd.DataFrame({"value": [dense], "label": ["dense model"]}))
        .mark_rule(color="black", strokeDash=[6, 4])
        .encode(y="value:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("value:Q", title=metric, format=".4g")])
    )
    return alt.layer(lines, rule).properties(height=380)


# ---------------------------------------------------------------- Layer sensitivity view
def sensitivity_unit(metric: str, value: str = "drop") -> str:
    """What a sensitivity signal measures: the metric's drop, or the KL divergence from the dense model."""
    if value == "kl":
        return "KL divergence from the dense model (nats)"
    return "accuracy points lost" if metric == "accuracy" else "perplexity added"


def sensitivity_bars(df: pd.DataFrame, metric: str = "accuracy", value: str = "drop") -> alt.Chart:
    """Metric drop (or, with ``value="kl"``, KL divergence) when only one layer is pruned, most sensitive first.

    ``df``: ``layer, <value>`` (harm: positive = worse than dense).
    """
    _require(df, ["layer", value], "sensitivity_bars")
    order = list(df.sort_values(value, ascending=False)["layer"])
    unit = sensitivity_unit(metric, value)
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("layer:N", sort=order, title="layer (most sensitive first)", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            x=alt.X(f"{value}:Q", title=f"{'drop' if value == 'drop' else 'change'} when only this layer is pruned ({unit})", axis=alt.Axis(format="~g")),
            color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="reds"), legend=None),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip(f"{value}:Q", title=unit, format=".4f")],
        )
        .properties(height=max(200, 14 * len(order)))
    )


def sensitivity_heatmap(df: pd.DataFrame, metric: str = "accuracy", value: str = "drop") -> alt.Chart:
    """Layer x sparsity heatmap of the metric drop (or, with ``value="kl"``, the KL divergence).

    ``df``: ``layer, sparsity, <value>``.
    """
    _require(df, ["layer", "sparsity", value], "sensitivity_heatmap")
    order = list(dict.fromkeys(df["layer"]))
    unit = sensitivity_unit(metric, value)
    data = df.assign(sparsity_label=(df["sparsity"] * 100).round().astype(int).astype(str) + "%")
    labels = list(dict.fromkeys(data.sort_values("sparsity")["sparsity_label"]))
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X("sparsity_label:O", sort=labels, title="sparsity of that one layer"),
            y=alt.Y("layer:N", sort=order, title="layer", axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            color=alt.Color(f"{value}:Q", title=f"{unit} (below 0: better than dense)", scale=alt.Scale(scheme="redblue", reverse=True, domainMid=0)),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("sparsity:Q", format=".0%"), alt.Tooltip(f"{value}:Q", title=unit, format=".4f")],
        )
        .properties(height=max(200, 16 * len(order)))
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
        color=alt.condition("datum.kept", alt.Color("value:Q", title=value_title, scale=scale), alt.value("#dddddd")),
        tooltip=[
            alt.Tooltip("row:O", title="row i"),
            alt.Tooltip("col:O", title="column j"),
            alt.Tooltip("value:Q", title=value_title, format=fmt),
            alt.Tooltip("state:N", title="weight"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("value:Q", format=fmt),
        color=alt.condition("datum.kept", alt.value("black"), alt.value("#999999")),
    )
    return alt.layer(cells, text).properties(title=title, width=alt.Step(34), height=alt.Step(30))


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
            color=alt.Color("criterion:N", title="criterion", scale=alt.Scale(scheme="tableau10")),
            tooltip=[alt.Tooltip("criterion:N"), alt.Tooltip("sparsity:Q", format=".0%"), alt.Tooltip("error:Q", format=".1%")],
        )
    )
    if current is None:
        return lines.properties(height=260)
    rule = alt.Chart(pd.DataFrame({"sparsity": [current]})).mark_rule(color="#d62728", strokeDash=[4, 3]).encode(
        x="sparsity:Q", tooltip=[alt.Tooltip("sparsity:Q", title="current sparsity", format=".0%")]
    )
    return alt.layer(lines, rule).properties(height=260)


# ---------------------------------------------------------------- Steps view (trained seed methods)
def schedule_chart(curve: pd.DataFrame, reached: pd.DataFrame | None = None, marks: pd.DataFrame | None = None) -> alt.Chart:
    """MGPP/GMP schedule over training steps: the cubic target, the sparsity in force, the prior's
    weight, what was measured at each snapshot (black points, one shape per series), and rules at t0 and t1.

    ``curve``: ``step, series, value`` (fractions 0-1); ``reached``: ``step, series, value`` (points);
    ``marks``: ``step, label``.
    """
    _require(curve, ["step", "series", "value"], "schedule_chart")
    color = alt.Color("series:N", title=None, scale=alt.Scale(range=["#1f77b4", "#d62728", "#2ca02c"]), legend=alt.Legend(orient="top", columns=3, labelLimit=400))
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
                shape=alt.Shape("series:N", title=None, scale=alt.Scale(range=["diamond", "circle", "square"]), legend=alt.Legend(orient="bottom", labelLimit=400)),
                tooltip=tooltip,
            )
        )
    if marks is not None and len(marks):
        _require(marks, ["step", "label"], "schedule_chart marks")
        layers.append(
            alt.Chart(marks).mark_rule(color="#888888", strokeDash=[4, 3]).encode(x="step:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("step:Q")])
        )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=300)


def training_chart(df: pd.DataFrame) -> alt.Chart:
    """Held-out metric and losses over training steps, one panel each.

    ``df``: ``step, series, value, panel``.
    """
    _require(df, ["step", "series", "value", "panel"], "training_chart")
    charts = []
    for panel in dict.fromkeys(df["panel"]):
        part = df[df["panel"] == panel]
        title = metric_title(panel) if panel != "loss" else "loss (cross-entropy, nats)"
        charts.append(
            alt.Chart(part)
            .mark_line(point=True)
            .encode(
                x=alt.X("step:Q", title="training step"),
                y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
                color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=300)),
                tooltip=[alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".4g")],
            )
            .properties(width=340, height=240)
        )
    return alt.hconcat(*charts).resolve_scale(color="independent")


def stage_bars(df: pd.DataFrame, metric: str, order: list | None = None) -> alt.Chart:
    """The task metric after each stage of a method (SDS: dense, sparse, dense step, sparse again).

    ``df``: ``stage, value``.
    """
    _require(df, ["stage", "value"], "stage_bars")
    order = order or list(dict.fromkeys(df["stage"]))
    fmt = ".1%" if metric == "accuracy" else ",.2f"
    base = alt.Chart(df).encode(
        x=alt.X("stage:N", sort=order, title="after stage", axis=alt.Axis(labelAngle=0)),
        y=alt.Y(
            "value:Q",
            title=metric_title(metric) + " on held-out training data",
            scale=alt.Scale(domain=[0, 1]) if metric == "accuracy" else alt.Scale(zero=True),
            axis=alt.Axis(format="%") if metric == "accuracy" else alt.Axis(),
        ),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("value:Q", title=metric, format=fmt)],
    )
    bars = base.mark_bar().encode(color=alt.Color("stage:N", sort=order, legend=None, scale=alt.Scale(scheme="tableau10")))
    labels = base.mark_text(dy=-8).encode(text=alt.Text("value:Q", format=fmt))
    return alt.layer(bars, labels).properties(height=260)


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
            color=alt.Color("stage:N", title="weights", legend=alt.Legend(orient="top", labelLimit=300)),
            tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("stage:N"), alt.Tooltip("error:Q", format=".3e")],
        )
        .properties(height=300)
    )


def early_curves_chart(df: pd.DataFrame, metric: str, n_last: int | None = None) -> alt.Chart:
    """Held-out metric of each candidate during its early-evaluation fine-tune, the chosen one in red.

    ``df``: ``candidate, step, value, chosen``.
    """
    _require(df, ["candidate", "step", "value", "chosen"], "early_curves_chart")
    data = df.assign(role=df["chosen"].map({True: "chosen", False: "other"}))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="fine-tuning step of the candidate" + (f" (score = mean of the last {n_last} points)" if n_last else "")),
            y=alt.Y("value:Q", title=metric_title(metric) + " on held-out training data", scale=alt.Scale(zero=False)),
            color=alt.Color("role:N", scale=CHOSEN_SCALE, title=None),
            detail="candidate:N",
            strokeWidth=alt.condition("datum.chosen", alt.value(3), alt.value(1.5)),
            tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", title=metric, format=".4g"), alt.Tooltip("role:N")],
        )
        .properties(height=280)
    )
