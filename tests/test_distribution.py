"""pruning.analysis.distribution: histograms, mixture fits, spike/slab, mask pictures, the toy layer."""

import math

import numpy as np
import pytest
import torch

from pruning.analysis.distribution import (
    bin_weights,
    equivalent_threshold,
    fit_gmm,
    fit_spike_slab,
    histogram,
    mask_grid,
    output_error,
    mixture_crossing,
    split_counts,
    subsample,
    toy_layer,
)
from pruning.errors import PruneScopeError


def test_histogram_counts_kept_and_pruned_by_hand():
    w = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.25])
    kept = np.array([True, False, False, False, True, True])
    h = histogram(w, kept, bins=4)  # edges -1, -0.5, 0, 0.5, 1
    assert h["left"].tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert h["kept"].tolist() == [1, 0, 1, 1]  # -1 | . | 0.25 | 1 (the top edge joins the last bin)
    assert h["pruned"].tolist() == [0, 1, 1, 1]  # -0.5 | 0 | 0.5
    assert h["kept"].sum() + h["pruned"].sum() == w.size


def test_hide_zeros_drops_pruned_and_already_zero_weights():
    w = torch.tensor([[0.0, 0.3], [-0.3, 0.9]])
    kept = torch.tensor([[True, False], [True, True]])
    h = split_counts(bin_weights(w, bins=2), kept, w, hide_zeros=True)
    assert h["pruned"].sum() == 0
    assert h["kept"].sum() == 2  # the kept exact zero is hidden too


def test_split_counts_rejects_wrong_mask_size():
    with pytest.raises(PruneScopeError):
        split_counts(bin_weights(np.ones(4), 2), np.ones(3, dtype=bool))


def test_equivalent_threshold_is_the_magnitude_cut():
    w = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.6, -0.7, 0.8, 0.9, -1.0])
    assert equivalent_threshold(w, 0.5) == pytest.approx(0.5)
    assert equivalent_threshold(w, 0.0) == 0.0


def test_fit_gmm_finds_two_components_by_bic():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.01, 6000), rng.normal(0, 0.2, 4000)])
    fit = fit_gmm(x, "bic", seed=0, max_points=10000, k_max=3)
    assert fit.k >= 2 and set(fit.bic) == {1, 2, 3}
    assert fit.components[0].std == pytest.approx(0.01, rel=0.2)
    assert fit.components[-1].std == pytest.approx(0.2, rel=0.2)
    assert sum(c.weight for c in fit.components) == pytest.approx(1.0)
    rows = fit.curves(np.linspace(-0.5, 0.5, 11), scale=100.0)
    assert {r["component"] for r in rows} >= {"mixture"}


def test_fit_gmm_rejects_bad_k():
    with pytest.raises(PruneScopeError):
        fit_gmm(np.zeros(100), 7)


def test_mixture_crossing_formula_and_density_equality():
    lam, v0, v1 = 0.1, 1e-4, 1e-2
    w = mixture_crossing(lam, v0, v1)
    slab = lam * math.exp(-(w**2) / (2 * v1)) / math.sqrt(v1)
    spike = (1 - lam) * math.exp(-(w**2) / (2 * v0)) / math.sqrt(v0)
    assert slab == pytest.approx(spike, rel=1e-9)
    assert mixture_crossing(0.99, 1.0, 1.0001) is None


def test_fit_spike_slab_recovers_variances():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.01, 7000), rng.normal(0, 0.3, 3000)])
    ss = fit_spike_slab(x, seed=0)
    assert ss.lam == pytest.approx(0.3, abs=0.05)
    assert math.sqrt(ss.v0) == pytest.approx(0.01, rel=0.15)
    assert math.sqrt(ss.v1) == pytest.approx(0.3, rel=0.15)
    assert 0.01 < ss.w_gmm < 0.3


def test_mask_grid_averages_blocks():
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:2, :4] = True
    grid = mask_grid(mask, max_rows=2, max_cols=2)
    assert grid.block == (2, 4)
    assert grid.kept.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert len(grid.rows()) == 4


def test_subsample_is_seeded_and_bounded():
    x = np.arange(1000)
    a, b = subsample(x, 10, seed=3), subsample(x, 10, seed=3)
    assert a.tolist() == b.tolist() and len(a) == 10


def test_toy_layer_and_output_error():
    toy = toy_layer(8, 16, seed=0)
    assert toy.weight.shape == (8, 8) and toy.inputs.shape == (8, 16)
    assert output_error(toy.weight, np.ones((8, 8), bool), toy.inputs) == 0.0
    assert output_error(toy.weight, np.zeros((8, 8), bool), toy.inputs) == pytest.approx(1.0)


