"""The seed methods: randomized masks, MGPP / GMP, SDS.

Pure functions are checked against numbers a reader can verify (autograd, a schedule's
endpoints, a deterministic top-k mask, an objective that must fall); each registered
method then runs end to end, a few steps, on the tiny random models of conftest.py.
"""

import json
import math

import pytest
import torch

from pruning.allocations.nm import nm_mask
from pruning.masks import is_nm_valid, keep_count, layer_mask, overall_sparsity
from pruning.procedures.mgpp import (
    prior_threshold,
    cubic_sparsity,
    lambda_at,
    log_prior,
    pruning_steps,
    spike_posterior,
    spike_slab_grad,
)
from pruning.procedures.randomized import (
    draw_counts,
    jaccard_matrix,
    log_probabilities,
    randomized_candidates,
    randomized_masks,
    sampling_rounds,
    stage_sparsities,
)
from pruning.procedures.sds import magnitude_mask, reconstruction_error, sds_adjust, sds_dense_step, sds_objective, sds_third_step
from pruning.request import PruneRequest

R = PruneRequest.make


# ---------------------------------------------------------------- MGPP arithmetic
@pytest.mark.parametrize("v0", [1e-4, 1e-9])
def test_spike_slab_grad_is_the_autograd_gradient_of_minus_log_prior_over_n(v0):
    lam, v1, n = 0.1, 0.1, 500
    g = torch.Generator().manual_seed(0)
    # weights in the spike (|w| ~ sqrt(v0)), near the crossing point and in the slab
    w = torch.cat([torch.randn(50, generator=g, dtype=torch.float64) * math.sqrt(v0),
                   torch.randn(50, generator=g, dtype=torch.float64) * prior_threshold(lam, v0, v1),
                   torch.randn(50, generator=g, dtype=torch.float64) * 0.1])
    w.requires_grad_(True)
    (-(1.0 / n) * log_prior(w, lam, v0, v1)).sum().backward()
    ours = spike_slab_grad(w.detach(), lam, v0, v1, n)
    assert torch.allclose(ours, w.grad, rtol=1e-6, atol=1e-12)


def test_spike_posterior_is_one_half_at_the_prior_threshold_and_stable():
    lam, v0, v1 = 0.1, 1e-9, 0.1
    c = prior_threshold(lam, v0, v1)
    assert 1e-5 < c < 1e-3  # sqrt(log(9 * 1e4) / (0.5 (1e9 - 10))) = 1.51e-4
    assert c == pytest.approx(math.sqrt(math.log(9 * 1e4) / (0.5 * (1e9 - 10))))
    assert float(spike_posterior(torch.tensor(c, dtype=torch.float64), lam, v0, v1)) == pytest.approx(0.5)
    q = spike_posterior(torch.tensor([0.0, 1.0, 100.0]), lam, v0, v1)
    assert torch.isfinite(q).all() and float(q[0]) > 0.999 and float(q[2]) == 0.0
    assert torch.isfinite(spike_slab_grad(torch.tensor([1e-6, 1.0, 50.0]), lam, v0, v1, 10)).all()


