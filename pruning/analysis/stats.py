"""Intervals for the numbers PruneScope shows: pure functions over per-item values.

* :func:`wilson_interval`: 95% Wilson score interval of a proportion ``k / n``
  (accuracy on ``n`` examples).
* :func:`bootstrap_means`, :func:`mean_interval`: percentile bootstrap of a
  (optionally weighted) mean over items: examples, or perplexity windows
  weighted by their token counts.
* :func:`perplexity_interval`: exp of the bootstrapped token-weighted mean NLL
  of the windows.
* :func:`paired_interval`: a difference between two models measured on the
  *same* items, resampling the items jointly, so what both models find hard
  cancels out (narrower than comparing two separate intervals).
* :func:`within_noise`: whether an interval of a difference covers 0.

Every resampling draws from an explicit ``numpy.random.Generator`` (``rng``)
or a fresh one seeded with ``seed``; nothing touches global random state.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from ..errors import PruneScopeError

Z95 = 1.959963984540054  # two-sided 95% normal quantile
DEFAULT_BOOTSTRAP = 2000


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (95% by default)."""
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise PruneScopeError(f"a proportion needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _generator(rng: np.random.Generator | None, seed: int) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng(int(seed) % 2**63)


_CACHED_COUNTS_MAX = 2**22  # entries (32 MB) of a resample-count table worth keeping


def _counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples: (n_boot, n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)


@lru_cache(maxsize=8)
def _seeded_counts_cached(n: int, n_boot: int, seed: int) -> np.ndarray:
    counts = _counts(n, n_boot, _generator(None, seed))
    counts.setflags(write=False)  # shared by every caller: read only
    return counts


def _draws(n: int, n_boot: int, rng: np.random.Generator | None, seed: int) -> np.ndarray:
    """The resample counts for ``rng``, or for a fresh generator seeded with ``seed``. The
    latter are the same table for every interval over ``n`` items (a sensitivity run computes
    hundreds), so a small one is drawn once and reused: same numbers, a fraction of the time."""
    if rng is None and n * int(n_boot) <= _CACHED_COUNTS_MAX:
        return _seeded_counts_cached(int(n), int(n_boot), int(seed) % 2**63)
    return _counts(n, n_boot, _generator(rng, seed))


def _as_items(values, weights) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise PruneScopeError("an interval needs at least one item")
    if w.shape != v.shape:
        raise PruneScopeError(f"{v.size} values but {w.size} weights")
    return v, w


def bootstrap_means(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    rng: np.random.Generator | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The weighted mean ``sum(w v) / sum(w)`` of ``n_boot`` resamples of the items (with replacement)."""
    v, w = _as_items(values, weights)
    counts = _draws(v.size, n_boot, rng, seed)
    return (counts @ (v * w)) / np.maximum(counts @ w, 1e-300)


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - float(level)) / 2
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_interval(
    values, weights=None, level: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP, rng=None, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the (weighted) mean of ``values``."""
    return _percentiles(bootstrap_means(values, weights, n_boot, rng, seed), level)


def safe_exp(x):
    """exp that saturates instead of overflowing (a perplexity from a huge mean NLL)."""
    return np.exp(np.minimum(x, 700.0))


def perplexity_interval(
    window_nll, window_tokens, level: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP, rng=None, seed: int = 0
) -> tuple[float, float]:
    """Interval of exp(token-weighted mean NLL), resampling windows (``window_nll``: each window's mean NLL)."""
    return _percentiles(safe_exp(bootstrap_means(window_nll, window_tokens, n_boot, rng, seed)), level)


def paired_interval(
    a,
    b,
    weights=None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    level: float = 0.95,
    n_boot: int = DEFAULT_BOOTSTRAP,
    rng=None,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``f(mean a) - f(mean b)`` and its paired percentile bootstrap interval.

    ``a`` and ``b`` are per-item values of two models on the same items (same
    order); each resample draws items once and uses both models' values of
    them. ``transform`` (``f``, default identity) maps a mean to the metric,
    e.g. ``numpy.exp`` for perplexity from mean NLLs.
    """
    va, w = _as_items(a, weights)
    vb, _ = _as_items(b, weights)
    if va.shape != vb.shape:
        raise PruneScopeError(f"a paired comparison needs the same items: {va.size} against {vb.size}")
    f = transform or (lambda x: x)
    counts = _draws(va.size, n_boot, rng, seed)
    total = np.maximum(counts @ w, 1e-300)
    diffs = f((counts @ (va * w)) / total) - f((counts @ (vb * w)) / total)
    point = float(f(np.array(np.sum(va * w) / np.sum(w))) - f(np.array(np.sum(vb * w) / np.sum(w))))
    low, high = _percentiles(diffs, level)
    return point, low, high


def within_noise(low: float, high: float) -> bool:
    """True when the interval of a difference covers 0 (the difference cannot be told from noise)."""
    return float(low) <= 0.0 <= float(high)
