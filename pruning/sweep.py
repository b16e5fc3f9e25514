"""Sparsity ramps (and, from :mod:`pruning.sensitivity`, layer sensitivity): many prune-and-evaluate points, resumable.

Every finished point is handed to ``on_point`` as it is computed (the app draws
it at once) and, with ``checkpoint``, appended to a JSON-lines file: a rerun
with the same file skips the points already there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from .masks import parse_granularity
from .prune import prune
from .registry import get_method
from .sensitivity import layer_sensitivity, suggest_allocation  # noqa: F401 - their former home; callers import them here


def _load_checkpoint(path) -> list[dict]:
    if path is None or not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def _append(path, row: dict) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def _record(rows: list, row: dict, checkpoint, on_point) -> None:
    """Keep a finished point: in the result, in the checkpoint file, and for the caller's callback."""
    rows.append(row)
    _append(checkpoint, row)
    if on_point is not None:
        on_point(row)


def _eval(loaded, data, overrides, max_examples, split):
    from .evaluate import evaluate

    return evaluate(loaded, data, overrides=overrides, max_examples=max_examples, split=split)


def metric_columns(ev: dict, dense: dict | None) -> dict:
    """A row's metric columns: ``metric, value, ci_low, ci_high, n`` and, against ``dense``
    on the same items, the paired ``drop, drop_ci_low, drop_ci_high``."""
    from .evaluate import paired_difference

    row = {k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}
    if dense is not None:
        diff = paired_difference(dense, ev)
        row.update({k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high")})
    return row


def ramp_points(methods: Sequence[str], granularities: Sequence[str], sparsities: Sequence[float]) -> list[tuple]:
    """The (method, granularity, sparsity) points of a ramp; N:M patterns have one fixed point."""
    points = []
    for method in methods:
        supported = get_method(method).granularities
        for gran in granularities:
            g = parse_granularity(gran)
            if str(g) not in supported and not (g.is_nm and "2:4" in supported):
                continue
            if g.is_nm:
                points.append((method, str(g), round(g.fixed_sparsity, 6)))
            else:
                points.extend((method, str(g), round(float(s), 6)) for s in sparsities)
    return points


def sparsity_ramp(
    loaded,
    data,
    methods: Sequence[str],
    granularities: Sequence[str] = ("layer",),
    sparsities: Sequence[float] = (0.3, 0.5, 0.7),
    calibration=None,
    seed: int = 0,
    max_examples: int | None = 512,
    split: str = "test",
    layers=None,
    progress=None,
    on_point=None,
    done_rows: Iterable[dict] | None = None,
    checkpoint=None,
) -> list[dict]:
    """Metric at each sparsity for each method and granularity, with the dense model first.

    Rows: ``method, granularity, sparsity, metric, value, ci_low, ci_high, n,
    drop, drop_ci_low, drop_ci_high, seconds, seed`` (the dense row has method
    ``"dense"``; ``drop`` is the paired harm against it, see
    :func:`pruning.evaluate.paired_difference`).
    """
    rows = list(done_rows or []) + _load_checkpoint(checkpoint)
    done = {(r["method"], r["granularity"], round(float(r["sparsity"]), 6)) for r in rows}
    points = [("dense", "-", 0.0)] + ramp_points(methods, granularities, sparsities)
    todo = [p for p in points if p not in done]
    dense = _eval(loaded, data, None, max_examples, split) if todo else None
    for i, (method, gran, sparsity) in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), f"{method} {gran} at {sparsity:.0%}")
        if method == "dense":
            ev, seconds = dense, 0.0
        else:
            result = prune(loaded, method, sparsity, gran, layers=layers, calibration=calibration, seed=seed)
            ev, seconds = _eval(loaded, data, result.overrides(loaded), max_examples, split), result.seconds
        row = {"method": method, "granularity": gran, "sparsity": sparsity, **metric_columns(ev, dense)}
        row.update({"seconds": round(seconds, 3), "seed": seed})
        _record(rows, row, checkpoint, on_point)
    if progress is not None:
        progress(len(todo), len(todo), "done")
    return rows
