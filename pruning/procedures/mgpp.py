"""MGPP: mixture Gaussian prior pruning (Zhang, Sun, Liang), and its baseline GMP.

During fine-tuning a spike-and-slab prior ``pi(w) = lam N(0, v1) + (1 - lam) N(0, v0)``
(``v0 << v1``) pulls weights that sit in the spike toward zero and leaves the slab
alone; gradual magnitude pruning on a cubic schedule then removes what collapsed.

The arithmetic is in pure functions (:func:`spike_posterior`, :func:`spike_slab_grad`,
:func:`log_prior`, :func:`prior_threshold`, :func:`lambda_at`, :func:`cubic_sparsity`);
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
``prior_threshold`` (MGPP), ``loss`` (mean training loss since the previous snapshot),
``metric``/``value``/``ci_low``/``ci_high``/``n``/``held_out_loss`` (held-out slice of the TRAINING data), ``sample``
(the same 3,000 targeted weights every time) and ``histogram`` (fixed symmetric bins).
``info["prior"]`` has the prior threshold w* at the start and the end of the annealing.
The result is a :class:`training.TrainedPruneResult` (overrides carry every fine-tuned parameter).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..analysis.distribution import mixture_crossing
from ..core import PruneContext
from ..errors import PruneScopeError
from ..masks import compute_masks, parse_granularity
from ..registry import Method, Param, register
from ..store.resume import checkpoint_step, resume_state
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


def prior_threshold(lam: float, v0: float, v1: float) -> float:
    """The prior threshold ``w* = sqrt(log(((1-lam)/lam) sqrt(v1/v0)) / c2)``: where a weight is equally
    likely under the PRIOR's spike and slab (0 when the slab dominates everywhere). The same formula as
    the mixture crossing ``w_gmm`` of :mod:`pruning.analysis.distribution`, which is applied to a fit of the weights."""
    _constants(lam, v0, v1)
    return mixture_crossing(lam, v0, v1) or 0.0


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


def schedule_step(value: float, steps: int) -> int:
    """A schedule point as a step: a value below 1 is a fraction of the budget (``0.15`` of 200 steps
    is step 30), a value of 1 or more an absolute step (``30`` is step 30)."""
    value = float(value)
    if value < 0:
        raise PruneScopeError(f"a schedule point cannot be negative (got {value})")
    return int(round(value * steps)) if value < 1 else int(round(value))


def schedule_of(params: dict, sparsity: float, granularity: str) -> dict:
    """The pruning schedule a run with these (resolved) parameters follows:
    ``{"t0", "t1", "interval", "s_i", "s_f", "steps"}`` in steps (``s_f`` is N/M for N:M patterns).

    ``t0``, ``t1`` and ``interval`` below 1 are fractions of ``steps`` (the defaults), so the
    schedule scales with any budget; absolute steps must fit the budget."""
    p, steps = params, int(params["steps"])
    t0, t1 = schedule_step(p["t0"], steps), schedule_step(p["t1"], steps)
    interval = max(1, schedule_step(p["interval"], steps))
    if not 0 <= t0 <= t1 <= steps:
        raise PruneScopeError(
            f"the schedule needs 0 <= t0 <= t1 <= steps (got t0={t0}, t1={t1}, steps={steps}); "
            "give t0 and t1 as fractions of the steps (below 1) to scale them with any budget"
        )
    g = parse_granularity(granularity)
    s_f = g.fixed_sparsity if g.is_nm else float(sparsity)
    return {"t0": t0, "t1": t1, "interval": interval, "s_i": min(p["s_i"], s_f), "s_f": s_f, "steps": steps}


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


@dataclass
class _Run:
    """The state of one MGPP/GMP run: the model being tuned, its optimizer, and what was recorded."""

    ctx: PruneContext
    prior: dict | None  # {"lam", "v0", "v1", "n"} for MGPP, None for GMP
    schedule: dict
    task: object
    model: torch.nn.Module
    tuner: object
    sampler: object
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    limit: float | None = None
    frozen: object = None
    masks: dict | None = None

    @property
    def name(self) -> str:
        return "mgpp" if self.prior is not None else "gmp"

    @property
    def p(self) -> dict:
        """The run's parameters with ``t0``, ``t1``, ``interval`` and ``steps`` in steps (fractions resolved)."""
        return {**self.ctx.params, **{k: self.schedule[k] for k in ("t0", "t1", "interval", "steps")}}


