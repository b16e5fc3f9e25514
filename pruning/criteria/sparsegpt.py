"""SparseGPT (Frantar & Alistarh 2023): the mask is chosen inside the OBS column walk, which also
updates the kept weights (:mod:`pruning.updates.sparsegpt_solver`); its saliency before any update
is :func:`sparsegpt_scores`. As one of the three choices it is criterion ``obs`` (registered as an
alias: every lookup of ``obs`` gives this method) with its own update ``obs``; with update ``none``
the walk's mask keeps the original weights."""

from __future__ import annotations

import torch

from ..calibration import InputStats, collect_input_stats
from ..result import PruneResult
from ..registry import Method, Param, register
from ..core import PruneContext
from ..updates.sparsegpt_solver import hessian_factor, sparsegpt_solve
from ..walk import ORDER_PARAM, criterion_walk, layer_sparsities, layer_weights


def sparsegpt_scores(weight: torch.Tensor, hinv_diag: torch.Tensor) -> torch.Tensor:
    """SparseGPT's saliency before any update: ``W_ij^2 / [H^-1]_jj^2`` (OBS error of pruning one weight)."""
    return weight.detach().float() ** 2 / hinv_diag.float().unsqueeze(0) ** 2


# ---------------------------------------------------------------- SparseGPT
def _sparsegpt_run(ctx: PruneContext) -> PruneResult:
    damp = ctx.params["damp"]
    blocksize = ctx.params["blocksize"]

    def dense_scores():
        stats = collect_input_stats(ctx.loaded, ctx.layers, ctx.calibration, want_gram=True)
        weights = layer_weights(ctx)
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
        granularities=("layer", "global", "row", "2:4", "4:8", "allocated"),  # the rules its solve knows how to choose inside
        params={
            "damp": Param(0.01, "dampening added to the Hessian diagonal, as a fraction of its mean", minimum=0.0),
            "blocksize": Param(128, "columns per lazy-update block", minimum=1, maximum=65536),
            "order": ORDER_PARAM,
        },
        reference="Frantar & Alistarh 2023, SparseGPT",
        colour="#9467bd",  # purple
        aliases=("obs",),  # the criterion's name in the three choices: --method obs --update obs is SparseGPT itself
    )
)
