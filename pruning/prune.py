"""Prune a loaded model with a registered method; results are data, the model is untouched."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import torch

from .errors import PruneScopeError
from .masks import MaskRanker, compute_masks, overall_sparsity, parse_granularity, validate_sparsity
from .registry import PruneContext, get_method


@dataclass
class PruneResult:
    """Masks (True = kept) per layer, plus new weights for methods that change them."""

    method: str
    sparsity: float
    granularity: str
    masks: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def pruned_weights(self, loaded) -> dict[str, torch.Tensor]:
        """The (d_out, d_in) weight of every pruned layer after pruning."""
        return pruned_weights(loaded, self.masks, self.weights)

    def overrides(self, loaded) -> dict[str, torch.Tensor]:
        """``named_parameters`` key -> pruned tensor, for :func:`pruning.functional.with_overrides`."""
        return masked_overrides(loaded, self.masks, self.weights)

    @property
    def overall_sparsity(self) -> float:
        return overall_sparsity(self.masks)


def layer_names(loaded, layers=None, include: str | None = None, exclude: str | None = None) -> list[str]:
    """The layers to prune: the given names (checked), or every prunable layer matching the patterns."""
    from .models import prunable_layers

    available = [info.name for info in prunable_layers(loaded.model, include=include, exclude=exclude)]
    if layers is None:
        if not available:
            raise PruneScopeError("no prunable layer matches the given name patterns")
        return available
    every = {info.name for info in prunable_layers(loaded.model)}
    unknown = [n for n in layers if n not in every]
    if unknown:
        raise PruneScopeError(f"not a prunable layer of this model: {', '.join(unknown[:3])}")
    return list(layers)


def pruned_weights(loaded, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None):
    from .models import layer_weight

    out = {}
    for name, mask in masks.items():
        base = weights[name] if weights is not None and name in weights else layer_weight(loaded.model, name)
        out[name] = base.detach().to(torch.float32) * mask
    return out


def masked_overrides(loaded, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None):
    """Overrides that apply ``masks`` (and new ``weights``) to the shared model without changing it."""
    from .models import param_key, to_module_layout

    model = loaded.model
    out = {}
    for name, w in pruned_weights(loaded, masks, weights).items():
        original = model.get_parameter(param_key(model, name))
        out[param_key(model, name)] = to_module_layout(model, name, w).to(original.dtype)
    return out


def _context(loaded, method, sparsity, granularity, layers, calibration, seed, progress, data, params, observe=None):
    g = parse_granularity(granularity)
    if str(g) not in method.granularities and not (g.is_nm and "2:4" in method.granularities):
        raise PruneScopeError(f"method {method.name} does not support granularity {g}; it supports {', '.join(method.granularities)}")
    sparsity = g.fixed_sparsity if g.is_nm else validate_sparsity(sparsity)
    names = layer_names(loaded, layers)
    if method.needs_calibration and calibration is None:
        from .data import calibration_batches

        calibration = calibration_batches(loaded, None, n_samples=16, seed=seed)
    if method.needs_calibration and len(calibration) == 0:
        raise PruneScopeError(f"method {method.name} needs calibration data, and the calibration set is empty")
    return PruneContext(
        loaded=loaded,
        layers=names,
        sparsity=sparsity,
        granularity=str(g),
        calibration=calibration,
        seed=int(seed),
        params=method.resolve_params(params),
        progress=progress,
        data=data,
        observe=observe,
    )


def prune(
    loaded,
    method: str,
    sparsity: float,
    granularity: str = "layer",
    layers=None,
    calibration=None,
    seed: int = 0,
    progress=None,
    data=None,
    params: dict | None = None,
    observe=None,
) -> PruneResult:
    """Run ``method`` once. For N:M granularities the sparsity is N/M whatever ``sparsity`` says.

    ``observe(kind, entry)``, when given, receives the intermediate results of methods that
    have them while they run: ``("history", snapshot)`` from MGPP/GMP, ``("step", stage)`` from
    SDS, ``("stage", stage)`` from randomized selection (the same dicts that end up in
    ``info["history"]`` / ``info["steps"]`` / ``info["stages"]``).
    """
    m = get_method(method)
    ctx = _context(loaded, m, sparsity, granularity, layers, calibration, seed, progress, data, params, observe)
    start = time.perf_counter()
    result = m.run(ctx)
    result.seconds = time.perf_counter() - start
    result.info.setdefault("params", ctx.params)
    result.info.setdefault("seed", ctx.seed)
    if ctx.calibration is not None:
        result.info.setdefault("calibration_samples", sum(int(b["input_ids"].shape[0]) for b in ctx.calibration))
    return result


def compute_scores(
    loaded, method: str, layers=None, calibration=None, seed: int = 0, params: dict | None = None, progress=None
) -> dict[str, torch.Tensor]:
    """Scores of a score-based method for every layer, computed once (dense calibration pass)."""
    m = get_method(method)
    if not m.score_based:
        raise PruneScopeError(f"method {m.name} changes weights while it prunes, so it has no fixed scores to re-threshold")
    ctx = _context(loaded, m, 0.5, "layer", layers, calibration, seed, progress, None, params)
    return m.scores(ctx)


def mask_ranker(loaded, method: str, layers=None, calibration=None, seed: int = 0, params=None, progress=None) -> MaskRanker:
    """Scores ranked once; ``ranker.masks(s, g)`` is then a comparison per weight (for sliders)."""
    from .models import layer_weight

    scores = compute_scores(loaded, method, layers, calibration, seed, params, progress)
    return MaskRanker(scores, {n: layer_weight(loaded.model, n) for n in scores})


def masks_from_scores(loaded, scores, sparsity, granularity):
    from .models import layer_weight

    return compute_masks(scores, sparsity, granularity, {n: layer_weight(loaded.model, n) for n in scores})


def one_pass_agreement(
    loaded, method: str, sparsity: float, granularity: str, layers=None, calibration=None, seed: int = 0, params=None
) -> dict:
    """How well the slider views' one-pass masks (scores from one dense pass, re-thresholded)
    agree with the method's own masks at the same setting (for Wanda: its block-by-block walk).

    Returns :func:`pruning.masks.mask_overlap` of the two: per layer and overall, ``agreement``
    (share of identical mask entries), ``hamming`` and ``jaccard``.
    """
    from .masks import mask_overlap

    fast = mask_ranker(loaded, method, layers, calibration, seed, params).masks(sparsity, granularity)
    exact = prune(loaded, method, sparsity, granularity, layers=layers, calibration=calibration, seed=seed, params=params)
    return mask_overlap(fast, exact.masks)
