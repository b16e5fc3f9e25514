"""SparseGPT (Frantar & Alistarh 2023): prune one layer and update its kept weights.

The solver follows the reference algorithm: H = 2 X X^T / n with 1% mean-diagonal
dampening, U = upper Cholesky factor of H^-1, columns walked in blocks of 128,
mask chosen per block from W^2 / U_jj^2, and each pruned column's error spread
over the remaining columns (lazy batch updates between blocks). Two additions:
the number kept per block is apportioned so that the *layer* ends with exactly
floor(N (1-s)) weights (the reference takes a per-block quantile, which can be
off by a few), N:M groups always sit at absolute columns (a block edge never
cuts one, whatever the block size), and several layers that read the same input (q/k/v, gate/up) can
be solved together as row segments of one stacked matrix, sharing U. With
``numerics="reference"`` the masks follow the reference's own rules instead (its per-block quantile,
its N:M ``topk``), so that its masks can be reproduced.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..masks import Granularity, keep_count, parse_granularity, prepare_scores, topk_keep


def hessian_inverse_factor(gram: torch.Tensor, n_tokens: int, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor U of (H + damp*mean(diag H) I)^-1 with H = 2 G / n.

    Returns ``(U, dead)`` where ``dead`` marks input features that were never
    active (their diagonal is set to 1, and their weights must be zeroed).
    Computed in float32 like the reference; if the dampened Hessian is still not
    positive definite, the dampening grows tenfold until it is.
    """
    return hessian_factor(gram.to(torch.float32) * (2.0 / max(1, n_tokens)), damp)