def test_fast_counts_match_brute_force_torch_counts():
    from pruning.masks import mask_overlap, nm_violations, sparsity_table

    g = torch.Generator().manual_seed(0)
    a = {"x": torch.rand(8, 16, generator=g) > 0.5, "y": torch.rand(4, 8, generator=g) > 0.3}
    b = {"x": torch.rand(8, 16, generator=g) > 0.5, "y": torch.rand(4, 8, generator=g) > 0.6}
    brute = [
        {"layer": n, "shape": tuple(m.shape), "params": m.numel(), "kept": int(m.sum()), "pruned": m.numel() - int(m.sum()),
         "sparsity": 1.0 - int(m.sum()) / m.numel()}
        for n, m in a.items()
    ]
    assert sparsity_table(a) == brute
    for n, m in ((2, 4), (4, 8), (1, 3)):
        if 16 % m:
            expected = 8 * -(-16 // m)  # an impossible pattern: every group counts as violated
        else:
            expected = int((a["x"].view(8, 16 // m, m).sum(dim=2) > m - n).sum())
        assert nm_violations(a["x"], n, m) == expected
    ref = {}
    for name in a:
        x, y = a[name], b[name]
        ref[name] = {
            "jaccard": int((x & y).sum()) / int((x | y).sum()),
            "hamming": int((x ^ y).sum()) / x.numel(),
            "agreement": int((x == y).sum()) / x.numel(),  # share of identical entries
        }
    fast = mask_overlap(a, b)
    inter = sum(int((a[n] & b[n]).sum()) for n in a)
    union = sum(int((a[n] | b[n]).sum()) for n in a)
    assert fast["overall"]["jaccard"] == pytest.approx(inter / union)
    assert fast["per_layer"]["y"] == pytest.approx(ref["y"])


def test_bin_weights_quantile_range_puts_outliers_in_edge_bins():
    w = np.concatenate([np.linspace(-1, 1, 999), [50.0]])
    b = bin_weights(w, bins=10, quantile=0.99)
    assert b.edges[-1] < 2 and b.index.max() == 9
    assert split_counts(b)["kept"].sum() == 1000


def test_score_picture_for_wanda_by_hand():
    from pruning.analysis.distribution import score_picture

    # two input columns: column 0 quiet (norm 1), column 1 loud (norm 100)
    weight = np.array([[0.5, 0.01], [0.2, 0.02], [0.0, 0.3]])
    norms = np.array([1.0, 100.0])
    scores = np.abs(weight) * norms  # [[0.5, 1], [0.2, 2], [0, 30]]
    kept = np.array([[False, True], [False, True], [False, True]])  # the 3 best scores: the loud column
    pic = score_picture(weight, norms, kept, scores, power=1.0, bins=2)
    assert sum(c["count"] for c in pic.cells) == 5  # the zero weight is left out
    assert sum(c["kept"] for c in pic.cells) == 3
    # 2 of 5 pruned (the zero weight is not counted); the layer cut is the score with 40% of the scores below it
    assert pic.threshold == pytest.approx(0.5)
    # on the plane the Wanda boundary is log|W| = log t - log||X||: slope -1
    xs, ys = [b["x"] for b in pic.boundary], [b["y"] for b in pic.boundary]
    assert all(abs((y - np.log10(0.5)) + x) < 1e-9 for x, y in zip(xs, ys))
    # kept below the median |W| (0.2) on a louder-than-median input: 0.01 and 0.02
    assert pic.kept_small_loud == 2
    assert int(pic.scores["kept"].sum()) == 3 and int(pic.scores["pruned"].sum()) == 2


def test_score_picture_magnitude_boundary_is_flat_and_random_has_none():
    from pruning.analysis.distribution import score_picture

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, 6))
    norms = rng.uniform(0.5, 5, size=6)
    kept = np.abs(weight) >= np.quantile(np.abs(weight), 0.5)
    flat = score_picture(weight, norms, kept, np.abs(weight), power=0.0)
    assert len({round(b["y"], 12) for b in flat.boundary}) == 1
    assert score_picture(weight, norms, kept, rng.uniform(size=(8, 6)), power=None).boundary == []
    with pytest.raises(PruneScopeError, match="do not match"):
        score_picture(weight, norms[:5], kept, np.abs(weight), power=0.0)


def test_agreement_of_two_masks_by_hand():
    from pruning.analysis.distribution import agreement

    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
    b = np.array([[1, 0, 1, 0], [1, 0, 0, 1]], dtype=bool)
    out = agreement(a, b, rows=2, cols=2)
    assert out["counts"] == {"kept by both": 2, "kept by A only": 2, "kept by B only": 2, "pruned by both": 2}
    assert out["jaccard"] == pytest.approx(2 / 6)
    assert [c["agreement"] for c in out["cells"]] == ["kept by both", "kept by A only", "kept by both", "pruned by both"]
    with pytest.raises(PruneScopeError, match="differ in shape"):
        agreement(a, b[:, :3])
