"""Resumable checkpoints of sweeps and sensitivity runs (JSON lines), honest about what they hold.

The first line is a header recording everything the numbers depend on (for the CLI:
:func:`pruning.store.outputs.run_header`, every option and request field but a short list
proven not to change numbers, a fingerprint of the model's weights and of the dataset's
files, the project version); every further line is one finished point. Resuming with
any recorded setting changed is refused with a line naming the setting (``--overwrite``
starts again). A last line cut off by a killed run is dropped with a warning; a row
that is malformed or out of range for its metric (accuracy outside [0, 1], perplexity
below 1, ...) is reported, dropped and computed again; a row outside this run's grid
(:meth:`Checkpoint.in_grid`) is dropped, so neither ever reaches the CSV.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from ..errors import PruneScopeError
from ..paths import atomic_file

MARK = "prunescope-checkpoint"
# What a header entry is called in a message where it is not a flag of its own (see :func:`setting_name`).
SETTING_NAMES = {
    "kind": "kind of run",
    "model_name": "the model (resolved name)",
    "weights": "model weights (fingerprint)",
    "data": "the dataset's content (sha256 of its files)",
    "device": "--device (resolved)",
    "dtype": "--dtype",
    "param": "method parameters (--param)",
    "version": "PruneScope version",
}
POINT_KEYS = ("sparsity", "value")  # every point has these, as finite numbers
# Columns that, when a row has them, must be finite numbers.
NUMBER_KEYS = ("sparsity", "value", "ci_low", "ci_high", "drop", "drop_ci_low", "drop_ci_high", "kl", "kl_ci_low", "kl_ci_high", "seconds")
# The values a metric can take: a row outside them was not computed by PruneScope (a hand edit, a damaged file).
METRIC_RANGES = {"accuracy": (0.0, 1.0), "perplexity": (1.0, math.inf)}


# Settings added after checkpoints were first written, and what a header without them was computed with.
ADDED_LATER = {"numerics": "fast", "request.numerics": "fast"}


def recorded_value(recorded: dict, key: str):
    """``recorded[key]``, or for a header older than the setting the value it was computed with."""
    return recorded.get(key, ADDED_LATER.get(key))


def setting_name(key: str) -> str:
    """A header entry in words: its flag (``eval_size`` -> ``--eval-size``), or what it records."""
    if key in SETTING_NAMES:
        return SETTING_NAMES[key]
    if key.startswith("request."):
        return f"the request's {key[len('request.'):]}"
    return "--" + key.replace("_", "-")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_problem(row: dict) -> str | None:
    """Why a row's values cannot be a PruneScope result (None when they can)."""
    if not 0.0 <= row["sparsity"] < 1.0:
        return f"sparsity {row['sparsity']!r} is outside [0, 1)"
    if "metric" in row:
        if row["metric"] not in METRIC_RANGES:
            return f"unknown metric {row['metric']!r}"
        low, high = METRIC_RANGES[row["metric"]]
        for key in ("value", "ci_low", "ci_high"):
            if key in row and not low <= row[key] <= high:
                return f"{row['metric']} {key} {row[key]!r} is outside [{low}, {high}]"
    if "n" in row and not (isinstance(row["n"], int) and not isinstance(row["n"], bool) and row["n"] >= 1):
        return f"n {row['n']!r} is not a positive whole number"
    for key in ("kl", "kl_ci_low", "kl_ci_high"):
        if key in row and row[key] < -1e-9:
            return f"{key} {row[key]!r} is negative (a KL divergence never is)"
    return None


