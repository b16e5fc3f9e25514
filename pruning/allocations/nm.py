"""N:M semi-structured: in every group of M consecutive inputs of a row, the N lowest scores are
pruned, so the sparsity is fixed at N/M (2:4 is what sparse tensor cores run)."""

from __future__ import annotations

import re

import torch

from ..errors import PruneScopeError
from ..maskmath import Granularity, prepare_scores
from .registry import Allocation, Shape, register_allocation

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse(word: str) -> Granularity | None:
    match = _NM.match(word)
    if not match:
        return None
    n, m = int(match.group(1)), int(match.group(2))
    if m < 2 or n < 1 or n >= m:
        raise PruneScopeError(
            f"N:M pattern {word!r} is impossible: it prunes N of every M inputs, so it needs 1 <= N < M "
            "(for example 2:4 or 4:8)"
        )
    return Granularity("nm", n, m)


def nm_misfit(n: int, m: int, d_in: int, layer: str = "this layer") -> str | None:
    """The one message for an N:M pattern a layer's input size cannot hold (None when it can)."""
    if d_in % m == 0:
        return None
    return f"the N:M pattern {n}:{m} needs the input size to be a multiple of {m}; {layer} has {d_in} inputs"


def nm_mask(scores: torch.Tensor, n: int, m: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """In every group of ``m`` consecutive inputs of a row, prune the ``n`` lowest scores."""
    prepared = prepare_scores(scores, weight)
    d_out, d_in = prepared.shape
    if d_in % m:
        raise PruneScopeError(nm_misfit(n, m, d_in))
    groups = prepared.view(d_out, d_in // m, m)
    if m <= 4:
        return _rank_in_groups(groups, m - n).view(d_out, d_in)
    order = torch.sort(groups, dim=2, descending=True, stable=True).indices[:, :, : m - n]
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, order, True)
    return mask.view(d_out, d_in)


def _rank_in_groups(groups: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep the ``keep`` largest of every group along the last axis (ties: lower index), by counting
    for each entry how many in its group beat it. For small groups this is about 2.5x faster than a
    stable sort of the whole tensor."""
    m = groups.shape[-1]
    beaten_by = torch.empty(groups.shape, dtype=torch.int8, device=groups.device)
    for i in range(m):
        g_i = groups[..., i : i + 1]
        beats = groups > g_i
        if i:
            beats[..., :i] |= groups[..., :i] == g_i  # an equal score at a lower index wins the tie
        beaten_by[..., i] = beats.sum(dim=-1, dtype=torch.int8)
    return beaten_by < keep


def masks(scores, sparsity, g, weights=None):
    """``sparsity`` is ignored: the pattern fixes it at N/M."""
    return {name: nm_mask(s, g.n, g.m, None if weights is None else weights[name]) for name, s in scores.items()}


def ranked(ranker, sparsity, g, names):
    cached = ranker.cache.setdefault(("nm", g.n, g.m), {})
    for n in names:
        if n not in cached:
            cached[n] = nm_mask(ranker.scores[n], g.n, g.m)
    return {n: cached[n] for n in names}


def budgets(names, sparsity, g, dense_masks):
    return {n: g.n / g.m for n in names}


register_allocation(
    Allocation(
        name="nm",
        label="N:M",
        summary="N pruned in every group of M consecutive inputs of a row, any N < M (sparsity N/M; 2:4 runs on "
        "sparse tensor cores)",
        needs_calibration=False,
        shape=Shape(parse, masks, ranked, budgets, fits=lambda g, d_in, layer: nm_misfit(g.n, g.m, d_in, layer), words=(
            ("2:4", "2:4 semi-structured (2 of every 4 inputs pruned)"),
            ("4:8", "4:8 semi-structured (4 of every 8 inputs pruned)"),
        )),
        order=3,
    )
)
