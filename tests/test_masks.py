"""Mask math checked against hand-made cases and brute force."""

import itertools

import pytest
import torch

from pruning.errors import PruneScopeError
from pruning.masks import (
    MaskRanker,
    compute_masks,
    hamming,
    is_nm_valid,
    jaccard,
    keep_count,
    layer_mask,
    mask_overlap,
    nm_violations,
    overall_sparsity,
    parse_granularity,
    validate_sparsity,
)
from pruning.allocations.nm import nm_mask
from pruning.allocations.row import row_mask


def test_keep_count_is_exact_in_spite_of_binary_floats():
    assert keep_count(100, 0.9) == 10  # 100 * (1 - 0.9) is 9.999999999999998 in floats
    assert keep_count(100, 0.7) == 30
    assert keep_count(63, 0.5) == 31
    assert keep_count(10, 0.0) == 10


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.7, 0.9, 0.95])
@pytest.mark.parametrize("granularity", ["layer", "row", "global"])
def test_exact_sparsity_every_granularity(sparsity, granularity):
    torch.manual_seed(0)
    scores = {"a": torch.rand(7, 9), "b": torch.rand(5, 13)}
    masks = compute_masks(scores, sparsity, granularity)
    if granularity == "layer":
        for name, s in scores.items():
            assert int(masks[name].sum()) == keep_count(s.numel(), sparsity)
    elif granularity == "row":
        for name, s in scores.items():
            assert (masks[name].sum(dim=1) == keep_count(s.shape[1], sparsity)).all()
    else:
        assert sum(int(m.sum()) for m in masks.values()) == keep_count(7 * 9 + 5 * 13, sparsity)


def test_layer_mask_keeps_the_largest_scores():
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.7]])
    assert layer_mask(scores, 0.5).tolist() == [[False, True, False], [True, False, True]]


def test_global_mask_equals_brute_force_sort():
    torch.manual_seed(1)
    scores = {"a": torch.randn(6, 8), "b": torch.randn(4, 10) * 3}
    masks = compute_masks(scores, 0.6, "global")
    flat = torch.cat([scores["a"].flatten(), scores["b"].flatten()])
    k = keep_count(flat.numel(), 0.6)
    threshold = flat.sort(descending=True).values[k - 1]
    for name in scores:
        assert torch.equal(masks[name], scores[name] >= threshold)


def test_ties_keep_exactly_k_and_prefer_the_lower_index():
    scores = torch.ones(2, 4)
    mask = layer_mask(scores, 0.5)
    assert mask.tolist() == [[True, True, True, True], [False, False, False, False]]
    assert row_mask(scores, 0.5).tolist() == [[True, True, False, False]] * 2


def test_weights_already_zero_count_as_pruned_first():
    weight = torch.tensor([[0.0, 5.0, 0.0, 1.0]])
    scores = torch.tensor([[9.0, 1.0, 8.0, 2.0]])  # zeros score highest, yet must go first
    assert layer_mask(scores, 0.5, weight).tolist() == [[False, True, False, True]]


def test_two_four_mask_by_hand():
    scores = torch.tensor(
        [
            [4.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0],
            [0.5, 9.0, 0.1, 7.0],
            [2.0, 2.0, 2.0, 2.0],
        ]
    )
    expected = [
        [True, True, False, False],
        [False, False, True, True],
        [False, True, False, True],
        [True, True, False, False],  # ties: the lower index is kept
    ]
    assert nm_mask(scores, 2, 4).tolist() == expected
    assert is_nm_valid(nm_mask(scores, 2, 4), 2, 4)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_masks_are_valid_and_exact(n, m):
    torch.manual_seed(2)
    mask = compute_masks({"w": torch.randn(16, 32)}, 0.0, f"{n}:{m}")["w"]
    assert is_nm_valid(mask, n, m)
    assert overall_sparsity({"w": mask}) == pytest.approx(n / m)