def test_cubic_schedule_endpoints_and_monotone():
    s_i, s_f, t0, t1 = 0.3, 0.9, 100, 400
    assert cubic_sparsity(t0 - 1, s_i, s_f, t0, t1) == 0.0
    assert cubic_sparsity(t0, s_i, s_f, t0, t1) == pytest.approx(s_i)
    assert cubic_sparsity(t1, s_i, s_f, t0, t1) == pytest.approx(s_f)
    assert cubic_sparsity(t1 + 50, s_i, s_f, t0, t1) == pytest.approx(s_f)
    values = [cubic_sparsity(t, s_i, s_f, t0, t1) for t in range(t0, t1 + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    # half way: s_f + (s_i - s_f) / 8
    assert cubic_sparsity(250, s_i, s_f, t0, t1) == pytest.approx(0.9 - 0.6 / 8)
    assert pruning_steps(100, 135, 10) == [100, 110, 120, 130, 135]


def test_lambda_annealing_endpoints():
    assert lambda_at(0, 0.1, 100, 400) == pytest.approx(0.1)
    assert lambda_at(100, 0.1, 100, 400) == pytest.approx(0.1)
    assert lambda_at(400, 0.1, 100, 400) == pytest.approx(1e-4)
    assert lambda_at(900, 0.1, 100, 400) == pytest.approx(1e-4)
    assert lambda_at(250, 0.1, 100, 400) == pytest.approx(0.1 * (1 + 0.001) / 2)


# ---------------------------------------------------------------- randomized masks
def _scores(shape=(8, 16), seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) + 0.01


def test_rounds_formula():
    assert sampling_rounds(1000, 300, 1e-4) == 1  # max(floor(700e-4), 1)
    assert sampling_rounds(590_000, 177_000, 1e-4) == 41
    assert sampling_rounds(16, 8, 50.0) == 400


def test_many_rounds_give_the_deterministic_top_k_mask():
    scores = torch.arange(1, 17, dtype=torch.float32).reshape(4, 4) / 16  # distinct: top 8 are 9/16..16/16
    masks = randomized_masks(scores, 0.5, 3, randomness=50.0, seed=0)  # R = 400 rounds
    assert all(torch.equal(m, layer_mask(scores, 0.5)) for m in masks)
    # and one round is random: not always the top-k
    few = randomized_masks(_scores((16, 16)), 0.5, 4, randomness=1e-9, power=1.0, seed=0)
    assert not all(torch.equal(m, layer_mask(_scores((16, 16)), 0.5)) for m in few)


def test_seeds_exact_sparsity_and_determinism():
    s = _scores((16, 32))
    a = randomized_masks(s, 0.7, 4, 1e-3, seed=1)
    b = randomized_masks(s, 0.7, 4, 1e-3, seed=1)
    c = randomized_masks(s, 0.7, 4, 1e-3, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # same seed, same masks
    assert not any(torch.equal(x, y) for x, y in zip(a, c))  # other seed, other masks
    assert len({tuple(m.flatten().tolist()) for m in a}) == 4  # the candidates differ from each other
    for m in a + c:
        assert int(m.sum()) == keep_count(s.numel(), 0.7) == 153


def test_row_and_nm_variants_are_valid():
    s = _scores((8, 16))
    for m in randomized_masks(s, 0.75, 3, 1e-3, rows=True, seed=0):
        assert (m.sum(dim=1) == 4).all()
    for m in randomized_masks(s, 0.0, 3, 1e-3, nm=(2, 4), seed=0):
        assert is_nm_valid(m, 2, 4) and int(m.sum()) == s.numel() // 2
    # with many rounds the N:M candidates become the deterministic N:M mask
    g = torch.Generator().manual_seed(0)
    groups = torch.stack([torch.randperm(4, generator=g) + 1.0 for _ in range(16)]).reshape(4, 16)  # 1..4 per group
    for m in randomized_masks(groups, 0.0, 2, 100.0, nm=(2, 4), seed=0):
        assert torch.equal(m, nm_mask(groups, 2, 4)) and torch.equal(m, groups > 2)


def test_zero_weights_are_never_kept_and_the_model_level_helper():
    s = _scores((8, 16))
    w = torch.randn(8, 16)
    w[:, :4] = 0.0
    for m in randomized_masks(s, 0.5, 3, 1e-3, weight=w, seed=0):
        assert not m[:, :4].any() and int(m.sum()) == 64
    layers = {"a": _scores((8, 16), 1), "b": _scores((4, 32), 2)}
    for g in ("layer", "row", "global", "2:4"):
        cands = randomized_candidates(layers, 0.5, g, 3, 1e-3, seed=0)
        assert len(cands) == 3 and all(set(c) == {"a", "b"} for c in cands)
        for c in cands:
            assert overall_sparsity(c) == pytest.approx(0.5)
    jac = jaccard_matrix(cands)
    assert all(jac[i][i] == 1.0 for i in range(3)) and all(0 < jac[0][j] < 1 for j in (1, 2))


def test_gumbel_top_k_draws_like_multinomial_without_replacement():
    """Inclusion frequencies of 3 draws without replacement from 6 categories, both samplers."""
    p = torch.tensor([[0.4, 0.25, 0.15, 0.1, 0.07, 0.03]])
    log_p = torch.log(p)
    rounds = 20000
    gumbel = draw_counts(log_p, 3, rounds, torch.Generator().manual_seed(0), "gumbel").float() / rounds
    multi = draw_counts(log_p, 3, rounds, torch.Generator().manual_seed(1), "multinomial").float() / rounds
    # exact inclusion probabilities by enumerating the ordered draws
    exact = torch.zeros(6)
    probs = p[0].tolist()
    for i in range(6):
        for j in range(6):
            for k in range(6):
                if len({i, j, k}) == 3:
                    pr = probs[i] * probs[j] / (1 - probs[i]) * probs[k] / (1 - probs[i] - probs[j])
                    exact[[i, j, k]] += pr
    assert torch.allclose(gumbel[0], exact, atol=0.015)
    assert torch.allclose(multi[0], exact, atol=0.015)
    assert log_probabilities(torch.tensor([0.0, -1.0, 2.0]), 5.0).tolist()[:2] == [-math.inf, -math.inf]


def test_stage_schedule():
    assert stage_sparsities(0.9, 1) == [0.9]
    assert stage_sparsities(0.9375, 4) == pytest.approx([0.5, 0.75, 0.875, 0.9375])
    assert stage_sparsities(0.9375, 4, "0.54,0.83,0.92,0.9375") == [0.54, 0.83, 0.92, 0.9375]


# ---------------------------------------------------------------- SDS per layer
def _layer_problem(d_out=12, d_in=24, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in // 3, generator=g) @ torch.randn(d_in // 3, d_in, generator=g) + 0.2 * torch.randn(n, d_in, generator=g)
    G = X.T @ X / n
    W_dense = torch.randn(d_out, d_in, generator=g)
    W_sparse = W_dense * layer_mask(W_dense.abs(), 0.5)
    return W_dense, W_sparse, G


@pytest.mark.parametrize("accelerate", [True, False])
def test_dense_step_lowers_its_objective_and_the_reconstruction_error(accelerate):
    W_dense, W_sparse, G = _layer_problem()
    l1, l2 = 0.01, 0.01
    W = sds_dense_step(W_sparse, W_dense, G, l1, l2, iters=50, accelerate=accelerate)
    assert sds_objective(W, W_dense, G, l1, l2) < 0.5 * sds_objective(W_sparse, W_dense, G, l1, l2)
    assert reconstruction_error(W, W_dense, G) < 0.5 * reconstruction_error(W_sparse, W_dense, G)
    assert (W[W_sparse == 0] != 0).any()  # pruned entries were trainable


def test_dense_step_with_1_over_L_converges_to_the_ridge_solution():
    W_dense, W_sparse, G = _layer_problem()
    l2 = 0.1
    W = sds_dense_step(W_sparse, W_dense, G, 0.0, l2, iters=3000)
    exact = W_dense @ G @ torch.linalg.inv(G + l2 * torch.eye(G.shape[0]))
    assert torch.allclose(W, exact, atol=1e-3)


def test_third_step_follows_the_papers_rule_or_the_best_iterate():
    W_dense, _, G = _layer_problem()
    W_mid = sds_dense_step(W_dense * 0, W_dense, G, 0.05, 0.05, iters=30)
    M2 = magnitude_mask(W_mid, 0.5, "layer")
    W2 = W_mid * M2
    worse_first = torch.zeros_like(W_dense)  # error tr(W_d G W_d^T): the re-pruned W2 beats it
    assert reconstruction_error(W2, W_dense, G) < reconstruction_error(worse_first, W_dense, G)
    W3, M3, info = sds_third_step(worse_first, W2, M2, W_dense, G, 0.5, "layer", "paper", iters=40)
    assert info["skipped"] and not info["adjusted"] and torch.equal(W3, W2) and torch.equal(M3, M2)
    W3, M3, info = sds_third_step(worse_first, W2, M2, W_dense, G, 0.5, "layer", "best", iters=40)
    assert not info["skipped"] and info["adjusted"] and info["error_after"] < info["error_before"]
    better_first = W_dense.clone()  # a first result with no error at all: the second cannot beat it
    W3, M3, info = sds_third_step(better_first, W2, M2, W_dense, G, 0.5, "layer", "paper", iters=40)
    last, _, _ = sds_adjust(W2, W_dense, G, 0.5, "layer", mask=M2, iters=40, keep="last")
    assert not info["skipped"] and torch.equal(W3, last)  # adjusted, and kept where the iterations end
    assert sds_third_step(worse_first, W2, M2, W_dense, G, 0.5, "layer", "best", iters=0)[2]["skipped"]


@pytest.mark.parametrize("granularity,sparsity", [("layer", 0.5), ("row", 0.75), ("2:4", 0.5)])
def test_adjust_keeps_exact_sparsity_and_never_raises_the_error(granularity, sparsity):
    W_dense, _, G = _layer_problem()
    W_mid = sds_dense_step(W_dense * 0, W_dense, G, 0.05, 0.05, iters=30)
    W2 = W_mid * magnitude_mask(W_mid, sparsity, granularity)
    W3, M3, info = sds_adjust(W2, W_dense, G, sparsity, granularity, iters=40)
    assert torch.equal(W3 != 0, (W3 != 0) & M3)
    if granularity == "2:4":
        assert is_nm_valid(M3, 2, 4)
    elif granularity == "row":
        assert (M3.sum(dim=1) == keep_count(24, sparsity)).all()
    else:
        assert int(M3.sum()) == keep_count(M3.numel(), sparsity)
    assert info["error_after"] <= info["error_before"]
    assert reconstruction_error(W3, W_dense, G) == pytest.approx(info["error_after"], rel=1e-4)
    assert info["improved"]  # from a badly scaled start the adjustment helps


# ---------------------------------------------------------------- end to end, through the registry
def _checksum(model):
    return sum(float(p.double().abs().sum()) for p in model.parameters())


def _calibration(loaded, n=4, length=12):
    ids = torch.randint(5, loaded.model.config.vocab_size, (n, length), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]


def _check_exact(result, sparsity, granularity):
    if granularity == "layer":
        for name, m in result.masks.items():
            assert int(m.sum()) == keep_count(m.numel(), sparsity), name
    elif granularity == "global":
        total = sum(m.numel() for m in result.masks.values())
        assert sum(int(m.sum()) for m in result.masks.values()) == keep_count(total, sparsity)
    elif granularity == "2:4":
        assert all(is_nm_valid(m, 2, 4) for m in result.masks.values())
        assert overall_sparsity(result.masks) == pytest.approx(0.5)
    if result.weights is not None:
        for name, w in result.weights.items():
            assert not bool((w[~result.masks[name]] != 0).any()), name


def test_seed_methods_are_registered():
    from pruning.catalog import all_methods

    seeds = all_methods(family="seed")
    assert {"randomized", "mgpp", "gmp", "sds"} <= set(seeds)
    assert {"base", "k", "randomness", "power", "selection", "steps", "stages"} <= set(seeds["randomized"].params)
    assert {"lam", "v0", "v1", "t0", "t1", "interval", "s_i"} <= set(seeds["mgpp"].params)
    assert "lam" not in seeds["gmp"].params and seeds["gmp"].params["t0"].default == seeds["mgpp"].params["t0"].default
    assert {"base", "l1", "l2", "iters"} <= set(seeds["sds"].params)


@pytest.mark.parametrize("selection,granularity", [("cheap", "layer"), ("early", "2:4")])
def test_randomized_end_to_end(tiny_bert, tiny_sentiment, selection, granularity):
    from pruning.prune import prune

    before = _checksum(tiny_bert.model)
    params = {"k": 3, "selection": selection, "steps": 2, "eval_every": 1, "final_steps": 2, "holdout": 16, "batch_size": 8}
    ticks = []
    result = prune(tiny_bert, R("randomized", 0.7, granularity, params=params, seed=0), data=tiny_sentiment, progress=lambda d, t, m: ticks.append((d, t)))
    _check_exact(result, 0.7, granularity)
    assert ticks[-1][0] == ticks[-1][1]  # the progress bar ends full
    info = result.info
    assert len(info["selection_scores"]) == 3 and 0 <= info["chosen"] < 3
    assert len(info["candidate_jaccard"]) == 3 and len(info["overlap_with_deterministic"]) == 3
    assert info["held_out"]["examples"] == 16 and info["held_out"]["split"].startswith("train")
    assert _checksum(tiny_bert.model) == before
    if selection == "early":
        # the fine-tuned result evaluates as a model: overrides cover pruned layers and the rest
        over = result.overrides(tiny_bert)
        assert len(over) > len(result.masks)


def test_randomized_multi_stage_nests_masks(tiny_bert, tiny_sentiment):
    from pruning.prune import prune

    params = {"k": 2, "selection": "cheap", "stages": 2, "holdout": 16, "base": "magnitude"}
    seen = []
    result = prune(tiny_bert, R("randomized", 0.8, "layer", params=params), data=tiny_sentiment, observe=lambda k, e: seen.append((k, e)))
    assert [round(s, 4) for s in result.info["schedule"]] == [round(1 - 0.2**0.5, 4), 0.8]
    _check_exact(result, 0.8, "layer")
    assert [k for k, _ in seen] == ["stage", "stage"] and all(a is b for (_, a), b in zip(seen, result.info["stages"]))


def test_candidate_pool_for_the_app(tiny_bert, tiny_sentiment):
    from pruning.prune import compute_scores
    from pruning.procedures.randomized import candidate_pool

    scores = compute_scores(tiny_bert, R("magnitude"))
    request = R("randomized", 0.6, "row", params={"k": 3, "holdout": 16})
    pool = candidate_pool(tiny_bert, scores, request, data=tiny_sentiment)
    info = pool.to_info()
    assert len(pool.masks) == 3 and 0 <= info["chosen"] < 3
    assert all(0 < o < 1 for o in info["overlap_with_deterministic"])
    assert info["deterministic_metric"]["metric"] == "accuracy"
    json.dumps(info)  # no per-item arrays in the summary
    from pruning.analysis.evaluate import paired_difference
    from pruning.analysis.stats import wilson_interval

    det, first = pool.deterministic_score, pool.scores[0]
    assert det["n"] == 16 and det["per_item"]["correct"].size == 16
    assert (det["ci_low"], det["ci_high"]) == wilson_interval(int(det["per_item"]["correct"].sum()), 16)
    diff = paired_difference(det, first)
    assert diff["drop"] == pytest.approx(det["value"] - first["value"])


@pytest.mark.parametrize("method", ["mgpp", "gmp"])
@pytest.mark.parametrize("granularity", ["global", "layer"])
def test_mgpp_and_gmp_end_to_end(tiny_bert, tiny_sentiment, method, granularity):
    from pruning.prune import prune

    before = _checksum(tiny_bert.model)
    params = {"steps": 6, "t0": 1, "t1": 4, "interval": 1, "history_points": 3, "holdout": 16, "batch_size": 8}
    seen = []
    result = prune(tiny_bert, R(method, 0.8, granularity, params=params, seed=0), data=tiny_sentiment, observe=lambda k, e: seen.append((k, e)))
    _check_exact(result, 0.8, granularity)
    hist = result.info["history"]
    # the observer saw every snapshot as it was recorded, the very dicts of the final history
    assert [k for k, _ in seen] == ["history"] * len(hist) and all(a is b for (_, a), b in zip(seen, hist))
    assert [h["step"] for h in hist][0] == 0 and hist[-1]["step"] == 6
    assert hist[-1]["sparsity"] >= 0.8 - 1e-9  # after t1 the mask is re-applied every step
    assert all(len(h["sample"]) > 0 for h in hist)
    if method == "mgpp":
        assert hist[0]["lambda"] == pytest.approx(0.1) and hist[-1]["lambda"] == pytest.approx(1e-4)
    assert _checksum(tiny_bert.model) == before


def test_mgpp_on_gpt2_conv1d_layers(tiny_gpt2, tiny_text):
    from pruning.prune import prune

    before = _checksum(tiny_gpt2.model)
    params = {"steps": 3, "t0": 1, "t1": 2, "interval": 1, "history_points": 2, "batch_size": 2}
    result = prune(tiny_gpt2, R("mgpp", 0.5, "2:4", params=params), data=tiny_text)
    _check_exact(result, 0.5, "2:4")
    assert _checksum(tiny_gpt2.model) == before


@pytest.mark.parametrize("fixture,base,granularity", [("tiny_bert", "sparsegpt", "layer"), ("tiny_llama", "wanda", "2:4")])
def test_sds_end_to_end(request, tiny_sentiment, tiny_text, fixture, base, granularity):
    from pruning.prune import prune

    loaded = request.getfixturevalue(fixture)
    data = tiny_sentiment if loaded.task == "classification" else tiny_text
    before = _checksum(loaded.model)
    params = {"base": base, "iters": 5, "adjust_iters": 5, "holdout": 16, "lm_holdout": 2}
    seen, ticks = [], []
    result = prune(loaded, R("sds", 0.6, granularity, params=params), calibration=_calibration(loaded), data=data, observe=lambda k, e: seen.append((k, e)), progress=lambda done, total, msg: ticks.append((done, total)))
    assert ticks[-1][0] == ticks[-1][1]  # the progress bar ends full
    _check_exact(result, 0.6, granularity)
    assert [s["stage"] for s in result.info["steps"]] == ["dense", "sparse", "dense step", "sparse again"]
    assert [(k, e["stage"]) for k, e in seen] == [("step", s["stage"]) for s in result.info["steps"]]
    # the sparse stages hold the target's zeros; the dense step has let the weights move again
    zeros = {s["stage"]: s["zero_fraction"] for s in result.info["steps"]}
    target = 0.5 if granularity == "2:4" else 0.6
    assert zeros["dense"] == 0.0 and zeros["sparse"] >= target - 1e-9 and zeros["sparse again"] >= target - 1e-9
    assert zeros["dense step"] < zeros["sparse"]
    for layer in result.info["layers"].values():
        assert layer["objective_after"] <= layer["objective_before"]
        assert layer["relative_error_final"] <= layer["relative_error_sparse_again"] + 1e-9
    assert _checksum(loaded.model) == before


def test_sds_on_a_bare_encoder_runs_without_a_tracked_metric(tiny_bert):
    """A bare encoder has no task head: SDS still prunes it (it needs only calibration inputs)
    and simply records no metric per stage."""
    import dataclasses

    from pruning.prune import prune

    encoder = dataclasses.replace(tiny_bert, model=tiny_bert.model.bert, task="encoder")
    result = prune(encoder, R("sds", 0.5, "layer", params={"iters": 3, "adjust_iters": 2}), calibration=_calibration(encoder))
    _check_exact(result, 0.5, "layer")
    assert all("value" not in s for s in result.info["steps"]) and result.info["held_out"] is None


def test_held_out_perplexity_carries_its_interval_and_per_sequence_values(tiny_llama, tiny_text):
    from pruning.procedures import training as T

    task = T.task_data(tiny_llama, tiny_text, lm_sequences=1, lm_holdout=4)
    ev = T.held_out_metric(tiny_llama.model, task)
    nll, tokens = ev["per_item"]["nll"], ev["per_item"]["tokens"]
    assert len(nll) == 4 and int(tokens.sum()) == ev["n"]
    assert math.exp(float((nll * tokens).sum() / tokens.sum())) == pytest.approx(ev["value"], rel=1e-9)
    assert ev["ci_low"] <= ev["value"] <= ev["ci_high"]
