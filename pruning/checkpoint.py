"""Resumable checkpoints of sweeps and sensitivity runs (JSON lines), honest about what they hold.

The first line is a header recording everything the numbers depend on (model and
a fingerprint of its weights, dataset, evaluation size, seed, calibration, method
parameters, project version); every further line is one finished point. Resuming
with any recorded setting changed is refused with a line naming the setting
(``--overwrite`` starts again). A last line cut off by a killed run is dropped
with a warning; a malformed row is reported, dropped and computed again, so it
never reaches the CSV.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from .errors import PruneScopeError
from .paths import atomic_file

MARK = "prunescope-checkpoint"
# What each header entry is called in a message (the CLI flag where there is one).
SETTING_NAMES = {
    "kind": "kind of run",
    "model": "--model",
    "weights": "model weights (fingerprint)",
    "dataset": "--dataset",
    "text_column": "--text-column",
    "label_column": "--label-column",
    "eval_size": "--eval-size",
    "seed": "--seed",
    "calibration": "--calib",
    "calib_len": "--calib-len",
    "device": "--device",
    "dtype": "--dtype",
    "method": "--method",
    "params": "method parameters (--param)",
    "layers": "--include/--exclude",
    "version": "PruneScope version",
}
POINT_KEYS = ("sparsity", "value")  # every point has these, as finite numbers


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row_problem(row, required: tuple[str, ...]) -> str | None:
    """Why ``row`` is not a usable point (None when it is)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [k for k in required if k not in row]
    if missing:
        return f"no {', '.join(missing)}"
    bad = [k for k in POINT_KEYS if k in row and not _number(row[k])]
    return f"{bad[0]} is not a number" if bad else None


class Checkpoint:
    """One checkpoint file. ``header=None`` accepts any file and writes no header (library use)."""

    def __init__(self, path, header: dict | None = None, required: tuple[str, ...] = POINT_KEYS, warn: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.header = None if header is None else json.loads(json.dumps(header, default=str))
        self.required = tuple(dict.fromkeys((*POINT_KEYS, *required)))
        self.warn = warn or (lambda message: None)
        self._rows: list[dict] | None = None

    def begin(self, overwrite: bool = False) -> list[dict]:
        """Check the file against this run and return its finished points (``overwrite``: start afresh)."""
        if overwrite:
            self.path.unlink(missing_ok=True)
        rows = self.rows()
        if self.header is not None and not self.path.exists():
            self._rewrite(rows)
        return rows

    def rows(self) -> list[dict]:
        """The finished points (read once; a damaged file is repaired on disk)."""
        if self._rows is None:
            self._rows = self._read()
        return list(self._rows)

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
            if recorded.get(key) != self.header.get(key):
                name = SETTING_NAMES.get(key, key)
                raise PruneScopeError(
                    f"cannot resume from {self.path}: it was computed with {name} = {recorded.get(key)!r}, this run has "
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
