"""Opened runs in the app: a run folder becomes a method choice ``run:<folder>`` in every view.

The Runs view opens a folder (checked against the session's model by
``pruning.store.runs.open_run``) and remembers it in this session; the sidebar then
offers it as a method, and :func:`mask_set` is what the resources return for it:
the saved masks, updated weights and report, never pruned again.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pruning.errors import PruneScopeError

from .jobs import store
from .masksets import MaskSet

PREFIX = "run:"
OPENED = "ps_runs_opened"  # method values of the runs opened in this session


def value_of(folder) -> str:
    return PREFIX + str(Path(folder).resolve())


def is_run(method: str | None) -> bool:
    return bool(method) and str(method).startswith(PREFIX)


def folder_of(value: str) -> Path:
    return Path(value[len(PREFIX) :])


def label(value: str) -> str:
    return f"run {folder_of(value).name}"


def opened() -> list[str]:
    return list(st.session_state.get(OPENED, []))


def remember(folder) -> str:
    value = value_of(folder)
    if value not in opened():
        st.session_state[OPENED] = opened() + [value]
    return value


def _stamp(folder: Path) -> tuple:
    """Changes when the run folder is written again (so a replaced run is read afresh)."""
    files = [folder / "report.json", folder / "masks.safetensors"]
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)


def load(s, loaded, folder):
    """The :class:`pruning.store.runs.Run` of ``folder`` checked against the session's model (cached)."""
    from pruning.store.roots import check_allowed
    from pruning.store.runs import open_run

    folder = check_allowed(str(folder), "run")
    key = (s.model_key, str(folder), _stamp(folder))
    hit, run = store().get("run", key)
    if not hit:
        run = open_run(folder, loaded)
        store().put("run", key, run)
    return run


def report_of(value: str) -> dict:
    """The saved report of the opened run ``value``."""
    from pruning.store.io import read_report

    return read_report(folder_of(value) / "report.json")


def display(method: str) -> str:
    """A method's short name for legends and tables: an opened run by its folder's name, never its path."""
    return label(method) if is_run(method) else method


def method_spec(value: str):
    """A registry-shaped description of an opened run (it is never run again)."""
    from pruning.store.io import read_report
    from pruning.registry import Method

    def rerun(ctx):
        raise PruneScopeError("a saved run is opened as it was saved; it is not pruned again")

    report = read_report(folder_of(value) / "report.json")
    return Method(
        name=value,
        label=label(value),
        summary=f"{report.get('method')} masks saved in {folder_of(value)}",
        run=rerun,
        updates_weights=bool(report.get("updates_weights")),
        family="run",
        granularities=(str(report.get("granularity", "layer")),),
    )


def mask_set(s, loaded, value: str) -> MaskSet:
    """The saved run as the resources' MaskSet (masks, updated weights, other changed parameters, report)."""
    run = load(s, loaded, folder_of(value))
    report = run.report
    ident = (s.model_key, str(run.folder), _stamp(run.folder))
    return MaskSet(
        value,
        float(report.get("requested_sparsity", report.get("overall_sparsity", 0.0))),
        str(report.get("granularity", "layer")),
        run.masks,
        run.weights,
        {"report": report},
        other=run.other,
        ident=ident,
    )
