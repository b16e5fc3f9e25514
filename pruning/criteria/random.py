"""Random: keep weights at random (seeded), the floor every method must beat."""

from __future__ import annotations

import torch

from ..registry import Method, ScoreView, register
from ..core import PruneContext
from ..walk import layer_weights, score_method


def random_scores(weight: torch.Tensor, seed: int, salt: str = "") -> torch.Tensor:
    """Uniform random scores, reproducible from ``seed`` (and a per-layer ``salt``)."""
    generator = torch.Generator().manual_seed(_mix(seed, salt))
    return torch.rand(weight.shape, generator=generator)


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


def _random(ctx: PruneContext) -> dict[str, torch.Tensor]:
    return {n: random_scores(w, ctx.seed, salt=n) for n, w in layer_weights(ctx).items()}


register(
    Method(
        name="random",
        label="Random",
        summary="Keep weights at random (seeded): the floor every method must beat.",
        run=score_method("random", _random, lambda ctx, n, w, stats: random_scores(w, ctx.seed, salt=n)),
        scores=_random,
        takes_update=True,
        colour="#8c564b",  # brown
        explain=ScoreView(
            note="Random scores ignore both |W| and ||X_j||: kept and pruned weights mix everywhere, and there is no boundary to draw.",
            toy=lambda weight, sq_sum, n_tokens, seed: random_scores(weight, seed, salt="toy"),
            toy_note="uniform random: the floor every method must beat.",
        ),
    )
)