@pytest.mark.parametrize("n,m", [(1, 4), (2, 4), (3, 4), (1, 2), (4, 8), (5, 8)])
def test_nm_masks_match_a_brute_force_ranking_with_many_ties(n, m):
    g = torch.Generator().manual_seed(n * 10 + m)
    scores = torch.randint(0, 3, (6, 4 * m), generator=g).float()  # three levels: ties everywhere
    scores[0, :m] = float("nan")  # NaN scores rank below everything
    expected = torch.zeros_like(scores, dtype=torch.bool)
    for r in range(scores.shape[0]):
        for start in range(0, scores.shape[1], m):
            idx = list(range(start, start + m))
            key = lambda j: (-(float("-inf") if torch.isnan(scores[r, j]) else float(scores[r, j])), j)  # noqa: E731
            for j in sorted(idx, key=key)[: m - n]:
                expected[r, j] = True
    assert torch.equal(nm_mask(scores, n, m), expected)


def test_nm_checker_finds_violations():
    mask = torch.tensor([[True, True, True, False, True, True, False, False]])
    assert nm_violations(mask, 2, 4) == 1
    assert not is_nm_valid(mask, 2, 4)


@pytest.mark.parametrize("bad", ["3:2", "2:2", "0:4", "4:0", "diagonal"])
def test_impossible_granularity_is_a_clear_error(bad):
    with pytest.raises(PruneScopeError, match="N:M|granularity"):
        parse_granularity(bad)


@pytest.mark.parametrize("bad", [1.5, -0.1, 1.0, float("nan"), "half"])
def test_impossible_sparsity_is_a_clear_error(bad):
    with pytest.raises(PruneScopeError, match="sparsity"):
        validate_sparsity(bad)


def test_nm_needs_divisible_inputs():
    with pytest.raises(PruneScopeError, match="multiple of 4"):
        nm_mask(torch.rand(2, 6), 2, 4)


@pytest.mark.parametrize("granularity", ["layer", "row", "global", "2:4"])
def test_ranker_matches_direct_computation(granularity):
    torch.manual_seed(3)
    scores = {"a": torch.randn(8, 16), "b": torch.randn(12, 8)}
    scores["a"][0, :4] = 0.25  # some ties
    weights = {"a": torch.randn(8, 16), "b": torch.randn(12, 8)}
    weights["b"][3] = 0.0  # some zero weights
    ranker = MaskRanker(scores, weights)
    for sparsity in (0.0, 0.3, 0.5, 0.77, 0.9):
        direct = compute_masks(scores, sparsity, granularity, weights)
        fast = ranker.masks(sparsity, granularity)
        for name in scores:
            assert torch.equal(direct[name], fast[name]), (granularity, sparsity, name)
        # one layer at a time from a fresh ranker (its ranks made lazily, layer by layer): the
        # same masks, the global threshold still over every layer
        alone = MaskRanker(scores, weights)
        for name in ("b", "a"):
            one = alone.masks(sparsity, granularity, layers=[name])
            assert list(one) == [name] and torch.equal(one[name], direct[name]), (granularity, sparsity, name)


def test_overlap_by_hand():
    a = torch.tensor([[True, True, False, False]])
    b = torch.tensor([[True, False, True, False]])
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert hamming(a, b) == pytest.approx(2 / 4)
    result = mask_overlap({"x": a, "y": a}, {"x": b, "y": a})
    assert result["per_layer"]["y"] == {"jaccard": 1.0, "hamming": 0.0, "agreement": 1.0}
    assert result["per_layer"]["x"]["agreement"] == pytest.approx(2 / 4)  # entries 0 and 3 agree
    assert result["overall"]["jaccard"] == pytest.approx((1 + 2) / (3 + 2))
    assert result["overall"]["hamming"] == pytest.approx(2 / 8) and result["overall"]["agreement"] == pytest.approx(6 / 8)


def test_brute_force_small_layer_mask():
    """Every 2x3 score matrix with distinct values: the kept set is the k largest."""
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    for perm in itertools.islice(itertools.permutations(values), 0, 720, 37):
        scores = torch.tensor(perm).view(2, 3)
        kept = set(torch.nonzero(layer_mask(scores, 0.5).flatten()).flatten().tolist())
        assert kept == {i for i, v in enumerate(perm) if v >= 0.4}
