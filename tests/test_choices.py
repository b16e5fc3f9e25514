"""The three choices' new entries as pure functions: RIA (criterion), OWL (allocation), the OBS
update on a given mask and DSnoT (updates), and the reconstruction error, each checked by hand
or by brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

from pruning.allocations.owl import block_sparsities, outlier_ratio
from pruning.criteria.ria import ria_scores
from pruning.masks import keep_count, topk_keep
from pruning.updates.sparsegpt_solver import hessian_inverse_factor, sparsegpt_solve
from pruning.updates.dsnot import dsnot_update
from pruning.updates.obs import obs_update
from pruning.updates.reconstruction import reconstruction_error


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ RIA
def test_ria_matches_a_brute_force_loop():
    W = torch.randn(5, 7, generator=_gen(1))
    X = torch.randn(30, 7, generator=_gen(2)) * torch.linspace(0.1, 3.0, 7)
    sq = (X * X).sum(dim=0)
    got = ria_scores(W, sq, n_tokens=30, a=0.5)
    for i, j in itertools.product(range(5), range(7)):
        col = sum(abs(float(W[k, j])) for k in range(5))
        row = sum(abs(float(W[i, k])) for k in range(7))
        rms = (sum(float(X[t, j]) ** 2 for t in range(30)) / 30) ** 0.5
        want = (abs(float(W[i, j])) / col + abs(float(W[i, j])) / row) * rms**0.5
        assert float(got[i, j]) == pytest.approx(want, rel=1e-5)


def test_ria_keeps_the_mask_of_the_authors_formula():
    """Their code scales the activation by sqrt(sum x^2 / samples), ours by the RMS over tokens:
    a constant factor per layer, so the layer's top-k mask is the same."""
    W = torch.randn(16, 24, generator=_gen(3))
    sq = torch.rand(24, generator=_gen(4)) * 50
    theirs = (W.abs() / W.abs().sum(dim=0) + W.abs() / W.abs().sum(dim=1).reshape(-1, 1)) * torch.sqrt(sq / 4).reshape(1, -1) ** 0.5
    k = keep_count(W.numel(), 0.5)
    assert torch.equal(topk_keep(ria_scores(W, sq, 128).flatten(), k), topk_keep(theirs.flatten(), k))


def test_ria_exponent_zero_is_relative_importance_alone():
    W = torch.tensor([[1.0, 3.0], [1.0, 1.0]])
    got = ria_scores(W, torch.tensor([4.0, 100.0]), n_tokens=1, a=0.0)
    # (1/2 + 1/4), (3/4 + 3/4), (1/2 + 1/2), (1/4 + 1/2)
    assert torch.allclose(got, torch.tensor([[0.75, 1.5], [1.0, 0.75]]))


# ------------------------------------------------------------------ OWL
def test_outlier_ratio_counts_scores_above_m_times_the_mean():
    scores = [torch.ones(3, 3), torch.tensor([50.0])]  # mean 5.9, threshold 29.5: one of ten above
    assert outlier_ratio(scores, m=5) == pytest.approx(0.1)
    assert outlier_ratio([torch.ones(4, 4)], m=5) == 0.0


def test_block_sparsities_follow_the_authors_formula_and_keep_the_target_mean():
    got = block_sparsities([0.1, 0.2, 0.3], sparsity=0.7, lam=0.08)
    # keep ratios (0, 0.08, 0.16) - 0.08 + 0.3 = (0.22, 0.30, 0.38)
    assert got == pytest.approx([0.78, 0.70, 0.62])
    assert sum(got) / 3 == pytest.approx(0.7)
    assert block_sparsities([0.2, 0.2], sparsity=0.5) == pytest.approx([0.5, 0.5])
    assert max(got) - min(got) == pytest.approx(2 * 0.08)


# ------------------------------------------------------------------ reconstruction error
def test_reconstruction_error_is_the_relative_output_error_on_the_inputs():
    W = torch.randn(6, 10, generator=_gen(5))
    X = torch.randn(10, 40, generator=_gen(6))
    W2 = W * (torch.rand(6, 10, generator=_gen(7)) > 0.5)
    want = float(((W @ X - W2 @ X) ** 2).sum() / ((W @ X) ** 2).sum())
    assert reconstruction_error(W, W2, X @ X.T) == pytest.approx(want, rel=1e-6)
    assert reconstruction_error(W, W, X @ X.T) == 0.0


# ------------------------------------------------------------------ OBS update on a given mask
def _layer(seed=8, rows=12, cols=32, tokens=200):
    W = torch.randn(rows, cols, generator=_gen(seed))
    X = torch.randn(tokens, cols, generator=_gen(seed + 1)) * torch.linspace(0.2, 2.0, cols)
    return W, X.T @ X, tokens


