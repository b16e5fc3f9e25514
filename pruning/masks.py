"""Masks from scores, and facts about masks.

A mask is a boolean tensor shaped like the (d_out, d_in) weight it applies to,
``True`` where the weight is kept. A set of masks is ``dict[layer_name, mask]``.

Where the threshold applies (per layer, per row, global, N:M, each layer at its own sparsity) is an
allocation rule, each in its own file of ``pruning/allocations/``; this module parses a rule's name
and dispatches to it. The rules share the primitives of :mod:`pruning.maskmath`:

* the number of kept weights is exact: ``keep_count(N, s) = floor(N (1 - s))``
  (with a tolerance for binary floating point, so 0.9 of 100 keeps 10, not 9);
* ties at the threshold are broken by position: among equal scores the weight
  with the lower flat index (row-major, layers in dict order) is kept;
* a weight that is already exactly zero counts as pruned: when the weight is
  given, its score becomes ``-inf`` so it is pruned before any non-zero weight.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from .allocations.registry import parse_rule, rule_of, rule_words
from .errors import PruneScopeError
from .maskmath import (  # noqa: F401  (the primitives, importable from here as before)
    Granularity,
    Masks,
    allocated,
    descending_ranks,
    keep_count,
    layer_mask,
    prepare_scores,
    topk_keep,
    validate_sparsity,
)


def granularity_labels() -> dict[str, str]:
    """The words the rules are chosen by, with their labels (``layer``, ``global``, ``row``, ``2:4``, ``4:8``),
    read from the rules' own files."""
    return rule_words()


def parse_granularity(text: str | Granularity) -> Granularity:
    """Parse a rule's word: ``"layer"``, ``"global"``, ``"row"`` or ``"N:M"`` (N pruned of every M)."""
    if isinstance(text, Granularity):
        return text
    found = parse_rule(str(text))
    if found is None:
        words = list(granularity_labels())
        plain, patterns = [w for w in words if ":" not in w], [w for w in words if ":" in w]
        hint = ", ".join(plain) + (f", or an N:M pattern such as {patterns[0]}" if patterns else "")
        raise PruneScopeError(f"unknown granularity {text!r}: use {hint}")
    return found


def supported_rules(method) -> tuple[str, ...]:
    """The rule words a method (:class:`pruning.registry.Method`) takes: its own list, or every registered rule
    (``allocated`` included) when it names none."""
    if method.granularities is not None:
        return tuple(method.granularities)
    return tuple(granularity_labels()) + ("allocated",)


def supports(method, granularity: str | Granularity) -> bool:
    """Whether ``method`` takes the rule (any N:M pattern when it takes one)."""
    g = parse_granularity(granularity) if not (isinstance(granularity, str) and granularity == "allocated") else Granularity("allocated")
    words = supported_rules(method)
    return str(g) in words or (g.is_nm and any(":" in w for w in words))


def check_fits(g: Granularity, widths: Mapping[str, int]) -> None:
    """Refuse a rule that some layer's shape cannot hold (``widths``: layer -> d_in; an N:M pattern needs
    d_in to be a multiple of M)."""
    fits = rule_of(g).fits
    if fits is None:
        return
    for name, d_in in widths.items():
        problem = fits(g, int(d_in), name)
        if problem:
            raise PruneScopeError(problem)


