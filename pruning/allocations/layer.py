"""Per layer: every matrix keeps the top ``floor(N (1 - s))`` of its own scores (Wanda's and SparseGPT's
setting for a matrix; the default of most criteria)."""

from __future__ import annotations

from ..maskmath import Granularity, below, fraction, keep_count, layer_mask, layer_ranks
from .registry import Allocation, Shape, register_allocation, same_everywhere

WORDS = ("layer", "per-layer")


def parse(word: str) -> Granularity | None:
    return Granularity("layer") if word in WORDS else None


def masks(scores, sparsity, g, weights=None):
    sparsity = fraction(sparsity)
    return {n: layer_mask(s, sparsity, None if weights is None else weights[n]) for n, s in scores.items()}


def ranked(ranker, sparsity, g, names):
    ranks = layer_ranks(ranker, names)
    return {n: below(ranks[n], keep_count(ranks[n].numel(), sparsity)) for n in names}


register_allocation(
    Allocation(
        name="layer",
        label="per layer",
        summary="every matrix keeps the same share of its own weights (its top scores)",
        needs_calibration=False,
        shape=Shape(parse, masks, ranked, same_everywhere, words=(("layer", "per-layer (each matrix keeps its top scores)"),)),
        order=0,
    )
)
