"""DSnoT, dynamic sparse no training (Zhang et al., ICLR 2024; the authors' ``lib/prune.py``).

Starting from any mask, each output row swaps weights, one pruned weight grown back and one kept
weight pruned per cycle, to drive the row's expected reconstruction error towards zero, without
any training and without changing the number of weights the row keeps.

With ``s_j`` the sum of input feature j over a calibration sample's tokens (averaged over the
samples), ``M_ij = W_ij s_j`` is what weight (i, j) adds to row i's output on average, and the
row's error is ``e_i = sum of M_ij over its pruned weights``. Each cycle, per row:

- grow: if e_i > 0, the pruned weight with the largest ``M_ij / var_j^p`` (p = 1), else the one
  with the smallest (most negative); growing it back subtracts its M from the error;
- prune: unstructured, the kept weight with the lowest Wanda score ``|W_ij| ||X_j||`` among
  those whose M has the opposite effect (M < 0 when e_i > 0, M > 0 when e_i < 0); N:M, the kept
  weight with the lowest score in the grown weight's group of M (so the pattern holds);
- the swap is made only while |e_i| is above the update threshold (0.1) and, for N:M or when
  ``same_sign`` is asked, while it would not flip the error's sign; a row that stops never
  starts again, and the walk ends after ``max_cycles`` (50).

Defaults are the authors' command line (``--max_cycle_time 50 --update_threshold 0.1
--pow_of_var_regrowing 1``; the sign rule is off for unstructured masks, as their
``--without_same_sign`` default leaves it), and like their ``--skip_layer mlp`` default (set in
their first week and kept since) only the attention matrices (q, k, v, fused qkv, attention out)
are walked: the FFN layers, and any layer whose role is not known, keep the criterion's mask.
Walking the FFN layers too is what made 70% on minilm-rt collapse (accuracy on 512 sentences:
Wanda 0.78, Wanda+DSnoT on every layer 0.42, on the attention matrices only 0.78; docs/BENCHMARKS.md).
Two deviations, both where their code walks past the end of a list: a row whose candidates of
the needed sign run out stops (their pointer runs on into the other sign's candidates), and the variance is that of all calibration tokens together
(theirs averages the variances of single samples, because it feeds one sample at a time).
"""

from __future__ import annotations

import torch

from ..loading.models import layer_role
from ..masks import Granularity, parse_granularity
from .registry import Update, register_update

DEFAULT_MAX_CYCLES = 50
DEFAULT_THRESHOLD = 0.1
DEFAULT_VAR_POWER = 1.0
WALKED_ROLES = ("q", "k", "v", "qkv", "attention out")  # the authors' default skips the MLP


def walks_layer(name: str) -> bool:
    """Whether DSnoT changes this layer's mask: the attention matrices only (see the module doc)."""
    return layer_role(name)[1] in WALKED_ROLES


