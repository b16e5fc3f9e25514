"""Prune a loaded model with a registered method; results are data, the model is untouched."""

from __future__ import annotations

import time
from typing import Mapping

import torch

from .core import PruneContext
from .errors import PruneScopeError
from .loading.data import calibration_batches
from .loading.devices import peak_memory, placement_of, with_placement
from .loading.models import layer_weight, prunable_layers
from .masks import MaskRanker, check_fits, mask_overlap
from .result import PruneResult
from .store.resume import training_header


def layer_names(loaded, layers=None, include: str | None = None, exclude: str | None = None) -> list[str]:
    """The layers to prune: the given names (checked), or every prunable layer matching the patterns."""
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


def calibration_for(loaded, request) -> list:
    """The calibration batches the request asks for (its dataset, samples, tokens and seed)."""
    return calibration_batches(
        loaded, request.dataset, n_samples=request.calib_samples, seq_len=request.calib_len, seed=request.seed
    )


def context(loaded, request, calibration=None, data=None, progress=None, observe=None, checkpoint=None) -> PruneContext:
    """The :class:`PruneContext` of ``request`` on ``loaded``: its layers resolved on this model, the
    calibration batches built from the request when the method needs them and none are given, and the
    request's dataset as the task data when none is given."""
    method = request.method_info
    names = layer_names(loaded, request.layers, request.include, request.exclude)
    if request.granularity.is_nm:  # one rule for every method, before any of them runs
        widths = {i.name: i.shape[1] for i in prunable_layers(loaded.model)}
        check_fits(request.granularity, {n: widths[n] for n in names})
    if request.needs_calibration and calibration is None:  # the method's, or its update's (OBS, DSnoT on magnitude)
        calibration = calibration_for(loaded, request)
    if request.needs_calibration and len(calibration) == 0:
        raise PruneScopeError(f"method {method.name} needs calibration data, and the calibration set is empty")
    data = data if data is not None else request.dataset
    if checkpoint is not None:
        checkpoint.bind(training_header(loaded, request, names, data, calibration))
    return PruneContext(loaded, request, names, calibration, progress, data, observe, checkpoint)


def prune(
    loaded, request, calibration=None, data=None, progress=None, observe=None, placement=None, checkpoint=None
) -> PruneResult:
    """Run ``request`` once on ``loaded`` (never modified). For N:M the sparsity is N/M; for an
    allocation every listed layer keeps exactly ``floor(N (1 - s_layer))`` weights.

    ``calibration`` (model-input batches) and ``data`` (task data) may be given to reuse cached
    ones; otherwise they come from the request. ``observe(kind, entry)``, when given, receives the
    intermediate results of methods that have them while they run: ``("history", snapshot)`` from
    MGPP/GMP, ``("step", stage)`` from SDS, ``("stage", stage)`` from randomized selection (the same
    dicts that end up in ``info["history"]`` / ``info["steps"]`` / ``info["stages"]``). ``placement``
    (a :class:`pruning.loading.devices.Placement`) runs it elsewhere than where ``loaded`` was loaded for;
    ``info["resources"]`` records the device, the dtype and the peak memory. ``checkpoint`` (a
    :class:`pruning.store.resume.TrainingCheckpoint`) makes a method that trains save its state there as
    it goes and resume from it; it is bound to this request's settings, and a checkpoint of other
    settings is refused. Methods that do not train ignore it.
    """
    if placement is not None:
        loaded = with_placement(loaded, placement)
    ctx = context(loaded, request, calibration, data, progress, observe, checkpoint)
    start = time.perf_counter()
    with peak_memory(placement_of(loaded)) as resources:
        result = request.method_info.run(ctx)
    result.seconds = time.perf_counter() - start
    result.info.setdefault("resources", resources)
    result.info.setdefault("params", dict(request.params))
    result.info.setdefault("seed", request.seed)
    if ctx.calibration is not None:
        used = sum(int(b["input_ids"].shape[0]) for b in ctx.calibration)
        result.info.setdefault("calibration_samples", used)
        if used < request.calib_samples:
            result.info["calibration_note"] = calibration_note(request.calib_samples, used)
    if request.granularity.is_allocated:
        result.info["allocation"] = request.granularity.allocation_dict
        result.sparsity = allocation_mean(request.granularity.allocation_dict, {n: m.numel() for n, m in result.masks.items()})
    return result


def calibration_note(asked: int, used: int) -> str:
    """Why fewer calibration samples were used than asked for (the report and the CLI say it)."""
    return f"{asked} calibration samples asked for; the data holds {used} (sentences, or windows side by side), so {used} were used"


def allocation_mean(allocation: Mapping[str, float], layer_params: Mapping[str, int]) -> float:
    """The parameter-weighted mean sparsity of ``allocation`` over the layers in ``layer_params``."""
    total = sum(layer_params[n] for n in allocation)
    return sum(layer_params[n] * s for n, s in allocation.items()) / max(1, total)


def compute_scores(loaded, request, calibration=None, progress=None) -> dict[str, torch.Tensor]:
    """Scores of a score-based method for every layer of the request, computed once (dense calibration pass)."""
    method = request.method_info
    if not method.score_based:
        raise PruneScopeError(f"method {method.name} changes weights while it prunes, so it has no fixed scores to re-threshold")
    return method.scores(context(loaded, request, calibration, progress=progress))


def mask_ranker(loaded, request, calibration=None, progress=None) -> MaskRanker:
    """Scores ranked once; ``ranker.masks(s, g)`` is then a comparison per weight (for sliders).
    The request's sparsity and granularity do not matter here."""
    scores = compute_scores(loaded, request, calibration, progress)
    return MaskRanker(scores, {n: layer_weight(loaded.model, n) for n in scores})


def one_pass_agreement(loaded, request, calibration=None) -> dict:
    """How well the slider views' one-pass masks (scores from one dense pass, re-thresholded)
    agree with the method's own masks for ``request`` (for Wanda: its block-by-block walk).

    Returns :func:`pruning.masks.mask_overlap` of the two: per layer and overall, ``agreement``
    (share of identical mask entries), ``hamming`` and ``jaccard``.
    """
    if request.granularity.is_allocated:
        raise PruneScopeError("the one-pass agreement compares a uniform setting; give a granularity other than 'allocated'")
    fast = mask_ranker(loaded, request, calibration).masks(request.sparsity, request.granularity)
    return mask_overlap(fast, prune(loaded, request, calibration).masks)
