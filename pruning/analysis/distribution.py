"""What a layer's weights look like: histograms of kept and pruned weights, a
Gaussian-mixture fit, the mixture crossing w_gmm, and a down-sampled picture
of a mask. Also a small worked example (an 8x8 layer) for the app's Learn view.

Everything here is NumPy (plus scikit-learn for the mixture fit) and pure: it
takes arrays (NumPy or torch) and returns plain data the app turns into charts.
Histograms are built in two steps so a sparsity slider stays fast: the bin of
every weight is found once (:func:`bin_weights`), and each new mask only needs a
``bincount`` (:func:`split_counts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import PruneScopeError


def to_numpy(values) -> np.ndarray:
    """A float64 (or bool) NumPy array from a NumPy array, a torch tensor or a list."""
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        values = values.detach().cpu()
        if str(values.dtype) == "torch.bool":
            return values.numpy()
        values = values.float().numpy()
    arr = np.asarray(values)
    return arr if arr.dtype == bool else arr.astype(np.float64, copy=False)


def subsample(values, max_points: int = 20000, seed: int = 0) -> np.ndarray:
    """At most ``max_points`` of the flattened ``values``, drawn without replacement (seeded)."""
    flat = to_numpy(values).ravel()
    if flat.size <= max_points:
        return flat
    rng = np.random.default_rng(seed)
    return flat[rng.choice(flat.size, size=max_points, replace=False)]


# ---------------------------------------------------------------- histograms
@dataclass(frozen=True)
class Binned:
    """Every weight's histogram bin, found once; ``split_counts`` re-counts for any mask."""

    edges: np.ndarray  # (bins + 1,)
    index: np.ndarray  # bin of each weight, flattened, int32; -1 for exact zeros when zeros are hidden

    @property
    def bins(self) -> int:
        return len(self.edges) - 1


def bin_weights(values, bins: int = 80, limit: float | None = None, quantile: float = 1.0) -> Binned:
    """Bin every weight into ``bins`` equal bins over ``[-limit, limit]``.

    ``limit`` defaults to the ``quantile`` of the absolute weights (1.0: the
    largest), so the histogram is symmetric around zero and the pruning
    threshold ``+-t`` is easy to read. Weights beyond ``+-limit`` (a few
    outliers when ``quantile < 1``) are counted in the outermost bins.
    """
    flat = to_numpy(values).ravel()
    if flat.size == 0:
        raise PruneScopeError("this layer has no weights to draw")
    if bins < 1:
        raise PruneScopeError(f"a histogram needs at least one bin, got {bins}")
    if limit is None:
        mags = np.abs(flat)
        limit = float(np.max(mags) if quantile >= 1.0 else np.quantile(mags, quantile)) or 1.0
    edges = np.linspace(-limit, limit, bins + 1)
    index = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, bins - 1).astype(np.int32)
    return Binned(edges, index)


def split_counts(binned: Binned, kept=None, weights=None, hide_zeros: bool = False) -> dict[str, np.ndarray]:
    """Per-bin counts of kept and pruned weights.

    ``kept`` is the mask (True = kept; ``None`` means everything kept). With
    ``hide_zeros`` the pruned weights are left out (a pruned model's zeros would
    otherwise be one tall spike at 0); ``weights`` lets exact zeros that were
    already zero in the weight be hidden too.
    Returns ``{"left", "right", "kept", "pruned"}`` arrays of length ``bins``.
    """
    n = binned.bins
    if kept is None:
        kept_counts = np.bincount(binned.index, minlength=n)
        pruned_counts = np.zeros(n, dtype=np.int64)
    else:
        keep = to_numpy(kept).ravel().astype(bool)
        if keep.size != binned.index.size:
            raise PruneScopeError(f"mask has {keep.size} entries but the layer has {binned.index.size} weights")
        if weights is not None and hide_zeros:
            keep = keep & (to_numpy(weights).ravel() != 0)
        kept_counts = np.bincount(binned.index[keep], minlength=n)
        pruned_counts = np.bincount(binned.index[~keep], minlength=n)
    if hide_zeros:
        pruned_counts = np.zeros(n, dtype=np.int64)
    return {
        "left": binned.edges[:-1],
        "right": binned.edges[1:],
        "kept": kept_counts.astype(np.int64),
        "pruned": pruned_counts.astype(np.int64),
    }


