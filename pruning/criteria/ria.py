"""RIA, relative importance and activation (Zhang et al., ICLR 2024, "Plug-and-Play").

Score of weight (i, j), i the output row and j the input column:

    (|W_ij| / sum_k |W_kj|  +  |W_ij| / sum_k |W_ik|)  *  (||X_j|| / sqrt(n))^a

the weight relative to its column's and its row's total absolute weight, times the root mean
square of input feature j over the n calibration tokens to the power a (0.5 in the paper).
The authors' code (``lib/prune.py``, ``prune_ria``) thresholds the whole layer unless asked
for ``--per_outneuron``, so the paper's granularity is one threshold per layer.
"""

from __future__ import annotations

import torch

DEFAULT_A = 0.5
GRANULARITY = "layer"  # the authors' default (no --per_outneuron)


def ria_scores(weight: torch.Tensor, sq_sum: torch.Tensor, n_tokens: int, a: float = DEFAULT_A) -> torch.Tensor:
    """RIA scores of a (d_out, d_in) ``weight`` given ``sq_sum[j] = sum over tokens of x_j^2``.

    A row or column whose weights are all zero scores 0 (its relative importance is undefined)."""
    w = weight.detach().abs().to(torch.float32)
    col = w.sum(dim=0, keepdim=True)
    row = w.sum(dim=1, keepdim=True)
    relative = torch.where(col > 0, w / col.clamp_min(1e-30), 0.0) + torch.where(row > 0, w / row.clamp_min(1e-30), 0.0)
    rms = (sq_sum.detach().to(torch.float64).clamp_min(0) / max(1, int(n_tokens))).sqrt().to(torch.float32)
    return relative * rms.unsqueeze(0).pow(float(a))


# ---------------------------------------------------------------- the registered criterion
# (the recipe: a score function of the weight and its layer's statistics, one register call)
from ..calibration import collect_input_stats  # noqa: E402
from ..registry import Method, Param, ScoreView, register  # noqa: E402
from ..walk import layer_weights, score_walk_run  # noqa: E402


def _layer_scores(ctx, name, weight, stats) -> torch.Tensor:
    return ria_scores(weight, stats.sq_sum, stats.n_tokens, ctx.params["a"])


def _dense_scores(ctx) -> dict[str, torch.Tensor]:
    """RIA scores with every layer's inputs from the dense model (one pass): the slider views' scores."""
    stats = collect_input_stats(ctx.loaded, ctx.layers, ctx.calibration, progress=ctx.progress)
    weights = layer_weights(ctx)
    return {n: _layer_scores(ctx, n, weights[n], stats[n]) for n in ctx.layers}


register(
    Method(
        name="ria",
        label="RIA",
        summary="Keep weights with the largest relative importance (|W_ij| over its row's and its column's total |W|) "
        "times the input's RMS to the power a. No weight update of its own. The paper thresholds each layer.",
        run=score_walk_run("ria", _layer_scores, _dense_scores),
        scores=_dense_scores,
        needs_calibration=True,
        params={
            "a": Param(DEFAULT_A, "exponent of the input activation's RMS (0: relative importance alone)", minimum=0.0),
        },
        granularity=GRANULARITY,
        takes_update=True,
        walks_blocks=True,
        reference="Zhang et al. 2024, Plug-and-Play: An Efficient Post-training Pruning Method for LLMs (ICLR)",
        colour="#8c6d31",  # dark gold
        explain=ScoreView(
            note="RIA's score is |W| relative to its row's and its column's total |W|, times the input's RMS to the power a: "
            "the relative part differs by row and column, so no one line in this plane separates kept from pruned.",
            toy=lambda weight, sq_sum, n_tokens, seed: ria_scores(weight, sq_sum, n_tokens),
            toy_note=f"|W_ij| over its row's and its column's total |W|, times RMS(X_j)^{DEFAULT_A}.",
        ),
    )
)
