"""MGPP: mixture Gaussian prior pruning (Zhang, Sun, Liang), and its baseline GMP.

During fine-tuning a spike-and-slab prior ``pi(w) = lam N(0, v1) + (1 - lam) N(0, v0)``
(``v0 << v1``) pulls weights that sit in the spike toward zero and leaves the slab
alone; gradual magnitude pruning on a cubic schedule then removes what collapsed.

The arithmetic is in pure functions (:func:`spike_posterior`, :func:`spike_slab_grad`,
:func:`log_prior`, :func:`crossing_point`, :func:`lambda_at`, :func:`cubic_sparsity`);
:func:`gradual_prune` is the thin training loop both methods share:

* AdamW (betas 0.9/0.98, eps 1e-6, no weight decay) on a COPY of the model;
* MGPP only: ``g += (w / n) (q / v0 + (1 - q) / v1)`` on every targeted weight before
  the optimizer step, with ``lam_t`` annealed linearly from ``lam`` at ``t0`` to
  ``0.001 lam`` at ``t1`` (and kept there);
* at ``t0``, every ``interval`` steps and at ``t1``: magnitude pruning to the cubic
  sparsity ``s_t`` (global threshold by default). Before ``t1`` pruned weights are only
  zeroed and may regrow; from ``t1`` on the mask is frozen and re-applied every step.

GMP (``gmp``) is exactly the same loop, schedule and budget without the prior.

``PruneResult.info["history"]`` (for the app): one entry per snapshot step with ``step``,
``target_sparsity``, ``sparsity`` (exact zeros among targeted weights), ``lambda`` and
``crossing_point`` (MGPP), ``loss`` (mean training loss since the previous snapshot),
``metric``/``value``/``held_out_loss`` (held-out slice of the TRAINING data), ``sample``
(the same 3,000 targeted weights every time) and ``histogram`` (fixed symmetric bins).
``info["prior"]`` has the crossing points at the start and the end of the annealing.
The result is a :class:`training.TrainedPruneResult` (overrides carry every fine-tuned parameter).
"""

from __future__ import annotations

import math
import time

import torch

from ..errors import PruneScopeError
from ..masks import compute_masks, parse_granularity
from ..registry import Method, Param, PruneContext, register
from . import training as T

ALPHA_END = 0.001  # lam is annealed to lam * ALPHA_END at t1


# ---------------------------------------------------------------- pure prior arithmetic
def _constants(lam: float, v0: float, v1: float) -> tuple[float, float]:
    if not 0.0 < lam < 1.0:
        raise PruneScopeError(f"the slab weight lam must be between 0 and 1, got {lam}")
    if not 0.0 < v0 < v1:
        raise PruneScopeError(f"the spike variance v0 must be positive and below the slab variance v1 (got {v0}, {v1})")
    c1 = math.log(lam / (1.0 - lam)) + 0.5 * math.log(v0 / v1)
    c2 = 0.5 * (1.0 / v0 - 1.0 / v1)
    return c1, c2


def spike_posterior(w: torch.Tensor, lam: float, v0: float, v1: float) -> torch.Tensor:
    """``q(w) = 1 / (1 + exp(c1 + c2 w^2))``: posterior probability that ``w`` belongs to the spike."""
    c1, c2 = _constants(lam, v0, v1)
    return torch.sigmoid(-(c1 + c2 * w * w))  # stable for any argument size


def spike_slab_grad(w: torch.Tensor, lam: float, v0: float, v1: float, n: int) -> torch.Tensor:
    """Gradient of ``-(1/n) log pi(w)``: ``(w / n) (q / v0 + (1 - q) / v1)``."""
    c1, c2 = _constants(lam, v0, v1)
    q = torch.sigmoid(-(c1 + c2 * w * w))
    # q / v0 + (1 - q) / v1 = 1 / v1 + q (1 / v0 - 1 / v1) = 1 / v1 + 2 c2 q  (fewer passes over the weights)
    return (w / float(n)) * (1.0 / v1 + (2.0 * c2) * q)


