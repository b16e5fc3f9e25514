"""Chart builders of the Random candidates view (also Method steps' candidates).

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..style import CHOSEN_SCALE, shown_value
from .common import LEGEND, LEGEND_SPACE, ci_tooltips, in_points, reference_band, require


def candidate_bars(df: pd.DataFrame, value: str, value_title: str, fmt: str = ".3f", metric: str | None = None, span: tuple | None = None,
                   min_span: float = 0.0) -> alt.Chart:
    """One dot per candidate mask, the chosen one highlighted.

    Dots, not bars: the axis is zoomed to the candidates' range (they often differ in the third
    decimal), and a bar on a zoomed axis would exaggerate the differences.
    ``df``: ``candidate, <value>, chosen`` (chosen: bool). With ``metric="accuracy"`` the values
    (fractions) are drawn in points. ``span``: the (low, high) the axis must hold, in the values'
    unit (default: the values' range), e.g. with intervals drawn over the dots.
    """
    require(df, ["candidate", value, "chosen"], "candidate_bars")
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
            color=alt.Color("role:N", scale=CHOSEN_SCALE, title=None, legend=LEGEND),
            tooltip=[alt.Tooltip("candidate:N"), alt.Tooltip(f"{value}:Q", title=value_title, format=fmt), alt.Tooltip("role:N")],
        )
        .properties(height=260 + LEGEND_SPACE)
    )


def candidate_bars_ci(df: pd.DataFrame, value_title: str, reference: dict | None = None, fmt: str = ".4g") -> alt.Chart:
    """Each candidate's selection score with its 95% interval, the chosen one highlighted, and the
    deterministic mask's score and interval as a band.

    ``df``: ``candidate, score, ci_low, ci_high, chosen``; ``reference``: ``value, ci_low, ci_high``.
    """
    require(df, ["candidate", "score", "ci_low", "ci_high", "chosen"], "candidate_bars_ci")
    spread = df if reference is None else pd.concat([df, pd.DataFrame([reference])])  # the axis holds the band too
    span = (float(spread["ci_low"].min()), float(spread["ci_high"].max()))
    dots = candidate_bars(df, "score", value_title, fmt, span=span)
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
                *ci_tooltips(fmt=fmt),
            ],
        )
    )
    layers = [bars, dots] if reference is None else [reference_band(reference, "deterministic mask", value_title, fmt), bars, dots]
    return alt.layer(*layers).properties(height=260)
