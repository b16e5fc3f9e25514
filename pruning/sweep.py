"""Sparsity ramps and layer sensitivity: many prune-and-evaluate points, resumable.

Every finished point is handed to ``on_point`` as it is computed (the app draws
it at once) and, with ``checkpoint``, appended to a JSON-lines file: a rerun
with the same file skips the points already there.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .checkpoint import as_checkpoint
from .masks import parse_granularity
from .prune import layer_names, mask_ranker, masked_overrides, prune
from .request import PruneRequest


def _load_checkpoint(checkpoint) -> list[dict]:
    """The points a checkpoint (a :class:`pruning.checkpoint.Checkpoint` or a path) already holds."""
    ckpt = as_checkpoint(checkpoint)
    return [] if ckpt is None else ckpt.rows()


def _append(checkpoint, row: dict) -> None:
    if checkpoint is not None:
        as_checkpoint(checkpoint).append(row)


def _record(rows: list, row: dict, checkpoint, on_point) -> None:
    """Keep a finished point: in the result, in the checkpoint file, and for the caller's callback."""
    rows.append(row)
    _append(checkpoint, row)
    if on_point is not None:
        on_point(row)


def _eval(loaded, data, overrides, max_examples, split):
    from .evaluate import evaluate

    return evaluate(loaded, data, overrides=overrides, max_examples=max_examples, split=split)