def test_obs_update_keeps_the_given_mask_exactly_and_lowers_the_error():
    W, G, n = _layer()
    keep = topk_keep(W.abs().flatten(), keep_count(W.numel(), 0.6)).view(W.shape)  # a magnitude mask
    new = obs_update(W, keep, G, n)
    assert torch.equal(new[~keep], torch.zeros(int((~keep).sum())))
    assert int((new[keep] != 0).sum()) == int(keep.sum())
    assert reconstruction_error(W, new, G) < reconstruction_error(W, W * keep, G)


def test_obs_update_with_sparsegpts_own_mask_gives_sparsegpts_weights():
    """SparseGPT = criterion "obs" (its mask) + update "obs": fed its own mask, the update
    reproduces its weights."""
    W, G, n = _layer(seed=11)
    U, dead = hessian_inverse_factor(G, n)
    sgpt_w, sgpt_keep = sparsegpt_solve(W, U, 0.5, "layer", dead=dead)
    again = obs_update(W, sgpt_keep, G, n)
    assert torch.allclose(again, sgpt_w, atol=1e-5)


def test_obs_update_on_a_full_mask_changes_nothing():
    W, G, n = _layer(seed=13)
    assert torch.allclose(obs_update(W, torch.ones_like(W, dtype=torch.bool), G, n), W)


# ------------------------------------------------------------------ DSnoT
def test_dsnot_swaps_on_a_hand_checkable_row():
    """M = W * s = (1, -2, 3, 0.5); pruned {0, 3}: error 1.5 > 0. Grow the pruned weight with the
    largest M (column 0), prune the kept weight with M < 0 (column 1): error 1.5 - 2 - 1 = -1.5.
    Then the error is negative and no pruned weight has M < 0: the row stops."""
    W = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    keep = torch.tensor([[False, True, True, False]])
    got = dsnot_update(W, keep, x_sum=torch.ones(4), x_var=torch.ones(4), score=W.abs())
    assert got.tolist() == [[True, False, True, False]]


def test_dsnot_walks_the_attention_matrices_only():
    from pruning.updates.dsnot import walks_layer

    walked = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.key",
              "bert.encoder.layer.0.attention.self.value", "bert.encoder.layer.0.attention.output.dense",
              "model.layers.3.self_attn.q_proj", "model.layers.3.self_attn.o_proj", "transformer.h.0.attn.c_attn",
              "transformer.h.0.attn.c_proj"]
    kept = ["bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.0.output.dense", "model.layers.3.mlp.gate_proj",
            "model.layers.3.mlp.up_proj", "model.layers.3.mlp.down_proj", "transformer.h.0.mlp.c_proj", "classifier", ""]
    assert [n for n in walked if not walks_layer(n)] == []
    assert [n for n in kept if walks_layer(n)] == []


def test_dsnot_stops_below_the_threshold():
    W = torch.tensor([[0.05, -2.0, 3.0, 0.01]])
    keep = torch.tensor([[False, True, True, False]])  # error 0.06 <= 0.1: nothing to do
    assert torch.equal(dsnot_update(W, keep, torch.ones(4), torch.ones(4), W.abs()), keep)


def test_dsnot_keeps_each_rows_count_and_the_nm_pattern():
    W = torch.randn(20, 64, generator=_gen(20))
    x = torch.randn(64, generator=_gen(21))
    var = torch.rand(64, generator=_gen(22)) + 0.1
    score = W.abs() * (var + x.abs())
    keep = topk_keep(score.flatten(), keep_count(W.numel(), 0.5)).view(W.shape)
    new = dsnot_update(W, keep, x, var, score, max_cycles=50, threshold=0.0)
    assert torch.equal(new.sum(dim=1), keep.sum(dim=1))
    assert not torch.equal(new, keep)
    from pruning.allocations.nm import nm_mask

    nm = nm_mask(score, 2, 4)
    new_nm = dsnot_update(W, nm, x, var, score, granularity="2:4", threshold=0.0)
    assert torch.equal(new_nm.view(20, 16, 4).sum(dim=2), torch.full((20, 16), 2))
    assert not torch.equal(new_nm, nm)


def test_dsnot_with_the_sign_rule_never_grows_a_rows_error():
    W = torch.randn(30, 48, generator=_gen(30))
    x = torch.randn(48, generator=_gen(31))
    var = torch.ones(48)
    score = W.abs()
    keep = topk_keep(score.flatten(), keep_count(W.numel(), 0.6)).view(W.shape)

    def error(mask):
        return ((W * x) * ~mask).sum(dim=1).abs()

    new = dsnot_update(W, keep, x, var, score, same_sign=True, threshold=0.0)
    assert bool((error(new) <= error(keep) + 1e-9).all())
    assert float(error(new).sum()) < float(error(keep).sum())
