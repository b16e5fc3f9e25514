"""The block walk for any criterion and any update, written once.

A criterion chooses each layer's mask from the layer's weight and the statistics of its inputs;
the request's update (:mod:`pruning.updates.registry`) then changes what the mask keeps; and the
layer's reconstruction error ``||W X - W' X||^2 / ||W X||^2`` is measured on the same inputs. The
inputs come from the already-pruned blocks before the layer (:func:`pruning.calibration.sequential_prune`,
the reference Wanda and SparseGPT order), so a calibrated criterion registered with
:func:`score_walk_run` is exact by construction: no one-pass approximation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from .calibration import InputStats, ORDERS, collect_input_stats, sequential_prune
from .core import PruneContext
from .loading.models import layer_weight
from .masks import compute_masks, layer_budgets
from .registry import Param
from .result import PruneResult
from .updates.reconstruction import reconstruction_error
from .updates.registry import UpdateEnv, get_update

# chooses the masks of one input group: (names, weights, stats, per-layer sparsity) -> [(new weight or None, mask)]
Chooser = Callable[[list[str], list[torch.Tensor], InputStats, dict], list[tuple[torch.Tensor | None, torch.Tensor]]]
# a criterion's scores for one layer: (ctx, layer name, weight (d_out, d_in), its input statistics) -> scores
ScoreFn = Callable[[PruneContext, str, torch.Tensor, InputStats], torch.Tensor]

WALK_INPUTS = "calibration inputs through the already-pruned blocks before each layer (the block walk)"


def layer_weights(ctx: PruneContext) -> dict[str, torch.Tensor]:
    return {n: layer_weight(ctx.loaded.model, n) for n in ctx.layers}


def layer_sparsities(ctx: PruneContext, dense_scores: Callable[[], dict]) -> dict[str, float]:
    """Per-layer sparsity: the requested one, the allocated one, or for global the share a global
    threshold over ``dense_scores()`` (one dense pass) leaves."""
    return layer_budgets(ctx.layers, ctx.sparsity, ctx.granularity,
                         lambda: compute_masks(dense_scores(), ctx.sparsity, ctx.granularity, layer_weights(ctx)))


def n_samples(calibration) -> int:
    return sum(int(b["input_ids"].shape[0]) for b in calibration or [])


def _error(weight: torch.Tensor, new: torch.Tensor, gram: torch.Tensor) -> float:
    if gram.device.type == "mps":  # no float64 there
        weight, new, gram = weight.cpu(), new.cpu(), gram.cpu()
    return reconstruction_error(weight, new.to(weight.device), gram)


def criterion_walk(ctx: PruneContext, choose: Chooser, sparsity: dict[str, float]) -> tuple[dict, dict, dict]:
    """Walk the blocks: per input group ``choose`` the masks, apply the request's update, measure the
    reconstruction error. Returns ``(masks, new_weights, info)``; ``info["reconstruction_error"]``
    holds each layer's error. A criterion that reconstructs while it chooses (SparseGPT) returns its
    new weights: update ``obs`` keeps them (they are that same column walk), any other drops them."""
    update = get_update(ctx.request.update)
    env = UpdateEnv(n_samples(ctx.calibration), ctx.granularity.within_layer)
    errors: dict[str, float] = {}

    def prune_group(names, weights, stats: InputStats):
        out = []
        for name, w, (new_w, mask) in zip(names, weights, choose(names, weights, stats, sparsity)):
            if not (update.name == "obs" and new_w is not None):
                new_w, mask = update.apply(w, mask, stats, replace(env, layer=name))
            errors[name] = _error(w, (w if new_w is None else new_w) * mask, stats.gram)
            out.append((new_w, mask))
        return out

    masks, new_weights = sequential_prune(
        ctx.loaded, ctx.layers, ctx.calibration, prune_group, want_gram=True, progress=ctx.progress, order=ctx.params.get("order", "block"),
        numerics=ctx.request.numerics,
    )
    info = {"update": update.name, "reconstruction_error": {n: errors[n] for n in ctx.layers}, "reconstruction_inputs": WALK_INPUTS}
    return {n: masks[n] for n in ctx.layers}, new_weights, info


def score_walk_run(name: str, score_fn: ScoreFn, dense_scores: Callable[[PruneContext], dict] | None = None):
    """``run`` of a criterion whose mask is a top-k of ``score_fn`` at the request's granularity,
    through the block walk with the request's update. ``dense_scores(ctx)`` (one dense pass) sets
    the per-layer shares of a global threshold."""

    def run(ctx: PruneContext) -> PruneResult:
        sparsity = layer_sparsities(ctx, lambda: dense_scores(ctx))
        within = ctx.granularity.within_layer

        def choose(names, weights, stats, sparsity):
            return [
                (None, compute_masks({n: score_fn(ctx, n, w, stats)}, sparsity[n], within, {n: w})[n])
                for n, w in zip(names, weights)
            ]

        masks, new_weights, info = criterion_walk(ctx, choose, sparsity)
        return PruneResult(name, ctx.sparsity, str(ctx.granularity), masks, new_weights or None, info=info)

    return run


def score_method(name: str, scores_fn, layer_score=None):
    """``run`` for a method whose mask is a top-k of scores that need no data: with the update
    "none" one thresholding, with any other the block walk (the update needs the layers' inputs;
    ``layer_score(ctx, name, weight, stats)`` gives one layer's scores there)."""
    walk = None if layer_score is None else score_walk_run(name, layer_score, scores_fn)

    def run(ctx: PruneContext) -> PruneResult:
        if ctx.request.update != "none":
            return walk(ctx)
        masks = compute_masks(scores_fn(ctx), ctx.sparsity, ctx.granularity, layer_weights(ctx))
        return PruneResult(name, ctx.sparsity, str(ctx.granularity), masks)

    return run


ORDER_PARAM = Param(
    "block",
    "where each layer's calibration statistics come from: 'block' collects a whole block's in one pass over the "
    "unpruned block (the reference code); 'sequential' prunes each layer as soon as its input is known, so later "
    "layers of the block see inputs from the pruned ones (SparseGPT's true_sequential)",
    choices=ORDERS,
)


DENSE_INPUTS = "calibration inputs of the dense model (one extra pass when the report was written)"


def dense_reconstruction_errors(loaded, masks, weights, calibration, progress=None) -> dict[str, float]:
    """Each masked layer's :func:`reconstruction_error` on its inputs in the dense model (one forward
    pass over ``calibration`` with Gram matrices): for runs whose method had no calibration walk."""
    names = list(masks)
    stats = collect_input_stats(loaded, names, calibration, want_gram=True, progress=progress)
    out = {}
    for n in names:
        dense = layer_weight(loaded.model, n).detach().to(torch.float32).cpu()
        base = weights[n] if weights is not None and n in weights else dense
        out[n] = reconstruction_error(dense, base.detach().to(torch.float32).cpu() * masks[n].cpu(), stats[n].gram.cpu())
    return out
