"""SDS: sparse-dense-sparse (Li et al. 2024).

1. **Sparse** - one-shot prune with the base criterion (``base``: SparseGPT by default, Wanda, RIA or any
   block-walking criterion) and the request's update (default: the base's own, so SparseGPT with its OBS
   reconstruction and Wanda with none, as in the paper; ``obs``, ``dsnot`` or ``none`` on any base)
   (:func:`pruning.prune.prune`).
2. **Dense** - per layer, from the sparse weights with every entry trainable, minimize
   ``f(W) = ||W_dense X - W X||^2 / n + l1 ||W||_1 + l2 ||W||_2^2`` where ``X`` (``d_in x n``)
   are the layer's inputs in the *sparse* model. With ``G = X X^T / n`` the smooth part's
   gradient is ``2 (W - W_dense) G + 2 l2 W``; the L1 term is handled by a proximal
   soft-threshold. No pass over the tokens per iteration (:func:`sds_dense_step`).
3. **Sparse again** - the same one-shot method and update on the densified model, then the soft-mask
   adjustment (:func:`sds_adjust`): minimize ``||W_dense X - (M * W) X||^2`` with the
   gradient passed straight through to every entry of ``W`` and ``M`` re-chosen by
   magnitude after each iteration (exact sparsity, same granularity). ``X`` here are the
   inputs in the re-pruned model. By default (the paper's rule) the adjustment is skipped
   in layers where the second pruning already beats the first; ``adjust_rule="best"``
   instead adjusts every layer and keeps the best iterate (:func:`sds_third_step`).

``PruneResult.info`` (for the app): ``steps`` - four snapshots ``dense``, ``sparse``,
``dense step``, ``sparse again``, each with ``sample`` (the same 3,000 weights),
``zero_fraction`` and, with ``track_metric``, ``metric``/``value`` on held-out training
data; ``layers`` - per layer the dense step's objective before/after and the relative
reconstruction errors (``||W_d X - W X||^2 / ||W_d X||^2`` on the re-pruned model's inputs)
of the first sparse, the re-pruned and the final weights, and whether the adjustment was kept.

Deviations from the paper, all to make one fixed setting work on every layer:

* ``G`` is divided by the token count, so step sizes and penalties do not depend on how
  much calibration data there is.
* The step size is ``1 / L`` with ``L = 2 (lambda_max(G) + l2)`` (the Lipschitz constant of
  the smooth part), so the iteration provably converges; the paper used lr 0.1 for 200
  epochs of a token-level optimizer, which has no scale-free meaning. The dense step uses
  FISTA (Nesterov momentum) with adaptive restart, which needs far fewer iterations than
  plain proximal gradient on the ill-conditioned Gram matrices of transformer layers.
* ``l1`` and ``l2`` are *relative*: the driver multiplies ``l2`` by ``mean(diag G)`` and
  ``l1`` by ``mean(diag G) * mean|W_dense|`` so that one setting means the same on every
  layer (the paper's "0.1" is ambiguous about scale). The pure functions take absolute values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..calibration import collect_input_stats
from ..core import PruneContext
from ..loading.functional import with_overrides
from ..masks import compute_masks, parse_granularity
from ..prune import prune
from ..registry import Method, Param, method_name, register, registered_method, walking_criteria
from ..result import PruneResult, weight_overrides
from ..store.resume import checkpoint_step, resume_state
from . import training as T


# ---------------------------------------------------------------- pure per-layer math
def largest_eigenvalue(G: torch.Tensor) -> float:
    """``lambda_max`` of a symmetric positive semi-definite matrix."""
    return float(torch.linalg.eigvalsh(G.double()).max().clamp_min(0.0))


def reconstruction_error(W: torch.Tensor, W_dense: torch.Tensor, G: torch.Tensor) -> float:
    """``tr((W - W_dense) G (W - W_dense)^T)`` = ``||W_dense X - W X||^2 / n`` when ``G = X X^T / n``."""
    D = (W - W_dense).double()
    return float(((D @ G.double()) * D).sum())


def sds_objective(W, W_dense, G, l1: float, l2: float) -> float:
    """The dense step's objective ``tr(D G D^T) + l1 ||W||_1 + l2 ||W||_2^2`` with ``D = W - W_dense``."""
    return reconstruction_error(W, W_dense, G) + l1 * float(W.abs().sum()) + l2 * float((W.double() ** 2).sum())


def soft_threshold(x: torch.Tensor, t: float) -> torch.Tensor:
    """Proximal operator of ``t ||.||_1``."""
    return torch.sign(x) * (x.abs() - t).clamp_min(0.0)


