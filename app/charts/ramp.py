"""Chart builders of the Sparsity ramp view.

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..style import DENSE_COLOR, method_scale, metric_title, shown_value
from .common import DASH_LEGEND, LEGEND, LEGEND_SPACE, ci_tooltips, in_points, reference_band, require


def ramp_chart(df: pd.DataFrame, dense: float | None = None, metric: str = "accuracy") -> alt.Chart:
    """Metric against sparsity, one line per method and granularity, the dense model as a reference line.

    ``df``: ``method, granularity, sparsity, value``.
    """
    require(df, ["method", "granularity", "sparsity", "value"], "ramp_chart")
    title = metric_title(metric)
    df = in_points(df, metric)
    y_scale = alt.Scale(type="log") if metric == "perplexity" else alt.Scale(zero=False)
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=60, filled=True))
        .encode(
            x=alt.X("sparsity:Q", title="sparsity (% of targeted weights removed)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("value:Q", title=title + (", log scale" if metric == "perplexity" else ""), scale=y_scale),
            color=alt.Color("method:N", title="method", scale=method_scale(df["method"]), legend=LEGEND),
            strokeDash=alt.StrokeDash("granularity:N", title="granularity", legend=DASH_LEGEND),
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


def ramp_chart_ci(points: pd.DataFrame, dense: dict | None = None, metric: str = "accuracy", chance: float | None = None) -> alt.Chart:
    """The sparsity ramp with each point's 95% interval as an error bar and the dense model's as a band.

    ``points``: ``method, granularity, sparsity, value, ci_low, ci_high, n``; ``dense``: a dict with
    ``value, ci_low, ci_high`` (or None).
    """
    require(points, ["method", "granularity", "sparsity", "value", "ci_low", "ci_high", "n"], "ramp_chart_ci")
    base = ramp_chart(points, None if dense is None else dense["value"], metric)
    shown = in_points(points, metric, "value", "ci_low", "ci_high")  # the unit ramp_chart draws in
    bars = (
        alt.Chart(shown)
        .mark_rule(strokeWidth=2)
        .encode(
            x="sparsity:Q",
            y="ci_low:Q",
            y2="ci_high:Q",
            color=alt.Color("method:N", scale=method_scale(points["method"]), legend=None),
            tooltip=[
                alt.Tooltip("method:N"),
                alt.Tooltip("granularity:N"),
                alt.Tooltip("sparsity:Q", format=".0%"),
                alt.Tooltip("value:Q", title=metric, format=".4g"),
                *ci_tooltips(),
                alt.Tooltip("n:Q", title="examples" if metric == "accuracy" else "windows"),
            ],
        )
    )
    floor = [] if chance is None else [_chance_rule(shown_value(metric, chance))]
    if dense is None:
        return alt.layer(base, bars, *floor).properties(height=380)
    band = in_points(pd.DataFrame([dense]), metric, "value", "ci_low", "ci_high").iloc[0].to_dict()
    layers = [reference_band(band, "dense model", metric), base, bars, *floor]
    return alt.layer(*layers).properties(height=380)


CHANCE_LABEL = "majority class (always its answer)"


def _chance_rule(value: float) -> alt.Chart:
    """A grey dotted line at the accuracy of always answering the most common class, labelled at its left end."""
    frame = pd.DataFrame([{"value": value, "label": CHANCE_LABEL}])
    rule = alt.Chart(frame).mark_rule(color="#888888", strokeDash=[2, 3], strokeWidth=1.5).encode(
        y="value:Q", tooltip=[alt.Tooltip("label:N"), alt.Tooltip("value:Q", title="accuracy (points)", format=".1f")])
    text = alt.Chart(frame).mark_text(align="left", baseline="bottom", dx=4, dy=-2, color="#666666", fontSize=11).encode(
        x=alt.datum(0), y="value:Q", text="label:N")
    return alt.layer(rule, text)
