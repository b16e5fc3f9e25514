"""Randomized pruning mask generation and selection (Li, Gao, Lei, Xu; EMNLP Findings 2023).

A deterministic criterion gives one mask. Here K masks are *sampled* around it and the
best is chosen, by a cheap evaluation (the masked model on a held-out slice of the
training data) or by early evaluation (a short fine-tune of each candidate).

Generation, per matrix, as in the authors' public code:

* sampling probabilities ``p_i = s_i^a / sum_j s_j^a`` (``s`` = any criterion's scores,
  ``|w|`` in the paper; ``a = 5``);
* ``R = max(floor((N - k) r), 1)`` rounds, each drawing ``k`` indices WITHOUT replacement
  from ``p``; count how often each index was drawn; keep the ``k`` most drawn (ties
  between equal counts: the higher score is kept, then the lower index - so exactly k).
  Small ``r`` = few rounds = more random; large ``r`` = the deterministic top-k mask.

Sampling without replacement is done with the Gumbel-top-k trick: the ``k`` largest of
``log p_i + G_i`` (``G_i`` i.i.d. standard Gumbel, ``G = -log E`` with ``E ~ Exp(1)``)
are distributed exactly as ``k`` sequential draws without replacement from ``p``
(Vieira 2014; Kool, van Hoof & Welling 2019, "Stochastic Beams and Where to Find Them").
It is computed as an exponential race: the ``k`` largest ``log(U_i) / p_i`` (= ``-E_i / p_i``,
the same order as ``log p_i - log E_i``), one uniform draw and one log per entry and round;
``p`` is normalized to its maximum in float64 first, so ``s^5`` does not underflow for any
weight that has a real chance to be drawn. It is ``torch.multinomial(p, k, replacement=False)``
without its per-row restrictions, and several times faster than it on million-entry rows. ``sampler="multinomial"`` uses
torch.multinomial instead; ``tests/test_seeds.py`` checks both give the same inclusion
frequencies.

``PruneResult.info`` (for the app): ``chosen`` (index of the winner), ``selection_scores``
(one per candidate: the held-out metric, or the mean of the last early evaluations),
``candidate_jaccard`` (K x K), ``overlap_with_deterministic`` (Jaccard of each candidate
with the criterion's own top-k mask), ``deterministic_metric``, ``held_out`` (where the
selection data came from: always a held-out slice of the TRAINING split), ``budget``,
and ``stages`` (the same per stage, plus ``candidate_metrics``, ``early_curves``,
``weight_sample``). With ``selection="early"`` the result is a
:class:`training.TrainedPruneResult` whose overrides carry every fine-tuned parameter.
:func:`candidate_pool` is the no-training view: K candidates from cached scores with
their cheap scores.

Granularities: ``layer`` samples per matrix; ``row`` per output row (k per row);
``N:M`` per group of M inputs (M - N drawn per group, every round); ``global`` takes
each layer's budget from the deterministic global threshold and samples within the
layer (so R stays per matrix, as in the paper).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from ..analysis.evaluate import summary
from ..core import MAX_SEED, PruneContext
from ..criteria.random import _mix
from ..errors import PruneScopeError
from ..loading.functional import with_overrides
from ..masks import Masks, compute_masks, keep_count, mask_overlap, parse_granularity, prepare_scores
from ..prune import calibration_for
from ..registry import Method, Param, method_name, register, registered_method, score_criteria
from ..result import PruneResult, masked_weights, weight_overrides
from ..store.resume import checkpoint_step, resume_state
from . import training as T

DEFAULT_RANDOMNESS = 1e-4


# ---------------------------------------------------------------- pure generation
def sampling_rounds(total: int, kept: int, randomness: float) -> int:
    """``R = max(floor((N - k) r), 1)``: how many without-replacement draws are counted."""
    return max(math.floor((total - kept) * float(randomness) + 1e-9), 1)


def log_probabilities(scores: torch.Tensor, power: float = 5.0) -> torch.Tensor:
    """``a log s`` (unnormalized ``log p``); non-positive or NaN scores get ``-inf`` (never drawn)."""
    s = scores.detach().to(torch.float64)
    out = torch.full_like(s, -math.inf)
    ok = torch.isfinite(s) & (s > 0)
    out[ok] = float(power) * torch.log(s[ok])
    return out.to(torch.float32)


def draw_counts(
    log_p: torch.Tensor, k: int, rounds: int, generator: torch.Generator, sampler: str = "gumbel"
) -> torch.Tensor:
    """How often each entry of every row of ``log_p`` (groups x L) was among ``k`` draws
    without replacement, over ``rounds`` rounds. Returns int32 counts of the same shape."""
    groups, length = log_p.shape
    counts = torch.zeros(groups, length, dtype=torch.int32)
    if k <= 0 or rounds <= 0:
        return counts
    if k >= length:
        return counts.fill_(rounds)
    ones = torch.ones(groups, k, dtype=torch.int32)
    if sampler == "multinomial":
        p = torch.exp(log_p.double() - log_p.double().amax(dim=1, keepdim=True)).nan_to_num(0.0)
        if int((p > 0).sum(dim=1).min()) < k:
            raise PruneScopeError("multinomial sampling needs at least k entries with non-zero probability per group")
        for _ in range(rounds):
            idx = torch.multinomial(p, k, replacement=False, generator=generator)
            counts.scatter_add_(1, idx, ones)
        return counts
    if sampler != "gumbel":
        raise PruneScopeError(f"unknown sampler {sampler!r}: use gumbel or multinomial")
    # Exponential race, the Gumbel-top-k trick without a second log: the k largest of
    # log(U) / p = -E / p are the k smallest E / p, i.e. the k largest log p - log E.
    inv_p = torch.exp(-(log_p.double() - log_p.double().amax(dim=1, keepdim=True))).to(torch.float32)  # 1/p, inf where p = 0
    keys = torch.empty(groups, length, dtype=torch.float32)
    for _ in range(rounds):
        keys.uniform_(generator=generator).log_().mul_(inv_p)
        idx = torch.topk(keys, k, dim=1, sorted=False).indices
        counts.scatter_add_(1, idx, ones)
    return counts


def most_drawn(counts: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly ``k`` entries per row: most drawn first; equal counts -> higher score, then lower index."""
    groups, length = counts.shape
    # rank by descending score, ties by lower index first (0 = best); the key prefers smaller ranks
    ties = torch.sort(scores, dim=1, descending=True, stable=True).indices
    tie_rank = torch.empty_like(ties)
    tie_rank.scatter_(1, ties, torch.arange(length).expand(groups, length).contiguous())
    key = counts.to(torch.int64) * length + (length - 1 - tie_rank)
    keep = torch.zeros(groups, length, dtype=torch.bool)
    if k > 0:
        keep.scatter_(1, torch.topk(key, min(k, length), dim=1).indices, True)
    return keep


