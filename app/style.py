"""PruneScope's one visual language: colours, units and scales every chart builder reads.

``docs/VIEWS.md`` (section "One visual language") says the same in words. One colour pair
means kept / pruned in every view; each method has one fixed colour in every view; red
marks the thing to look at (a threshold, the chosen candidate, the target); black dashed
is the dense reference. Nothing here draws: the builders in ``app/charts/`` use these.
"""

from __future__ import annotations

import math

import altair as alt

# ---------------------------------------------------------------- kept / pruned
KEPT_COLOR = "#2166ac"  # blue: a weight that stays
PRUNED_COLOR = "#b8b8b8"  # grey: a weight set to zero (the Learn view greys pruned cells the same way)
STATUS_SCALE = alt.Scale(domain=["kept", "pruned"], range=[KEPT_COLOR, PRUNED_COLOR])
KEPT_FRACTION_SCALE = alt.Scale(domain=[0, 1], range=[PRUNED_COLOR, KEPT_COLOR])  # 0 = all pruned, 1 = all kept

# ---------------------------------------------------------------- accents
ACCENT_COLOR = "#d62728"  # red: the line or point to look at (threshold, chosen, target)
OTHER_COLOR = "#9ecae1"  # light blue: the candidates that were not chosen
CHOSEN_SCALE = alt.Scale(domain=["chosen", "other"], range=[ACCENT_COLOR, OTHER_COLOR])
DENSE_COLOR = "#000000"  # black dashed rule: the dense model
NEUTRAL_COLOR = "#555555"  # dark grey: a series that is neither a method nor kept/pruned (stages, losses)
SERIES_RANGE = ["#333333", "#999999", "#333333"]  # up to three non-method series: dark, light, dark dashed (never red:
SERIES_DASH = [[1, 0], [1, 0], [6, 3]]  # red marks the one thing to look at; a third series is told by its dash)