def sds_dense_step(
    W_sparse: torch.Tensor,
    W_dense: torch.Tensor,
    G: torch.Tensor,
    l1: float = 0.0,
    l2: float = 0.0,
    lr: float | None = None,
    iters: int = 100,
    accelerate: bool = True,
) -> torch.Tensor:
    """The dense step: from ``W_sparse`` minimize ``tr((W-W_d) G (W-W_d)^T) + l1|W|_1 + l2|W|^2``.

    Proximal gradient with step ``lr`` (default ``1/L``, ``L = 2 (lambda_max(G) + l2)``);
    ``accelerate`` adds FISTA momentum with adaptive restart. Every entry is trainable.
    """
    W_sparse, W_dense, G = W_sparse.float(), W_dense.float(), G.float()
    if lr is None:
        lr = 1.0 / max(2.0 * (largest_eigenvalue(G) + l2), 1e-12)
    target = W_dense @ G  # gradient = 2 (W G - W_d G) + 2 l2 W
    W = W_sparse.clone()
    Y, t = W.clone(), 1.0
    for _ in range(int(iters)):
        grad = 2.0 * (Y @ G - target) + 2.0 * l2 * Y
        W_next = soft_threshold(Y - lr * grad, lr * l1) if l1 > 0 else Y - lr * grad
        if accelerate:
            if float(((Y - W_next) * (W_next - W)).sum()) > 0:  # restart when momentum points uphill
                t = 1.0
                Y = W_next.clone()
            else:
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
                Y = W_next + ((t - 1.0) / t_next) * (W_next - W)
                t = t_next
        else:
            Y = W_next
        W = W_next
    return W


def magnitude_mask(W: torch.Tensor, sparsity: float, granularity: str) -> torch.Tensor:
    """Exact-count magnitude mask of one matrix at ``granularity`` (layer, row or N:M)."""
    return compute_masks({"w": W.abs()}, sparsity, granularity)["w"]