def _groups(scores: torch.Tensor, kind: str, m: int) -> torch.Tensor:
    """Reshape a (d_out, d_in) tensor into the rows that are sampled independently."""
    if kind == "layer":
        return scores.reshape(1, -1)
    if kind == "row":
        return scores.reshape(scores.shape[0], -1)
    d_out, d_in = scores.shape
    if d_in % m:
        raise PruneScopeError(f"an N:{m} pattern needs the input size to be a multiple of {m}; this layer has {d_in}")
    return scores.reshape(d_out * (d_in // m), m)


def randomized_masks(
    scores: torch.Tensor,
    sparsity: float,
    k_candidates: int,
    randomness: float = DEFAULT_RANDOMNESS,
    power: float = 5.0,
    seed: int = 0,
    nm: tuple[int, int] | None = None,
    rows: bool = False,
    weight: torch.Tensor | None = None,
    keep: int | None = None,
    sampler: str = "gumbel",
    salt: str = "",
) -> list[torch.Tensor]:
    """``k_candidates`` randomized masks (bool, True = kept) for one (d_out, d_in) score matrix.

    ``sparsity`` sets ``k = floor(N (1-s))`` kept per matrix (``rows=True``: per row;
    ``nm=(N, M)``: M - N per group of M, sparsity ignored); ``keep`` overrides the
    per-matrix count. Rounds ``R = max(floor((N_matrix - k_matrix) r), 1)``. Candidate
    ``c`` is seeded from ``(seed, salt, c)``: same seed, same masks. Zero weights (given
    ``weight``) and non-positive scores have probability 0.
    """
    if k_candidates < 1:
        raise PruneScopeError("the number of candidate masks must be at least 1")
    if scores.dim() != 2:
        scores = scores.reshape(scores.shape[0], -1) if scores.dim() > 2 else scores.reshape(1, -1)
    prepared = prepare_scores(scores, weight)
    total = prepared.numel()
    if nm is not None:
        n, m = nm
        per_group = m - n
        grouped = _groups(prepared, "nm", m)
        kept_total = per_group * grouped.shape[0]
    elif rows:
        grouped = _groups(prepared, "row", 0)
        per_group = keep_count(grouped.shape[1], sparsity)
        kept_total = per_group * grouped.shape[0]
    else:
        grouped = _groups(prepared, "layer", 0)
        per_group = keep_count(total, sparsity) if keep is None else int(keep)
        kept_total = per_group
    rounds = sampling_rounds(total, kept_total, randomness)
    log_p = log_probabilities(grouped, power)
    out = []
    for c in range(k_candidates):
        g = torch.Generator().manual_seed(_mix(seed, f"{salt}/candidate{c}"))
        counts = draw_counts(log_p, per_group, rounds, g, sampler)
        out.append(most_drawn(counts, grouped, per_group).reshape(prepared.shape))
    return out


def randomized_candidates(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    granularity: str,
    k_candidates: int,
    randomness: float = DEFAULT_RANDOMNESS,
    power: float = 5.0,
    seed: int = 0,
    weights: Mapping[str, torch.Tensor] | None = None,
    sampler: str = "gumbel",
    progress=None,
) -> list[Masks]:
    """K candidate mask sets over many layers at one granularity (see the module docstring)."""
    g = parse_granularity(granularity)
    per_layer: dict[str, list[torch.Tensor]] = {}
    budgets = None
    if g.kind == "global":
        det = compute_masks(scores, sparsity, "global", weights)
        budgets = {n: int(m.sum()) for n, m in det.items()}
    names = list(scores)
    for i, name in enumerate(names):
        w = None if weights is None else weights[name]
        per_layer[name] = randomized_masks(
            scores[name],
            sparsity,
            k_candidates,
            randomness,
            power,
            seed,
            nm=(g.n, g.m) if g.is_nm else None,
            rows=g.kind == "row",
            weight=w,
            keep=None if budgets is None else budgets[name],
            sampler=sampler,
            salt=name,
        )
        if progress is not None:
            progress(i + 1, len(names), f"sampled {k_candidates} masks for {name}")
    return [{n: per_layer[n][c] for n in names} for c in range(k_candidates)]


def jaccard_matrix(mask_sets: Sequence[Masks]) -> list[list[float]]:
    """Pairwise overall Jaccard similarity of mask sets (kept weights)."""
    k = len(mask_sets)
    out = [[1.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1, k):
            out[i][j] = out[j][i] = mask_overlap(mask_sets[i], mask_sets[j])["overall"]["jaccard"]
    return out


def stage_sparsities(target: float, stages: int, schedule: str = "") -> list[float]:
    """Sparsity of each stage. ``schedule`` ("0.54,0.83,0.92,0.9375") is used as given (its
    last value must be the target); else ``stages`` steps geometric in density:
    ``1 - (1 - s)^(j / stages)`` (4 stages to 0.9375 give 0.5, 0.75, 0.875, 0.9375,
    close to the paper's 0.54, 0.83, 0.92, 0.9375)."""
    if schedule and schedule.strip():
        try:
            values = [float(x) for x in schedule.split(",") if x.strip()]
        except ValueError:
            raise PruneScopeError(f"schedule must be comma-separated sparsities, got {schedule!r}") from None
        if any(b < a for a, b in zip(values, values[1:])) or not values:
            raise PruneScopeError("the stage sparsities must rise")
        if abs(values[-1] - target) > 1e-9:
            raise PruneScopeError(f"the last stage sparsity ({values[-1]}) must equal the target sparsity ({target})")
        return values
    stages = max(1, int(stages))
    density = 1.0 - float(target)
    return [1.0 - density ** (j / stages) for j in range(1, stages + 1)][:-1] + [float(target)]


# ---------------------------------------------------------------- cheap selection (no training)
@dataclass
class CandidatePool:
    """K randomized candidates around a deterministic mask, each with a cheap selection score."""

    sparsity: float
    granularity: str
    masks: list[Masks]
    deterministic: Masks
    scores: list[dict]  # held-out metric of each candidate (no training)
    deterministic_score: dict
    jaccard: list[list[float]]
    overlap_with_deterministic: list[float]
    rounds: dict[str, int] = field(default_factory=dict)

    @property
    def chosen(self) -> int:
        """Index of the best candidate: highest score, then lowest held-out loss, then lowest index."""
        return max(range(len(self.scores)), key=lambda i: (self.scores[i]["score"], -self.scores[i]["loss"], -i))

    def to_info(self) -> dict:
        """JSON-able summary (no masks)."""
        return {
            "sparsity": self.sparsity,
            "granularity": self.granularity,
            "candidate_scores": [s["score"] for s in self.scores],
            "candidate_metrics": [summary(x) for x in self.scores],
            "deterministic_metric": summary(self.deterministic_score),
            "jaccard": self.jaccard,
            "overlap_with_deterministic": self.overlap_with_deterministic,
            "chosen": self.chosen,
            "rounds": self.rounds,
        }


def candidate_pool(
    loaded,
    scores: Mapping[str, torch.Tensor],
    request,
    data=None,
    task=None,
    base_model=None,
    progress=None,
) -> CandidatePool:
    """The app's "Random candidates" view, without training: K masks from cached ``scores``
    (any criterion), each scored on a held-out slice of the TRAINING data with no
    fine-tuning, plus the deterministic mask's score, pairwise Jaccard, overlap with the
    deterministic mask and the cheap choice.

    ``request`` is a ``randomized`` :class:`pruning.request.PruneRequest`: its sparsity,
    granularity, seed and parameters ``k``, ``randomness``, ``power``, ``holdout`` are used.
    ``task`` (a :class:`training.TaskData`) may be passed to reuse held-out batches (else it
    is built from ``data``, or the request's dataset); ``base_model`` defaults to the loaded
    model (which is never modified)."""
    g, sparsity, seed, p = request.granularity, request.sparsity, request.seed, request.param_dict
    k_candidates, randomness, power = p["k"], p["randomness"], p["power"]
    model = base_model if base_model is not None else loaded.model
    weights = T.layer_weights(model, list(scores))
    if task is None:  # a causal LM is scored on held-out windows of its training text (16 examples ~ 1 window)
        data = data if data is not None else request.dataset
        holdout = p["holdout"]
        task = T.task_data(loaded, data, holdout=holdout, seed=seed, lm_sequences=1, lm_holdout=max(2, min(16, holdout // 16)))
    deterministic = compute_masks(scores, sparsity, str(g), weights)
    n_layers = len(scores)
    total = n_layers + k_candidates + 1

    def sampled(done, _total, message):
        if progress is not None:
            progress(done, total, message)

    masks = randomized_candidates(scores, sparsity, str(g), k_candidates, randomness, power, seed, weights, progress=sampled)
    if progress is not None:
        progress(n_layers, total, "scoring the deterministic mask on held-out training data")
    det_score = T.masked_metric(loaded, deterministic, task, base=model)
    cand_scores = []
    for i, m in enumerate(masks):
        if progress is not None:
            progress(n_layers + i + 1, total, f"scoring candidate {i + 1} of {k_candidates}")
        cand_scores.append(T.masked_metric(loaded, m, task, base=model))
    rounds = {n: sampling_rounds(d.numel(), int(d.sum()), randomness) for n, d in deterministic.items()}
    return CandidatePool(
        sparsity=sparsity,
        granularity=str(g),
        masks=masks,
        deterministic=deterministic,
        scores=cand_scores,
        deterministic_score=det_score,
        jaccard=jaccard_matrix(masks),
        overlap_with_deterministic=[mask_overlap(m, deterministic)["overall"]["jaccard"] for m in masks],
        rounds=rounds,
    )


# ---------------------------------------------------------------- the method
def base_scores(ctx: PruneContext, model, base: str, calibration) -> dict[str, torch.Tensor]:
    """Scores of a registered score-based criterion, computed on ``model`` (a pruned/trained copy)."""
    method = registered_method(base)
    if not method.score_based:
        raise PruneScopeError(
            f"randomized selection samples around a criterion's scores; {method.name} has none "
            f"(use one of: {', '.join(score_criteria())})"
        )
    sub = PruneContext(T.with_model(ctx.loaded, model), ctx.request.replace(method=method.name), ctx.layers, calibration)
    was_training = model.training
    model.eval()  # no dropout while statistics are collected
    try:
        with torch.no_grad():
            return {n: s.detach().float() for n, s in method.scores(sub).items()}
    finally:
        model.train(was_training)


def _calibration_for(ctx: PruneContext, base: str):
    if not registered_method(base).needs_calibration or ctx.calibration is not None:
        return ctx.calibration

    return calibration_for(ctx.loaded, ctx.request)


def _early_evaluation(p, task, start_model, masks, teacher, tick, seed=0, saved=None, save=None):
    """Fine-tune a copy of ``start_model`` with ``masks`` fixed; score = mean of the last evaluations.

    Every candidate sees the same minibatches and dropout draws (``seed``), so only the mask differs.
    ``saved`` (a state ``save`` was given) goes on from where that state was; ``save(state_fn)`` is
    called after every step with a function building the candidate's state."""
    task.restart(seed)
    model = T.seed_dropout(copy.deepcopy(start_model), seed)
    bound = T.ModuleMasks(model, masks)
    bound.apply_()
    tuner = T.FineTuner(model, task, p["lr"], teacher=teacher, distill=p["distill"], temperature=p["temperature"])
    curve, losses = [], []
    if saved is not None:
        tuner.load_state_dict(saved["tuner"])
        curve, losses = list(saved["curve"]), list(saved["losses"])
    every = max(1, int(p["eval_every"]))
    for step in range(tuner.steps + 1, int(p["steps"]) + 1):
        losses.append(tuner.step())
        bound.apply_()
        if step % every == 0 or step == int(p["steps"]):
            ev = T.held_out_metric(model, task)
            curve.append({"step": step, "score": ev["score"], "value": ev["value"], "loss": ev["loss"]})
        tick(step)
        if save is not None:
            save(lambda: {"tuner": tuner.state_dict(), "curve": curve, "losses": losses})
    last = curve[-max(1, int(p["n_last"])) :]
    score = sum(c["score"] for c in last) / len(last)
    return model, score, curve, losses


@dataclass
class _Selection:
    """The state of one randomized-selection run across its stages."""

    ctx: PruneContext
    task: object
    model: torch.nn.Module  # the model the next stage samples around (a trained copy with early selection)
    teacher: torch.nn.Module | None
    calibration: list | None
    schedule: list[float]
    total: int
    done: int = 0
    stages: list = field(default_factory=list)  # the finished stages' records
    base: dict | None = None  # with a checkpoint: the trainable parameters the current stage started from
    saved: dict | None = None  # a checkpoint's state not yet put back (for the stage it was saved in)

    @property
    def early(self) -> bool:
        return self.ctx.params["selection"] == "early"

    def report(self, message: str, units: int = 0) -> None:
        self.done += units
        self.ctx.report(min(self.done, self.total), self.total, message)

    def checkpoint(self, si: int, phase: dict) -> None:
        """After a training step: save the run's state when the checkpoint is due (``phase()``: the stage's part)."""
        checkpoint_step(self.ctx.checkpoint, self.done, self.total,
                        lambda: {"stages": self.stages, "stage": si, "done": self.done, "base": self.base, **phase()})


def _selection_start(ctx: PruneContext) -> _Selection:
    p, g = ctx.params, ctx.granularity
    schedule = [g.fixed_sparsity] if g.is_nm else stage_sparsities(ctx.sparsity, p["stages"], p["schedule"])
    calibration = _calibration_for(ctx, p["base"])
    task = T.task_data(ctx.loaded, ctx.data, holdout=p["holdout"], batch_size=p["batch_size"], seed=ctx.seed)
    early = p["selection"] == "early"
    teacher = ctx.loaded.model if (early and p["distill"] > 0) else None
    model = T.trainable_copy(ctx.loaded, seed=ctx.seed) if early else ctx.loaded.model
    per_stage = p["k"] + 1 + (p["k"] * p["steps"] + p["final_steps"] if early else 0)
    return _Selection(ctx, task, model, teacher, calibration, schedule, max(1, len(schedule) * per_stage))


def _cheap_stage(run: _Selection, pool: CandidatePool, si: int) -> tuple[dict, dict]:
    """Keep the candidate with the best held-out score; later stages sample around its pruned weights."""
    masks = pool.masks[pool.chosen]
    if si < len(run.schedule) - 1:
        run.model = with_overrides(run.model, weight_overrides(run.model, masked_weights(run.model, masks)))
    return masks, summary(pool.scores[pool.chosen])


def _trained_copy(run: _Selection, seed: int, state: dict) -> torch.nn.Module:
    """A candidate's trained model put back from its saved parameters and dropout generators
    (``state``: ``{"params", "generators", ...}``, e.g. a :meth:`FineTuner.state_dict`)."""
    model = T.seed_dropout(copy.deepcopy(run.model), seed)
    T.load_trainable_state(model, state["params"])
    T.set_generator_states(model, state["generators"])
    return model


def _early_stage(run: _Selection, pool: CandidatePool, si: int, stage_seed: int, stage: dict) -> tuple[dict, dict]:
    """Fine-tune every candidate briefly, keep the best, fine-tune the winner further."""
    p = run.ctx.params
    saved, run.saved = run.saved, None
    best, early_scores, curves, first = None, [], [], 0
    if saved is not None:
        early_scores, curves, first = list(saved["early_scores"]), list(saved["curves"]), saved.get("candidate", p["k"])
        if saved.get("best") is not None:
            b = saved["best"]
            best = (b["index"], b["score"], _trained_copy(run, stage_seed, b))
    for ci in range(first, p["k"]):
        def tick(step, ci=ci):
            run.report(f"stage {si + 1}: early evaluation of candidate {ci + 1}/{p['k']}, step {step}", 1)

        def save(candidate_state, ci=ci):
            run.checkpoint(si, lambda: {
                "phase": "candidates", "candidate": ci, "early_scores": early_scores, "curves": curves,
                "best": None if best is None else {"index": best[0], "score": best[1], "params": T.trainable_state(best[2]),
                                                   "generators": T.generator_states(best[2])},
                "current": candidate_state(),
            })

        resume = saved["current"] if saved is not None and saved["phase"] == "candidates" and ci == first else None
        trained, score, curve, _ = _early_evaluation(
            p, run.task, run.model, pool.masks[ci], run.teacher, tick, stage_seed, resume, save if run.ctx.checkpoint else None
        )
        run.report(f"stage {si + 1}: candidate {ci + 1}/{p['k']} early score {score:.4f}")
        early_scores.append(score)
        curves.append(curve)
        if best is None or score > best[1]:
            best = (ci, score, trained)
    if saved is not None and saved["phase"] == "winner":
        chosen, run.model = saved["chosen"], _trained_copy(run, stage_seed, saved["tuner"])
    else:
        chosen, _, run.model = best
    final_curve, metric = _finetune_winner(run, pool.masks[chosen], si, stage_seed, saved if saved and saved["phase"] == "winner" else None,
                                           {"chosen": chosen, "early_scores": early_scores, "curves": curves})
    stage.update({"early_scores": early_scores, "early_curves": curves, "selection_scores": early_scores, "chosen": chosen,
                  "winner_after_fine_tuning": metric, "final_curve": final_curve})
    return pool.masks[chosen], metric


def _finetune_winner(run: _Selection, masks: dict, si: int, stage_seed: int, saved: dict | None = None, chosen: dict | None = None) -> tuple[list, dict]:
    p = run.ctx.params
    run.task.restart(stage_seed + 1)  # the winner goes on with batches it has not seen in this order
    bound = T.ModuleMasks(run.model, masks)
    tuner = T.FineTuner(run.model, run.task, p["lr"], teacher=run.teacher, distill=p["distill"], temperature=p["temperature"])
    curve = []
    if saved is not None:
        tuner.load_state_dict(saved["tuner"])
        curve = list(saved["final_curve"])
    for step in range(tuner.steps + 1, int(p["final_steps"]) + 1):
        loss = tuner.step()
        bound.apply_()
        if step % max(1, int(p["eval_every"]) * 4) == 0:
            curve.append({"step": step, "loss": loss})
        run.report(f"stage {si + 1}: fine-tuning the winner, step {step}", 1)
        if run.ctx.checkpoint is not None:
            run.checkpoint(si, lambda: {"phase": "winner", **(chosen or {}), "tuner": tuner.state_dict(), "final_curve": curve})
    metric = summary(T.held_out_metric(run.model, run.task))
    run.report(f"stage {si + 1}/{len(run.schedule)}: winner fine-tuned, held-out {metric['metric']} {metric['value']:.4g}")
    return curve, metric


def _selection_info(run: _Selection, stages: list, final_metric: dict, started: float) -> dict:
    p, last, task = run.ctx.params, stages[-1], run.task
    return {
        "stages": stages,
        "schedule": run.schedule,
        "selection": p["selection"],
        "base": p["base"],
        "chosen": last["chosen"],
        "selection_scores": last["selection_scores"],
        "candidate_jaccard": last["jaccard"],
        "overlap_with_deterministic": last["overlap_with_deterministic"],
        "deterministic_metric": last["deterministic_metric"],
        "held_out": {"source": task.source, "examples": task.n_holdout, "split": "train (held-out slice)"},
        "held_out_metric": final_metric,
        "train_examples": task.n_train,
        "budget": {"stages": len(run.schedule), "candidates": p["k"], "steps_per_candidate": p["steps"] if run.early else 0,
                   "final_steps": p["final_steps"] if run.early else 0, "batch_size": p["batch_size"]},
        "elapsed_s": time.perf_counter() - started,
    }


def _resume(run: _Selection) -> int:
    """Put a checkpoint's state back (early selection only); returns the stage to go on with."""
    saved = resume_state(run.ctx.checkpoint) if run.early else None
    if saved is None:
        return 0
    run.stages, run.done, run.saved = list(saved["stages"]), int(saved["done"]), saved
    T.load_trainable_state(run.model, saved["base"])
    for stage in run.stages:  # an observer drawing the run live sees it from the start
        run.ctx.emit("stage", stage)
    return int(saved["stage"])


def _randomized_run(ctx: PruneContext):
    started = time.perf_counter()
    run = _selection_start(ctx)
    p = ctx.params
    shapes = {n: tuple(w.shape) for n, w in T.layer_weights(ctx.loaded.model, ctx.layers).items()}
    sampler = T.WeightSampler(shapes, 3000, ctx.seed)
    first = _resume(run)
    for si in range(first, len(run.schedule)):
        s = run.schedule[si]
        stage_seed = ctx.seed + 1000 * si
        if run.early and ctx.checkpoint is not None:
            run.base = T.trainable_state(run.model)
        scores = base_scores(ctx, run.model, p["base"], run.calibration)
        stage_request = ctx.request.replace(sparsity=s, seed=stage_seed % (MAX_SEED + 1))
        pool = candidate_pool(ctx.loaded, scores, stage_request, task=run.task, base_model=run.model)
        run.report(f"stage {si + 1}/{len(run.schedule)}: {p['k']} candidates at {s:.1%} scored", 0 if run.saved else p["k"] + 1)
        stage = {"sparsity": s, **pool.to_info(), "selection": p["selection"]}
        if run.early:
            masks, metric = _early_stage(run, pool, si, stage_seed, stage)
        else:
            masks, metric = _cheap_stage(run, pool, si)
            stage["selection_scores"] = stage["candidate_scores"]
        stage["weight_sample"] = sampler.take(T.layer_weights(run.model, ctx.layers)) if run.early else []
        run.stages.append(stage)
        ctx.emit("stage", stage)
    stages = run.stages
    info = _selection_info(run, stages, metric, started)
    if run.early:
        if ctx.checkpoint is not None:
            info["elapsed_s"] = ctx.checkpoint.elapsed()
            info["resumed_at_step"] = ctx.checkpoint.resumed_at
        return T.trained_result("randomized", ctx.loaded, run.model, masks, ctx.sparsity, str(ctx.granularity), info)

    return PruneResult("randomized", ctx.sparsity, str(ctx.granularity), masks, None, info=info)


register(
    Method(
        name="randomized",
        label="Randomized masks + selection",
        summary="Sample K masks around a criterion's scores (p ~ score^a, counted over R draws without "
        "replacement), then keep the one that does best on a held-out slice of the training data: "
        "as is ('cheap') or after a short fine-tune of each ('early'). Stages raise the sparsity step by step.",
        run=_randomized_run,
        needs_training_data=True,
        updates_weights=True,
        family="seed",
        granularities=("layer", "global", "row", "2:4", "4:8"),
        granularity="layer",
        steps_view="candidates",
        claim="claim-randomized",
        resumable=True,
        params={
            "base": Param("magnitude", "the criterion whose scores are sampled around (any score-based one)", choices=score_criteria, normalize=method_name),
            "k": Param(4, "candidate masks per stage (8 in the paper)", minimum=1, maximum=64, group="budget"),
            "randomness": Param(
                DEFAULT_RANDOMNESS, "r: rounds R = max(floor((N - k) r), 1); smaller = more random (paper: 5e-5..3e-4)", minimum=0.0, maximum=1e-3
            ),
            "power": Param(5.0, "a: sampling probability ~ score^a", minimum=0.0),
            "selection": Param("early", "cheap: held-out metric with no training; early: short fine-tune of each candidate", choices=("cheap", "early")),
            "steps": Param(20, "early evaluation: fine-tuning steps per candidate (one epoch in the paper)", minimum=1, maximum=100_000, group="budget"),
            "eval_every": Param(10, "early evaluation: evaluate every this many steps", minimum=1, maximum=100_000),
            "n_last": Param(2, "early evaluation: score = mean of the last this many evaluations", minimum=1, maximum=1000),
            "final_steps": Param(80, "fine-tuning steps of the winner of each stage", minimum=0, maximum=100_000, group="budget"),
            "stages": Param(1, "stages of rising sparsity (4 in the paper), geometric in density", minimum=1, maximum=10, group="budget"),
            "schedule": Param("", "explicit stage sparsities, e.g. 0.54,0.83,0.92,0.9375 (overrides stages)"),
            "lr": Param(5e-5, "AdamW learning rate", minimum=0.0),
            "batch_size": Param(16, "training batch size", minimum=1, maximum=1024),
            "distill": Param(0.0, "weight of logits distillation (KL to the dense model); 0 = off", minimum=0.0, maximum=1.0),
            "temperature": Param(2.0, "distillation temperature", minimum=0.01),
            "holdout": Param(256, "held-out examples of the TRAINING data used for selection", minimum=8, maximum=100_000),
        },
        reference="Li, Gao, Lei, Xu (EMNLP Findings 2023), Breaking through Deterministic Barriers: "
        "Randomized Pruning Mask Generation and Selection",
        colour="#393b79",  # indigo
    )
)
