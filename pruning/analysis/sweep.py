"""Sparsity ramps (and, from :mod:`pruning.analysis.sensitivity`, layer sensitivity): many prune-and-evaluate points, resumable.

Every finished point is handed to ``on_point`` as it is computed (the app draws
it at once) and, with ``checkpoint``, appended to a JSON-lines file: a rerun
with the same file skips the points already there.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..masks import parse_granularity, supports
from ..prune import prune
from ..request import PruneRequest
from .evaluate import evaluate
from .rows import checkpoint_rows, metric_columns, record_row
from .sensitivity import layer_sensitivity, suggest_allocation  # noqa: F401 - their former home; callers import them here


def row_point(row: dict) -> tuple:
    """The grid point a ramp row belongs to: ``(method, granularity, sparsity)``."""
    return (row["method"], row["granularity"], round(float(row["sparsity"]), 6))


def _eval(loaded, data, overrides, max_examples, split):
    return evaluate(loaded, data, overrides=overrides, max_examples=max_examples, split=split)


def ramp_points(
    requests: Sequence[PruneRequest], granularities: Sequence[str] | None, sparsities: Sequence[float]
) -> list[PruneRequest]:
    """The requests of a ramp: each given request (a method with its parameters, data and seed) at
    every granularity it supports (``None``: its own granularity) and every sparsity; N:M patterns
    and allocations have one fixed point (an allocation's at the request's sparsity)."""
    points = []
    for request in requests:
        for gran in granularities or [request.granularity]:
            g = parse_granularity(gran)
            if not supports(request.method_info, g):
                continue
            if g.is_nm or g.is_allocated:
                points.append(request.replace(granularity=g))
            else:
                points.extend(request.replace(granularity=g, sparsity=round(float(s), 6)) for s in sparsities)
    return points


def _point(request: PruneRequest | None) -> tuple:
    if request is None:
        return ("dense", "-", 0.0)
    return (request.method, str(request.granularity), round(request.sparsity, 6))


def sparsity_ramp(
    loaded,
    data,
    requests: Sequence[PruneRequest],
    granularities: Sequence[str] | None = None,
    sparsities: Sequence[float] = (0.3, 0.5, 0.7),
    calibration=None,
    max_examples: int | None = 512,
    split: str = "test",
    progress=None,
    on_point=None,
    done_rows: Iterable[dict] | None = None,
    checkpoint=None,
) -> list[dict]:
    """Metric at each sparsity for each request's method and each granularity, with the dense model first.

    Each point prunes with its request's parameters, layers and seed, and with ``data`` as the
    task data of methods that train. Rows: ``method, granularity, sparsity, metric, value,
    ci_low, ci_high, n, drop, drop_ci_low, drop_ci_high, update, seconds, seed`` (the dense row has
    method ``"dense"``; ``drop`` is the paired harm against it, see
    :func:`pruning.analysis.evaluate.paired_difference`).
    """
    points = [None] + ramp_points(requests, granularities, sparsities)
    rows = list(done_rows or []) + checkpoint_rows(checkpoint, row_point, {_point(p) for p in points})
    done = {row_point(r) for r in rows}
    todo = [p for p in points if _point(p) not in done]
    seed = requests[0].seed if requests else 0
    dense = _eval(loaded, data, None, max_examples, split) if todo else None
    for i, request in enumerate(todo):
        method, gran, sparsity = _point(request)
        if progress is not None:
            progress(i, len(todo), f"{method} {gran} at {sparsity:.0%}")
        overrides, seconds = None, 0.0
        if request is not None:
            result = prune(loaded, request, calibration=calibration if request.needs_calibration else None, data=data)
            overrides, seconds, seed = result.overrides(loaded), result.seconds, request.seed
        ev = dense if request is None else _eval(loaded, data, overrides, max_examples, split)
        row = {"method": method, "granularity": gran, "sparsity": sparsity, **metric_columns(ev, dense)}
        row.update({"update": "-" if request is None else request.update, "seconds": round(seconds, 3), "seed": seed})
        record_row(rows, row, checkpoint, on_point)
    if progress is not None:
        progress(len(todo), len(todo), "done")
    return rows

