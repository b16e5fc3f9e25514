"""Chart builders of the Compare view: pure ``DataFrame -> altair.Chart`` functions, and the frame they take.

No Streamlit, no torch. The frame (:func:`cell_frame`) has one row per cell of a matrix, finished
or not, so a chart drawn while the job fills it keeps its rows, columns and colours from the first
cell to the last: the colour scale's domain is fixed up front (:data:`HARM_DOMAIN`), never taken
from the data (docs/VIEWS.md, "Fixed scales while a job fills a chart").

A cell's colour is its harm against the reference cell, measured on the same examples: accuracy
points lost, or perplexity as a ratio to the reference's. Only a cell whose paired 95% interval
excludes 0 is coloured; a cell within noise is pale grey, whatever its point estimate.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from ..intervals import WITHIN_NOISE
from ..style import ACCENT_COLOR, DENSE_COLOR, metric_text

PLOT_SIZE = alt.AutoSizeParams(type="fit-x", contains="padding")  # width from the window, height the plot's own
CELL_PX = 80  # px per matrix row: four lines of text with room around them
MIN_HEIGHT = 180  # px: a matrix of one or two rows still has a readable plot area
ROW_PX = 24  # px per cell on the differences chart's cell axis

# Fixed colour domains of the harm against the reference (clamped beyond): points lost, or the perplexity ratio.
HARM_DOMAIN = {"accuracy": [-10.0, 10.0], "perplexity": [0.5, 2.0]}
HARM_MID = {"accuracy": 0.0, "perplexity": 1.0}
WITHIN_COLOR = "#ececec"  # a cell within noise of the reference: no colour claims a difference
WAITING_COLOR = "#ffffff"
STATUS = ("reference", "distinguishable", "within noise", "running or waiting", "cannot run")


def _require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(df.columns)}")


def harm_title(metric: str) -> str:
    return "accuracy points lost against the reference" if metric == "accuracy" else "perplexity as a ratio to the reference's (x)"


def legend_title(metric: str) -> str:
    """Short enough for an 800 px window: the caption under the matrix says the rest."""
    return "points lost vs reference" if metric == "accuracy" else "perplexity ratio to reference (x)"


def _harm(metric: str, ref_value: float, drop: float) -> float:
    """A paired drop (harm-positive) in the unit the charts draw: points for accuracy, the ratio for perplexity."""
    if drop is None or (isinstance(drop, float) and math.isnan(drop)):
        return math.nan
    if metric == "accuracy":
        return 100.0 * drop
    return (ref_value + drop) / ref_value if ref_value else math.inf


def _bare(metric: str, value: float) -> str:
    """A metric without its unit sign, for the interval inside a cell (accuracy in points)."""
    return f"{100.0 * value:.1f}" if metric == "accuracy" else f"{value:,.2f}"


def _change_words(metric: str, drop: float) -> str:
    """The paired change against the reference in words that read the same way as the colour legend
    (accuracy: "5.0 pts below the reference", not a sign the legend's "points lost" would flip)."""
    if metric == "accuracy":
        points = -100.0 * drop + 0.0
        return f"{abs(points):.1f} pts {'above' if points > 0 else 'below' if points < 0 else 'from'} the reference"
    return f"{drop + 0.0:+,.2f} ppl vs reference"


# ---------------------------------------------------------------- the frame
def cell_frame(grid: list[dict], rows: list[dict], reference: str, metric: str) -> pd.DataFrame:
    """One row per cell of ``grid`` (dicts with ``key``, the engine's cell label, and ``row`` and ``col``, the
    labels), filled from the finished engine ``rows`` of :func:`pruning.analysis.compare.compare` (``cell``, ``status``,
    ``reason``, ``value, ci_low, ci_high, n`` and the paired ``drop, drop_ci_low, drop_ci_high`` against the
    ``reference`` cell). A cell not finished yet is "running or waiting", with no numbers.

    Columns: ``row, col, cell, status, reason, value, ci_low, ci_high, n, drop, drop_ci_low, drop_ci_high, harm,
    harm_low, harm_high, shade, line1 .. line4`` (``shade``: the harm where it is told apart from 0, else empty)."""
    done = {r["cell"]: r for r in rows}
    ref = done.get(reference)
    ref_value = None if ref is None else ref["value"]
    out = []
    for cell in grid:
        r = done.get(cell["key"])
        base = {"row": cell["row"], "col": cell["col"], "cell": cell["key"]}
        if r is None:
            out.append({**base, "status": STATUS[3], "line1": "", "line2": "waiting", "line3": "", "line4": ""})
            continue
        if r.get("status") == "skipped":
            out.append({**base, "status": STATUS[4], "reason": r.get("reason", ""), "line1": "cannot run", "line2": "(see the table)", "line3": "", "line4": ""})
            continue
        is_ref = cell["key"] == reference
        have_diff = not is_ref and ref_value is not None and r.get("drop") is not None
        within = have_diff and r["drop_ci_low"] <= 0.0 <= r["drop_ci_high"]
        status = STATUS[0] if is_ref else (STATUS[2] if within or not have_diff else STATUS[1])
        harm = _harm(metric, ref_value, r["drop"]) if have_diff else (HARM_MID[_kind(metric)] if is_ref else math.nan)
        low, high = (sorted((_harm(metric, ref_value, r["drop_ci_low"]), _harm(metric, ref_value, r["drop_ci_high"]))) if have_diff else (harm, harm))
        interval = f"95% CI {_bare(metric, r['ci_low'])} to {_bare(metric, r['ci_high'])}"
        if is_ref:
            line3, noise = "the reference", ""
        elif have_diff:
            line3, noise = _change_words(metric, r["drop"]), (WITHIN_NOISE if within else "distinguishable") + ", "
        else:
            line3, noise = "no reference yet", ""
        out.append(
            {
                **base, "status": status, "reason": "",
                **{k: r.get(k) for k in ("value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high")},
                "harm": harm, "harm_low": low, "harm_high": high,
                "shade": harm if status == STATUS[1] else None,
                "line1": metric_text(metric, r["value"]), "line2": interval, "line3": line3, "line4": f"{noise}n = {int(r['n']):,}",
            }
        )
    df = pd.DataFrame(out)
    for col in ("reason", "value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high", "harm", "harm_low", "harm_high", "shade"):
        if col not in df.columns:
            df[col] = None
    return df


def _kind(metric: str) -> str:
    return "accuracy" if metric == "accuracy" else "perplexity"


def harm_scale(metric: str) -> alt.Scale:
    """The fixed diverging scale: red where a cell is worse than the reference, blue where better."""
    kind = _kind(metric)
    # the scheme's darkest ends left out, so the cells' black text stays readable on the strongest colour
    return alt.Scale(scheme=alt.SchemeParams(name="redblue", extent=[0.12, 0.88]), reverse=True, domain=HARM_DOMAIN[kind], domainMid=HARM_MID[kind], clamp=True,
                     type="linear" if kind == "accuracy" else "log")


# ---------------------------------------------------------------- charts
def matrix_heatmap(df: pd.DataFrame, metric: str, row_title: str, col_title: str, rows: list[str], cols: list[str]) -> alt.LayerChart:
    """The matrix: ``rows`` x ``cols`` in the given order (every cell present from the start), each cell
    coloured by its harm against the reference where distinguishable from it (fixed domain), pale grey within
    noise, white while waiting; the reference cell outlined in red; four lines of text per cell (the
    metric; its 95% interval; the paired change; whether that is within noise, and n).
    ``df``: :func:`cell_frame`."""
    _require(df, ["row", "col", "status", "shade", "line1", "line2", "line3", "line4"], "matrix_heatmap")
    x = alt.X("col:N", sort=cols, title=col_title, axis=alt.Axis(orient="top", labelAngle=0, labelLimit=220, domain=False, ticks=False))
    y = alt.Y("row:N", sort=rows, title=row_title, axis=alt.Axis(labelLimit=200, domain=False, ticks=False))
    fmt = ".3g"
    tooltip = [
        alt.Tooltip("row:N", title=row_title), alt.Tooltip("col:N", title=col_title), alt.Tooltip("status:N"),
        alt.Tooltip("line1:N", title=metric), alt.Tooltip("line2:N", title="interval"), alt.Tooltip("n:Q", title="n"),
        alt.Tooltip("line3:N", title="against the reference"), alt.Tooltip("line4:N", title="noise"), alt.Tooltip("reason:N", title="why it cannot run"),
        alt.Tooltip("harm_low:Q", title="harm, 95% interval from", format=fmt), alt.Tooltip("harm_high:Q", title="to", format=fmt),
    ]
    base = alt.Chart(df).encode(x=x, y=y)
    pale = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("status:N", scale=alt.Scale(domain=list(STATUS), range=["#ffffff", "#ffffff", WITHIN_COLOR, WAITING_COLOR, WAITING_COLOR]), legend=None),
        tooltip=tooltip,
    )
    shaded = base.transform_filter("isValid(datum.shade)").mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("shade:Q", title=legend_title(metric),
                        scale=harm_scale(metric), legend=alt.Legend(orient="bottom", direction="horizontal", titleLimit=0, gradientLength=220)),
        tooltip=tooltip,
    )
    ref = base.transform_filter(alt.datum.status == STATUS[0]).mark_rect(fillOpacity=0, stroke=ACCENT_COLOR, strokeWidth=3)
    waiting = base.transform_filter(f"datum.status == '{STATUS[3]}' || datum.status == '{STATUS[4]}'").mark_rect(fillOpacity=0, stroke="#999999", strokeDash=[4, 3])
    texts = [
        base.mark_text(fontSize=size, dy=dy, fontWeight=weight, color="#111111").encode(text=f"{line}:N", tooltip=tooltip)
        for line, dy, size, weight in (("line1", -22, 13, "bold"), ("line2", -6, 11, "normal"), ("line3", 8, 11, "normal"), ("line4", 22, 11, "normal"))
    ]
    height = max(MIN_HEIGHT, CELL_PX * len(rows))
    # two colour encodings (the status's pale fills, the harm's gradient) on scales of their own
    return alt.layer(pale, shaded, ref, waiting, *texts).resolve_scale(color="independent").properties(height=height, autosize=PLOT_SIZE)