def log_prior(w: torch.Tensor, lam: float, v0: float, v1: float) -> torch.Tensor:
    """``log(lam N(w; 0, v1) + (1 - lam) N(w; 0, v0))``, computed with logaddexp."""
    _constants(lam, v0, v1)
    slab = math.log(lam) - 0.5 * math.log(2 * math.pi * v1) - w * w / (2 * v1)
    spike = math.log(1.0 - lam) - 0.5 * math.log(2 * math.pi * v0) - w * w / (2 * v0)
    return torch.logaddexp(slab, spike)


def crossing_point(lam: float, v0: float, v1: float) -> float:
    """``|w*| = sqrt(log(((1-lam)/lam) sqrt(v1/v0)) / c2)``: equally likely under spike and slab
    (0 when the slab dominates everywhere)."""
    c1, c2 = _constants(lam, v0, v1)
    return math.sqrt(max(0.0, -c1) / c2)


def lambda_at(step: int, lam: float, t0: int, t1: int, end: float = ALPHA_END) -> float:
    """``lam * alpha_t``: alpha is 1 up to ``t0``, falls linearly to ``end`` at ``t1``, stays there."""
    if step <= t0:
        return float(lam)
    if step >= t1 or t1 <= t0:
        return float(lam) * end
    frac = (step - t0) / (t1 - t0)
    return float(lam) * (1.0 + (end - 1.0) * frac)


def cubic_sparsity(step: int, s_i: float, s_f: float, t0: int, t1: int) -> float:
    """``s_f + (s_i - s_f) (1 - (t - t0)/(t1 - t0))^3`` for ``t0 <= t <= t1``; 0 before ``t0``, ``s_f`` after ``t1``."""
    if step < t0:
        return 0.0
    if step >= t1 or t1 <= t0:
        return float(s_f)
    return float(s_f) + (float(s_i) - float(s_f)) * (1.0 - (step - t0) / (t1 - t0)) ** 3


def pruning_steps(t0: int, t1: int, interval: int) -> list[int]:
    """Steps at which the weights are pruned: ``t0``, every ``interval`` after it, and ``t1``."""
    steps = list(range(t0, t1, max(1, interval)))
    return steps + [t1] if not steps or steps[-1] != t1 else steps


def schedule_of(params: dict, sparsity: float, granularity: str) -> dict:
    """The pruning schedule a run with these (resolved) parameters follows:
    ``{"t0", "t1", "interval", "s_i", "s_f", "steps"}`` (``s_f`` is N/M for N:M patterns)."""
    p = params
    if not 0 <= p["t0"] <= p["t1"] <= p["steps"]:
        raise PruneScopeError(
            f"the schedule needs 0 <= t0 <= t1 <= steps (got t0={p['t0']}, t1={p['t1']}, steps={p['steps']})"
        )
    g = parse_granularity(granularity)
    s_f = g.fixed_sparsity if g.is_nm else float(sparsity)
    return {"t0": p["t0"], "t1": p["t1"], "interval": p["interval"], "s_i": min(p["s_i"], s_f), "s_f": s_f, "steps": p["steps"]}


def schedule_curve(schedule: dict, lam: float | None = None) -> list[dict]:
    """Every step's cubic target ``s_t``, the sparsity in force (set only at the pruning
    steps, then held) and, for MGPP, ``lam_t / lam``: rows ``{step, series, value}``."""
    t0, t1, steps = schedule["t0"], schedule["t1"], schedule["steps"]
    prune_at = set(pruning_steps(t0, t1, schedule["interval"]))
    rows, in_force = [], 0.0
    for step in range(steps + 1):
        cubic = cubic_sparsity(step, schedule["s_i"], schedule["s_f"], t0, t1)
        if step in prune_at:
            in_force = cubic
        rows.append({"step": step, "series": "cubic target s_t", "value": cubic})
        rows.append({"step": step, "series": "sparsity in force (pruned at t0, every interval, t1)", "value": in_force})
        if lam is not None:
            rows.append({"step": step, "series": "prior slab weight lam_t / lam", "value": lambda_at(step, lam, t0, t1) / lam})
    return rows


