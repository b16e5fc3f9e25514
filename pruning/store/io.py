"""Saving what a pruning run produced: masks, a JSON report, and the pruned model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .. import threads
from ..analysis.evaluate import summary
from ..errors import PruneScopeError
from ..loading.devices import placement_of
from ..loading.functional import with_overrides
from ..masks import overall_sparsity, sparsity_table
from ..procedures import views


def load_masks(path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise PruneScopeError(f"no mask file at {path}")
    return load_file(str(path))


def build_report(result, loaded, evaluation: dict | None = None, request=None) -> dict:
    """A JSON-able account of one run: settings, exact counts per layer, timing, metric
    (and, given the request, its data and calibration choice; an allocation is always recorded)."""
    extra = {"request": request.describe()} if request is not None else {}
    for key in ("allocation", "allocation_rule", "data", "calibration_note", "reconstruction_inputs"):  # the allocation (and the rule that measured it); the evaluated data; a capped --calib; the inputs errors were measured on
        if key in result.info:
            extra[key] = result.info[key]
    return {
        "model": loaded.name,
        "source": str(loaded.source),
        "task": loaded.task,
        "method": result.method,
        "granularity": result.granularity,
        "requested_sparsity": result.sparsity,
        "overall_sparsity": overall_sparsity(result.masks),
        "kept": int(sum(int(m.sum()) for m in result.masks.values())),
        "total": int(sum(m.numel() for m in result.masks.values())),
        "seconds": round(result.seconds, 3),
        "seed": result.info.get("seed"),
        "params": result.info.get("params", {}),
        "calibration_samples": result.info.get("calibration_samples"),
        "updates_weights": result.weights is not None,
        "update": result.info.get("update", getattr(request, "update", None)),
        "layers": [_layer_row(row, result.info.get("reconstruction_error") or {}) for row in sparsity_table(result.masks)],
        "evaluation": _evaluation_summary(evaluation),
        "placement": placement_of(loaded).summary(),
        "resources": result.info.get("resources"),  # device, dtype, peak device and host memory
        "threads": threads.record(),  # the wait settings and thread counts this process ran under (set by its entry point)
        **steps_summary(result.info),
        **extra,
    }


def _layer_row(row: dict, errors: dict) -> dict:
    """A report's layer row; ``reconstruction_error``: ||WX - W'X||^2 / ||WX||^2 on the calibration inputs."""
    out = {**row, "shape": list(row["shape"])}
    if row["layer"] in errors:
        out["reconstruction_error"] = errors[row["layer"]]
    return out


def _evaluation_summary(evaluation: dict | None) -> dict | None:
    """The evaluations (value, ci_low, ci_high, n, ...) without per-item arrays."""
    if evaluation is None:
        return None
    return {k: summary(v) if isinstance(v, dict) and "per_item" in v else v for k, v in evaluation.items()}


def steps_summary(info: dict) -> dict:
    """What a stepwise method recorded, without the weight samples: MGPP/GMP snapshots
    (``history``), SDS stages and per-layer errors (``stages``, ``layer_errors``), and the
    candidates of each randomized-selection stage (``selection``)."""
    out = {}
    if info.get("stages") and info.get("selection"):
        out["selection"] = [
            {"sparsity": st["sparsity"], "rule": st.get("selection"), "candidates": views.candidate_rows(st), "early_curves": st.get("early_curves")}
            for st in info["stages"]
        ]
    if info.get("history"):
        out["history"] = views.history_rows(info["history"])
        out["schedule"] = info.get("schedule")
    if info.get("steps"):
        out["stages"] = [{k: v for k, v in r.items() if k != "what"} for r in views.sds_stage_rows(info["steps"])]
        out["layer_errors"] = info.get("layers")
    return out


def read_report(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PruneScopeError(f"no report at {path}") from None
    except json.JSONDecodeError as exc:
        raise PruneScopeError(f"{path} is not a PruneScope report: {exc}") from None


def save_pruned_model(loaded, result, folder) -> Path:
    """Write a copy of the model with the pruned weights (safetensors) and its tokenizer.

    The shared model is not changed: the weights go into a shallow copy whose
    pruned layers hold new tensors.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = with_overrides(loaded.model, result.overrides(loaded))
    model.save_pretrained(str(folder), safe_serialization=True)
    if loaded.tokenizer is not None:
        loaded.tokenizer.save_pretrained(str(folder))
    return folder
