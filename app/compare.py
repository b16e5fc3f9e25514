"""The Compare view's results: criteria x updates (and allocations) at one sparsity, as one job of ``app.jobs``.

The engine is :func:`pruning.analysis.compare.compare`: one row per cell with its metric, 95% interval and n,
and its paired difference against a reference cell on the same examples. Here: which criteria,
updates and allocations the view offers (from the registries, never by name), the cells of the two
matrices, the job (keyed, like ``app.resources``, by every setting that produced it) and the frames
the page and ``app.charts.compare`` draw. No Streamlit widgets here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .jobs import Answer, Job, answer
from .state import Settings

UNIFORM = "uniform"
SENSITIVITY = "sensitivity"  # the allocation measured on the Layer sensitivity view (fixed {layer: sparsity})


@dataclass(frozen=True)
class CompareChoice:
    """The view's own settings: the matrix's rows and columns, the allocations compared, the reference cell."""

    criteria: tuple[str, ...]
    updates: tuple[str, ...]
    allocations: tuple[str, ...]  # UNIFORM, SENSITIVITY, or a registered allocation's name
    reference: str  # a cell label of the matrix, "criterion+update"


# ---------------------------------------------------------------- what the view offers (from the registries)
def criteria() -> dict:
    """Registered methods a cell can use as its criterion: every one-shot method (the seed family's
    procedures train or select, and their run is the Method steps view)."""
    from pruning.catalog import all_methods

    return {name: m for name, m in all_methods().items() if m.family != "seed" and not m.needs_training_data}


def updates() -> dict:
    from pruning.updates.registry import all_updates

    return all_updates()


def allocations(s: Settings, source) -> dict[str, str]:
    """``{key: label}``: uniform (the sidebar's granularity), the Layer sensitivity allocation when one was made
    on this model, every measured allocation (OWL), then the other threshold rules (global, row, 2:4, ...)."""
    from pruning.allocations.registry import measured
    from pruning.masks import granularity_labels

    uniform = uniform_granularity(s)
    out = {UNIFORM: f"uniform ({uniform})"}
    from .allocation import AllocationSource

    if isinstance(source, AllocationSource) and source.fits(s.model_key):  # an applied OWL is OWL's own column below
        out[SENSITIVITY] = source.label
    out.update({name: a.label for name, a in measured().items()})
    out.update({word: label.split(" (")[0] for word, label in granularity_labels().items() if word != uniform})
    return out


def uniform_granularity(s: Settings) -> str:
    """The granularity the matrix prunes at: the sidebar's, or per layer when the sidebar holds an allocation
    (which is then one of the allocations compared)."""
    from .allocation import ALLOCATED

    return "layer" if s.granularity == ALLOCATED else str(s.request.granularity)


def base_request(s: Settings):
    """The sidebar's request at the matrix's uniform granularity (sparsity, calibration and seed as set)."""
    from .allocation import ALLOCATED

    r = s.request
    return r.replace(granularity="layer", layers=None) if s.granularity == ALLOCATED else r


def cell_label(criterion: str, update: str) -> str:
    from pruning.analysis.compare import Cell

    return Cell(criterion, update).label


def _choice(key: str, s: Settings, source):
    from pruning.analysis.compare import UNIFORM as U, fixed_allocation, rule_allocation

    if key == UNIFORM:
        return U
    if key == SENSITIVITY:
        return fixed_allocation(SENSITIVITY, source.at(s.request.sparsity))
    return rule_allocation(key)


def cells(s: Settings, c: CompareChoice, source) -> tuple[list, list]:
    """``(cells, allocation cells)``: every criterion x update at the uniform allocation, then the reference's
    criterion with every update under each other allocation chosen (its uniform row is the matrix's)."""
    from pruning.analysis.compare import Cell, matrix

    main = matrix(c.criteria, c.updates)
    ref_criterion = c.reference.split("+")[0]
    others = [_choice(a, s, source) for a in c.allocations if a != UNIFORM]
    extra = [Cell(ref_criterion, u, a) for a in others for u in c.updates]
    return main, extra


def compare(s: Settings, loaded, data, c: CompareChoice, source) -> Answer:
    """The comparison's job: a :class:`pruning.analysis.compare.CompareResult`; each finished cell's row is handed
    to the page as it comes (``job.partial``)."""
    from .resources import calibration

    main, extra = cells(s, c, source)
    base = base_request(s)
    key = (s.model_key, s.data_key, base.key, tuple(main + extra), c.reference, s.eval_size)

    def prepare():
        from pruning.analysis.compare import plan

        plan(base, main + extra, c.reference)  # a bad choice is a message before any work
        calib = calibration(s, loaded, data)  # every cell measures its reconstruction error on it

        def work(job: Job):
            from pruning.analysis.compare import compare as run

            return run(
                loaded, base, main + extra, data, reference=c.reference, calibration=calib, max_examples=s.eval_size,
                progress=job.progress, on_cell=job.add, should_stop=lambda: job.stop_requested,
            )

        return work

    label = f"Comparing {len(main) + len(extra)} cells at {base.sparsity:.0%}"
    return answer("compare", key, label, prepare)


# ---------------------------------------------------------------- the frames' grids
def grids(s: Settings, c: CompareChoice, source) -> tuple[list[dict], list[dict]]:
    """The two matrices' cells, every one present before it is computed: ``key`` (the engine's cell label),
    ``row`` and ``col`` (labels from the registries). The first: criteria x updates; the second:
    allocations x updates at the reference's criterion (empty when only uniform is chosen)."""
    crit, upd = criteria(), updates()
    names = allocations(s, source)
    main, extra = cells(s, c, source)
    first = [{"key": x.label, "row": crit[x.criterion].label, "col": upd[x.update].label} for x in main]
    second = []
    if extra:
        ref_criterion = c.reference.split("+")[0]
        second = [{"key": cell_label(ref_criterion, u), "row": names[UNIFORM], "col": upd[u].label} for u in c.updates]
        keys = [a for a in c.allocations if a != UNIFORM]
        second += [{"key": x.label, "row": names[k], "col": upd[x.update].label} for k, x in zip([k for k in keys for _ in c.updates], extra)]
    return first, second