def _row_problem(row, required: tuple[str, ...]) -> str | None:
    """Why ``row`` is not a usable point (None when it is)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in required if k not in row]
    if missing:
        return f"no {', '.join(missing)}"
    bad = [k for k in NUMBER_KEYS if k in row and not _number(row[k])]
    return f"{bad[0]} is not a number" if bad else _range_problem(row)


class Checkpoint:
    """One checkpoint file. ``header=None`` accepts any file and writes no header (library use)."""

    def __init__(
        self,
        path,
        header: dict | None = None,
        required: tuple[str, ...] = POINT_KEYS,
        warn: Callable[[str], None] | None = None,
        note: Callable[[str], None] | None = None,
    ):
        self.path = Path(path)
        self.note = note or (lambda message: None)
        self.header = None if header is None else json.loads(json.dumps(header, default=str))
        self.required = tuple(dict.fromkeys((*POINT_KEYS, *required)))
        self.warn = warn or (lambda message: None)
        self._rows: list[dict] | None = None

    def begin(self, overwrite: bool = False) -> list[dict]:
        """Check the file against this run and return its finished points (``overwrite``: start afresh)."""
        if overwrite:
            self.path.unlink(missing_ok=True)
        return self.rows()  # the header is written with the first point: a run that fails first leaves no file

    def rows(self) -> list[dict]:
        """The finished points (read once; a damaged file is repaired on disk)."""
        if self._rows is None:
            self._rows = self._read()
        return list(self._rows)

    def in_grid(self, key: Callable[[dict], tuple], grid: set) -> list[dict]:
        """The finished points that belong to this run's ``grid`` (a set of ``key(row)``); the others were
        asked for by another run on the same output and are dropped with a warning. Says "resumed N of M"."""

        def inside(row) -> bool:
            try:
                return key(row) in grid
            except (KeyError, TypeError, ValueError):
                return False

        rows = self.rows()
        kept, outside = [r for r in rows if inside(r)], [r for r in rows if not inside(r)]
        if outside:
            shown = ", ".join(str(key(r)) for r in outside[:3]) + (", ..." if len(outside) > 3 else "")
            self.warn(f"{self.path}: {len(outside)} finished point(s) are not part of this run ({shown}); dropped, never in its output")
        done = {key(r) for r in kept}
        if done:
            self.note(f"resumed {len(done)} of {len(grid)} points from {self.path}")
        return kept

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.header is not None and not self.path.exists():
            self._rewrite([])
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._rows is not None:
            self._rows.append(row)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    # ------------------------------------------------------------ reading
    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        cut = lines.pop() if lines else ""  # text after the last newline: a line the writer never finished
        entries, dropped = self._parse(lines), bool(cut.strip())
        if dropped:
            self.warn(f"{self.path}: its last line was cut off (a run stopped while writing it); dropped, that point is computed again")
        header = entries.pop(0)[1] if entries and isinstance(entries[0][1], dict) and MARK in entries[0][1] else None
        self._check_header(header)
        rows = []
        for number, row in entries:
            problem = _row_problem(row, self.required)
            if problem is None:
                rows.append(row)
                continue
            dropped = True
            self.warn(f"{self.path}, line {number}: malformed point ({problem}); dropped, that point is computed again")
        if dropped:
            self._rewrite(rows)
        return rows

    def _parse(self, lines: list[str]) -> list[tuple[int, object]]:
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append((number, json.loads(line)))
            except json.JSONDecodeError:
                out.append((number, f"line {number} is not JSON"))
        return out

    def _check_header(self, found: dict | None) -> None:
        if self.header is None:
            return
        if found is None:
            raise PruneScopeError(
                f"cannot resume from {self.path}: it records none of the settings its numbers were computed with; "
                "pass --overwrite to start again"
            )
        recorded = found[MARK]
        for key in dict.fromkeys([*self.header, *recorded]):
            if recorded_value(recorded, key) != self.header.get(key):
                name = setting_name(key)
                raise PruneScopeError(
                    f"cannot resume from {self.path}: it was computed with {name} = {recorded_value(recorded, key)!r}, this run has "
                    f"{self.header.get(key)!r}; use the same setting, or pass --overwrite to start again"
                )

    def _rewrite(self, rows: list[dict]) -> None:
        """Write the header and ``rows`` afresh (one rename, so a kill leaves the old file)."""
        with atomic_file(self.path) as tmp:
            with open(tmp, "w") as fh:
                if self.header is not None:
                    fh.write(json.dumps({MARK: self.header}) + "\n")
                fh.writelines(json.dumps(r) + "\n" for r in rows)


def as_checkpoint(checkpoint) -> Checkpoint | None:
    """A :class:`Checkpoint` from a checkpoint, a path (no header check), or None."""
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return checkpoint
    return Checkpoint(checkpoint)