def compute_masks(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    granularity: str | Granularity,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Masks for every layer in ``scores`` at ``sparsity`` under the rule ``granularity``.

    For N:M the sparsity is fixed at N/M and ``sparsity`` is ignored; ``allocated`` prunes each
    listed layer at its own sparsity (unlisted layers stay whole) and ignores it too.
    """
    g = parse_granularity(granularity)
    return rule_of(g).masks(scores, sparsity, g, weights)


def layer_budgets(names: Sequence[str], sparsity: float, granularity: Granularity, dense_masks) -> dict[str, float]:
    """Each layer's sparsity for a block walk under the rule (``dense_masks()``: the rule's masks from one
    dense pass of the criterion, asked for only by a rule whose threshold spans layers)."""
    return rule_of(granularity).budgets(list(names), sparsity, granularity, dense_masks)


# ---------------------------------------------------------------- fast re-thresholding
class MaskRanker:
    """Scores ranked once per rule, so a mask at any sparsity is a comparison.

    Built from the (prepared) scores of a set of layers; ``masks(s, g)`` gives the
    same masks as ``compute_masks`` but in a few milliseconds per call. Each rule keeps
    what it ranked in ``cache``.
    """

    def __init__(self, scores: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None):
        self.scores = {n: prepare_scores(s, None if weights is None else weights[n]) for n, s in scores.items()}
        self.cache: dict = {}

    def masks(self, sparsity: float, granularity: str | Granularity, layers: Sequence[str] | None = None) -> Masks:
        """Masks at ``sparsity`` (checked where the request was made) and ``granularity``; of
        ``layers`` alone when given (a layer's mask does not depend on the others', except
        globally, where the threshold is still taken over every layer)."""
        g = parse_granularity(granularity)
        names = list(self.scores) if layers is None else list(layers)
        return rule_of(g).ranked(self, sparsity, g, names)


# ---------------------------------------------------------------- facts about masks
def mask_sparsity(mask: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """Fraction of pruned entries; with ``weight``, zeros of the weight count as pruned too."""
    kept = mask if weight is None else (mask & (weight != 0))
    return 1.0 - int(kept.sum()) / max(1, kept.numel())


def overall_sparsity(masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None) -> float:
    """Pruned fraction over all masks together (weighted by size)."""
    total = sum(m.numel() for m in masks.values())
    kept = 0
    for name, m in masks.items():
        kept += int((m if weights is None else m & (weights[name] != 0)).sum())
    return 1.0 - kept / max(1, total)


# Counting runs on every slider move. NumPy's count_nonzero on a bool array is bit-parallel
# and single-threaded, so it stays fast on a busy 2-core machine where torch's threaded bool
# sum slows down badly.
def _as_bool(mask) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return arr if arr.dtype == bool else arr.astype(bool)


def sparsity_table(masks: Mapping[str, torch.Tensor]) -> list[dict]:
    """One row per layer: ``layer, shape, params, kept, pruned, sparsity``."""
    rows = []
    for name, m in masks.items():
        arr = _as_bool(m)
        kept = int(np.count_nonzero(arr))
        rows.append(
            {"layer": name, "shape": tuple(arr.shape), "params": arr.size, "kept": kept, "pruned": arr.size - kept,
             "sparsity": 1.0 - kept / max(1, arr.size)}
        )
    return rows


def nm_violations(mask: torch.Tensor, n: int, m: int) -> int:
    """Number of M-groups that keep more than M - N weights (0 means the mask is valid N:M)."""
    arr = _as_bool(mask)
    d_out, d_in = arr.shape
    if d_in % m:
        return d_out * math.ceil(d_in / m)
    kept = np.count_nonzero(arr.reshape(d_out, d_in // m, m), axis=2)
    return int(np.count_nonzero(kept > m - n))


def is_nm_valid(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive inputs of every row has at least ``n`` zeros."""
    return nm_violations(mask, n, m) == 0


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|kept in both| / |kept in either| (1.0 when both keep nothing)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def hamming(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of positions where the two masks disagree."""
    return int((a ^ b).sum()) / max(1, a.numel())


def _overlap(inter: int, union: int, diff: int, total: int) -> dict:
    hamming = diff / max(1, total)
    return {"jaccard": 1.0 if union == 0 else inter / union, "hamming": hamming, "agreement": 1.0 - hamming}


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict:
    """Jaccard and Hamming per common layer and over all common layers together.

    Returns ``{"per_layer": {name: {"jaccard", "hamming", "agreement"}}, "overall": {...}}``;
    ``agreement`` is the share of identical mask entries (``1 - hamming``).
    """
    common = [n for n in a if n in b]
    if not common:
        raise PruneScopeError("the two mask sets share no layer, so their overlap is undefined")
    per_layer, inter, union, diff, total = {}, 0, 0, 0, 0
    for name in common:
        x, y = _as_bool(a[name]), _as_bool(b[name])
        if x.shape != y.shape:
            raise PruneScopeError(f"layer {name}: mask shapes differ ({tuple(x.shape)} vs {tuple(y.shape)})")
        i, u = int(np.count_nonzero(x & y)), int(np.count_nonzero(x | y))
        per_layer[name] = _overlap(i, u, u - i, x.size)
        inter, union, diff, total = inter + i, union + u, diff + u - i, total + x.size
    overall = _overlap(inter, union, diff, total)
    return {"per_layer": per_layer, "overall": overall}
