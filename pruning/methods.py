"""The one-shot baselines: magnitude, random, Wanda, SparseGPT.

Each is a few lines over :mod:`pruning.scores`, :mod:`pruning.masks`,
:mod:`pruning.calibration` and :mod:`pruning.sparsegpt`, registered by name.
"""

from __future__ import annotations

import torch

from .calibration import ORDERS, InputStats, collect_input_stats
from .masks import compute_masks
from .prune import PruneResult
from .registry import Method, Param, PruneContext, register
from .scores import magnitude_scores, random_scores, wanda_scores
from .sparsegpt import hessian_factor, sparsegpt_solve
from .walk import criterion_walk, layer_sparsities, score_walk_run
from .walk import layer_weights as _weights


def _score_method(name: str, scores_fn, layer_score=None):
    """``run`` for a method whose mask is a top-k of scores that need no data: with the update
    "none" one thresholding, with any other the block walk (the update needs the layers' inputs;
    ``layer_score(ctx, name, weight, stats)`` gives one layer's scores there)."""
    walk = None if layer_score is None else score_walk_run(name, layer_score, scores_fn)

    def run(ctx: PruneContext) -> PruneResult:
        if ctx.request.update != "none":
            return walk(ctx)
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
        run=_score_method("magnitude", _magnitude, lambda ctx, n, w, stats: magnitude_scores(w)),
        scores=_magnitude,
        takes_update=True,
        reference="Han et al. 2015",
    )
)
register(
    Method(
        name="random",
        label="Random",
        summary="Keep weights at random (seeded): the floor every method must beat.",
        run=_score_method("random", _random, lambda ctx, n, w, stats: random_scores(w, ctx.seed, salt=n)),
        scores=_random,
        takes_update=True,
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

    sparsity = layer_sparsities(ctx, dense_scores)
    within = ctx.granularity.within_layer

    numerics = ctx.request.numerics

    def choose(names, weights, stats: InputStats, sparsity):
        """Layers reading one input share U, so they are solved as one stacked matrix (with the
        reference numerics each on its own, as the published code does)."""
        U, dead = _factor(stats, damp)
        out = []
        for part in _solve_parts(names, numerics):
            ws = [weights[i] for i in part]
            bounds = torch.tensor([0] + [w.shape[0] for w in ws]).cumsum(0).tolist()
            segments = list(zip(bounds[:-1], bounds[1:]))
            new, mask = sparsegpt_solve(
                torch.cat(ws), U, [sparsity[names[i]] for i in part], within, segments=segments, dead=dead,
                blocksize=blocksize, numerics=numerics,
            )
            out += [(new[a:b], mask[a:b]) for a, b in segments]
        return out

    masks, weights, info = criterion_walk(ctx, choose, sparsity)
    return PruneResult("sparsegpt", ctx.sparsity, str(ctx.granularity), masks, weights or None, info=info)


def _solve_parts(names: list[str], numerics: str) -> list[list[int]]:
    """Which layers of an input group are solved together: all of them, or one by one (reference)."""
    return [[i] for i in range(len(names))] if numerics == "reference" else [list(range(len(names)))]


def _factor(stats: InputStats, damp: float):
    """U and dead columns for one input group, computed once and shared by the group."""
    key = ("sparsegpt", damp)
    if key not in stats.cache:
        stats.cache[key] = hessian_factor(stats.hessian(), damp)
    return stats.cache[key]


register(
    Method(
        name="sparsegpt",
        label="SparseGPT",
        summary="Prune column by column using the inverse Hessian of the layer's reconstruction error, "
        "updating the kept weights to compensate (its own update, obs). Weights change, not only the mask; "
        "with update none its mask keeps the original weights.",
        run=_sparsegpt_run,
        needs_calibration=True,
        updates_weights=True,
        takes_update=True,
        default_update="obs",
        walks_blocks=True,
        params={
            "damp": Param(0.01, "dampening added to the Hessian diagonal, as a fraction of its mean", minimum=0.0),
            "blocksize": Param(128, "columns per lazy-update block", minimum=1, maximum=65536),
            "order": ORDER_PARAM,
        },
        reference="Frantar & Alistarh 2023, SparseGPT",
    )
)