def hessian_factor(H: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`hessian_inverse_factor` of a Hessian ``H`` itself (float32; changed in place)."""
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    mean_diag = torch.mean(torch.diag(H))
    for attempt in range(6):
        L, info = torch.linalg.cholesky_ex(H + damp * (10.0**attempt) * mean_diag * eye)
        if int(info) == 0:
            Hinv = torch.cholesky_inverse(L)
            U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
            if int(info) == 0:
                return U, dead
    raise RuntimeError("SparseGPT: the Hessian could not be factorised even after extra dampening")


def _kept_before(column: int, width: int, rows: int, sparsity: float) -> int:
    """Weights kept in the first ``column`` of ``width`` columns, so blocks add up exactly."""
    if column >= width:
        return keep_count(rows * width, sparsity)
    return math.floor(rows * column * (1.0 - sparsity) + 1e-6)


def sparsegpt_solve(
    weight: torch.Tensor,
    U: torch.Tensor,
    sparsity: float | Sequence[float],
    granularity: str | Granularity = "layer",
    segments: Sequence[tuple[int, int]] | None = None,
    dead: torch.Tensor | None = None,
    blocksize: int = 128,
    keep: torch.Tensor | None = None,
    numerics: str = "fast",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` (rows, d_in) with SparseGPT; return ``(new_weight, mask)`` (True = kept).

    With ``keep`` (a boolean mask, True = kept) the mask is given, not chosen: the same column
    walk only spreads each pruned weight's error over the columns after it (the OBS update on a
    fixed mask, as in Wanda's ``ablate`` code), and ``sparsity``/``granularity`` are ignored.

    ``segments`` splits the rows into layers stacked together (default: one);
    ``sparsity`` may give one value per segment. Per-layer and per-row
    granularities keep exactly ``floor(N (1-s))`` per segment or per row; N:M
    chooses, at every M-th column, the N lowest saliencies of each row.

    ``numerics="reference"`` chooses the masks by the published code's rules instead
    (:func:`reference_block_pruned`, :func:`reference_group_pruned`): its count per block is not exact.
    """
    reference = numerics == "reference"
    g = parse_granularity(granularity)
    W = weight.detach().to(torch.float32).clone()
    rows, cols = W.shape
    segments = list(segments or [(0, rows)])
    sparsities = [float(sparsity)] * len(segments) if isinstance(sparsity, (int, float)) else list(sparsity)
    if dead is not None:
        W[:, dead] = 0
    pruned = torch.zeros_like(W, dtype=torch.bool)
    U = U.to(W.dtype)
    i1 = 0
    while i1 < cols:
        i2 = _block_end(i1, blocksize, cols, g)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d = torch.diag(U1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)  # True = pruned
        if keep is not None:
            mask1 = ~keep[:, i1:i2].to(W.device)
        elif reference and g.kind != "row" and not g.is_nm:
            for (r1, r2), s in zip(segments, sparsities):
                mask1[r1:r2] = reference_block_pruned(W1[r1:r2] ** 2 / d.unsqueeze(0) ** 2, s)
        elif not g.is_nm:
            saliency = prepare_scores(W1**2 / d.unsqueeze(0) ** 2, W1)
            for (r1, r2), s in zip(segments, sparsities):
                mask1[r1:r2] = ~_block_keep(saliency[r1:r2], g, s, i1, i2, cols)
        for i in range(count):
            w = W1[:, i]
            if keep is None and g.is_nm and (i1 + i) % g.m == 0:  # groups start at absolute columns 0, M, 2M, ...
                group = W1[:, i : i + g.m]
                if reference:
                    mask1[:, i : i + g.m] = reference_group_pruned(group**2 / d[i : i + g.m].unsqueeze(0) ** 2, g.n)
                else:
                    sal = prepare_scores(group**2 / d[i : i + g.m].unsqueeze(0) ** 2, group)
                    order = torch.sort(sal, dim=1, descending=True, stable=True).indices[:, g.m - g.n :]
                    mask1[:, i : i + g.m].scatter_(1, order, True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        if i2 < cols:
            W[:, i2:] -= Err1 @ U[i1:i2, i2:]
        i1 = i2
    W[pruned] = 0
    if dead is not None and keep is not None:
        W[:, dead] = 0  # a never-active input's weights are zero whatever the given mask says
    return W, ~pruned


def _block_end(i1: int, blocksize: int, cols: int, g: Granularity) -> int:
    """End of the column block starting at ``i1``. For N:M it is moved up to the next multiple
    of M, so no group of M columns is ever cut by a block edge (a group's mask is chosen from
    weights that have received every earlier column's update, which lazy batching delays
    for columns outside the block)."""
    i2 = min(i1 + max(1, int(blocksize)), cols)
    if g.is_nm and i2 % g.m:
        i2 = min(cols, i2 + g.m - i2 % g.m)
    return i2


def _block_keep(saliency: torch.Tensor, g: Granularity, sparsity: float, i1: int, i2: int, cols: int) -> torch.Tensor:
    """Which weights of one column block to keep, apportioned so the layer total is exact."""
    rows = saliency.shape[0]
    if g.kind == "row":
        k = max(0, min(keep_count(i2, sparsity) - keep_count(i1, sparsity), i2 - i1))
        order = torch.sort(saliency, dim=1, descending=True, stable=True).indices[:, :k]
        keep = torch.zeros_like(saliency, dtype=torch.bool)
        keep.scatter_(1, order, True)
        return keep
    k = _kept_before(i2, cols, rows, sparsity) - _kept_before(i1, cols, rows, sparsity)
    return topk_keep(saliency.flatten(), k).view(saliency.shape)


def reference_block_pruned(saliency: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The published SparseGPT code's mask of one column block (True = pruned): every saliency at or
    below the value at index ``int(numel * s)`` of the block's saliencies sorted ascending. That is at
    least ``int(numel * s) + 1`` weights (more on ties), so the layer ends a little sparser than asked."""
    flat = saliency.flatten()
    index = min(int(flat.numel() * sparsity), flat.numel() - 1)
    threshold = torch.sort(flat)[0][index]
    return saliency <= threshold


def reference_group_pruned(saliency: torch.Tensor, n: int) -> torch.Tensor:
    """The published code's N:M rule for one group of M columns (True = pruned): the ``n`` lowest
    saliencies of each row, as ``torch.topk(largest=False)`` picks them."""
    pruned = torch.zeros_like(saliency, dtype=torch.bool)
    return pruned.scatter_(1, torch.topk(saliency, n, dim=1, largest=False)[1], True)
