"""Allocated: each listed layer at its own sparsity, from a file ``{layer: sparsity}`` (for example the
allocation Layer sensitivity measures, ``--allocation FILE.json``) or from a measured allocation such as
OWL; unlisted layers stay whole. Within a layer the per-layer rule keeps its top scores."""

from __future__ import annotations

from ..errors import PruneScopeError
from ..maskmath import Granularity, below, keep_count, layer_mask, layer_ranks
from .registry import Allocation, Shape, register_allocation


def parse(word: str) -> Granularity | None:
    if word == "allocated":
        raise PruneScopeError("granularity 'allocated' needs an allocation {layer: sparsity} (e.g. --allocation FILE.json)")
    return None


def masks(scores, sparsity, g, weights=None):
    """``sparsity`` is ignored: each layer has its own."""
    alloc = g.allocation_dict
    return {n: layer_mask(s, alloc.get(n, 0.0), None if weights is None else weights[n]) for n, s in scores.items()}


def ranked(ranker, sparsity, g, names):
    alloc = g.allocation_dict
    ranks = layer_ranks(ranker, names)
    return {n: below(ranks[n], keep_count(ranks[n].numel(), alloc.get(n, 0.0))) for n in names}


def budgets(names, sparsity, g, dense_masks):
    alloc = g.allocation_dict
    return {n: alloc.get(n, 0.0) for n in names}


register_allocation(
    Allocation(
        name="allocated",
        label="allocated",
        summary="each listed layer at its own sparsity, from a file {layer: sparsity} (e.g. the one Layer sensitivity "
        "measures and saves) or from a measured allocation below; unlisted layers stay whole",
        needs_calibration=False,
        shape=Shape(parse, masks, ranked, budgets, by_word=False,
                    words=(("FILE.json", "each listed layer at its own sparsity {layer: sparsity}"),)),
        order=4,
    )
)
