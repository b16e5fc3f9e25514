"""Intervals: Wilson by hand, bootstrap coverage, paired narrower than unpaired, noise test."""

import math

import numpy as np
import pytest

from pruning.errors import PruneScopeError
from pruning.analysis.stats import (
    bootstrap_means,
    mean_interval,
    paired_interval,
    perplexity_interval,
    wilson_interval,
    within_noise,
)


def test_wilson_matches_hand_computed_values():
    # k=8, n=10, z=1.96: centre (0.8 + 0.19207) / 1.38415 = 0.71674, half 1.96 * sqrt(0.016 + 0.0096) / 1.38415 = 0.22658
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # k=0: the interval starts at exactly 0 and ends at z^2 / (n + z^2) = 3.8415 / 23.8415
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(3.841459 / 23.841459, abs=1e-6)
    # k=n mirrors k=0
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and low == pytest.approx(20 / 23.841459, abs=1e-6)


def test_wilson_refuses_impossible_counts():
    with pytest.raises(PruneScopeError):
        wilson_interval(5, 4)
    with pytest.raises(PruneScopeError):
        wilson_interval(0, 0)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        sample = rng.normal(3.0, 2.0, size=200)
        low, high = mean_interval(sample, n_boot=500, rng=rng)
        covered += low <= 3.0 <= high
    assert 180 <= covered <= 199  # nominal 190 of 200


def test_bootstrap_is_seeded_and_leaves_global_state_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = bootstrap_means([1.0, 2.0, 5.0, 7.0], seed=4)
    b = bootstrap_means([1.0, 2.0, 5.0, 7.0], seed=4)
    assert np.array_equal(a, b)
    assert np.array_equal(np.random.get_state()[1], before)


def test_weighted_bootstrap_of_one_item_is_that_item():
    means = bootstrap_means([2.5], weights=[7], n_boot=10)
    assert np.allclose(means, 2.5)


def test_perplexity_interval_surrounds_the_token_weighted_perplexity():
    rng = np.random.default_rng(0)
    nll = rng.normal(3.0, 0.3, size=60)
    tokens = rng.integers(100, 512, size=60)
    ppl = math.exp(float(np.sum(nll * tokens) / np.sum(tokens)))
    low, high = perplexity_interval(nll, tokens, seed=0)
    assert low < ppl < high
    assert high / low < math.exp(0.3)  # 60 windows pin the mean NLL to well under its spread


def test_paired_interval_is_narrower_than_unpaired_on_correlated_items():
    rng = np.random.default_rng(2)
    hardness = rng.normal(0, 1, size=300)  # shared by both models: what pairing cancels
    a = hardness + rng.normal(0, 0.1, size=300)
    b = hardness + 0.05 + rng.normal(0, 0.1, size=300)
    diff, low, high = paired_interval(a, b, seed=0)
    assert diff == pytest.approx(float(np.mean(a) - np.mean(b)))
    assert low < diff < high
    unpaired = bootstrap_means(a, seed=1) - bootstrap_means(b, seed=2)
    u_low, u_high = np.quantile(unpaired, [0.025, 0.975])
    assert (high - low) < 0.3 * (u_high - u_low)
    assert not within_noise(low, high)  # paired: a is reliably below b
    assert within_noise(u_low, u_high)  # unpaired: lost in the noise


def test_paired_interval_needs_the_same_items():
    with pytest.raises(PruneScopeError):
        paired_interval([1.0, 2.0], [1.0])


def test_within_noise_is_about_covering_zero():
    assert within_noise(-0.1, 0.2) and within_noise(0.0, 0.3)
    assert not within_noise(0.01, 0.2) and not within_noise(-0.3, -0.01)


def test_a_seeded_resample_table_is_drawn_once_and_equals_a_fresh_generator():
    """Hundreds of intervals over the same items (a sensitivity run) reuse one seeded table of
    resample counts: the numbers are exactly those of a fresh generator with that seed."""
    from pruning.analysis.stats import _draws

    values = np.arange(40, dtype=np.float64) % 7
    fresh = bootstrap_means(values, rng=np.random.default_rng(3))
    assert np.array_equal(bootstrap_means(values, seed=3), fresh)
    assert np.array_equal(bootstrap_means(values, seed=3), fresh)  # second call: the cached table
    table = _draws(40, 2000, None, 3)
    assert table is _draws(40, 2000, None, 3) and not table.flags.writeable
    assert np.array_equal(table.sum(axis=1), np.full(2000, 40.0))  # each resample draws 40 items
    assert _draws(40, 2000, np.random.default_rng(3), 3) is not table  # an explicit generator draws anew
