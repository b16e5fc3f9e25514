"""Rows of the long measurements (the sparsity ramp, layer sensitivity), shared by both: a row's
metric columns, the rows a resumable checkpoint already holds, and recording a finished row."""

from __future__ import annotations

from ..store.checkpoint import as_checkpoint
from .evaluate import paired_difference


def checkpoint_rows(checkpoint, key=None, grid: set | None = None) -> list[dict]:
    """The points a checkpoint (a :class:`pruning.store.checkpoint.Checkpoint` or a path) already holds;
    with ``key`` and ``grid`` only those of this run's grid (:meth:`Checkpoint.in_grid`)."""
    ckpt = as_checkpoint(checkpoint)
    if ckpt is None:
        return []
    return ckpt.rows() if grid is None else ckpt.in_grid(key, grid)


def append_row(checkpoint, row: dict) -> None:
    if checkpoint is not None:
        as_checkpoint(checkpoint).append(row)


def record_row(rows: list, row: dict, checkpoint, on_point) -> None:
    """Keep a finished point: in the result, in the checkpoint file, and for the caller's callback."""
    rows.append(row)
    append_row(checkpoint, row)
    if on_point is not None:
        on_point(row)


def metric_columns(ev: dict, dense: dict | None) -> dict:
    """A row's metric columns: ``metric, value, ci_low, ci_high, n`` and, against ``dense``
    on the same items, the paired ``drop, drop_ci_low, drop_ci_high``."""
    row = {k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}
    if dense is not None:
        diff = paired_difference(dense, ev)
        row.update({k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high")})
    return row