def differences_chart(df: pd.DataFrame, metric: str) -> alt.LayerChart:
    """Every finished cell's paired harm against the reference with its 95% interval (a point and a line),
    one row per cell, the reference at 0 (or 1x) as a dashed rule; dark where the interval excludes 0,
    grey within noise. ``df``: :func:`cell_frame` rows with a ``cell`` column (its name)."""
    _require(df, ["cell", "status", "harm", "harm_low", "harm_high"], "differences_chart")
    shown = df[df["status"].isin(STATUS[:3])]
    order = list(dict.fromkeys(df["cell"]))
    kind = _kind(metric)
    scale = alt.Scale(type="log") if kind == "perplexity" else alt.Scale(zero=True)
    x = alt.X("harm:Q", title=harm_title(metric), scale=scale)
    y = alt.Y("cell:N", sort=order, title=None, axis=alt.Axis(labelLimit=320))
    colour = alt.Color("status:N", title=None, scale=alt.Scale(domain=list(STATUS[:3]), range=[ACCENT_COLOR, "#222222", "#aaaaaa"]),
                       legend=alt.Legend(orient="bottom", direction="horizontal"))
    tooltip = [alt.Tooltip("cell:N"), alt.Tooltip("status:N"), alt.Tooltip("line1:N", title=metric), alt.Tooltip("line3:N", title="against the reference"),
               alt.Tooltip("harm:Q", format=".3g"), alt.Tooltip("harm_low:Q", format=".3g", title="95% interval from"),
               alt.Tooltip("harm_high:Q", format=".3g", title="to")]
    base = alt.Chart(shown).encode(y=y)
    rules = base.mark_rule(strokeWidth=2).encode(x=alt.X("harm_low:Q", title=harm_title(metric), scale=scale), x2="harm_high:Q", color=colour, tooltip=tooltip)
    points = base.mark_point(filled=True, size=70).encode(x=x, color=colour, tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame([{"harm": HARM_MID[kind]}])).mark_rule(strokeDash=[5, 4], color=DENSE_COLOR).encode(x="harm:Q")
    return alt.layer(zero, rules, points).properties(height=max(MIN_HEIGHT, ROW_PX * len(order)), autosize=PLOT_SIZE)
