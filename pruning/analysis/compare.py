"""Compare pruning choices cell by cell: criterion x update, and allocation variants, at one sparsity.

A one-shot method is three choices (docs/ARCHITECTURE.md, "The three choices"): the criterion
(``--method``), the allocation (uniform at the base request's granularity, a fixed
``{layer: sparsity}`` such as Layer sensitivity's, or a registered rule such as OWL) and the update
(``none``, ``obs``, ``dsnot``). :func:`compare` prunes and evaluates one :class:`Cell` per combination
on the same data, and gives each its metric with a 95% interval and its paired difference against a
reference cell on the same items (:func:`pruning.analysis.evaluate.paired_difference`, "within noise" when
that interval covers 0). The API, in five lines::

    cells = matrix(["magnitude", "wanda"], ["none", "obs"], [UNIFORM, rule_allocation("owl")])
    base = PruneRequest.make("wanda", 0.5, "layer", calib_samples=16, calib_len=256)   # sparsity, granularity, calibration, seed
    res = compare(loaded, base, cells, data, reference="wanda+none", max_examples=16,
                  progress=fn, on_cell=row_fn, should_stop=stop_fn, checkpoint=None)
    res.rows  # one dict per cell, in cell order (columns: ROW_COLUMNS); res.stopped, res.dense, res.reference

Cells that cannot run (a procedure that takes no update, a method without the ``allocated``
granularity, N:M with an allocation) are rows with ``status="skipped"`` and the ``reason`` in words;
:func:`plan` says which before any work, and refuses a bad name or a reference that cannot run. SparseGPT's
own update is ``obs``; ``sparsegpt+none`` is its mask on the original weights.

Row columns (:data:`ROW_COLUMNS`): ``cell`` (the label, ``criterion+update`` and ``@allocation``
unless uniform), ``criterion``, ``criterion_label`` (the registry's label), ``update``,
``update_label``, ``allocation``, ``granularity``, ``status``, ``reason``, ``metric``, ``value``,
``ci_low``, ``ci_high``, ``n``, ``reference``, ``drop``, ``drop_ci_low``, ``drop_ci_high`` (the
cell's paired harm against the reference: positive = worse, exactly 0 for the reference itself),
``within_noise``, ``verdict`` (in words), ``target_sparsity``, ``sparsity`` (achieved by the masks, exact),
``reconstruction_error`` (mean over layers of ``||WX - W'X||^2 / ||WX||^2``), ``reconstruction_inputs``,
``seconds`` (pruning), ``allocation_seconds`` (measuring a rule's allocation), ``eval_seconds``,
``load_before``/``load_after`` (the machine's 1-minute load average around the cell), ``resumed``.

Callbacks: ``progress(done, total, message)`` (cells done of all; messages from inside a cell
carry its label), ``on_cell(row)`` as each cell finishes (or is skipped, or resumed), and
``should_stop()`` checked between cells and at every progress step inside one: a stop ends the
run with ``result.stopped`` and the finished rows (the cell in progress is dropped). With
``checkpoint`` (a :class:`pruning.store.checkpoint.Checkpoint` or a path), each finished cell is appended
with its per-item values, so a rerun redoes only the missing cells and the paired differences of
resumed cells are the same numbers. Nothing here changes process-wide state.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from ..store.checkpoint import as_checkpoint
from ..errors import PruneScopeError
from ..request import PruneRequest
from ..allocations.registry import get_allocation, parse_rule, parse_spec
from ..masks import allocated, overall_sparsity, parse_granularity
from ..catalog import get_method
from ..updates.registry import get_update
from .evaluate import evaluate, paired_difference, summary
from ..prune import calibration_for, layer_names, prune
from ..walk import DENSE_INPUTS, dense_reconstruction_errors

ROW_COLUMNS = (
    "cell", "criterion", "criterion_label", "update", "update_label", "allocation", "granularity", "status", "reason",
    "metric", "value", "ci_low", "ci_high", "n", "reference", "drop", "drop_ci_low", "drop_ci_high", "within_noise",
    "verdict", "target_sparsity", "sparsity", "reconstruction_error", "reconstruction_inputs", "seconds",
    "allocation_seconds", "eval_seconds", "load_before", "load_after", "resumed",
)
CHECKPOINT_KEYS = ("cell", "metric", "per_item")  # what a checkpointed cell must hold besides sparsity and value


# ---------------------------------------------------------------- the choices of a cell
@dataclass(frozen=True)
class AllocationChoice:
    """How many weights each layer keeps: ``uniform`` (the base request's granularity), another threshold
    rule (``threshold``: row, global, 2:4, ...), a registered allocation measured on the model (``rule``,
    ``params``: OWL), or a fixed ``{layer: sparsity}`` (``fixed``)."""

    label: str
    rule: str | None = None
    params: tuple[tuple[str, object], ...] = ()
    fixed: tuple[tuple[str, float], ...] | None = None
    threshold: str | None = None

    @property
    def uniform(self) -> bool:
        """The base request's own rule, unchanged."""
        return self.rule is None and self.fixed is None and self.threshold is None

    @property
    def per_layer_sparsities(self) -> bool:
        """Each layer at its own sparsity (measured or fixed)."""
        return self.rule is not None or self.fixed is not None


UNIFORM = AllocationChoice("uniform")


def rule_allocation(spec: str) -> AllocationChoice:
    """A registered allocation from ``"owl"`` or ``"owl:m=5,lambda=0.08"`` (parameters checked here), or a
    threshold rule's word (``"row"``, ``"2:4"``): every layer at the base's sparsity under that rule."""

    threshold = parse_rule(spec)
    if threshold is not None:
        return AllocationChoice(str(threshold), threshold=str(threshold))
    name, given = parse_spec(spec)
    rule = get_allocation(name)
    if not rule.measured:
        raise PruneScopeError(f"allocation {name!r} is a threshold rule that takes no parameters; name it alone")
    params = rule.resolve_params(given)
    label = rule.name if not given else f"{rule.name}:" + ",".join(f"{k}={v}" for k, v in sorted(given.items()))
    return AllocationChoice(label, rule=rule.name, params=tuple(sorted(params.items())))


def fixed_allocation(label: str, allocation: Mapping[str, float]) -> AllocationChoice:
    """A fixed ``{layer: sparsity}`` (a file from Layer sensitivity) under ``label``."""

    g = allocated(allocation)  # every value checked
    return AllocationChoice(str(label), fixed=tuple(g.allocation))


@dataclass(frozen=True)
class Cell:
    """One combination: a criterion (a registered method), an update and an allocation."""

    criterion: str
    update: str
    allocation: AllocationChoice = UNIFORM

    @property
    def label(self) -> str:
        base = f"{self.criterion}+{self.update}"
        return base if self.allocation.uniform else f"{base}@{self.allocation.label}"


def matrix(criteria: Sequence[str], updates: Sequence[str], allocations: Sequence[AllocationChoice] = (UNIFORM,)) -> list[Cell]:
    """Every criterion x update x allocation, criteria outermost (names as given; :func:`plan` checks them)."""
    return [Cell(str(c).strip().lower(), str(u).strip().lower(), a) for c in criteria for a in allocations for u in updates]


def find_cell(cells: Sequence[Cell], reference: str | Cell) -> Cell:
    """The cell named by ``reference`` (a :class:`Cell` or a label such as ``"wanda+none"``), or a clear error."""
    label = reference.label if isinstance(reference, Cell) else str(reference).strip().lower()
    for cell in cells:
        if cell.label.lower() == label:
            return cell
    raise PruneScopeError(f"the reference cell {label!r} is not one of the cells: {', '.join(c.label for c in cells)}")


# ---------------------------------------------------------------- checking before any work
@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    request: PruneRequest | None  # None: skipped (``reason``); an allocation cell's request is made once the allocation is known
    reason: str = ""


def _cell_request(base: PruneRequest, cell: Cell) -> PruneRequest:
    """The cell's request on the base (sparsity, granularity, calibration, seed, layers); for an
    allocation cell, a request at the base's sparsity that checks the method can take one."""

    method = _method(cell.criterion)
    params = dict(base.params) if base.method == method.name else None  # another method: its own defaults
    request = base.replace(method=method.name, params=params, update=cell.update)
    if cell.allocation.uniform:
        return request
    if cell.allocation.threshold is not None:
        return request.replace(granularity=parse_granularity(cell.allocation.threshold))  # N:M: its own sparsity
    if request.granularity.is_nm:
        raise PruneScopeError(f"an allocation gives each layer its own sparsity; it cannot be combined with the N:M pattern {request.granularity}")
    probe = dict(cell.allocation.fixed) if cell.allocation.fixed is not None else {"-": request.sparsity}
    request.replace(granularity=allocated(probe), layers=tuple(probe))  # the method takes 'allocated' (a clear reason if not)
    return request


def _method(name: str):

    return get_method(name)


def plan(base: PruneRequest, cells: Sequence[Cell], reference: str | Cell | None = None) -> list[PlannedCell]:
    """Each cell's request, or why it is skipped. An unknown criterion or update, a duplicate cell or a
    reference that is not a runnable cell raise :class:`PruneScopeError` (bad input, before any work)."""

    if not cells:
        raise PruneScopeError("no cells to compare: name at least one criterion and one update")
    labels = [c.label for c in cells]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise PruneScopeError(f"cell {twice[0]} is listed twice")
    out = []
    for cell in cells:
        _method(cell.criterion)
        get_update(cell.update)
        try:
            out.append(PlannedCell(cell, _cell_request(base, cell)))
        except PruneScopeError as exc:
            out.append(PlannedCell(cell, None, str(exc)))
    if reference is not None:
        ref = find_cell(cells, reference)
        skipped = next(p for p in out if p.cell == ref)
        if skipped.request is None:
            raise PruneScopeError(f"the reference cell {ref.label} cannot run: {skipped.reason}")
    return out


# ---------------------------------------------------------------- running
@dataclass
class CompareResult:
    rows: list[dict]  # one per cell, in cell order (the finished ones when stopped)
    reference: str  # the reference cell's label
    dense: dict | None = None  # the dense model's evaluation summary (no per-item values)
    stopped: bool = False
    resumed: int = 0  # cells taken from the checkpoint
    evaluations: dict = field(default_factory=dict)  # label -> evaluation with per-item values (for further pairing)


class _Stopped(Exception):
    pass


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _per_item_json(evaluation: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in evaluation["per_item"].items()}


def _from_row(row: dict) -> dict:
    """An evaluation (with per-item numpy arrays) back from a checkpointed row."""
    ev = {k: row[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}
    items = row["per_item"]
    if row["metric"] == "accuracy":
        ev["per_item"] = {"correct": np.asarray(items["correct"], dtype=bool)}
    else:
        ev["per_item"] = {"nll": np.asarray(items["nll"], dtype=np.float64), "tokens": np.asarray(items["tokens"], dtype=np.int64)}
    return ev


def _mean_error(errors: Mapping[str, float]) -> float | None:
    values = [float(v) for v in errors.values() if v is not None and math.isfinite(float(v))]
    return sum(values) / len(values) if values else None


def _base_row(planned: PlannedCell) -> dict:

    cell = planned.cell
    method = _method(cell.criterion)
    request = planned.request
    gran = "allocated" if request is not None and cell.allocation.per_layer_sparsities else (str(request.granularity) if request else "")
    return {
        "cell": cell.label, "criterion": method.name, "criterion_label": method.label, "update": cell.update,
        "update_label": get_update(cell.update).label, "allocation": cell.allocation.label, "granularity": gran,
        "status": "skipped" if request is None else "done", "reason": planned.reason,
    }


def verdict(row: dict, reference: str) -> str:
    """The cell's paired difference against the reference in words."""
    if row["cell"] == reference:
        return "the reference"
    if row["within_noise"]:
        return f"within noise of {reference}"
    return f"{'worse' if row['drop'] > 0 else 'better'} than {reference} (the 95% interval excludes 0)"


def _pair(row: dict, evaluation: dict, ref_eval: dict, reference: str) -> dict:

    diff = paired_difference(ref_eval, evaluation)
    row.update({"reference": reference, **{k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high", "within_noise")}})
    row["verdict"] = verdict(row, reference)
    return row


def compare(
    loaded,
    base: PruneRequest,
    cells: Sequence[Cell],
    data=None,
    reference: str | Cell | None = None,
    *,
    calibration=None,
    max_examples: int | None = None,
    split: str = "test",
    dense: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    on_cell: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint=None,
) -> CompareResult:
    """Prune and evaluate every cell (see the module text); the reference (default: the first cell
    that can run) runs first. ``base`` gives the sparsity, the uniform granularity, the calibration settings, the
    seed and the layers; each cell replaces its method and update. ``calibration`` (batches) is built
    from ``base`` once when a cell needs it and none is given; ``data`` is the evaluation data (and
    the task data of methods that train)."""
    runnable, ref_cell, order = _run_order(plan(base, cells, reference), cells, reference)
    ckpt = as_checkpoint(checkpoint)
    grid = {c.label for c in runnable}
    done_rows = {r["cell"]: r for r in (ckpt.in_grid(lambda r: r["cell"], grid) if ckpt is not None else [])}
    total = len(order)
    state = CompareResult(rows=[], reference=ref_cell.label)

    def report(done: int, message: str) -> None:
        if should_stop is not None and should_stop():
            raise _Stopped
        if progress is not None:
            progress(done, total, message)

    rows: dict[str, dict] = {}
    calib = {"batches": calibration}
    allocations: dict[AllocationChoice, tuple[dict, dict, float]] = {}
    ref_eval = None
    try:
        if dense:
            report(0, "dense model")
            state.dense = _summary(_evaluate(loaded, data, None, max_examples, split, None))
        for i, p in enumerate(order):
            report(i, p.cell.label)
            inner = lambda d, t, m, i=i, label=p.cell.label: report(i, f"{label}: {m}")  # noqa: E731
            run = lambda p=p, inner=inner: _run_cell(loaded, base, p, data, calib, allocations, max_examples, split, inner)  # noqa: E731
            row = _cell_row(p, done_rows.get(p.cell.label), state, ckpt, run)
            if p.request is not None:
                if p.cell == ref_cell:
                    ref_eval = state.evaluations[p.cell.label]
                _pair(row, state.evaluations[p.cell.label], ref_eval, ref_cell.label)
            rows[p.cell.label] = row
            if on_cell is not None:
                on_cell(dict(row))
        report(total, "done")
    except _Stopped:
        state.stopped = True
    state.rows = [_complete(rows[c.label]) for c in cells if c.label in rows]
    return state


def _run_order(planned, cells: Sequence[Cell], reference):
    """The cells that can run, the reference cell (default: the first of them) and the planned cells in the order
    they run: the reference first, the rest as given."""
    runnable = [p.cell for p in planned if p.request is not None]
    if not runnable:
        raise PruneScopeError(f"none of the cells can run: {planned[0].cell.label}: {planned[0].reason}")
    ref_cell = find_cell(cells, reference) if reference is not None else runnable[0]
    return runnable, ref_cell, sorted(planned, key=lambda p: p.cell != ref_cell)


def _cell_row(p, saved: dict | None, state: CompareResult, ckpt, run: Callable[[], dict]) -> dict:
    """One cell's row: not runnable (its reason), resumed from its checkpointed row, or run now by ``run()`` (and
    checkpointed); its evaluation goes into ``state``."""
    row = _base_row(p)
    if p.request is None:
        row["resumed"] = False
    elif saved is not None:
        row.update({k: saved[k] for k in saved if k not in ("per_item",)})
        row["resumed"] = True
        state.resumed += 1
        state.evaluations[p.cell.label] = _from_row(saved)
    else:
        row.update(run())
        evaluation = row.pop("_evaluation")
        state.evaluations[p.cell.label] = evaluation
        row["resumed"] = False
        if ckpt is not None:
            paired = ("drop", "drop_ci_low", "drop_ci_high", "within_noise", "verdict", "reference")  # recomputed on resume
            ckpt.append({**{k: v for k, v in row.items() if k not in paired}, "per_item": _per_item_json(evaluation)})
    return row


def _complete(row: dict) -> dict:
    return {k: row.get(k) for k in ROW_COLUMNS}


def _summary(evaluation: dict) -> dict:

    return summary(evaluation)


def _evaluate(loaded, data, overrides, max_examples, split, progress):

    return evaluate(loaded, data, overrides=overrides, max_examples=max_examples, split=split, progress=progress)


def _calibration(loaded, base: PruneRequest, calib: dict):
    if calib["batches"] is None:

        calib["batches"] = calibration_for(loaded, base)
    return calib["batches"]


def _allocation_request(loaded, base, p: PlannedCell, calib, allocations, progress):
    """The cell's request with its allocation (a rule's measured once per compare), and the seconds that took."""

    choice = p.cell.allocation
    if choice not in allocations:
        start = time.perf_counter()
        if choice.fixed is not None:
            alloc, info = dict(choice.fixed), {"source": "fixed"}
        else:

            rule = get_allocation(choice.rule)
            names = layer_names(loaded, base.layers, base.include, base.exclude)
            alloc, info = rule.compute(loaded, names, _calibration(loaded, base, calib), base.sparsity, dict(choice.params), progress=progress)
        allocations[choice] = (alloc, info, time.perf_counter() - start)
    alloc, _, seconds = allocations[choice]
    request = p.request.replace(granularity=allocated(alloc), layers=tuple(alloc))
    return request, seconds


def _run_cell(loaded, base, p: PlannedCell, data, calib, allocations, max_examples, split, progress) -> dict:

    load_before = _load()
    request, alloc_seconds = (p.request, 0.0) if not p.cell.allocation.per_layer_sparsities else _allocation_request(loaded, base, p, calib, allocations, progress)
    calibration = _calibration(loaded, base, calib) if request.needs_calibration else None
    result = prune(loaded, request, calibration=calibration, data=data, progress=progress)
    errors = result.info.get("reconstruction_error")
    inputs = result.info.get("reconstruction_inputs")
    if errors is None:  # no calibration walk (magnitude, random with no update): one dense pass measures it

        errors = dense_reconstruction_errors(loaded, result.masks, result.weights, _calibration(loaded, base, calib), progress=progress)
        inputs = DENSE_INPUTS
    start = time.perf_counter()
    evaluation = _evaluate(loaded, data, result.overrides(loaded), max_examples, split, progress)
    eval_seconds = time.perf_counter() - start
    return {
        "granularity": str(request.granularity),
        **{k: evaluation[k] for k in ("metric", "value", "ci_low", "ci_high", "n")},
        "target_sparsity": float(request.sparsity),
        "sparsity": overall_sparsity(result.masks),
        "reconstruction_error": _mean_error(errors),
        "reconstruction_inputs": inputs,
        "seconds": round(result.seconds, 3),
        "allocation_seconds": round(alloc_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "load_before": load_before,
        "load_after": _load(),
        "_evaluation": evaluation,
    }