def sds_adjust(
    W: torch.Tensor,
    W_dense: torch.Tensor,
    G: torch.Tensor,
    sparsity: float,
    granularity: str = "layer",
    mask: torch.Tensor | None = None,
    lr: float | None = None,
    iters: int = 50,
    keep: str = "best",
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Soft-mask weight adjustment: minimize ``tr((M*W - W_d) G (M*W - W_d)^T)``.

    ``W`` holds the re-pruned weights, ``mask`` their mask (default: magnitude). Each
    iteration takes a gradient step on every entry of ``W`` (straight-through) and
    re-chooses ``M`` by magnitude at ``sparsity``/``granularity`` (exact count).
    ``keep="best"`` returns the best iterate, the start included, so the error never
    rises; ``keep="last"`` the last iterate, as a plain optimisation ends:
    ``(M * W, M, {"error_before", "error_after", "improved", "best_iter"})``.
    """
    W, W_dense, G = W.float().clone(), W_dense.float(), G.float()
    M = magnitude_mask(W, sparsity, granularity) if mask is None else mask.clone()
    if lr is None:
        lr = 1.0 / max(2.0 * largest_eigenvalue(G), 1e-12)
    target = W_dense @ G
    best_W, best_M, best_err, best_iter, start_err = W * M, M, None, 0, None
    for it in range(int(iters) + 1):
        V = W * M
        half_grad = V @ G - target  # (V - W_d) G
        err = float(((half_grad.double()) * (V - W_dense).double()).sum())  # tr(D G D^T), free from the gradient
        if start_err is None:
            start_err = best_err = err
        elif err < best_err or (keep == "last" and it == int(iters)):
            best_W, best_M, best_err, best_iter = V, M, err, it
        if it == int(iters):
            break
        W = W - lr * 2.0 * half_grad
        M = magnitude_mask(W, sparsity, granularity)
    return best_W.clone(), best_M.clone(), {
        "error_before": start_err,
        "error_after": best_err,
        "improved": best_err < start_err,
        "best_iter": best_iter,
    }


ADJUST_RULES = ("paper", "best")


def sds_third_step(W1, W2, mask2, W_dense, G, sparsity: float, granularity: str, rule: str = "paper", iters: int = 30):
    """Step 3's weight adjustment of one layer, after the second one-shot pruning gave ``W2`` (mask ``mask2``).

    ``rule="paper"``: skip the adjustment where the second pruning already beats the
    first (reconstruction error of ``W2`` below that of ``W1``, both on the inputs in
    ``G``); elsewhere run it and keep where it ends. ``rule="best"``: run it in every
    layer and keep its best iterate (the re-pruned weights when nothing beats them).
    Returns ``(W3, M3, {"error_first", "error_before", "error_after", "adjusted", "skipped"})``.
    """
    if rule not in ADJUST_RULES:
        raise ValueError(f"unknown adjustment rule {rule!r}")
    err1, err2 = reconstruction_error(W1, W_dense, G), reconstruction_error(W2, W_dense, G)
    skipped = int(iters) == 0 or (rule == "paper" and err2 < err1)
    if skipped:
        W3, M3, after = W2, mask2, err2
    else:
        W3, M3, adj = sds_adjust(W2, W_dense, G, sparsity, granularity, mask=mask2, iters=iters, keep="last" if rule == "paper" else "best")
        after = adj["error_after"]
    adjusted = not skipped and not torch.equal(W3, W2 * mask2)
    return W3, M3, {"error_first": err1, "error_before": err2, "error_after": after, "adjusted": adjusted, "skipped": skipped}


# ---------------------------------------------------------------- model-level driver
def _grams(loaded, layers, calibration) -> dict[str, torch.Tensor]:
    """``X X^T / n`` of every layer's inputs in ``loaded.model`` (layers sharing an input share one)."""
    stats = collect_input_stats(loaded, layers, calibration, want_gram=True)
    out, seen = {}, {}
    for name in layers:
        s = stats[name]
        if id(s) not in seen:
            seen[id(s)] = s.gram / max(1, s.n_tokens)
        out[name] = seen[id(s)]
    return out


def _layer_granularity(granularity: str, mask: torch.Tensor) -> tuple[float, str]:
    """The per-matrix sparsity and granularity that reproduce ``mask``'s budget inside one layer."""
    g = parse_granularity(granularity)
    if g.is_nm:
        return g.fixed_sparsity, str(g)
    if g.kind == "row":
        return 1.0 - int(mask[0].sum()) / mask.shape[1], "row"
    return 1.0 - int(mask.sum()) / mask.numel(), "layer"  # layer, and global's per-layer share


@dataclass
class _SdsRun:
    """What every SDS step shares: the request, the dense weights, the weight sampler, the tracked data."""

    ctx: PruneContext
    dense: dict
    sampler: object
    task: object
    total: int
    done: int = 0
    steps: list = field(default_factory=list)

    def tick(self, message: str) -> None:
        self.done += 1
        self.ctx.report(min(self.done, self.total), self.total, message)

    def snapshot(self, stage: str, weights: Mapping[str, torch.Tensor], model) -> None:
        """Record a stage: a weight sample, the zero fraction and (if tracked) the held-out metric."""
        entry = {"stage": stage, "sample": self.sampler.take(weights)}
        entry["zero_fraction"] = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
        if self.task is not None:
            ev = T.held_out_metric(model, self.task)
            entry.update({**{k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}, "held_out_loss": ev["loss"]})
        self.ctx.emit("step", entry)
        self.steps.append(entry)

    def model_with(self, weights: Mapping[str, torch.Tensor]):
        return with_overrides(self.ctx.loaded.model, weight_overrides(self.ctx.loaded.model, weights))


def _sds_start(ctx: PruneContext) -> _SdsRun:
    p, loaded = ctx.params, ctx.loaded
    dense = T.layer_weights(loaded.model, ctx.layers)
    sampler = T.WeightSampler({n: tuple(w.shape) for n, w in dense.items()}, 3000, ctx.seed)
    task = None
    if p["track_metric"] and loaded.task in (T.CAUSAL, "classification"):  # a bare encoder has no metric to track
        task = T.task_data(loaded, ctx.data, holdout=p["holdout"], seed=ctx.seed + 7, lm_sequences=1, lm_holdout=p["lm_holdout"])
    # one-shot, statistics, a dense step per layer, one-shot, statistics, an adjustment per layer
    return _SdsRun(ctx, dense, sampler, task, 2 * len(ctx.layers) + 4)


def _resumed(run: _SdsRun, saved: dict | None, phase: str) -> dict | None:
    """``saved`` when it was saved in ``phase`` (its progress count put back), else None."""
    if saved is None or saved["phase"] != phase:
        return None
    run.done = int(saved["done"])
    return saved


def _dense_steps(run: _SdsRun, W1: dict, grams: dict, saved: dict | None = None) -> tuple[dict, dict]:
    """Step 2 for every layer, from the first sparse weights toward the dense outputs (a checkpoint after each
    layer; ``saved``: go on after the layers it holds)."""
    p, dense = run.ctx.params, run.dense
    W_mid, info, lam_cache = {}, {}, {}
    if saved is not None:
        W_mid, info = dict(saved["W_mid"]), dict(saved["dense_info"])
    for name in run.ctx.layers:
        if name in W_mid:
            continue
        G = grams[name]
        if id(G) not in lam_cache:
            lam_cache[id(G)] = (largest_eigenvalue(G), float(torch.diagonal(G).mean()))
        lam_max, g_mean = lam_cache[id(G)]
        l2 = p["l2"] * g_mean
        l1 = p["l1"] * g_mean * float(dense[name].abs().mean())
        lr = 1.0 / max(2.0 * (lam_max + l2), 1e-12)
        before = sds_objective(W1[name], dense[name], G, l1, l2)
        W_mid[name] = sds_dense_step(W1[name], dense[name], G, l1, l2, lr=lr, iters=p["iters"])
        after = sds_objective(W_mid[name], dense[name], G, l1, l2)
        info[name] = {"objective_before": before, "objective_after": after, "l1": l1, "l2": l2, "lr": lr}
        run.tick(f"dense step of {name}")
        checkpoint_step(run.ctx.checkpoint, run.done, run.total,
                        lambda: {"phase": "dense", "done": run.done, "W_mid": W_mid, "dense_info": info})
    return W_mid, info


def _adjustments(
    run: _SdsRun, W1: dict, W2: dict, masks2: dict, grams: dict, dense_info: dict, W_mid: dict, saved: dict | None = None
) -> tuple[dict, dict, dict]:
    """Step 3's soft-mask adjustment for every layer, and the per-layer reconstruction errors (a checkpoint
    after each layer, which holds ``W_mid`` too; ``saved``: go on after the layers it holds)."""
    p, dense = run.ctx.params, run.dense
    final_w, final_m, per_layer = {}, {}, {}
    if saved is not None:
        final_w, final_m, per_layer = dict(saved["final_w"]), dict(saved["final_m"]), dict(saved["per_layer"])
    for name in run.ctx.layers:
        if name in final_w:
            continue
        G = grams[name]
        s_l, g_l = _layer_granularity(run.ctx.granularity, masks2[name])
        W3, M3, adj = sds_third_step(W1[name], W2[name], masks2[name], dense[name], G, s_l, g_l, p["adjust_rule"], p["adjust_iters"])
        final_w[name], final_m[name] = W3, M3
        ref = max(reconstruction_error(torch.zeros_like(dense[name]), dense[name], G), 1e-30)
        per_layer[name] = {
            **dense_info[name],
            "relative_error_first_sparse": adj["error_first"] / ref,
            "relative_error_sparse_again": adj["error_before"] / ref,
            "relative_error_final": adj["error_after"] / ref,
            "adjusted": adj["adjusted"],
            "adjustment_skipped": adj["skipped"],
        }
        run.tick(f"soft-mask adjustment of {name}")
        checkpoint_step(run.ctx.checkpoint, run.done, run.total, lambda: {
            "phase": "adjust", "done": run.done, "W_mid": W_mid, "dense_info": dense_info,
            "final_w": final_w, "final_m": final_m, "per_layer": per_layer,
        })
    return final_w, final_m, per_layer


def _sds_info(run: _SdsRun, per_layer: dict, started: float) -> dict:
    task = run.task
    return {
        "steps": run.steps,
        "layers": per_layer,
        "base": run.ctx.params["base"],
        "update": run.ctx.request.update,  # what both one-shot steps did to the weights their masks keep
        "adjust_rule": run.ctx.params["adjust_rule"],
        "layers_adjusted": sum(1 for v in per_layer.values() if v["adjusted"]),
        "layers_adjustment_skipped": sum(1 for v in per_layer.values() if v["adjustment_skipped"]),
        "layers_where_second_pruning_beats_first": sum(
            1 for v in per_layer.values() if v["relative_error_sparse_again"] < v["relative_error_first_sparse"]
        ),
        "held_out": None if task is None else {"source": task.source, "examples": task.n_holdout, "split": "train (held-out slice)"},
        "elapsed_s": time.perf_counter() - started,
    }


def _sds_run(ctx: PruneContext):
    """The three steps. With ``ctx.checkpoint`` the per-layer loops of steps 2 and 3 save their results as
    they go; a resumed run does the one-shot prunings and statistics again (deterministic) and goes on
    after the last saved layer."""
    started = time.perf_counter()
    run = _sds_start(ctx)
    saved = resume_state(ctx.checkpoint)
    loaded, layers, calib = ctx.loaded, ctx.layers, ctx.calibration
    run.snapshot("dense", run.dense, loaded.model)
    # 1. sparse
    base = ctx.request.replace(method=ctx.params["base"], update=ctx.request.update, layers=tuple(layers))  # the base with this run's update
    r1 = prune(loaded, base, calibration=calib)
    W1 = r1.pruned_weights(loaded)
    sparse_model = run.model_with(W1)
    run.snapshot("sparse", W1, sparse_model)
    run.tick("one-shot pruning done")
    # 2. dense, with inputs from the sparse model
    if saved is not None and saved["phase"] == "adjust":  # step 2 was done: its weights are in the checkpoint
        W_mid, dense_info = saved["W_mid"], saved["dense_info"]
    else:
        grams = _grams(T.with_model(loaded, sparse_model), layers, calib)
        run.tick("input statistics of the sparse model collected")
        W_mid, dense_info = _dense_steps(run, W1, grams, _resumed(run, saved, "dense"))
        del grams
    mid_model = run.model_with(W_mid)
    run.snapshot("dense step", W_mid, mid_model)
    # 3. sparse again: the same one-shot method, then the soft-mask adjustment
    mid_loaded = T.with_model(loaded, mid_model)
    r2 = prune(mid_loaded, base, calibration=calib)
    W2 = r2.pruned_weights(mid_loaded)
    run.tick("second one-shot pruning done")
    grams3 = _grams(T.with_model(loaded, run.model_with(W2)), layers, calib)
    run.tick("input statistics of the re-pruned model collected")
    final_w, final_m, per_layer = _adjustments(run, W1, W2, r2.masks, grams3, dense_info, W_mid, _resumed(run, saved, "adjust"))
    run.snapshot("sparse again", final_w, run.model_with(final_w))
    info = _sds_info(run, per_layer, started)
    if ctx.checkpoint is not None:
        info["elapsed_s"], info["resumed_at_step"] = ctx.checkpoint.elapsed(), ctx.checkpoint.resumed_at
    return PruneResult("sds", ctx.sparsity, str(ctx.granularity), final_m, final_w, info=info)


register(
    Method(
        name="sds",
        label="SDS (sparse-dense-sparse)",
        summary="One-shot prune (its base criterion and update: SparseGPT with its own OBS update by default, as in the paper), re-densify every layer toward a pruning-friendly "
        "weight distribution (reconstruction + L1/L2, from the sparse model's inputs), prune again and "
        "adjust the kept weights. Weights change, not only the mask.",
        run=_sds_run,
        needs_calibration=True,
        updates_weights=True,
        family="seed",
        granularities=("layer", "global", "row", "2:4", "4:8"),
        granularity=lambda params: registered_method(params["base"]).default_granularity,
        takes_update=True,  # both one-shot steps run the base with the request's update
        default_update=lambda params: registered_method(params["base"]).own_update,  # the base's own: SparseGPT obs, Wanda none
        steps_view="stages",
        claim="claim-sds",
        resumable=True,
        params={
            "base": Param("sparsegpt", "the one-shot criterion used for both sparse steps (any that walks the blocks)", choices=walking_criteria, normalize=method_name),
            "l1": Param(1e-3, "L1 weight of the dense step, relative (x mean diag(G) x mean|W|)", minimum=0.0),
            "l2": Param(1e-3, "L2 weight of the dense step, relative (x mean diag(G))", minimum=0.0),
            "iters": Param(100, "iterations of the dense step (FISTA, step 1/L)", minimum=0, maximum=100_000, group="budget"),
            "adjust_iters": Param(30, "iterations of the soft-mask adjustment (0 = skip it)", minimum=0, maximum=100_000, group="budget"),
            "adjust_rule": Param(
                "paper",
                "step 3: 'paper' skips the adjustment in layers where the second pruning already beats the first and "
                "keeps where it ends elsewhere; 'best' adjusts every layer and keeps its best iterate",
                choices=ADJUST_RULES,
            ),
            "track_metric": Param(True, "evaluate the model after each step on held-out training data"),
            "holdout": Param(256, "classifier: held-out training examples for the tracked metric", minimum=8, maximum=100_000),
            "lm_holdout": Param(8, "causal LM: held-out windows of training text for the tracked metric", minimum=1, maximum=10_000),
        },
        reference="Li et al. 2024, Enhancing One-shot Pruned Pre-trained Language Models through Sparse-Dense-Sparse Mechanism",
        colour="#e377c2",  # pink
    )
)