# ---------------------------------------------------------------- the shared loop


def _history_steps(p: dict) -> set[int]:
    points = max(2, int(p["history_points"]))
    marks = {0, p["t0"], p["t1"], p["steps"]}
    marks |= {round(p["steps"] * i / (points - 1)) for i in range(points)}
    return marks


def gradual_prune(ctx: PruneContext, prior: bool):
    """Fine-tune a copy with the cubic magnitude-pruning schedule, with (MGPP) or without (GMP) the prior."""
    p = ctx.params
    schedule = schedule_of(p, ctx.sparsity, ctx.granularity)
    started = time.perf_counter()
    g = parse_granularity(ctx.granularity)
    s_i, s_f = schedule["s_i"], schedule["s_f"]
    during = "row" if g.is_nm else str(g)  # N:M only at t1; intermediate steps prune each row
    task = T.task_data(ctx.loaded, ctx.data, holdout=p["holdout"], batch_size=p["batch_size"], seed=ctx.seed)
    n = int(p.get("n", 0)) or task.n_train
    lam, v0, v1 = p.get("lam", 0.1), p.get("v0", 1e-9), p.get("v1", 0.1)
    if prior:
        _constants(lam, v0, v1)
    torch.manual_seed(ctx.seed)  # dropout
    model = T.trainable_copy(ctx.loaded)
    targets = T.targeted_parameters(model, ctx.layers)
    tuner = T.FineTuner(model, task, p["lr"], betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    prune_at = set(pruning_steps(p["t0"], p["t1"], p["interval"]))
    record_at = _history_steps(p)
    sampler = T.WeightSampler({n_: tuple(w.shape) for n_, w in T.layer_weights(model, ctx.layers).items()}, 3000, ctx.seed)
    limit = None
    history, losses, frozen, masks = [], [], None, None
    name = "mgpp" if prior else "gmp"

    def record(step: int, target: float):
        nonlocal limit
        sample = sampler.take(T.layer_weights(model, ctx.layers))
        if limit is None:
            limit = max(1e-8, max((abs(x) for x in sample), default=1.0))
        lam_t = lambda_at(step, lam, p["t0"], p["t1"])
        ev = T.held_out_metric(model, task)
        history.append(
            {
                "step": step,
                "target_sparsity": target,
                "sparsity": T.exact_zero_fraction(model, ctx.layers),
                "lambda": lam_t if prior else None,
                "crossing_point": crossing_point(lam_t, v0, v1) if prior else None,
                "loss": sum(losses) / len(losses) if losses else None,
                "metric": ev["metric"],
                "value": ev["value"],
                "held_out_loss": ev["loss"],
                "sample": sample,
                "histogram": T.histogram(sample, 60, limit),
            }
        )
        ctx.emit("history", history[-1])
        losses.clear()

    def add_prior(step: int):
        lam_t = lambda_at(step, lam, p["t0"], p["t1"])

        def hook():
            with torch.no_grad():
                for _, param in targets:
                    if param.grad is not None:
                        param.grad.add_(spike_slab_grad(param.detach(), lam_t, v0, v1, n))

        return hook

    record(0, 0.0)
    target = 0.0
    for step in range(1, p["steps"] + 1):
        losses.append(tuner.step(add_prior(step) if prior else None))
        if frozen is not None:
            frozen.apply_()
        elif step in prune_at:
            target = cubic_sparsity(step, s_i, s_f, p["t0"], p["t1"])
            weights = T.layer_weights(model, ctx.layers)
            scores = {k: w.abs() for k, w in weights.items()}
            final = step >= p["t1"]
            masks = compute_masks(scores, target, str(g) if final else during, weights)
            bound = T.ModuleMasks(model, masks)
            bound.apply_()  # zeroed; they may regrow until t1
            if final:
                frozen = bound
        if step in record_at:
            record(step, target)
        ctx.report(step, p["steps"], f"{name}: step {step}/{p['steps']}, sparsity {target:.1%}")
    if frozen is None:  # t1 == steps == 0 edge: prune once at the end
        weights = T.layer_weights(model, ctx.layers)
        masks = compute_masks({k: w.abs() for k, w in weights.items()}, s_f, str(g), weights)
    info = {
        "history": history,
        "schedule": schedule,
        "prior": {"lam": lam, "v0": v0, "v1": v1, "n": n, "crossing_point_start": crossing_point(lam, v0, v1),
                  "crossing_point_end": crossing_point(lam * ALPHA_END, v0, v1)} if prior else None,
        "held_out": {"source": task.source, "examples": task.n_holdout, "split": "train (held-out slice)"},
        "held_out_metric": {k: history[-1][k] for k in ("metric", "value", "held_out_loss")},
        "train_examples": task.n_train,
        "budget": {"steps": p["steps"], "batch_size": p["batch_size"], "lr": p["lr"]},
        "elapsed_s": time.perf_counter() - started,
    }
    return T.trained_result(name, ctx.loaded, model, masks, ctx.sparsity, str(ctx.granularity), info)


def _params(prior: bool) -> dict:
    common = {
        "steps": Param(200, "fine-tuning steps in all (6 epochs of SST-2 at batch 32 in the paper)", minimum=1),
        "t0": Param(30, "step of the first pruning (1000 in the paper)", minimum=0),
        "t1": Param(140, "step of the last pruning; the mask is frozen after it", minimum=0),
        "interval": Param(10, "steps between prunings from t0 to t1", minimum=1),
        "s_i": Param(0.3, "sparsity of the first pruning (cubic schedule from s_i to the target)", minimum=0.0, maximum=0.99),
        "lr": Param(5e-5, "AdamW learning rate (betas 0.9/0.98, eps 1e-6, no weight decay)", minimum=0.0),
        "batch_size": Param(16, "training batch size (32 in the paper)", minimum=1),
        "history_points": Param(8, "how many snapshots of the weights and metric to record", minimum=2, maximum=100),
        "holdout": Param(256, "held-out examples of the TRAINING data used to monitor the metric", minimum=8),
    }
    if prior:
        common.update(
            {
                "lam": Param(0.1, "slab weight lam of the prior (annealed to 0.001 lam at t1)", minimum=1e-6, maximum=0.999),
                "v0": Param(1e-9, "spike variance v0", minimum=1e-14),
                "v1": Param(0.1, "slab variance v1", minimum=1e-8),
                "n": Param(0, "n in the prior gradient (0: the training-set size)", minimum=0),
            }
        )
    return common


GRANULARITIES = ("global", "layer", "row", "2:4", "4:8")

register(
    Method(
        name="mgpp",
        label="MGPP (mixture Gaussian prior)",
        summary="Fine-tune with a spike-and-slab prior that pulls unimportant weights toward zero, while "
        "gradual magnitude pruning (cubic schedule) removes them. Trains a copy of the model.",
        run=lambda ctx: gradual_prune(ctx, prior=True),
        needs_training_data=True,
        updates_weights=True,
        family="seed",
        granularities=GRANULARITIES,
        granularity="global",
        steps_view="schedule",
        params=_params(True),
        reference="Zhang, Sun, Liang: Mixture Gaussian prior pruning (MGPP) of large pretrained transformers",
    )
)
register(
    Method(
        name="gmp",
        label="GMP (gradual magnitude pruning)",
        summary="MGPP's baseline: the same fine-tuning, cubic schedule and budget, without the prior.",
        run=lambda ctx: gradual_prune(ctx, prior=False),
        needs_training_data=True,
        updates_weights=True,
        family="seed",
        granularities=GRANULARITIES,
        granularity="global",
        steps_view="schedule",
        params=_params(False),
        reference="Zhu & Gupta 2017, To prune, or not to prune (the schedule MGPP uses)",
    )
)
