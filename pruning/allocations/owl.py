"""OWL, outlier-weighted layerwise sparsity (Yin et al., ICML 2024; the authors' ``lib/prune_all.py``).

One pass over the dense model. For each transformer block l, the Wanda scores |W_ij| ||X_j|| of
all its pruned linear layers together give the outlier ratio D_l: the share of those scores
above M times their mean (M = 5). The ratios become keep ratios

    k_l = (D_l - min D) / (max D - min D) * 2 lambda,   then   k_l <- k_l - mean(k) + (1 - s)

(lambda = 0.08), and every layer of block l is pruned at sparsity 1 - k_l: blocks with more
outliers keep more. The mean is over blocks, unweighted, as in the authors' code (their blocks
are the same size; ours are too for both embedded defaults). When every block has the same
ratio, every block gets the target sparsity.
"""

from __future__ import annotations

from typing import Sequence

import torch

DEFAULT_M = 5.0
DEFAULT_LAMBDA = 0.08


def outlier_ratio(scores: Sequence[torch.Tensor], m: float = DEFAULT_M) -> float:
    """Share (0..1) of the concatenated ``scores`` strictly above ``m`` times their mean."""
    flat = torch.cat([s.detach().reshape(-1).to(torch.float64) for s in scores])
    return float((flat > flat.mean() * float(m)).to(torch.float64).mean())


def block_sparsities(ratios: Sequence[float], sparsity: float, lam: float = DEFAULT_LAMBDA) -> list[float]:
    """Per-block sparsities from the blocks' outlier ratios at overall target ``sparsity``.

    Clipped to [0, 1) only where the formula leaves that range (a very small target with a
    large lambda); unclipped, their mean is exactly the target."""
    d = torch.tensor(list(ratios), dtype=torch.float64)
    span = float(d.max() - d.min()) if d.numel() else 0.0
    k = (d - d.min()) / span * 2.0 * float(lam) if span > 0 else torch.zeros_like(d)
    k = k - k.mean() + (1.0 - float(sparsity))
    return [min(max(1.0 - float(x), 0.0), 0.9999) for x in k]
