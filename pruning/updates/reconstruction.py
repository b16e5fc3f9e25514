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


DENSE_INPUTS = "calibration inputs of the dense model (one extra pass when the report was written)"


def dense_reconstruction_errors(loaded, masks, weights, calibration, progress=None) -> dict[str, float]:
    """Each masked layer's :func:`reconstruction_error` on its inputs in the dense model (one forward
    pass over ``calibration`` with Gram matrices): for runs whose method had no calibration walk."""
    from ..calibration import collect_input_stats
    from ..models import layer_weight

    names = list(masks)
    stats = collect_input_stats(loaded, names, calibration, want_gram=True, progress=progress)
    out = {}
    for n in names:
        dense = layer_weight(loaded.model, n).detach().to(torch.float32).cpu()
        base = weights[n] if weights is not None and n in weights else dense
        out[n] = reconstruction_error(dense, base.detach().to(torch.float32).cpu() * masks[n].cpu(), stats[n].gram.cpu())
    return out
