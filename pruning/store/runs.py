"""Run folders: what ``prune`` writes, read back, checked against a model, and compared.

A run folder holds ``masks.safetensors`` (bool, ``True`` = kept, one tensor per
pruned layer in (d_out, d_in) layout), ``report.json`` (:func:`pruning.store.io.build_report`)
and, unless ``--no-model``, ``model/`` (the pruned model, ``save_pretrained``).
The app's downloads hold the same two files, so a run moves between the CLI and
the app both ways. Runs live under a runs directory: ``$PRUNESCOPE_RUNS_DIR``, or
``runs/`` under the working directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..analysis.evaluate import paired_difference
from ..errors import PruneScopeError
from ..loading.models import layer_weight, prunable_layers
from ..allocations.nm import nm_misfit
from ..masks import nm_violations, parse_granularity, sparsity_table
from .io import build_report, load_masks, read_report, save_pruned_model

RUNS_ENV = "PRUNESCOPE_RUNS_DIR"
MASKS_FILE = "masks.safetensors"
REPORT_FILE = "report.json"
MODEL_DIR = "model"


def runs_dir() -> Path:
    """Where runs are listed: ``$PRUNESCOPE_RUNS_DIR`` or ``./runs``."""
    env = os.environ.get(RUNS_ENV, "").strip()
    return Path(env).expanduser() if env else Path.cwd() / "runs"


# ---------------------------------------------------------------- writing
def run_files(loaded, result, evaluation: dict | None = None, request=None) -> dict[str, bytes]:
    """The bytes of ``masks.safetensors`` and ``report.json`` for one pruning result.

    ``result`` is a :class:`pruning.result.PruneResult` or anything with the same
    fields (``method, granularity, sparsity, masks, weights, seconds, info``);
    ``request`` the :class:`pruning.request.PruneRequest` that made it, if known.
    """
    masks = {n: m.to(torch.bool).contiguous() for n, m in result.masks.items()}
    report = build_report(result, loaded, evaluation, request)
    return {MASKS_FILE: save(masks), REPORT_FILE: json.dumps(report, indent=2, default=float).encode()}


def write_run(folder, loaded, result, evaluation: dict | None = None, request=None, with_model: bool = True) -> dict:
    """Write a whole run into ``folder`` (a fresh temporary folder: see :mod:`pruning.store.outputs`); return the report."""
    folder = Path(folder)
    files = run_files(loaded, result, evaluation, request)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    if with_model:
        save_pruned_model(loaded, result, folder / MODEL_DIR)
    return json.loads(files[REPORT_FILE])


# ---------------------------------------------------------------- listing
def _summary(folder: Path, root: Path) -> dict:
    row = {"run": str(folder.relative_to(root)), "path": str(folder)}
    try:
        report = read_report(folder / REPORT_FILE)
    except PruneScopeError as exc:
        return {**row, "problem": str(exc)}
    evaluation = report.get("evaluation") or {}
    pruned, dense = evaluation.get("pruned") or {}, evaluation.get("dense") or {}
    return {
        **row,
        "model": report.get("model"),
        "method": report.get("method"),
        "granularity": report.get("granularity"),
        "sparsity": report.get("overall_sparsity"),
        "metric": pruned.get("metric"),
        "dense": dense.get("value"),
        "pruned": pruned.get("value"),
        "has model": (folder / MODEL_DIR).is_dir(),
    }


def list_runs(root=None) -> list[dict]:
    """One summary row per run folder under ``root`` (a folder holding ``report.json``; two levels deep)."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    found = sorted({p.parent for pattern in (REPORT_FILE, f"*/{REPORT_FILE}", f"*/*/{REPORT_FILE}") for p in root.glob(pattern)})
    return [_summary(folder, root) for folder in found if not folder.name.startswith(".")]


# ---------------------------------------------------------------- reading back
@dataclass
class Run:
    """A run folder read back and checked against a loaded model."""

    folder: Path
    report: dict
    masks: dict  # every prunable layer; layers the run left alone are all True
    weights: dict | None = None  # pruned layers whose kept weights the method changed, (d_out, d_in)
    other: dict | None = None  # other parameters the method changed (module layout)
    untouched: list = field(default_factory=list)  # layers absent from the mask file

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def pruned(self) -> dict:
        """The masks of the layers the run pruned (the report's counts are claims; these are the file's)."""
        return {n: m for n, m in self.masks.items() if n not in self.untouched}

    def layer_table(self) -> list[dict]:
        """Per pruned layer: shape, params, kept, pruned and sparsity, counted from the mask file."""
        return sparsity_table(self.pruned)

    def counts(self) -> tuple[int, int]:
        """``(kept, total)`` weights of the pruned layers, counted from the mask file."""
        rows = self.layer_table()
        return sum(int(r["kept"]) for r in rows), sum(int(r["params"]) for r in rows)


def check_masks(masks: dict, loaded) -> dict:
    """Every mask must name a prunable layer of ``loaded``, have its (d_out, d_in) shape and be boolean."""
    shapes = {i.name: tuple(i.shape) for i in prunable_layers(loaded.model)}
    if not masks:
        raise PruneScopeError("the mask file holds no masks")
    for name, mask in masks.items():
        if name not in shapes:
            raise PruneScopeError(f"the mask file names {name!r}, which is not a prunable layer of {loaded.name}; was the run made on another model?")
        if tuple(mask.shape) != shapes[name]:
            raise PruneScopeError(
                f"the mask of {name} has shape {tuple(mask.shape)}, the layer of {loaded.name} has {shapes[name]}; was the run made on another model?"
            )
        if mask.dtype != torch.bool:
            raise PruneScopeError(f"the mask of {name} is {str(mask.dtype).replace('torch.', '')}, not bool: not a PruneScope mask file")
    return shapes


def _read_masks(path: Path) -> dict:
    try:
        return load_masks(path)
    except PruneScopeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file that is not safetensors
        raise PruneScopeError(f"{path} is not a safetensors mask file ({type(exc).__name__})") from None


def _saved_tensors(model_dir: Path) -> dict:
    tensors: dict = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def _changed_weights(model_dir: Path, loaded, masks: dict) -> tuple[dict | None, dict | None]:
    """The pruned layers' saved weights where they differ from masked dense ones, and other changed parameters."""
    saved = _saved_tensors(model_dir)
    if not saved:
        return None, None
    kinds = {i.name: i.kind for i in prunable_layers(loaded.model)}
    weights, other = {}, {}
    for key, value in saved.items():
        name = key[: -len(".weight")] if key.endswith(".weight") else None
        if name in masks:
            w = value.t() if kinds[name] == "Conv1D" else value
            if tuple(w.shape) == tuple(masks[name].shape) and not torch.equal(w, layer_weight(loaded.model, name) * masks[name]):
                weights[name] = w.float()
            continue
        try:
            base = loaded.model.get_parameter(key)
        except AttributeError:
            continue  # a buffer or a tied copy
        if tuple(base.shape) == tuple(value.shape) and not torch.equal(base, value.to(base.dtype)):
            other[key] = value.to(base.dtype)
    return weights or None, other or None


def _check_pattern(report: dict, masks: dict, folder: Path) -> None:
    """A run labelled N:M must hold N:M masks: every group of M inputs of every pruned row keeps at most M - N."""
    try:
        g = parse_granularity(str(report.get("granularity")))
    except PruneScopeError:
        return  # "allocated" and the like: no pattern to check
    if not g.is_nm:
        return
    for name, mask in masks.items():
        problem = nm_misfit(g.n, g.m, mask.shape[1], name)
        bad = 0 if problem else nm_violations(mask, g.n, g.m)
        if problem or bad:
            raise PruneScopeError(
                f"{folder / REPORT_FILE} labels the run {g}, but its masks do not follow it: "
                + (problem if problem else f"{bad:,d} groups of {g.m} inputs of {name} keep more than {g.m - g.n}")
            )


def open_run(folder, loaded) -> Run:
    """Read a run folder and check it against ``loaded``: masks (names, shapes, dtype), report, and any updated weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PruneScopeError(f"no run folder at {folder}")
    report = read_report(folder / REPORT_FILE)
    if not isinstance(report, dict) or "method" not in report:
        raise PruneScopeError(f"{folder / REPORT_FILE} is not a PruneScope report (no method recorded)")
    masks = _read_masks(folder / MASKS_FILE)
    shapes = check_masks(masks, loaded)
    weights = other = None
    if (folder / MODEL_DIR).is_dir():
        weights, other = _changed_weights(folder / MODEL_DIR, loaded, masks)
    _check_pattern(report, masks, folder)
    untouched = [n for n in shapes if n not in masks]
    full = {n: masks[n] if n in masks else torch.ones(shape, dtype=torch.bool) for n, shape in shapes.items()}
    return Run(folder, report, full, weights, other, untouched)


# ---------------------------------------------------------------- comparing
def compare_masks(a: dict, b: dict) -> list[dict]:
    """Per layer: weights kept by both, by A only, by B only, and the Jaccard overlap of the kept sets.

    A last row ``"all layers"`` sums the counts over the layers both sets hold.
    """
    common = [n for n in a if n in b]
    if not common:
        raise PruneScopeError("the two runs share no layer, so their masks cannot be compared")
    rows = []
    for name in common:
        x, y = a[name], b[name]
        if x.shape != y.shape:
            raise PruneScopeError(f"layer {name}: the two runs' masks differ in shape ({tuple(x.shape)} vs {tuple(y.shape)})")
        both = int((x & y).sum())
        a_only, b_only = int((x & ~y).sum()), int((~x & y).sum())
        rows.append(_overlap_row(name, x.numel(), both, a_only, b_only))
    total = _overlap_row("all layers", sum(r["weights"] for r in rows), *(sum(r[k] for r in rows) for k in ("both", "A only", "B only")))
    return rows + [total]


def _overlap_row(name: str, weights: int, both: int, a_only: int, b_only: int) -> dict:
    union = both + a_only + b_only
    return {"layer": name, "weights": weights, "both": both, "A only": a_only, "B only": b_only, "jaccard": both / union if union else 1.0}


def metric_difference(a: dict, b: dict) -> dict:
    """B minus A for two evaluations on the same examples, with its paired 95% interval.

    The interval is :func:`pruning.analysis.evaluate.paired_difference`'s (A in the place of the
    reference model), turned into B minus A: for accuracy the harm is A - B, for
    perplexity it is B - A. Without per-example results the interval stays None.
    """
    if a.get("metric") != b.get("metric") or a.get("n") != b.get("n"):
        raise PruneScopeError("the two evaluations are not on the same examples with the same metric, so they cannot be paired")
    out = {"metric": a["metric"], "n": a["n"], "a": a["value"], "b": b["value"], "difference": b["value"] - a["value"]}
    if "per_item" not in a or "per_item" not in b:
        return {**out, "ci_low": None, "ci_high": None}
    paired = paired_difference(a, b)
    low, high = paired["drop_ci_low"], paired["drop_ci_high"]
    if a["metric"] == "accuracy":  # harm = A - B, so B - A runs from -high to -low
        low, high = -high, -low
    return {**out, "ci_low": low, "ci_high": high, "within_noise": paired["within_noise"]}
