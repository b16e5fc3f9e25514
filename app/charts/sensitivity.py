"""Chart builders of the Layer sensitivity view (its signal in one unit, bars, heatmap, the allocation).

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..style import ACCENT_COLOR, HARM_DOMAIN, HARM_MID, harm_unit
from .common import INTERVAL, LEGEND_SPACE, ROW_PX, ci_tooltips, require
from .masks import sparsity_bars


KL_TICKS = [0, 0.001, 0.01, 0.1, 1]


KL_DOMAIN = [0.0, 1.0]  # nats: the KL colour scale is fixed (symlog), so the first small point is not drawn dark while points arrive


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
    require(df, ["layer", value], "sensitivity_bars")
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
    """The heatmap's colour scale: for a drop, fixed up front (``HARM_DOMAIN``) so it does not change
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
    require(df, ["layer", "sparsity", value], "sensitivity_heatmap")
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
    require(df, ["layer", "sparsity"], "allocation_bars")
    plot = df.assign(method="suggested")
    return sparsity_bars(plot, target=target)


NOISE_SCALE = alt.Scale(domain=["distinguishable from 0", "within noise"], range=["#222222", "#aaaaaa"])


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
    require(df, ["layer", value, low, high], "sensitivity_bars_ci")
    data = harm_frame(df, metric, value, dense, ("", "_ci_low", "_ci_high")).assign(signal=noise_labels(df, value))
    order = list(data.sort_values(value, ascending=False)["layer"])
    unit = sensitivity_unit(metric, value, dense)
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
                *ci_tooltips("harm_ci_low", "harm_ci_high"),
                alt.Tooltip("signal:N", title="this layer"),
            ],
        )
    )
    chart = alt.layer(sensitivity_bars(df, metric, value, dense=dense), bars).resolve_scale(color="independent")
    return chart.properties(height=alt.Step(ROW_PX))  # a layered chart takes its size from the outside: one step per layer