def _ordered(valid: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the column indices where ``valid`` holds, in ascending ``key`` (stable), and their count."""
    k = torch.where(valid, key, torch.full_like(key, float("inf")))
    order = torch.sort(k, dim=1, stable=True).indices
    return order, valid.sum(dim=1)


def dsnot_update(
    weight: torch.Tensor,
    keep: torch.Tensor,
    x_sum: torch.Tensor,
    x_var: torch.Tensor,
    score: torch.Tensor,
    granularity: str | Granularity = "layer",
    max_cycles: int = DEFAULT_MAX_CYCLES,
    threshold: float = DEFAULT_THRESHOLD,
    var_power: float = DEFAULT_VAR_POWER,
    same_sign: bool = False,
) -> torch.Tensor:
    """The new mask (True = kept) after DSnoT's swaps; every row keeps as many weights as in ``keep``.

    ``x_sum``: per input feature, its sum over a sample's tokens averaged over the samples;
    ``x_var``: its variance over the calibration tokens; ``score``: the Wanda scores that order the
    weights to prune (``|W| ||X_j||``). ``granularity`` N:M keeps the N:M pattern of ``keep``."""
    g = parse_granularity(granularity)
    W = weight.detach().to(torch.float64)
    rows = torch.arange(W.shape[0], device=W.device)
    metric = W * x_sum.detach().to(torch.float64).unsqueeze(0)
    pruned = ~keep.detach().to(torch.bool).clone()
    pruned0 = pruned.clone()  # a weight grown back is never pruned again, nor a pruned one grown
    err = torch.where(pruned, metric, 0.0).sum(dim=1)
    sign0 = torch.sign(err)
    grow_key = metric / x_var.detach().to(torch.float64).clamp_min(1e-12).pow(float(var_power)).unsqueeze(0)
    # growing candidates: pruned weights, most positive first and most negative first
    grow_pos, n_grow_pos = _ordered(pruned & (grow_key > 0), -grow_key)
    grow_neg, n_grow_neg = _ordered(pruned & (grow_key < 0), grow_key)
    wanda = score.detach().to(torch.float64)
    if not g.is_nm:
        # pruning candidates: kept weights by ascending Wanda score, split by the sign of their M
        cut_neg, n_cut_neg = _ordered(~pruned & (metric < 0), wanda)
        cut_pos, n_cut_pos = _ordered(~pruned & (metric >= 0), wanda)
    pointers = torch.zeros(W.shape[0], 4, dtype=torch.long, device=W.device)  # grow+, grow-, cut-, cut+
    active = torch.ones(W.shape[0], dtype=torch.bool, device=W.device)
    for _ in range(int(max_cycles)):
        if not bool(active.any()):
            break
        up = err > 0
        p_grow = torch.where(up, pointers[:, 0], pointers[:, 1])
        has_grow = p_grow < torch.where(up, n_grow_pos, n_grow_neg)
        p_grow_c = p_grow.clamp_max(W.shape[1] - 1)
        grow = torch.where(up, grow_pos[rows, p_grow_c], grow_neg[rows, p_grow_c])
        pointers[:, 0] += up.long()
        pointers[:, 1] += (~up).long()
        if g.is_nm:
            start = grow - grow % g.m
            group = start.unsqueeze(1) + torch.arange(g.m, device=W.device).unsqueeze(0)
            blocked = (pruned | pruned0)[rows.unsqueeze(1), group]
            cand = torch.where(blocked, float("inf"), wanda[rows.unsqueeze(1), group])
            cut = start + cand.argmin(dim=1)
            has_cut = torch.isfinite(cand.min(dim=1).values)
        else:
            down = err < 0
            p_cut = torch.where(down, pointers[:, 3], pointers[:, 2])
            has_cut = p_cut < torch.where(down, n_cut_pos, n_cut_neg)
            p_cut_c = p_cut.clamp_max(W.shape[1] - 1)
            cut = torch.where(down, cut_pos[rows, p_cut_c], cut_neg[rows, p_cut_c])
            pointers[:, 3] += down.long()
            pointers[:, 2] += (~down).long()
        after = err + metric[rows, cut] - metric[rows, grow]
        active &= has_grow & has_cut & (err.abs() > float(threshold))
        if g.is_nm or same_sign:
            active &= torch.sign(after) == sign0
        r = rows[active]
        pruned[r, cut[active]] = True
        pruned[r, grow[active]] = False
        err = torch.where(active, after, err)
    return ~pruned


def dsnot_inputs(stats, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DSnoT's ``x_sum`` (the sum over tokens divided by the number of samples) and ``x_var`` (the
    population variance over the calibration tokens) from a layer's input statistics."""
    n = max(1, int(stats.n_tokens))
    lin = stats.lin_sum.detach().to(torch.float64)
    mean = lin / n
    var = (stats.sq_sum.detach().to(torch.float64) / n - mean * mean).clamp_min(0)
    return lin / max(1, int(n_samples)), var


def _apply(weight, keep, stats, env):
    if not walks_layer(env.layer):
        return None, keep
    w = weight.detach().to(torch.float32)  # on the walk's device; float64 inside where it is not the MPS
    x_sum, x_var = (t.to(w.device) for t in dsnot_inputs(stats, env.n_samples))
    score = w.abs() * stats.sq_sum.detach().to(w.device, torch.float32).clamp_min(0).sqrt().unsqueeze(0)
    g = env.granularity if env.granularity is not None and env.granularity.is_nm else "layer"
    if w.device.type == "mps":  # no float64 there
        w, keep, x_sum, x_var, score = (t.cpu() for t in (w, keep, x_sum, x_var, score))
    new_keep = dsnot_update(w, keep.to(w.device), x_sum, x_var, score, granularity=g)
    return None, new_keep.to(weight.device)


register_update(
    Update(
        name="dsnot",
        label="DSnoT",
        summary="Training-free prune-and-grow: per output row, swap pruned and kept weights (same count per row) "
        "to drive the row's expected output error towards zero. Weights keep their values; the mask changes. "
        "As in the authors' code, only the attention matrices are walked; the FFN layers keep the criterion's mask.",
        apply=_apply,
        reference="Zhang et al. 2024, Dynamic Sparse No Training (ICLR)",
    )
)
