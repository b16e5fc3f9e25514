"""Pure per-layer importance scores: higher means more worth keeping.

Every function takes a (d_out, d_in) weight and returns a tensor of the same
shape. Calibration statistics come from :mod:`pruning.calibration`.
"""

from __future__ import annotations

import torch


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """``|W_ij|``."""
    return weight.detach().abs().float()


def random_scores(weight: torch.Tensor, seed: int, salt: str = "") -> torch.Tensor:
    """Uniform random scores, reproducible from ``seed`` (and a per-layer ``salt``)."""
    generator = torch.Generator().manual_seed(_mix(seed, salt))
    return torch.rand(weight.shape, generator=generator)


def wanda_scores(weight: torch.Tensor, input_sq_sum: torch.Tensor) -> torch.Tensor:
    """Wanda: ``|W_ij| * ||X_j||_2`` where ``input_sq_sum[j] = sum over tokens of x_j^2``."""
    return weight.detach().abs().float() * input_sq_sum.float().clamp_min(0).sqrt().unsqueeze(0)


def sparsegpt_scores(weight: torch.Tensor, hinv_diag: torch.Tensor) -> torch.Tensor:
    """SparseGPT's saliency before any update: ``W_ij^2 / [H^-1]_jj^2`` (OBS error of pruning one weight)."""
    return weight.detach().float() ** 2 / hinv_diag.float().unsqueeze(0) ** 2


_GOLDEN = 0x9E3779B97F4A7C15  # odd, so multiplying by it permutes the 64-bit integers


def _mix(seed: int, salt: str) -> int:
    """A stable 64-bit generator seed from a seed and a string (Python's hash() is salted per process).

    Every bit of ``seed`` counts: its low 32 bits and the salt are mixed as they always were (so
    seeds below 2**32 give the same numbers as before), and the high bits are folded in by an
    odd multiplier, one-to-one: seed 2**40 no longer draws what seed 0 draws.
    """
    value = int(seed) & 0xFFFFFFFF
    for ch in salt:
        value = (value * 1_000_003 + ord(ch)) % (1 << 61)
    return value ^ (((int(seed) >> 32) * _GOLDEN) & 0xFFFFFFFFFFFFFFFF)
