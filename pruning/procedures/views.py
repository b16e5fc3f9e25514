"""Plain data for drawing what the trained seed methods did, step by step.

The app's Method steps view, the CLI report (and anyone reading a ``PruneResult.info``)
turn MGPP/GMP snapshots (``info["history"]``), SDS stages (``info["steps"]``,
``info["layers"]``) and randomized-selection stages (``info["stages"]``) into tidy rows
here; the page only makes DataFrames and charts of them. NumPy only, no torch, no Streamlit.

The weight samples in the snapshots are the same weights every time (a fixed random
sample of the targeted layers), so histograms of successive snapshots show the same
weights moving.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..analysis.distribution import bin_weights, fit_gmm, split_counts

SDS_STAGES = ("dense", "sparse", "dense step", "sparse again")
SDS_STAGE_HELP = {
    "dense": "the model before pruning",
    "sparse": "after the first one-shot pruning",
    "dense step": "after re-densifying every layer towards the dense outputs (L1 + L2)",
    "sparse again": "after the second one-shot pruning and the soft-mask adjustment",
}


def common_limit(samples: Sequence[Sequence[float]], quantile: float = 0.999) -> float:
    """A symmetric histogram range that fits every sample: the largest ``quantile`` of |w| among them."""
    limits = [float(np.quantile(np.abs(np.asarray(s, dtype=np.float64)), quantile)) for s in samples if len(s)]
    return max([x for x in limits if x > 0], default=1.0)


def sample_histogram(sample: Sequence[float], limit: float, bins: int = 60) -> dict[str, np.ndarray]:
    """``{"left", "right", "kept", "pruned"}`` counts of a weight sample: exact zeros count as pruned,
    values beyond ``+-limit`` go to the outermost bins."""
    values = np.asarray(sample, dtype=np.float64)
    return split_counts(bin_weights(values, bins, limit=limit), kept=values != 0)


def nonzero_fit(sample: Sequence[float], k: int | str = "bic", seed: int = 0):
    """Gaussian mixture fitted to the non-zero weights of a sample (the pruned zeros would be a
    point mass at 0 that no Gaussian fits); ``None`` when too few weights are left."""
    values = np.asarray(sample, dtype=np.float64)
    values = values[values != 0]
    need = 2 * (4 if isinstance(k, str) else int(k))
    if values.size < max(need, 20):
        return None
    return fit_gmm(values, k, seed=seed)


def prior_curves(lam: float, v0: float, v1: float, x: Sequence[float], scale: float) -> list[dict]:
    """MGPP's two prior components in histogram units (``scale`` = weights x bin width):
    rows ``{x, component, density}`` for the slab ``lam N(0, v1)`` and the spike ``(1-lam) N(0, v0)``."""
    xs = np.asarray(x, dtype=np.float64)
    rows = []
    for label, weight, var in (
        (f"prior slab lam N(0, v1), lam={lam:.3g}", lam, v1),
        (f"prior spike (1-lam) N(0, v0), v0={v0:.1g}", 1.0 - lam, v0),
    ):
        dens = weight * np.exp(-0.5 * xs * xs / var) / math.sqrt(2.0 * math.pi * var) * scale
        rows.extend({"x": float(a), "component": label, "density": float(d)} for a, d in zip(xs, dens))
    return rows


def curve_grid(limit: float, points: int = 241) -> np.ndarray:
    """Where to evaluate density curves over ``[-limit, limit]`` (an odd count, so 0 is on the grid
    and the spike of the prior is drawn)."""
    points = points + 1 - points % 2
    return np.linspace(-limit, limit, points)


def history_rows(history: Sequence[dict]) -> list[dict]:
    """The scalar part of MGPP/GMP snapshots: ``step, target_sparsity, sparsity, lambda,
    prior_threshold, loss, metric, value, held_out_loss`` (no samples)."""
    keys = ("step", "target_sparsity", "sparsity", "lambda", "prior_threshold", "loss", "metric", "value", "held_out_loss")
    return [{k: h.get(k) for k in keys} for h in history]


def training_curves(history: Sequence[dict]) -> list[dict]:
    """Rows ``{step, series, value, panel, ci_low, ci_high}`` of the held-out metric (with its 95% interval when the
    snapshot has one) and the two losses (no interval) over steps."""
    rows = []
    for h in history:
        metric = h.get("metric") or "metric"
        rows.append({"step": h["step"], "series": f"held-out {metric}", "value": h.get("value"), "panel": metric,
                     "ci_low": h.get("ci_low"), "ci_high": h.get("ci_high")})
        if h.get("held_out_loss") is not None:
            rows.append({"step": h["step"], "series": "held-out loss", "value": h["held_out_loss"], "panel": "loss"})
        if h.get("loss") is not None:
            rows.append({"step": h["step"], "series": "training loss (mean since last snapshot)", "value": h["loss"], "panel": "loss"})
    return [r for r in rows if r["value"] is not None]


def reached_sparsity(history: Sequence[dict]) -> list[dict]:
    """Rows ``{step, series, value}``: the exact-zero fraction measured at each snapshot (weights
    zeroed before ``t1`` may regrow, so it can sit below the target between prunings)."""
    return [{"step": h["step"], "series": "exact zeros at the snapshot", "value": h["sparsity"]} for h in history]


def spike_share(history: Sequence[dict]) -> list[dict]:
    """Rows ``{step, series, value}``: the share of the sampled weights inside MGPP's spike
    (``|w| < w*`` at that step), exact zeros included. Between prunings the zeroed weights move
    again; this shows how many the prior holds near zero (GMP snapshots have no ``w*``: no rows)."""
    rows = []
    for h in history:
        w_star = h.get("prior_threshold")
        if w_star is None or not len(h.get("sample", ())):
            continue
        values = np.abs(np.asarray(h["sample"], dtype=np.float64))
        rows.append({"step": h["step"], "series": "inside the prior's spike |w| < w* (sampled weights)", "value": float(np.mean(values < w_star))})
    return rows


def sds_stage_rows(steps: Sequence[dict]) -> list[dict]:
    """One row per SDS stage: ``stage, what, zero_fraction, metric, value, ci_low, ci_high, n, held_out_loss``."""
    return [
        {
            "stage": s["stage"],
            "what": SDS_STAGE_HELP.get(s["stage"], ""),
            "zero_fraction": s.get("zero_fraction"),
            "metric": s.get("metric"),
            "value": s.get("value"),
            "ci_low": s.get("ci_low"),
            "ci_high": s.get("ci_high"),
            "n": s.get("n"),
            "held_out_loss": s.get("held_out_loss"),
        }
        for s in steps
    ]


def sds_layer_errors(layers: dict) -> list[dict]:
    """Per layer and stage, the relative reconstruction error ``||W_d X - W X||^2 / ||W_d X||^2``
    (on the re-pruned model's inputs): rows ``{layer, stage, error, adjusted}``."""
    rows = []
    for name, v in layers.items():
        for stage, key in (
            ("first sparse", "relative_error_first_sparse"),
            ("sparse again (before adjustment)", "relative_error_sparse_again"),
            ("final", "relative_error_final"),
        ):
            rows.append({"layer": name, "stage": stage, "error": float(v[key]), "adjusted": bool(v["adjusted"])})
    return rows


def candidate_rows(stage: dict) -> list[dict]:
    """One row per candidate of a randomized-selection stage: ``candidate`` (c1, c2, ...),
    ``score`` (what selection compared: the early-evaluation score, or the cheap held-out metric),
    ``overlap`` (Jaccard with the deterministic mask) and ``chosen``."""
    scores = stage.get("selection_scores") or stage.get("candidate_scores") or []
    overlaps = stage.get("overlap_with_deterministic") or [None] * len(scores)
    return [
        {"candidate": f"c{i + 1}", "score": float(v), "overlap": overlaps[i], "chosen": i == stage.get("chosen")}
        for i, v in enumerate(scores)
    ]


def early_curve_rows(stage: dict) -> list[dict]:
    """The held-out metric of every candidate during its early-evaluation fine-tune:
    rows ``{candidate, step, value, chosen}`` (none for cheap selection)."""
    rows = []
    for i, curve in enumerate(stage.get("early_curves") or []):
        rows.extend({"candidate": f"c{i + 1}", "step": c["step"], "value": c["value"], "chosen": i == stage.get("chosen")} for c in curve)
    return rows


def ridge_rows(snapshots: Sequence[tuple[str, Sequence[float]]], limit: float, bins: int = 60) -> list[dict]:
    """Stacked histograms over time: for each ``(label, sample)`` in order, one row per bin and
    status ``{step, left, right, count, status}`` (exact zeros are "pruned"), all on ``+-limit``."""
    rows = []
    for label, sample in snapshots:
        counts = sample_histogram(sample, limit, bins)
        for status in ("kept", "pruned"):
            rows.extend(
                {"step": label, "left": float(a), "right": float(b), "count": int(c), "status": status}
                for a, b, c in zip(counts["left"], counts["right"], counts[status])
            )
    return rows
