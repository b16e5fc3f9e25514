"""How far a pruned layer's output moves on its calibration inputs.

``||W X - W' X||_F^2 / ||W X||_F^2`` over the layer's calibration inputs X (d_in x tokens), computed
from the Gram matrix G = X X^T alone: ||D X||_F^2 = trace(D G D^T) for D = W - W'.
"""

from __future__ import annotations

import torch


def reconstruction_error(weight: torch.Tensor, new_weight: torch.Tensor, gram: torch.Tensor) -> float:
    """Relative squared output error of ``new_weight`` against ``weight`` (0 when they are equal;
    NaN when the dense output is zero on every calibration input)."""
    w = weight.detach().to(torch.float64)
    d = w - new_weight.detach().to(torch.float64)
    g = gram.detach().to(torch.float64)
    dense = float(torch.einsum("ij,jk,ik->", w, g, w))
    if dense <= 0:
        return float("nan")
    return max(0.0, float(torch.einsum("ij,jk,ik->", d, g, d))) / dense