# ---------------------------------------------------------------- one colour per method
# Each method gives its colour in its own registration (``Method.colour``, pruning/registry.py); one that gives none
# takes the next free colour of PALETTE in registration order. Blue and grey are taken by kept/pruned and red by the
# accent, so no method colour or palette entry uses them.
PALETTE = ("#637939", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#a55194", "#e7ba52")
SERIES_COLORS = {"suggested": "#7f7f7f"}  # series that are not methods: a sensitivity-based allocation


def method_colors() -> dict[str, str]:
    """Every registered method's colour: its own ``Method.colour``, or the next palette colour no method has taken."""
    from pruning.catalog import all_methods

    methods = all_methods()
    taken = {m.colour for m in methods.values() if m.colour}
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    out, i = {}, 0
    for name, m in methods.items():
        if m.colour:
            out[name] = m.colour
        else:
            out[name], i = free[i % len(free)], i + 1
    return out


def method_color(name: str) -> str:
    """The fixed colour of a method, whatever its series is called: "magnitude (current)" or "magnitude, 2:4" is
    magnitude's orange; a name the registry does not know (a run's label) gets a stable palette colour from its name."""
    base = str(name).split(" (")[0].split(", ")[0].strip()
    colours = method_colors()
    if base in colours:
        return colours[base]
    if base in SERIES_COLORS:
        return SERIES_COLORS[base]
    return PALETTE[sum(map(ord, base)) % len(PALETTE)]


def method_scale(names) -> alt.Scale:
    """An altair colour scale that gives each method in ``names`` its fixed colour."""
    domain = list(dict.fromkeys(str(n) for n in names))
    return alt.Scale(domain=domain, range=[method_color(n) for n in domain])


# ---------------------------------------------------------------- the two crossings (distinct names, distinct marks)
MIXTURE_CROSSING = "mixture crossing ±w_gmm"  # where a FITTED two-Gaussian mixture's spike and slab are equally likely
PRIOR_THRESHOLD = "prior threshold ±w*"  # where MGPP's PRIOR (lam, v0, v1) puts equal mass on spike and slab
THRESHOLD = "pruning threshold ±t"
# a mask that is not a cut in |w| (Wanda, random, ...) has no threshold on this axis: the |w| cut that would remove as many
# weights is drawn instead, grey and dotted, never in the threshold's red
EQUIVALENT_CUT = "|w| cut removing as many (not this mask's rule)"
LINE_STYLES = {  # label -> (colour, dash); dashes keep the lines apart in print and for colour-blind readers
    THRESHOLD: (ACCENT_COLOR, []),
    EQUIVALENT_CUT: ("#888888", [1, 3]),
    MIXTURE_CROSSING: ("#555555", [6, 3]),
    PRIOR_THRESHOLD: ("#000000", [2, 2]),
}


def line_scales(labels) -> tuple[alt.Scale, alt.Scale]:
    """Colour and dash scales for the vertical rules of a histogram (threshold, the crossings)."""
    domain = [label for label in LINE_STYLES if label in set(labels)] + [x for x in dict.fromkeys(labels) if x not in LINE_STYLES]
    styles = [LINE_STYLES.get(label, ("#555555", [1, 0])) for label in domain]
    return alt.Scale(domain=domain, range=[c for c, _ in styles]), alt.Scale(domain=domain, range=[d or [1, 0] for _, d in styles])


# ---------------------------------------------------------------- one unit per metric
def metric_title(metric: str) -> str:
    """Axis title with the unit of a task metric (accuracy in points 0-100, perplexity as a value)."""
    return {
        "accuracy": "accuracy (points)",  # short: a vertical title longer than a short chart is cut
        "perplexity": "perplexity (lower is better)",
    }.get(metric, metric)


def shown_value(metric: str, value: float) -> float:
    """A metric in the unit the views show: accuracy fraction -> points (x100), perplexity as is."""
    return 100.0 * value if metric == "accuracy" else value


def metric_text(metric: str, value: float) -> str:
    """A metric value as the views write it: accuracy in points ("82.5%"), perplexity as a value ("29.92")."""
    return f"{shown_value(metric, value):.1f}%" if metric == "accuracy" else f"{value:,.2f}"


def harm_unit(metric: str) -> str:
    """The unit of "how much worse than dense": accuracy points lost, or the perplexity ratio."""
    return "accuracy points lost" if metric == "accuracy" else "perplexity ratio to dense (x)"


def harm(metric: str, dense: float, pruned: float) -> float:
    """How much worse than dense, in :func:`harm_unit`: points lost (dense - pruned, x100), or pruned / dense."""
    if metric == "accuracy":
        return 100.0 * (dense - pruned)
    return pruned / dense if dense else math.inf


# Fixed colour domains, so a chart that fills while a job runs never changes its colours.
HARM_DOMAIN = {"accuracy": [-10.0, 40.0], "perplexity": [0.9, 10.0]}
HARM_MID = {"accuracy": 0.0, "perplexity": 1.0}


# ---------------------------------------------------------------- readable log scales
def log_ticks(top: float, bottom: float = 1.0) -> list[float]:
    """Tick values 1, 2, 5, 10, 20, 50, ... from ``bottom`` up to ``top`` (and 0 for symlog count axes)."""
    ticks, decade = [], 10 ** math.floor(math.log10(max(bottom, 1e-12)))
    while decade <= max(top, bottom) * 1.0001:
        ticks += [m * decade for m in (1, 2, 5) if bottom <= m * decade <= top * 1.0001]
        decade *= 10
    return ticks


def count_axis(top: float, log: bool, title: str) -> dict:
    """``scale`` and ``axis`` for a count axis: linear, or symlog with ticks at 0, 1, 10, 100, ... (2 and 5 between when few)."""
    if not log:
        return {"scale": alt.Scale(), "axis": alt.Axis(title=title, format="~s")}
    ticks = [0.0] + log_ticks(max(top, 1.0))
    if len(ticks) > 9:  # keep the decades only
        ticks = [0.0] + [t for t in ticks[1:] if math.log10(t).is_integer()]
    return {"scale": alt.Scale(type="symlog"), "axis": alt.Axis(title=title, values=ticks, format="~s")}
