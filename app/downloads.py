"""Download buttons that hand over what a view shows in the files the CLI writes.

A mask set gives ``masks.safetensors`` and ``report.json`` (the bytes come from
``pruning.store.runs.run_files``, the function the CLI's ``prune`` writes with), tables
give CSV, an allocation the JSON of ``python -m pruning sensitivity``. A
downloaded pair put in a folder is a run: the Runs view and ``python -m pruning
show`` open it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd



def _as_result(mask_set) -> SimpleNamespace:
    """The fields ``pruning.store.io.build_report`` reads from a prune result."""
    info = dict(mask_set.info or {})
    return SimpleNamespace(
        method=mask_set.method,
        granularity=mask_set.granularity,
        sparsity=mask_set.sparsity,
        masks=mask_set.masks,
        weights=mask_set.weights,
        seconds=float(info.get("seconds", 0.0) or 0.0),
        info=info,
    )


def run_files(loaded, mask_set, evaluation: dict | None = None) -> dict[str, bytes]:
    """``masks.safetensors`` and ``report.json`` of a mask set (an opened run hands back its own files)."""
    from pruning.store.runs import MASKS_FILE, REPORT_FILE, run_files as build

    report = (mask_set.info or {}).get("report")
    if report is not None:  # an opened run: the files as they were saved
        from .runs import folder_of

        folder = folder_of(mask_set.method)
        return {MASKS_FILE: (folder / MASKS_FILE).read_bytes(), REPORT_FILE: (folder / REPORT_FILE).read_bytes()}
    return build(loaded, _as_result(mask_set), evaluation)


def mask_set_buttons(container, loaded, mask_set, evaluation: dict | None = None, key: str = "") -> None:
    """Two buttons: the masks and the report of ``mask_set``, as ``prune`` writes them.

    The files are made when a button is clicked (Streamlit calls the function then, on
    its own thread), not on every script run: the report counts every layer's mask,
    which would add a few hundred milliseconds to each slider move."""
    from pruning.store.runs import MASKS_FILE, REPORT_FILE

    c1, c2 = container.columns(2)
    for col, name in zip((c1, c2), (MASKS_FILE, REPORT_FILE)):
        mime = "application/json" if name.endswith(".json") else "application/octet-stream"
        make = (lambda name=name: run_files(loaded, mask_set, evaluation)[name])
        col.download_button(f"Download {name}", make, file_name=name, mime=mime, key=f"dl_{key}_{name}")


def table_button(container, df: pd.DataFrame, file_name: str, key: str, label: str = "Download CSV") -> None:
    container.download_button(label, df.to_csv(index=False).encode(), file_name=file_name, mime="text/csv", key=f"dl_{key}")


def json_button(container, payload, file_name: str, key: str, label: str) -> None:
    data = json.dumps(payload, indent=2, default=float).encode()
    container.download_button(label, data, file_name=file_name, mime="application/json", key=f"dl_{key}")
