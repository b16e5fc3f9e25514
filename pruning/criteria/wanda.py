"""Wanda: keep the weights with the largest |W_ij| * ||X_j|| (Sun et al. 2023), through the block walk."""

from __future__ import annotations

import torch

from ..calibration import collect_input_stats
from ..registry import Method, ScoreView, register
from ..core import PruneContext
from ..walk import ORDER_PARAM, layer_weights, score_walk_run


def wanda_scores(weight: torch.Tensor, input_sq_sum: torch.Tensor) -> torch.Tensor:
    """Wanda: ``|W_ij| * ||X_j||_2`` where ``input_sq_sum[j] = sum over tokens of x_j^2``."""
    return weight.detach().abs().float() * input_sq_sum.float().clamp_min(0).sqrt().unsqueeze(0)


def _wanda_dense_scores(ctx: PruneContext) -> dict[str, torch.Tensor]:
    """Wanda scores with every layer's inputs taken from the dense model (one forward pass)."""
    stats = collect_input_stats(ctx.loaded, ctx.layers, ctx.calibration, progress=ctx.progress)
    weights = layer_weights(ctx)
    return {n: wanda_scores(weights[n], stats[n].sq_norms()) for n in ctx.layers}


_wanda_run = score_walk_run("wanda", lambda ctx, n, w, stats: wanda_scores(w, stats.sq_norms()), _wanda_dense_scores)


register(
    Method(
        name="wanda",
        label="Wanda",
        summary="Keep weights with the largest |W_ij| * ||X_j||: magnitude times input activation norm. "
        "No weight update. The paper compares within each output row (granularity 'row').",
        run=_wanda_run,
        scores=_wanda_dense_scores,
        needs_calibration=True,
        params={"order": ORDER_PARAM},
        granularity="row",
        takes_update=True,
        walks_blocks=True,
        reference="Sun et al. 2023, A Simple and Effective Pruning Approach for LLMs",
        colour="#2ca02c",  # green
        explain=ScoreView(
            note="Wanda's score is |W| x ||X_j||: the boundary |W| = t / ||X_j|| slopes down, so on loud inputs (right) "
            "small weights are kept and on quiet inputs (left) larger ones are pruned.",
            power=1.0,
            toy=lambda weight, sq_sum, n_tokens, seed: wanda_scores(weight, sq_sum),
            toy_note="|W_ij| x ||X_j||: a weight on a loud input matters more.",
        ),
    )
)