def ramp_points(
    requests: Sequence[PruneRequest], granularities: Sequence[str] | None, sparsities: Sequence[float]
) -> list[PruneRequest]:
    """The requests of a ramp: each given request (a method with its parameters, data and seed) at
    every granularity it supports (``None``: its own granularity) and every sparsity; N:M patterns
    and allocations have one fixed point (an allocation's at the request's sparsity)."""
    points = []
    for request in requests:
        supported = request.method_info.granularities
        for gran in granularities or [request.granularity]:
            g = parse_granularity(gran)
            if str(g) not in supported and not (g.is_nm and "2:4" in supported):
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
    task data of methods that train. Rows: ``method, granularity, sparsity, metric, value, n,
    seconds, seed`` (the dense row has method ``"dense"``).
    """
    rows = list(done_rows or []) + _load_checkpoint(checkpoint)
    done = {(r["method"], r["granularity"], round(float(r["sparsity"]), 6)) for r in rows}
    todo = [p for p in [None] + ramp_points(requests, granularities, sparsities) if _point(p) not in done]
    seed = requests[0].seed if requests else 0
    for i, request in enumerate(todo):
        method, gran, sparsity = _point(request)
        if progress is not None:
            progress(i, len(todo), f"{method} {gran} at {sparsity:.0%}")
        overrides, seconds = None, 0.0
        if request is not None:
            result = prune(loaded, request, calibration=calibration if request.method_info.needs_calibration else None, data=data)
            overrides, seconds, seed = result.overrides(loaded), result.seconds, request.seed
        ev = _eval(loaded, data, overrides, max_examples, split)
        row = {"method": method, "granularity": gran, "sparsity": sparsity, "metric": ev["metric"], "value": ev["value"],
               "n": ev["n"], "seconds": round(seconds, 3), "seed": seed}
        _record(rows, row, checkpoint, on_point)
    if progress is not None:
        progress(len(todo), len(todo), "done")
    return rows


def layer_sensitivity(
    loaded,
    data,
    request: PruneRequest,
    sparsities: Sequence[float] = (0.5,),
    calibration=None,
    max_examples: int | None = 256,
    split: str = "validation",
    progress=None,
    on_point=None,
    done_rows: Iterable[dict] | None = None,
    checkpoint=None,
) -> list[dict]:
    """Prune one layer at a time; the metric and its drop from dense for each layer and sparsity.

    ``request`` gives the method, its parameters, the seed and the layers; each layer is pruned
    alone at the request's granularity within one layer (per layer for global and allocated,
    or per row, or its N:M pattern, which fixes the only sparsity at N/M: 0.25 for 1:4).
    ``drop`` is the harm: dense minus pruned for accuracy, pruned minus dense for
    perplexity, so a larger drop always means a more sensitive layer. For a
    score-based method the scores are computed once; pruning a single layer
    leaves its inputs dense, so the dense-input scores are the exact ones.
    """
    method = request.method
    names = layer_names(loaded, request.layers, request.include, request.exclude)
    within = request.granularity.within_layer
    if within.is_nm:
        sparsities = [within.fixed_sparsity]
    rows = list(done_rows or []) + _load_checkpoint(checkpoint)
    dense_rows = [r for r in rows if r["layer"] == "-"]
    if dense_rows:
        dense = dense_rows[0]
    else:
        ev = _eval(loaded, data, None, max_examples, split)
        dense = {"layer": "-", "sparsity": 0.0, "metric": ev["metric"], "value": ev["value"], "drop": 0.0, "method": method}
        rows.append(dense)
        _append(checkpoint, dense)
    higher_is_better = dense["metric"] == "accuracy"
    done = {(r["layer"], round(float(r["sparsity"]), 6)) for r in rows}
    ranker = None
    if request.method_info.score_based:
        ranker = mask_ranker(loaded, request.replace(layers=tuple(names)), calibration)
    todo = [(n, round(float(s), 6)) for n in names for s in sparsities if (n, round(float(s), 6)) not in done]
    for i, (name, sparsity) in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), f"{name} at {sparsity:.0%}")
        if ranker is not None:
            mask = ranker.masks(sparsity, within)[name]
            overrides = masked_overrides(loaded, {name: mask})
        else:
            one = request.replace(granularity=within, sparsity=sparsity, layers=(name,))
            overrides = prune(loaded, one, calibration=calibration, data=data).overrides(loaded)
        ev = _eval(loaded, data, overrides, max_examples, split)
        drop = dense["value"] - ev["value"] if higher_is_better else ev["value"] - dense["value"]
        row = {"layer": name, "sparsity": sparsity, "metric": ev["metric"], "value": ev["value"], "drop": drop, "method": method}
        _record(rows, row, checkpoint, on_point)
    if progress is not None:
        progress(len(todo), len(todo), "done")
    return rows


def suggest_allocation(
    rows: Sequence[dict], target_sparsity: float, layer_params: dict[str, int], strength: float = 0.1, max_sparsity: float = 0.95
) -> dict[str, float]:
    """Per-layer sparsities averaging ``target_sparsity`` (weighted by parameters), sensitive layers pruned less.

    Each layer's sensitivity is its mean drop over the measured sparsities; the
    z-scored sensitivity moves the layer's sparsity by up to ``strength`` per
    standard deviation (the outlier-weighted rule of OWL, Yin et al. 2023), and a
    common offset, found by bisection, restores the parameter-weighted target.
    """
    import statistics

    per_layer: dict[str, list[float]] = {}
    for r in rows:
        if r["layer"] != "-" and r["layer"] in layer_params:
            per_layer.setdefault(r["layer"], []).append(float(r["drop"]))
    if not per_layer:
        return {}
    sens = {n: sum(v) / len(v) for n, v in per_layer.items()}
    mean = statistics.fmean(sens.values())
    std = statistics.pstdev(sens.values()) or 1.0
    base = {n: target_sparsity - strength * (s - mean) / std for n, s in sens.items()}
    total = sum(layer_params[n] for n in base)

    def allocated(offset: float) -> dict[str, float]:
        return {n: min(max_sparsity, max(0.0, b + offset)) for n, b in base.items()}

    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        mean_s = sum(layer_params[n] * s for n, s in allocated(mid).items()) / total
        lo, hi = (mid, hi) if mean_s < target_sparsity else (lo, mid)
    return {n: round(s, 4) for n, s in allocated((lo + hi) / 2).items()}
