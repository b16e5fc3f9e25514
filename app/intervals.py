"""Numbers with their uncertainty, in words: a metric with its 95% interval and n, a paired
difference with its paired interval, and "within noise" where that interval covers 0.

Pure functions of the engine's result dicts (no Streamlit, no torch), so every sentence the
views show can be checked in a test. Conventions (from ``pruning.analysis.evaluate`` / ``pruning.analysis.stats``):
a metric dict has ``metric, value, ci_low, ci_high, n``; a paired difference has ``drop,
drop_ci_low, drop_ci_high``, where ``drop`` is the harm of the second model against the first
(accuracy lost, perplexity added), so a positive drop always means "worse".
"""

from __future__ import annotations

import math

from pruning.analysis.stats import within_noise

WITHIN_NOISE = "within noise"


def value_text(metric: str, value: float) -> str:
    """A metric value in its unit: accuracy as a percentage, perplexity as a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1%}" if metric == "accuracy" else f"{value:,.2f}"


def count_text(metric: str, n: int, held_out: bool = False) -> str:
    """What ``n`` counts: sentences for accuracy, text windows for perplexity (predicted tokens for the
    seed methods' ``held_out`` perplexity)."""
    if metric == "perplexity":
        return f"{n:,} predicted tokens" if held_out else f"{n:,} window{'s' if n != 1 else ''}"
    return f"n = {n:,}"


def interval_text(metric: str, ev: dict, held_out: bool = False) -> str:
    """``"95% CI 76.4% to 86.0%, n = 256"`` for one metric dict."""
    low, high = value_text(metric, ev["ci_low"]), value_text(metric, ev["ci_high"])
    return f"95% CI {low} to {high}, {count_text(metric, int(ev['n']), held_out)}"


def metric_text(ev: dict, held_out: bool = False) -> str:
    """``"81.6% (95% CI 76.4% to 86.0%, n = 256)"``: a value with its interval and sample size
    (``held_out``: a seed method's held-out metric, whose perplexity ``n`` counts tokens)."""
    metric = ev["metric"]
    return f"{value_text(metric, ev['value'])} ({interval_text(metric, ev, held_out)})"


def drop_unit(metric: str) -> str:
    """How a drop is read: accuracy points lost (x100) or perplexity added."""
    return "points" if metric == "accuracy" else ""


def _signed(metric: str, x: float) -> str:
    return f"{x * 100:+.1f}" if metric == "accuracy" else f"{x:+,.2f}"


def drop_text(metric: str, diff: dict) -> str:
    """``"+1.2 points (95% CI -0.4 to +2.9), within noise"``: a paired drop with its interval.

    The unit follows the metric: accuracy points (1 point = 0.01) or perplexity.
    """
    unit = drop_unit(metric)
    core = f"{_signed(metric, diff['drop'])}{' ' + unit if unit else ''}"
    ci = f"95% CI {_signed(metric, diff['drop_ci_low'])} to {_signed(metric, diff['drop_ci_high'])}"
    noise = f", {WITHIN_NOISE}" if within_noise(diff["drop_ci_low"], diff["drop_ci_high"]) else ""
    return f"{core} ({ci}){noise}"


def drop_label(metric: str) -> str:
    """The name of a drop in words: what the second model costs against the first."""
    return "accuracy lost" if metric == "accuracy" else "perplexity added"


def change_delta(metric: str, drop: float, within: bool, against: str = "", ratio: float | None = None) -> dict:
    """``st.metric`` delta arguments for a paired change: the signed move of the metric (points for
    accuracy; for perplexity the ratio to the compared model when ``ratio`` is given, as docs/VIEWS.md's
    one-unit rule says, with the difference beside it), the words "within noise" when its interval covers 0,
    and green meaning better."""
    change = (-drop if metric == "accuracy" else drop) + 0.0  # as the metric moves (+0.0: no "-0.0")
    if metric == "accuracy":
        text = f"{change * 100:+.1f} points"
    else:
        text = f"{ratio:.2f}x ({change:+,.2f})" if ratio is not None and math.isfinite(ratio) else f"{change:+,.2f}"
    noise = f", {WITHIN_NOISE}" if within else ""
    return {"delta": f"{text}{against}{noise}", "delta_color": "normal" if metric == "accuracy" else "inverse"}


def change_text(metric: str, diff: dict) -> str:
    """``"accuracy change -9.8 points (95% CI -12.1 to -7.5)"``: a paired difference signed as the metric moved, the
    way the headline's delta is (a harm-positive drop of +9.8 would read as the opposite of the delta beside it)."""
    sign = -1.0 if metric == "accuracy" else 1.0
    low, high = sorted((sign * diff["drop_ci_low"], sign * diff["drop_ci_high"]))
    unit = drop_unit(metric)
    core = f"{_signed(metric, sign * diff['drop'] + 0.0)}{' ' + unit if unit else ''}"
    noise = f", {WITHIN_NOISE}" if within_noise(diff["drop_ci_low"], diff["drop_ci_high"]) else ""
    return f"{metric} change {core} (95% CI {_signed(metric, low + 0.0)} to {_signed(metric, high + 0.0)}){noise}"


def comparison_sentence(metric: str, first: str, second: str, diff: dict) -> str:
    """One sentence comparing two models on the same examples, e.g.
    ``"Wanda (allocated) against Wanda (uniform): accuracy change -0.8 points (95% CI ...), within noise."``"""
    return f"{second} against {first}: {change_text(metric, diff)}."


def drop_columns(diff: dict) -> dict:
    """The paired difference under the column names scripts rely on."""
    return {"drop": diff["drop"], "drop_ci_low": diff["drop_ci_low"], "drop_ci_high": diff["drop_ci_high"]}


def value_columns(ev: dict) -> dict:
    """A metric under the column names scripts rely on."""
    return {"value": ev["value"], "ci_low": ev["ci_low"], "ci_high": ev["ci_high"], "n": ev["n"]}


SIGNAL_NAMES = {"kl": "KL divergence", "drop": "metric drop"}


def signal_text(signal: str, metric: str, row: dict) -> str:
    """One layer's sensitivity signal with its interval: the paired drop, or the KL divergence."""
    if signal == "drop":
        return drop_text(metric, row)
    low, high = row[f"{signal}_ci_low"], row[f"{signal}_ci_high"]
    noise = f", {WITHIN_NOISE}" if within_noise(low, high) else ""
    return f"{SIGNAL_NAMES.get(signal, signal)} {row[signal]:.3g} (95% CI {low:.3g} to {high:.3g}){noise}"


def noise_summary(rows, signal: str, metric: str, at: float) -> str:
    """How many layers the signal tells apart from 0 at sparsity ``at``, in words; when fewer than half,
    says plainly that most of the signal is noise and what would make it clearer.

    ``rows``: a DataFrame with ``<signal>, <signal>_ci_low, <signal>_ci_high, n`` per layer.
    """
    covers = [within_noise(lo, hi) for lo, hi in zip(rows[f"{signal}_ci_low"], rows[f"{signal}_ci_high"])]
    total, clear = len(covers), covers.count(False)
    name = SIGNAL_NAMES.get(signal, signal)
    text = f"At {at:.0%}, **{clear} of {total}** layers are distinguishable from zero by the {name} (their 95% interval excludes 0)"
    text += "." if clear == total else f"; the other {total - clear} are within noise, and their order among themselves means nothing."
    if 2 * clear < total:
        n = int(rows["n"].iloc[0])
        half = float(((rows[f"{signal}_ci_high"] - rows[f"{signal}_ci_low"]) / 2).median())
        spread = f"±{half * 100:.1f} points" if signal == "drop" and metric == "accuracy" else f"±{half:.3g}"
        text += (
            f" **Most of this signal is noise**: measured on {count_text(metric, n)}, a typical layer's interval spans {spread}. "
            "Rank by KL divergence, raise the evaluation size, or measure at a higher sparsity before trusting the order."
        )
    return text


def noise_column(rows, reference) -> list[str]:
    """Per row of a table with ``drop_ci_low, drop_ci_high``: "within noise" where the paired interval
    covers 0, else "distinguishable from 0" (never a blank); the rows the others are compared with (``reference``, one
    bool per row) say "reference"."""
    out = []
    for row, is_reference in zip(rows.to_dict("records"), reference):
        out.append("reference" if is_reference else (WITHIN_NOISE if within_noise(row["drop_ci_low"], row["drop_ci_high"]) else TOLD_APART))
    return out


TOLD_APART = "distinguishable from 0"
SHOWN_COLUMNS = ("value", "ci_low", "ci_high", "drop", "drop_ci_low", "drop_ci_high")