def histogram(values, kept=None, bins: int = 80, hide_zeros: bool = False) -> dict[str, np.ndarray]:
    """One-shot :func:`bin_weights` + :func:`split_counts`."""
    return split_counts(bin_weights(values, bins), kept, values, hide_zeros)


def equivalent_threshold(values, sparsity: float) -> float:
    """The ``|w|`` below which a fraction ``sparsity`` of the weights lies.

    For per-layer magnitude pruning this is exactly the pruning threshold; for
    any other method it is the magnitude cut that would remove as many weights,
    which shows how far that method strays from "small weights go".
    """
    flat = np.abs(to_numpy(values).ravel())
    if flat.size == 0 or sparsity <= 0:
        return 0.0
    k = min(flat.size - 1, max(0, math.floor(flat.size * sparsity + 1e-6) - 1))
    return float(np.partition(flat, k)[k])


# ---------------------------------------------------------------- mixture of Gaussians
@dataclass(frozen=True)
class Component:
    weight: float
    mean: float
    std: float


@dataclass
class MixtureFit:
    """A 1-D Gaussian mixture fitted to weights: components sorted by std (narrowest first)."""

    components: list[Component]
    bic: dict[int, float] = field(default_factory=dict)  # BIC of every k tried
    n_fitted: int = 0

    @property
    def k(self) -> int:
        return len(self.components)

    def density(self, x) -> np.ndarray:
        """Per-component weighted densities at ``x``: shape (k, len(x))."""
        x = np.asarray(x, dtype=np.float64)
        return np.stack([c.weight * _normal_pdf(x, c.mean, c.std) for c in self.components])

    def curves(self, x, scale: float = 1.0) -> list[dict]:
        """Rows ``{x, component, density}`` for each component and the total, times ``scale``.

        With ``scale = number of weights * bin width`` the curves are in
        histogram counts and can be drawn over the histogram.
        """
        dens = self.density(x) * scale
        rows = []
        for i, c in enumerate(self.components):
            label = f"component {i + 1} (std {c.std:.3g})"
            rows.extend({"x": float(a), "component": label, "density": float(d)} for a, d in zip(x, dens[i]))
        rows.extend({"x": float(a), "component": "mixture", "density": float(d)} for a, d in zip(x, dens.sum(axis=0)))
        return rows


def _normal_pdf(x, mean, std):
    std = max(float(std), 1e-12)
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def fit_gmm(values, k: int | str = "bic", seed: int = 0, max_points: int = 20000, k_max: int = 4) -> MixtureFit:
    """Fit a 1-D Gaussian mixture (scikit-learn) to ``values``.

    ``k`` is 1-4 components, or ``"bic"`` to try 1..``k_max`` and keep the lowest
    BIC. At most ``max_points`` values are used (a seeded subsample).
    """
    from sklearn.mixture import GaussianMixture  # lazy: a heavy optional import, loaded on first use

    if isinstance(k, str):
        if k.lower() != "bic":
            raise PruneScopeError(f"number of mixture components must be 1-{k_max} or 'bic', got {k!r}")
        candidates = list(range(1, k_max + 1))
    else:
        if not 1 <= int(k) <= k_max:
            raise PruneScopeError(f"number of mixture components must be 1-{k_max} or 'bic', got {k!r}")
        candidates = [int(k)]
    x = subsample(values, max_points, seed).reshape(-1, 1)
    if x.shape[0] < 2 * max(candidates):
        raise PruneScopeError(f"too few weights ({x.shape[0]}) to fit {max(candidates)} mixture components")
    best, bics = None, {}
    for n in candidates:
        gm = GaussianMixture(n_components=n, covariance_type="full", random_state=seed, reg_covar=1e-10, max_iter=200)
        gm.fit(x)
        bics[n] = float(gm.bic(x))
        if best is None or bics[n] < bics[best[0]]:
            best = (n, gm)
    gm = best[1]
    comps = [
        Component(float(w), float(m[0]), float(math.sqrt(c.ravel()[0])))
        for w, m, c in zip(gm.weights_, gm.means_, gm.covariances_)
    ]
    comps.sort(key=lambda c: c.std)
    return MixtureFit(comps, bics, int(x.shape[0]))


