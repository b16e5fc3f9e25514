"""Global: one threshold over the scores of every targeted matrix together, so exactly
``floor(N (1 - s))`` weights are kept over all of them and each layer ends at its own sparsity
(magnitude pruning's classic setting; MGPP's and GMP's)."""

from __future__ import annotations

import torch

from ..maskmath import Granularity, below, descending_ranks, fraction, keep_count, prepare_scores, topk_keep
from .registry import Allocation, Shape, register_allocation


def parse(word: str) -> Granularity | None:
    return Granularity("global", within="layer") if word == "global" else None


def global_masks(scores, sparsity: float, weights=None) -> dict[str, torch.Tensor]:
    """One threshold over all matrices together: exactly ``floor(N (1-s))`` kept in all."""
    names = list(scores)
    flats = [prepare_scores(scores[n], None if weights is None else weights[n]).flatten() for n in names]
    keep = topk_keep(torch.cat(flats), keep_count(sum(f.numel() for f in flats), fraction(sparsity)))
    out, start = {}, 0
    for name, flat in zip(names, flats):
        out[name] = keep[start : start + flat.numel()].view(scores[name].shape)
        start += flat.numel()
    return out


def masks(scores, sparsity, g, weights=None):
    return global_masks(scores, sparsity, weights)


def _ranks(ranker) -> dict[str, torch.Tensor]:
    """Every layer's ranks in the one ranking of all scores together (cached on the ranker)."""
    if "global" not in ranker.cache:
        names = list(ranker.scores)
        ranks = descending_ranks(torch.cat([ranker.scores[n].flatten() for n in names]))
        out, start = {}, 0
        for n in names:
            size = ranker.scores[n].numel()
            out[n] = ranks[start : start + size].view(ranker.scores[n].shape)
            start += size
        ranker.cache["global"] = out
    return ranker.cache["global"]


def ranked(ranker, sparsity, g, names):
    """The threshold is still taken over every layer of the ranker, whichever ``names`` are asked for."""
    ranks = _ranks(ranker)
    k = keep_count(sum(r.numel() for r in ranks.values()), sparsity)
    return {n: below(ranks[n], k) for n in names}


def budgets(names, sparsity, g, dense_masks):
    """The share a global threshold over one dense pass's scores leaves in each layer."""
    return {n: 1.0 - int(m.sum()) / m.numel() for n, m in dense_masks().items()}


register_allocation(
    Allocation(
        name="global",
        label="global",
        summary="one threshold over all targeted matrices: layers whose scores are small lose more",
        needs_calibration=False,
        shape=Shape(parse, masks, ranked, budgets, words=(("global", "global (one threshold over all targeted matrices)"),)),
        order=1,
    )
)
