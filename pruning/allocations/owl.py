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

from ..calibration import collect_input_stats
from ..criteria.wanda import wanda_scores
from ..loading.models import layer_weight, transformer_blocks

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


# ---------------------------------------------------------------- the registered allocation
from ..registry import Param  # noqa: E402
from .registry import Allocation, register_allocation  # noqa: E402


def block_of(layers: Sequence[str], blocks: Sequence[str]) -> dict[str, str | None]:
    """The transformer block (by name) holding each layer, or ``None`` outside every block."""
    out = {}
    for name in layers:
        out[name] = next((b for b in blocks if name.startswith(b + ".")), None)
    return out


def owl_allocation(loaded, layers, calibration, sparsity: float, params: dict, progress=None) -> tuple[dict[str, float], dict]:
    """Per-layer sparsities by OWL: one dense pass gives ``||X_j||`` per layer; the Wanda scores of each
    block's layers give its outlier ratio; every layer of a block gets the block's sparsity (a layer
    outside the blocks keeps the target)."""
    stats = collect_input_stats(loaded, layers, calibration, progress=progress)
    blocks = [name for name, _ in transformer_blocks(loaded.model)]
    where = block_of(layers, blocks)
    used = [b for b in blocks if any(where[n] == b for n in layers)]
    ratios = []
    for b in used:
        scores = [wanda_scores(layer_weight(loaded.model, n), stats[n].sq_sum) for n in layers if where[n] == b]
        ratios.append(outlier_ratio(scores, params["m"]))
    info = {"blocks": [{"block": b, "outlier_ratio": r} for b, r in zip(used, ratios)], "layers": where}
    allocation = owl_rebuild(info, sparsity, params)
    for row in info["blocks"]:
        row["sparsity"] = allocation[next(n for n in layers if where[n] == row["block"])]
    return allocation, info


def owl_rebuild(info: dict, sparsity: float, params: dict) -> dict[str, float]:
    """The allocation at another target from one measurement (the blocks' outlier ratios do not depend on
    the target): every layer of a block at the block's sparsity, a layer outside the blocks at the target."""
    used = [row["block"] for row in info["blocks"]]
    ratios = [row["outlier_ratio"] for row in info["blocks"]]
    per_block = dict(zip(used, block_sparsities(ratios, sparsity, params["lambda"]))) if used else {}
    return {n: per_block.get(b, float(sparsity)) for n, b in info["layers"].items()}


register_allocation(
    Allocation(
        name="owl",
        label="OWL",
        summary="Outlier-weighted layerwise sparsity: blocks whose Wanda scores hold more outliers (above M times "
        "their mean) keep more weights; block sparsities spread over +-lambda around the target, mean = target.",
        compute=owl_allocation,
        rebuild=owl_rebuild,
        params={
            "m": Param(DEFAULT_M, "outlier threshold: a score above M times its block's mean is an outlier", minimum=0.0),
            "lambda": Param(DEFAULT_LAMBDA, "how far block sparsities may spread from the target (+-lambda)", minimum=0.0, maximum=0.5),
        },
        reference="Yin et al. 2024, Outlier Weighed Layerwise Sparsity (OWL), ICML",
    )
)
