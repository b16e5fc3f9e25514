"""Per output row: every row of every matrix keeps the top ``floor(d_in (1 - s))`` of its scores
(Wanda's comparison group: its paper prunes per output)."""

from __future__ import annotations

import torch

from ..maskmath import Granularity, below, fraction, keep_count, prepare_scores
from .registry import Allocation, Shape, register_allocation, same_everywhere

WORDS = ("row", "per-row")


def parse(word: str) -> Granularity | None:
    return Granularity("row") if word in WORDS else None


def row_mask(scores: torch.Tensor, sparsity: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the top ``floor(d_in (1-s))`` scores of every output row."""
    prepared = prepare_scores(scores, weight)
    k = keep_count(prepared.shape[1], sparsity)
    order = torch.sort(prepared, dim=1, descending=True, stable=True).indices[:, :k]
    mask = torch.zeros_like(prepared, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask


def masks(scores, sparsity, g, weights=None):
    sparsity = fraction(sparsity)
    return {n: row_mask(s, sparsity, None if weights is None else weights[n]) for n, s in scores.items()}


def _ranks(ranker) -> dict[str, torch.Tensor]:
    """Each entry's rank within its row (cached on the ranker)."""
    if "row" not in ranker.cache:
        ranks = {}
        for n, s in ranker.scores.items():
            order = torch.sort(s, dim=1, descending=True, stable=True).indices
            r = torch.empty_like(order, dtype=torch.int32)
            r.scatter_(1, order, torch.arange(s.shape[1], dtype=torch.int32).expand_as(order).contiguous())
            ranks[n] = r
        ranker.cache["row"] = ranks
    return ranker.cache["row"]


def ranked(ranker, sparsity, g, names):
    ranks = _ranks(ranker)
    return {n: below(ranks[n], keep_count(ranks[n].shape[1], sparsity)) for n in names}


register_allocation(
    Allocation(
        name="row",
        label="per row",
        summary="every output row keeps the same share of its weights (Wanda's comparison group)",
        needs_calibration=False,
        shape=Shape(parse, masks, ranked, same_everywhere, words=(("row", "per-output-row (each row keeps its top scores)"),)),
        order=2,
    )
)
