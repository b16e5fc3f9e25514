"""The one-shot baselines: magnitude, random, Wanda, SparseGPT.

Each is a few lines over :mod:`pruning.scores`, :mod:`pruning.masks`,
:mod:`pruning.calibration` and :mod:`pruning.sparsegpt`, registered by name.
"""

from __future__ import annotations

import torch

from .calibration import ORDERS, InputStats, collect_input_stats, sequential_prune
from .masks import compute_masks, global_masks
from .prune import PruneResult
from .registry import Method, Param, PruneContext, register
from .scores import magnitude_scores, random_scores, wanda_scores
from .sparsegpt import hessian_inverse_factor, sparsegpt_solve


def _weights(ctx: PruneContext) -> dict[str, torch.Tensor]:
    from .models import layer_weight

    return {n: layer_weight(ctx.loaded.model, n) for n in ctx.layers}


def _score_method(name: str, scores_fn):
    """``run`` for a method whose mask is a top-k of scores that do not depend on the sparsity."""

    def run(ctx: PruneContext) -> PruneResult:
        masks = compute_masks(scores_fn(ctx), ctx.sparsity, ctx.granularity, _weights(ctx))
        return PruneResult(name, ctx.sparsity, str(ctx.granularity), masks)

    return run


# ---------------------------------------------------------------- magnitude and random
def _magnitude(ctx: PruneContext) -> dict[str, torch.Tensor]:
    return {n: magnitude_scores(w) for n, w in _weights(ctx).items()}


def _random(ctx: PruneContext) -> dict[str, torch.Tensor]:
    return {n: random_scores(w, ctx.seed, salt=n) for n, w in _weights(ctx).items()}


register(
    Method(
        name="magnitude",
        label="Magnitude",
        summary="Keep the weights with the largest |W|. No data needed.",
        run=_score_method("magnitude", _magnitude),
        scores=_magnitude,
        reference="Han et al. 2015",
    )
)
register(
    Method(
        name="random",
        label="Random",
        summary="Keep weights at random (seeded): the floor every method must beat.",
        run=_score_method("random", _random),
        scores=_random,
    )
)


# ---------------------------------------------------------------- Wanda
ORDER_PARAM = Param(
    "block",
    "where each layer's calibration statistics come from: 'block' collects a whole block's in one pass over the "
    "unpruned block (the reference code); 'sequential' prunes each layer as soon as its input is known, so later "
    "layers of the block see inputs from the pruned ones (SparseGPT's true_sequential)",
    choices=ORDERS,
)
def _wanda_dense_scores(ctx: PruneContext) -> dict[str, torch.Tensor]:
    """Wanda scores with every layer's inputs taken from the dense model (one forward pass)."""
    stats = collect_input_stats(ctx.loaded, ctx.layers, ctx.calibration, progress=ctx.progress)
    weights = _weights(ctx)
    return {n: wanda_scores(weights[n], stats[n].sq_sum) for n in ctx.layers}


def _layer_sparsities(ctx: PruneContext, dense_scores) -> dict[str, float]:
    """Per-layer sparsity: the requested one, the allocated one, or for global the share a global
    threshold leaves."""
    if ctx.granularity.is_allocated:
        return ctx.granularity.allocation_dict
    if ctx.granularity.kind != "global":
        return {n: ctx.sparsity for n in ctx.layers}
    masks = global_masks(dense_scores(), ctx.sparsity, _weights(ctx))
    return {n: 1.0 - int(m.sum()) / m.numel() for n, m in masks.items()}


def _wanda_run(ctx: PruneContext) -> PruneResult:
    sparsity = _layer_sparsities(ctx, lambda: _wanda_dense_scores(ctx))
    within = ctx.granularity.within_layer

    def prune_group(names, weights, stats: InputStats):
        return [
            (None, compute_masks({n: wanda_scores(w, stats.sq_sum)}, sparsity[n], within, {n: w})[n])
            for n, w in zip(names, weights)
        ]

    masks, _ = sequential_prune(
        ctx.loaded, ctx.layers, ctx.calibration, prune_group, progress=ctx.progress, order=ctx.params["order"]
    )
    return PruneResult("wanda", ctx.sparsity, str(ctx.granularity), {n: masks[n] for n in ctx.layers})


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
        reference="Sun et al. 2023, A Simple and Effective Pruning Approach for LLMs",
    )
)


# ---------------------------------------------------------------- SparseGPT
def _sparsegpt_run(ctx: PruneContext) -> PruneResult:
    damp = ctx.params["damp"]
    blocksize = ctx.params["blocksize"]

    def dense_scores():
        from .scores import sparsegpt_scores

        stats = collect_input_stats(ctx.loaded, ctx.layers, ctx.calibration, want_gram=True)
        weights = _weights(ctx)
        out = {}
        for n in ctx.layers:
            U, _ = _factor(stats[n], damp)
            out[n] = sparsegpt_scores(weights[n], torch.diag(U))
        return out

    sparsity = _layer_sparsities(ctx, dense_scores)
    within = ctx.granularity.within_layer

    def prune_group(names, weights, stats: InputStats):
        """Layers reading one input share U, so they are solved as one stacked matrix."""
        U, dead = _factor(stats, damp)
        bounds = torch.tensor([0] + [w.shape[0] for w in weights]).cumsum(0).tolist()
        segments = list(zip(bounds[:-1], bounds[1:]))
        new, mask = sparsegpt_solve(
            torch.cat(weights), U, [sparsity[n] for n in names], within, segments=segments, dead=dead, blocksize=blocksize
        )
        return [(new[a:b], mask[a:b]) for a, b in segments]

    masks, weights = sequential_prune(
        ctx.loaded, ctx.layers, ctx.calibration, prune_group, want_gram=True, progress=ctx.progress, order=ctx.params["order"]
    )
    return PruneResult("sparsegpt", ctx.sparsity, str(ctx.granularity), masks, weights)


def _factor(stats: InputStats, damp: float):
    """U and dead columns for one input group, computed once and shared by the group."""
    key = ("sparsegpt", damp)
    if key not in stats.cache:
        stats.cache[key] = hessian_inverse_factor(stats.gram, stats.n_tokens, damp)
    return stats.cache[key]


register(
    Method(
        name="sparsegpt",
        label="SparseGPT",
        summary="Prune column by column using the inverse Hessian of the layer's reconstruction error, "
        "updating the kept weights to compensate. Weights change, not only the mask.",
        run=_sparsegpt_run,
        needs_calibration=True,
        updates_weights=True,
        params={
            "damp": Param(0.01, "dampening added to the Hessian diagonal, as a fraction of its mean", minimum=0.0),
            "blocksize": Param(128, "columns per lazy-update block", minimum=1, maximum=65536),
            "order": ORDER_PARAM,
        },
        reference="Frantar & Alistarh 2023, SparseGPT",
    )
)
