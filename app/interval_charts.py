"""Chart builders with intervals: pure functions ``DataFrame -> altair.Chart``.

Each one draws the plain chart of ``app.charts`` and layers the 95% intervals over it
(error bars, a band for a reference model), so a restyled base chart keeps its look here.
Column names follow the engine's results: ``value, ci_low, ci_high`` for a metric,
``<signal>, <signal>_ci_low, <signal>_ci_high`` for a sensitivity signal (``drop`` or ``kl``).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from . import charts, style
from .charts import _require

INTERVAL = "95% interval"
NOISE_SCALE = alt.Scale(domain=["distinguishable from 0", "within noise"], range=["#222222", "#aaaaaa"])


def _ci_tooltips(low: str = "ci_low", high: str = "ci_high", fmt: str = ".4g") -> list:
    return [alt.Tooltip(f"{low}:Q", title=f"{INTERVAL} from", format=fmt), alt.Tooltip(f"{high}:Q", title="to", format=fmt)]


def _band(reference: dict, label: str, metric: str, fmt: str = ".4g") -> alt.Chart:
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
                *_ci_tooltips(fmt=fmt),
            ],
        )
    )


def ramp_chart_ci(points: pd.DataFrame, dense: dict | None = None, metric: str = "accuracy", chance: float | None = None) -> alt.Chart:
    """The sparsity ramp with each point's 95% interval as an error bar and the dense model's as a band.

    ``points``: ``method, granularity, sparsity, value, ci_low, ci_high, n``; ``dense``: a dict with
    ``value, ci_low, ci_high`` (or None).
    """
    _require(points, ["method", "granularity", "sparsity", "value", "ci_low", "ci_high", "n"], "ramp_chart_ci")
    base = charts.ramp_chart(points, None if dense is None else dense["value"], metric)
    shown = charts.in_points(points, metric, "value", "ci_low", "ci_high")  # the unit ramp_chart draws in
    bars = (
        alt.Chart(shown)
        .mark_rule(strokeWidth=2)
        .encode(
            x="sparsity:Q",
            y="ci_low:Q",
            y2="ci_high:Q",
            color=alt.Color("method:N", scale=style.method_scale(points["method"]), legend=None),
            tooltip=[
                alt.Tooltip("method:N"),
                alt.Tooltip("granularity:N"),
                alt.Tooltip("sparsity:Q", format=".0%"),
                alt.Tooltip("value:Q", title=metric, format=".4g"),
                *_ci_tooltips(),
                alt.Tooltip("n:Q", title="examples" if metric == "accuracy" else "windows"),
            ],
        )
    )
    floor = [] if chance is None else [_chance_rule(style.shown_value(metric, chance))]
    if dense is None:
        return alt.layer(base, bars, *floor).properties(height=380)
    band = charts.in_points(pd.DataFrame([dense]), metric, "value", "ci_low", "ci_high").iloc[0].to_dict()
    layers = [_band(band, "dense model", metric), base, bars, *floor]
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


def noise_labels(df: pd.DataFrame, value: str) -> pd.Series:
    """``"within noise"`` where the row's interval of ``value`` covers 0, else ``"distinguishable from 0"``."""
    covers = (df[f"{value}_ci_low"] <= 0) & (df[f"{value}_ci_high"] >= 0)
    return covers.map({True: "within noise", False: "distinguishable from 0"})


def sensitivity_bars_ci(df: pd.DataFrame, metric: str = "accuracy", value: str = "kl", dense: float | None = None) -> alt.Chart:
    """Per-layer sensitivity bars (most sensitive first) with each layer's 95% interval; the
    interval is dark where it excludes 0 and grey where the layer cannot be told from noise.

    ``df``: ``layer, <value>, <value>_ci_low, <value>_ci_high``.
    """
    low, high = f"{value}_ci_low", f"{value}_ci_high"
    _require(df, ["layer", value, low, high], "sensitivity_bars_ci")
    data = charts.harm_frame(df, metric, value, dense, ("", "_ci_low", "_ci_high")).assign(signal=noise_labels(df, value))
    order = list(data.sort_values(value, ascending=False)["layer"])
    unit = charts.sensitivity_unit(metric, value, dense)
    bars = (
        alt.Chart(data)
        .mark_rule(strokeWidth=2)
        .encode(
            y=alt.Y("layer:N", sort=order),
            x="harm_ci_low:Q",  # drawn in the bars' unit (points, ratio to dense, or nats)
            x2="harm_ci_high:Q",
            color=alt.Color("signal:N", scale=NOISE_SCALE, title=INTERVAL, legend=alt.Legend(orient="top")),
            tooltip=[
                alt.Tooltip("layer:N"),
                alt.Tooltip("harm:Q", title=unit, format=".4g"),
                *_ci_tooltips("harm_ci_low", "harm_ci_high"),
                alt.Tooltip("signal:N", title="this layer"),
            ],
        )
    )
    chart = alt.layer(charts.sensitivity_bars(df, metric, value, dense=dense), bars).resolve_scale(color="independent")
    return chart.properties(height=alt.Step(charts.ROW_PX))  # a layered chart takes its size from the outside: one step per layer


def candidate_bars_ci(df: pd.DataFrame, value_title: str, reference: dict | None = None, fmt: str = ".4g") -> alt.Chart:
    """Each candidate's selection score with its 95% interval, the chosen one highlighted, and the
    deterministic mask's score and interval as a band.

    ``df``: ``candidate, score, ci_low, ci_high, chosen``; ``reference``: ``value, ci_low, ci_high``.
    """
    _require(df, ["candidate", "score", "ci_low", "ci_high", "chosen"], "candidate_bars_ci")
    spread = df if reference is None else pd.concat([df, pd.DataFrame([reference])])  # the axis holds the band too
    span = (float(spread["ci_low"].min()), float(spread["ci_high"].max()))
    dots = charts.candidate_bars(df, "score", value_title, fmt, span=span)
    bars = (
        alt.Chart(df)
        .mark_rule(strokeWidth=2, color="#555555")
        .encode(
            x=alt.X("candidate:N", sort=list(df["candidate"])),
            y="ci_low:Q",
            y2="ci_high:Q",
            tooltip=[
                alt.Tooltip("candidate:N"),
                alt.Tooltip("score:Q", title=value_title, format=fmt),
                *_ci_tooltips(fmt=fmt),
            ],
        )
    )
    layers = [bars, dots] if reference is None else [_band(reference, "deterministic mask", value_title, fmt), bars, dots]
    return alt.layer(*layers).properties(height=260)


charts.serve_unvalidated(globals())