# ---------------------------------------------------------------- spike and slab
@dataclass(frozen=True)
class SpikeSlab:
    """Two zero-mean Gaussians: ``lam * N(0, v1)`` (slab) + ``(1 - lam) * N(0, v0)`` (spike), v0 < v1."""

    lam: float
    v0: float
    v1: float

    @property
    def w_gmm(self) -> float | None:
        """The mixture crossing of this FITTED spike and slab (not MGPP's prior threshold w*)."""
        return mixture_crossing(self.lam, self.v0, self.v1)


def mixture_crossing(lam: float, v0: float, v1: float) -> float | None:
    """The mixture crossing ``w_gmm``: where a weight is equally likely under the spike and the slab
    of a two-Gaussian zero-mean mixture (the same formula as MGPP's prior threshold w*, applied to a fit).

    ``w_gmm = sqrt(log(((1 - lam) / lam) * sqrt(v1 / v0)) / c2)`` with
    ``c2 = (1/v0 - 1/v1) / 2``. ``None`` when the curves do not cross away from 0
    (the slab dominates everywhere).
    """
    if not (0 < lam < 1) or v0 <= 0 or v1 <= 0:
        raise PruneScopeError(f"spike/slab needs 0 < lam < 1 and positive variances, got lam={lam}, v0={v0}, v1={v1}")
    if v0 > v1:
        v0, v1, lam = v1, v0, 1 - lam
    if v0 == v1:
        return None
    c2 = 0.5 * (1.0 / v0 - 1.0 / v1)
    arg = math.log(((1.0 - lam) / lam) * math.sqrt(v1 / v0))
    return math.sqrt(arg / c2) if arg > 0 else None


def fit_spike_slab(values, seed: int = 0, max_points: int = 20000, iters: int = 200) -> SpikeSlab:
    """EM fit of two zero-mean Gaussians (spike and slab) to ``values``."""
    x2 = subsample(values, max_points, seed) ** 2
    if x2.size < 4 or not np.any(x2 > 0):
        raise PruneScopeError("too few non-zero weights to fit a spike and a slab")
    var = float(np.mean(x2))
    v0, v1, lam = var / 10.0, var * 2.0, 0.5
    for _ in range(iters):
        log_slab = math.log(lam) - 0.5 * math.log(v1) - x2 / (2 * v1)
        log_spike = math.log(1 - lam) - 0.5 * math.log(v0) - x2 / (2 * v0)
        r = 1.0 / (1.0 + np.exp(np.clip(log_spike - log_slab, -700, 700)))  # P(slab | w)
        new_lam = float(np.clip(r.mean(), 1e-6, 1 - 1e-6))
        new_v1 = float(np.sum(r * x2) / max(np.sum(r), 1e-12)) or var
        new_v0 = float(np.sum((1 - r) * x2) / max(np.sum(1 - r), 1e-12)) or var * 1e-3
        done = abs(new_lam - lam) < 1e-7 and abs(new_v0 - v0) <= 1e-9 * var and abs(new_v1 - v1) <= 1e-9 * var
        lam, v0, v1 = new_lam, max(new_v0, 1e-20), max(new_v1, 1e-20)
        if done:
            break
    if v0 > v1:
        v0, v1, lam = v1, v0, 1 - lam
    return SpikeSlab(lam, v0, v1)


# ---------------------------------------------------------------- picture of a mask
@dataclass(frozen=True)
class MaskGrid:
    """A mask down-sampled to at most ``rows x cols`` cells; each cell is the kept fraction of its block."""

    kept: np.ndarray  # (rows, cols) float in [0, 1]
    block: tuple[int, int]  # weights per cell: (rows of the layer, columns of the layer)
    shape: tuple[int, int]  # the full mask's shape

    def rows(self) -> list[dict]:
        r, c = self.kept.shape
        br, bc = self.block
        return [
            {
                "row": i,
                "col": j,
                "out_from": i * br,
                "in_from": j * bc,
                "kept": float(self.kept[i, j]),
            }
            for i in range(r)
            for j in range(c)
        ]


