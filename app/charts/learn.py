"""Chart builders of the Learn view (the 8x8 toy layer).

Pure ``DataFrame -> altair.Chart`` functions: no Streamlit, no torch (see app/charts/__init__.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..style import ACCENT_COLOR, PRUNED_COLOR, method_scale
from .common import LEGEND, LEGEND_SPACE, SMALL_LEGEND, require


def matrix_heatmap(df: pd.DataFrame, title: str, value_title: str, fmt: str = ".1f", scheme: str = "redblue", domain_mid: float | None = 0.0) -> alt.Chart:
    """A small matrix with its numbers written in; pruned cells (``kept`` False) are crossed out in grey.

    ``df``: ``row, col, value`` and optionally ``kept`` (bool).
    """
    require(df, ["row", "col", "value"], "matrix_heatmap")
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
        color=alt.condition("datum.kept", alt.Color("value:Q", title=value_title, scale=scale, legend=SMALL_LEGEND), alt.value(PRUNED_COLOR)),
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
    require(df, ["criterion", "sparsity", "error"], "error_curve")
    lines = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("sparsity:Q", title="sparsity (% of weights removed)", axis=alt.Axis(format="%")),
            y=alt.Y("error:Q", title="relative output error ||WX - W'X|| / ||WX||", axis=alt.Axis(format="%")),
            color=alt.Color("criterion:N", title="criterion", scale=method_scale(df["criterion"]), legend=LEGEND),
            tooltip=[alt.Tooltip("criterion:N"), alt.Tooltip("sparsity:Q", format=".0%"), alt.Tooltip("error:Q", format=".1%")],
        )
    )
    if current is None:
        return lines.properties(height=260 + LEGEND_SPACE)
    rule = alt.Chart(pd.DataFrame({"sparsity": [current]})).mark_rule(color=ACCENT_COLOR, strokeDash=[4, 3]).encode(
        x="sparsity:Q", tooltip=[alt.Tooltip("sparsity:Q", title="current sparsity", format=".0%")]
    )
    return alt.layer(lines, rule).properties(height=260 + LEGEND_SPACE)