def _start(ctx: PruneContext, prior: bool) -> _Run:
    """A trainable copy, its data, optimizer and weight sampler; the prior's constants checked."""
    p = ctx.params
    schedule = schedule_of(p, ctx.sparsity, ctx.granularity)
    task = T.task_data(ctx.loaded, ctx.data, holdout=p["holdout"], batch_size=p["batch_size"], seed=ctx.seed)
    constants = None
    if prior:
        constants = {"lam": p["lam"], "v0": p["v0"], "v1": p["v1"], "n": int(p["n"]) or task.n_train}
        _constants(constants["lam"], constants["v0"], constants["v1"])
    model = T.trainable_copy(ctx.loaded, seed=ctx.seed)
    tuner = T.FineTuner(model, task, p["lr"], betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    shapes = {n: tuple(w.shape) for n, w in T.layer_weights(model, ctx.layers).items()}
    return _Run(ctx, constants, schedule, task, model, tuner, T.WeightSampler(shapes, 3000, ctx.seed))


def _record(run: _Run, step: int, target: float) -> None:
    """One snapshot: sparsity reached, prior at this step, losses, held-out metric, weight sample."""
    layers, p = run.ctx.layers, run.p
    sample = run.sampler.take(T.layer_weights(run.model, layers))
    if run.limit is None:
        run.limit = max(1e-8, max((abs(x) for x in sample), default=1.0))
    lam_t = None if run.prior is None else lambda_at(step, run.prior["lam"], p["t0"], p["t1"])
    ev = T.held_out_metric(run.model, run.task)
    run.history.append(
        {
            "step": step,
            "target_sparsity": target,
            "sparsity": T.exact_zero_fraction(run.model, layers),
            "lambda": lam_t,
            "prior_threshold": None if lam_t is None else prior_threshold(lam_t, run.prior["v0"], run.prior["v1"]),
            "loss": sum(run.losses) / len(run.losses) if run.losses else None,
            **{k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")},
            "held_out_loss": ev["loss"],
            "sample": sample,
            "histogram": T.histogram(sample, 60, run.limit),
        }
    )
    run.ctx.emit("history", run.history[-1])
    run.losses.clear()


def _prior_hook(run: _Run, step: int):
    """The gradient of the prior at this step's ``lam_t``, added to every targeted weight's gradient."""
    p, c = run.p, run.prior
    lam_t = lambda_at(step, c["lam"], p["t0"], p["t1"])
    targets = T.targeted_parameters(run.model, run.ctx.layers)

    def hook():
        with torch.no_grad():
            for _, param in targets:
                if param.grad is not None:
                    param.grad.add_(spike_slab_grad(param.detach(), lam_t, c["v0"], c["v1"], c["n"]))

    return hook


def _magnitude_prune(run: _Run, sparsity: float, granularity) -> dict:
    weights = T.layer_weights(run.model, run.ctx.layers)
    return compute_masks({k: w.abs() for k, w in weights.items()}, sparsity, granularity, weights)


def _prune_step(run: _Run, step: int) -> float:
    """Magnitude pruning to the cubic target; zeroed weights may regrow until ``t1``, then the mask is frozen."""
    p, g, s = run.p, run.ctx.granularity, run.schedule
    target = cubic_sparsity(step, s["s_i"], s["s_f"], p["t0"], p["t1"])
    final = step >= p["t1"]
    run.masks = _magnitude_prune(run, target, g if final else ("row" if g.is_nm else g))  # N:M only at t1
    bound = T.ModuleMasks(run.model, run.masks)
    bound.apply_()
    if final:
        run.frozen = bound
    return target


def _info(run: _Run, started: float) -> dict:
    p, c, task = run.p, run.prior, run.task
    prior = None
    if c is not None:
        prior = {**c, "prior_threshold_start": prior_threshold(c["lam"], c["v0"], c["v1"]),
                 "prior_threshold_end": prior_threshold(c["lam"] * ALPHA_END, c["v0"], c["v1"])}
    return {
        "history": run.history,
        "schedule": run.schedule,
        "prior": prior,
        "held_out": {"source": task.source, "examples": task.n_holdout, "split": "train (held-out slice)"},
        "held_out_metric": {k: run.history[-1][k] for k in ("metric", "value", "ci_low", "ci_high", "n", "held_out_loss")},
        "train_examples": task.n_train,
        "budget": {"steps": p["steps"], "batch_size": p["batch_size"], "lr": p["lr"]},
        "elapsed_s": time.perf_counter() - started,
    }


def _state(run: _Run, target: float) -> dict:
    """What the rest of the run depends on, as plain data (see :mod:`pruning.store.resume`)."""
    return {
        "tuner": run.tuner.state_dict(),
        "history": run.history,
        "losses": list(run.losses),
        "limit": run.limit,
        "masks": run.masks,
        "frozen": run.frozen is not None,
        "target": target,
    }


def _restore(run: _Run, state: dict) -> float:
    """Put a saved state back into a fresh run; returns the sparsity target in force."""
    run.tuner.load_state_dict(state["tuner"])
    run.history[:] = state["history"]
    run.losses[:] = state["losses"]
    run.limit, run.masks = state["limit"], state["masks"]
    if state["frozen"]:
        run.frozen = T.ModuleMasks(run.model, run.masks)
    for entry in run.history:  # an observer drawing the run live sees it from the start
        run.ctx.emit("history", entry)
    return float(state["target"])


def gradual_prune(ctx: PruneContext, prior: bool):
    """Fine-tune a copy with the cubic magnitude-pruning schedule, with (MGPP) or without (GMP) the prior.

    With ``ctx.checkpoint`` the run saves its state as it goes and resumes from a saved one."""
    started = time.perf_counter()
    run = _start(ctx, prior)
    p = run.p  # t0, t1, interval and steps in steps from here on
    prune_at, record_at = set(pruning_steps(p["t0"], p["t1"], p["interval"])), _history_steps(p)
    state = resume_state(ctx.checkpoint)
    if state is None:
        first, target = 1, 0.0
        _record(run, 0, 0.0)
    else:
        target = _restore(run, state)
        first = run.tuner.steps + 1
    for step in range(first, p["steps"] + 1):
        run.losses.append(run.tuner.step(_prior_hook(run, step) if prior else None))
        if run.frozen is not None:
            run.frozen.apply_()
        elif step in prune_at:
            target = _prune_step(run, step)
        if step in record_at:
            _record(run, step, target)
        ctx.report(step, p["steps"], f"{run.name}: step {step}/{p['steps']}, sparsity {target:.1%}")
        checkpoint_step(ctx.checkpoint, step, p["steps"], lambda: _state(run, target))
    if run.frozen is None:  # t1 == steps == 0 edge: prune once at the end
        run.masks = _magnitude_prune(run, run.schedule["s_f"], ctx.granularity)
    info = _info(run, started)
    if ctx.checkpoint is not None:
        info["elapsed_s"] = ctx.checkpoint.elapsed()
        info["resumed_at_step"] = ctx.checkpoint.resumed_at
    return T.trained_result(run.name, ctx.loaded, run.model, run.masks, ctx.sparsity, str(ctx.granularity), info)


def _params(prior: bool) -> dict:
    common = {
        "steps": Param(200, "fine-tuning steps in all (6 epochs of SST-2 at batch 32 in the paper)", minimum=1, maximum=1_000_000, group="budget"),
        "batch_size": Param(16, "training batch size (32 in the paper)", minimum=1, maximum=1024, group="budget"),
        "t0": Param(0.15, "first pruning: a fraction of the steps (below 1) or a step number (1 and above); 1000 steps in the paper", minimum=0.0),
        "t1": Param(0.7, "last pruning, after which the mask is frozen: a fraction of the steps (below 1) or a step number", minimum=0.0),
        "interval": Param(0.05, "between prunings from t0 to t1: a fraction of the steps (below 1) or a number of steps", minimum=0.0),
        "s_i": Param(0.3, "sparsity of the first pruning (cubic schedule from s_i to the target)", minimum=0.0, maximum=0.99),
        "lr": Param(5e-5, "AdamW learning rate (betas 0.9/0.98, eps 1e-6, no weight decay)", minimum=0.0),
        "history_points": Param(8, "how many snapshots of the weights and metric to record", minimum=2, maximum=100),
        "holdout": Param(256, "held-out examples of the TRAINING data used to monitor the metric", minimum=8, maximum=100_000),
    }
    if prior:
        common.update(
            {
                "lam": Param(0.1, "slab weight lam of the prior (annealed to 0.001 lam at t1)", minimum=1e-6, maximum=0.999),
                "v0": Param(1e-9, "spike variance v0", minimum=1e-14),
                "v1": Param(0.1, "slab variance v1", minimum=1e-8),
                "n": Param(0, "n in the prior gradient (0: the training-set size)", minimum=0, maximum=10**12),
            }
        )
    return common


GRANULARITIES = ("global", "layer", "row", "2:4", "4:8")

def _register_gradual(name: str, label: str, summary: str, prior: bool, reference: str, colour: str) -> None:
    """MGPP and its baseline GMP: the same training loop, schedule and steps view, with or without the prior."""
    register(
        Method(
            name=name,
            label=label,
            summary=summary,
            run=lambda ctx: gradual_prune(ctx, prior=prior),
            needs_training_data=True,
            updates_weights=True,
            family="seed",
            granularities=GRANULARITIES,
            granularity="global",
            steps_view="schedule",
            claim="claim-mgpp",
            resumable=True,
            params=_params(prior),
            reference=reference,
            colour=colour,
        )
    )


_register_gradual(
    "mgpp",
    "MGPP (mixture Gaussian prior)",
    "Fine-tune with a spike-and-slab prior that pulls unimportant weights toward zero, while "
    "gradual magnitude pruning (cubic schedule) removes them. Trains a copy of the model.",
    True,
    "Zhang, Sun, Liang: Mixture Gaussian prior pruning (MGPP) of large pretrained transformers",
    "#17becf",  # cyan
)
_register_gradual(
    "gmp",
    "GMP (gradual magnitude pruning)",
    "MGPP's baseline: the same fine-tuning, cubic schedule and budget, without the prior.",
    False,
    "Zhu & Gupta 2017, To prune, or not to prune (the schedule MGPP uses)",
    "#bcbd22",  # olive
)
