"""Chart builders of the Method steps view (trained seed methods: schedule, training curves, ridgelines, stages).

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..style import ACCENT_COLOR, CHOSEN_SCALE, NEUTRAL_COLOR, PRIOR_THRESHOLD, SERIES_DASH, SERIES_RANGE, STATUS_SCALE, line_scales, metric_title
from .common import LEGEND, LEGEND_SPACE, TOP_LEGEND, in_points, interval_rules, require


def ridgeline(bins: pd.DataFrame, order: list, spike: float | None = None, overlap: float = 1.6) -> alt.Chart:
    """Stacked histograms over time (TensorBoard style): one ridge per snapshot or stage, top to
    bottom in ``order``, kept weights filled blue and exact zeros grey, all on one weight axis.

    ``bins``: ``step, left, right, count, status`` (``step`` a label in ``order``). Each ridge is
    scaled to its own tallest kept bin, so the zeros of a pruned snapshot do not flatten the rest
    (their bar is cut at the ridge height). ``spike``: MGPP's prior threshold w*; the band
    ``|w| < w*`` (the prior's spike) is shaded with its edges drawn.
    """
    require(bins, ["step", "left", "right", "count", "status"], "ridgeline")
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
            color=alt.Color("status:N", scale=STATUS_SCALE, title="weight", legend=LEGEND),
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
                x="x:Q", color=alt.Color("label:N", scale=color, title="line", legend=LEGEND),
                strokeDash=alt.StrokeDash("label:N", scale=dash, legend=None), tooltip=[alt.Tooltip("label:N"), alt.Tooltip("x:Q", format=".3g")]
            )
        )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=max(160, 46 * len(order)) + LEGEND_SPACE)


def _label_expr(order: list) -> str:
    """A Vega label expression that names ridge ``i`` (drawn at y = -i) by ``order[i]``."""
    names = ", ".join("'" + str(x).replace("'", "") + "'" for x in order)
    return f"[{names}][-round(datum.value)] || ''"


def schedule_chart(curve: pd.DataFrame, reached: pd.DataFrame | None = None, marks: pd.DataFrame | None = None) -> alt.Chart:
    """MGPP/GMP schedule over training steps: the cubic target, the sparsity in force, the prior's
    weight, what was measured at each snapshot (black points, one shape per series), and rules at t0 and t1.

    ``curve``: ``step, series, value`` (fractions 0-1); ``reached``: ``step, series, value`` (points);
    ``marks``: ``step, label``.
    """
    require(curve, ["step", "series", "value"], "schedule_chart")
    color = alt.Color("series:N", title=None, scale=alt.Scale(range=SERIES_RANGE), legend=LEGEND)
    dash = alt.StrokeDash("series:N", title=None, scale=alt.Scale(range=SERIES_DASH), legend=LEGEND)
    x = alt.X("step:Q", title="training step", axis=alt.Axis(format="d", tickMinStep=1))
    y = alt.Y("value:Q", title="fraction (sparsity, or lam_t / lam)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    tooltip = [alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".1%")]
    layers = [alt.Chart(curve).mark_line(strokeWidth=2).encode(x=x, y=y, color=color, strokeDash=dash, tooltip=tooltip)]
    if reached is not None and len(reached):
        require(reached, ["step", "series", "value"], "schedule_chart reached")
        layers.append(
            alt.Chart(reached)
            .mark_point(size=80, filled=True, color="black")
            .encode(
                x="step:Q",
                y=y,
                shape=alt.Shape("series:N", title=None, scale=alt.Scale(range=["diamond", "circle", "square"]), legend=TOP_LEGEND),
                tooltip=tooltip,
            )
        )
    if marks is not None and len(marks):
        require(marks, ["step", "label"], "schedule_chart marks")
        layers.append(
            alt.Chart(marks).mark_rule(color="#888888", strokeDash=[4, 3]).encode(x="step:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("step:Q")])
        )
    return alt.layer(*layers).resolve_scale(color="independent", strokeDash="independent").properties(height=300 + 2 * LEGEND_SPACE)


def training_charts(df: pd.DataFrame) -> list[alt.Chart]:
    """Held-out metric and losses over training steps, one chart per panel (the page puts them side
    by side in columns, so each fits its column's width).

    ``df``: ``step, series, value, panel`` (``panel`` "accuracy", "perplexity" or "loss").
    """
    require(df, ["step", "series", "value", "panel"], "training_charts")
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
                color=alt.Color("series:N", title=None, scale=alt.Scale(range=SERIES_RANGE), legend=LEGEND),
                strokeDash=alt.StrokeDash("series:N", title=None, scale=alt.Scale(range=SERIES_DASH), legend=LEGEND),
                tooltip=[alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", format=".4g")],
            )
            .properties(height=240 + LEGEND_SPACE)
        )
        bars = interval_rules(part, "step:Q")
        charts.append(line if bars is None else alt.layer(line, bars).properties(height=240 + LEGEND_SPACE))
    return charts


def stage_bars(df: pd.DataFrame, metric: str, order: list | None = None) -> alt.Chart:
    """The task metric after each stage of a method (SDS: dense, sparse, dense step, sparse again).

    ``df``: ``stage, value``.
    """
    require(df, ["stage", "value"], "stage_bars")
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
    rules = interval_rules(df, alt.X("stage:N", sort=order))
    return alt.layer(bars, labels, *([] if rules is None else [rules])).properties(height=260)


def layer_error_chart(df: pd.DataFrame, order: list | None = None) -> alt.Chart:
    """Per-layer relative reconstruction error at each SDS stage (log scale).

    ``df``: ``layer, stage, error``; ``order``: the layers in model order.
    """
    require(df, ["layer", "stage", "error"], "layer_error_chart")
    order = order or list(dict.fromkeys(df["layer"]))
    data = df.assign(error=df["error"].clip(lower=1e-8))
    stages = list(dict.fromkeys(data["stage"]))[-3:]  # first sparse, sparse again, final: the last (the result) in red
    colours, dashes = ["#999999", "#333333", ACCENT_COLOR][-len(stages):], [[1, 0], [5, 3], [1, 0]][-len(stages):]
    encoding = dict(
        x=alt.X("layer:N", sort=order, title="layer (model order)", axis=alt.Axis(labelAngle=-60, labelLimit=160, labelOverlap=True)),
        y=alt.Y("error:Q", title="relative error ||W_d X - W X||^2 / ||W_d X||^2 (log)", scale=alt.Scale(type="log")),
        color=alt.Color("stage:N", title="weights", sort=stages, scale=alt.Scale(domain=stages, range=colours), legend=LEGEND),
        strokeDash=alt.StrokeDash("stage:N", title="weights", sort=stages, scale=alt.Scale(domain=stages, range=dashes), legend=LEGEND),
        tooltip=[alt.Tooltip("layer:N"), alt.Tooltip("stage:N"), alt.Tooltip("error:Q", format=".3e")],
    )
    # the result first, underneath; the earlier stages over it, dashed, so a layer whose last step changed
    # nothing (final = sparse again) shows both lines instead of the red one hiding the other
    last = alt.Chart(data[data["stage"] == stages[-1]]).mark_line(point=alt.OverlayMarkDef(size=45), strokeWidth=2.5).encode(**encoding)
    rest = alt.Chart(data[data["stage"] != stages[-1]]).mark_line(point=alt.OverlayMarkDef(size=20), strokeWidth=1.5).encode(**encoding)
    return alt.layer(last, rest).properties(height=300 + LEGEND_SPACE)


def early_curves_chart(df: pd.DataFrame, metric: str, n_last: int | None = None) -> alt.Chart:
    """Held-out metric of each candidate during its early-evaluation fine-tune, the chosen one in red.

    ``df``: ``candidate, step, value, chosen``.
    """
    require(df, ["candidate", "step", "value", "chosen"], "early_curves_chart")
    data = in_points(df, metric).assign(role=df["chosen"].map({True: "chosen", False: "other"}))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="fine-tuning step of the candidate" + (f" (score = mean of the last {n_last} points)" if n_last else "")),
            y=alt.Y("value:Q", title=metric_title(metric) + " on held-out training data", scale=alt.Scale(zero=False)),
            color=alt.Color("role:N", scale=CHOSEN_SCALE, title=None, legend=LEGEND),
            detail="candidate:N",
            strokeWidth=alt.condition("datum.chosen", alt.value(3), alt.value(1.5)),
            tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", title=metric, format=".4g"), alt.Tooltip("role:N")],
        )
        .properties(height=280 + LEGEND_SPACE)
    )