def mask_grid(mask, max_rows: int = 64, max_cols: int = 96) -> MaskGrid:
    """Average a (d_out, d_in) mask over blocks so it fits ``max_rows x max_cols``.

    Blocks are whole: a layer whose size is not a multiple of the block size
    drops the last partial block (at most block - 1 rows or columns), which the
    caller can say alongside the picture.
    """
    m = to_numpy(mask).astype(np.float64)
    if m.ndim != 2:
        raise PruneScopeError(f"a mask picture needs a 2-D mask, got shape {m.shape}")
    d_out, d_in = m.shape
    br, bc = max(1, math.ceil(d_out / max_rows)), max(1, math.ceil(d_in / max_cols))
    r, c = max(1, d_out // br), max(1, d_in // bc)
    blocks = m[: r * br, : c * bc].reshape(r, br, c, bc).mean(axis=(1, 3))
    return MaskGrid(blocks, (br, bc), (d_out, d_in))


# ---------------------------------------------------------------- a small worked example
@dataclass(frozen=True)
class ToyLayer:
    """A small linear layer ``y = W x`` and inputs ``X`` (d_in x tokens) a person can read."""

    weight: np.ndarray  # (d_out, d_in)
    inputs: np.ndarray  # (d_in, tokens)

    @property
    def input_sq_sum(self) -> np.ndarray:
        """Sum over tokens of ``x_j^2`` for every input feature ``j`` (Wanda's statistic)."""
        return (self.inputs**2).sum(axis=1)


def toy_layer(size: int = 8, tokens: int = 16, seed: int = 0, loud_inputs: int = 2) -> ToyLayer:
    """A ``size x size`` weight with one-decimal values and inputs where ``loud_inputs`` features are large.

    The loud features are what make Wanda disagree with magnitude: a small weight
    on a loud input matters more than a larger weight on a quiet one.
    """
    rng = np.random.default_rng(seed)
    weight = np.round(rng.normal(0.0, 1.0, size=(size, size)), 1)
    scale = np.ones(size)
    scale[rng.choice(size, size=min(loud_inputs, size), replace=False)] = 6.0
    inputs = np.round(rng.normal(0.0, 1.0, size=(size, tokens)) * scale[:, None], 2)
    return ToyLayer(weight, inputs)


def output_error(weight, kept, inputs) -> float:
    """Relative output error ``||W X - (M * W) X||_F / ||W X||_F`` of a pruned layer."""
    w, m, x = to_numpy(weight), to_numpy(kept).astype(bool), to_numpy(inputs)
    dense = w @ x
    denom = float(np.linalg.norm(dense)) or 1.0
    return float(np.linalg.norm(dense - (w * m) @ x)) / denom


# ---------------------------------------------------------------- the score picture: |W| against ||X_j||
@dataclass(frozen=True)
class ScorePicture:
    """What a score-based criterion keeps, on the plane of ``|W_ij|`` (y) against ``||X_j||`` (x).

    ``cells``: one dict per non-empty 2-D bin (log10 edges ``x0, x1, y0, y1``; ``count``, ``kept``,
    ``kept_fraction``). ``scores``: per log10-score bin ``left, right, kept, pruned``.
    ``threshold``: the score cut at this layer's sparsity; ``boundary``: rows ``{x, y}`` (log10) of
    ``score == threshold`` in the plane (empty when the score does not depend on |W| and ||X|| alone).
    """

    cells: list[dict]
    scores: dict[str, np.ndarray]
    threshold: float
    boundary: list[dict]
    kept_small_loud: int  # kept weights below the median |W| whose input feature is louder than the median feature


def _log_edges(values: np.ndarray, bins: int) -> np.ndarray:
    pos = values[values > 0]
    lo, hi = (np.log10(pos.min()), np.log10(pos.max())) if pos.size else (-1.0, 0.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    logs = np.log10(np.where(values > 0, values, 10.0 ** edges[0]))
    return np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, len(edges) - 2)


def score_picture(weight, input_norm, kept, scores, power: float | None, bins: int = 40) -> ScorePicture:
    """Bin a layer's weights by ``log10 |W_ij|`` and ``log10 ||X_j||`` (kept share per cell) and its
    scores by ``log10 score`` (kept and pruned counts), with the layer's score threshold and, for
    ``score = |W| ||X||^power``, the boundary ``|W| = t / ||X||^power``. Zero weights are left out."""
    w, norms = np.abs(to_numpy(weight)), to_numpy(input_norm).ravel()
    keep = to_numpy(kept).astype(bool)
    sc = to_numpy(scores)
    if w.ndim != 2 or w.shape != keep.shape or w.shape != sc.shape or norms.size != w.shape[1]:
        raise PruneScopeError(f"weight {w.shape}, mask {keep.shape}, scores {sc.shape} and {norms.size} input norms do not match")
    x = np.broadcast_to(norms.reshape(1, -1), w.shape)
    live = (w > 0) & np.isfinite(sc)
    w, x, keep, sc = w[live], x[live], keep[live], sc[live]
    xe, ye = _log_edges(x, bins), _log_edges(w, bins)
    cell = _bin_of(x, xe) * bins + _bin_of(w, ye)
    count = np.bincount(cell, minlength=bins * bins)
    kept_count = np.bincount(cell[keep], minlength=bins * bins)
    cells = [
        {"x0": xe[c // bins], "x1": xe[c // bins + 1], "y0": ye[c % bins], "y1": ye[c % bins + 1],
         "count": int(count[c]), "kept": int(kept_count[c]), "kept_fraction": kept_count[c] / count[c]}
        for c in np.flatnonzero(count)
    ]
    sparsity = 1.0 - keep.sum() / max(1, keep.size)
    threshold = equivalent_threshold(sc, sparsity) if keep.size else 0.0
    se = _log_edges(sc, 60)
    sb = _bin_of(sc, se)
    hist = {"left": 10.0 ** se[:-1], "right": 10.0 ** se[1:], "kept": np.bincount(sb[keep], minlength=60),
            "pruned": np.bincount(sb[~keep], minlength=60)}
    boundary = []
    if power is not None and threshold > 0:
        xs = np.linspace(xe[0], xe[-1], 50)
        ys = np.log10(threshold) - power * xs
        boundary = [{"x": float(a), "y": float(b)} for a, b in zip(xs, ys) if ye[0] <= b <= ye[-1]]
    loud = float(np.median(norms))
    small_loud = int(np.sum(keep & (w < np.median(w)) & (x > loud))) if w.size else 0
    return ScorePicture(cells, hist, float(threshold), boundary, small_loud)


# ---------------------------------------------------------------- where two masks disagree
AGREEMENT = ("kept by both", "kept by A only", "kept by B only", "pruned by both")


def agreement(a, b, rows: int = 32, cols: int = 64) -> dict:
    """Two masks of one layer compared weight by weight: ``counts`` of each :data:`AGREEMENT` class
    (A = the first mask), the Jaccard overlap of the kept weights, and ``cells``: the top-left
    ``rows x cols`` corner at full resolution, one dict ``{row, col, agreement}`` per weight."""
    ma, mb = to_numpy(a).astype(bool), to_numpy(b).astype(bool)
    if ma.shape != mb.shape:
        raise PruneScopeError(f"the two masks differ in shape: {ma.shape} and {mb.shape}")
    classes = np.where(ma & mb, 0, np.where(ma, 1, np.where(mb, 2, 3)))
    found = np.bincount(classes.ravel(), minlength=4)
    counts = {name: int(found[i]) for i, name in enumerate(AGREEMENT)}
    union = int(found[:3].sum())
    corner = classes[:rows, :cols]
    cells = [{"row": i, "col": j, "agreement": AGREEMENT[int(corner[i, j])]} for i in range(corner.shape[0]) for j in range(corner.shape[1])]
    return {"counts": counts, "jaccard": counts["kept by both"] / union if union else 1.0, "cells": cells}
