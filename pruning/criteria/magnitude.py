"""Magnitude: keep the weights with the largest |W| (Han et al. 2015). No data needed."""

from __future__ import annotations

import torch

from ..registry import Method, ScoreView, register
from ..core import PruneContext
from ..walk import layer_weights, score_method


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """``|W_ij|``."""
    return weight.detach().abs().float()


def _magnitude(ctx: PruneContext) -> dict[str, torch.Tensor]:
    return {n: magnitude_scores(w) for n, w in layer_weights(ctx).items()}


register(
    Method(
        name="magnitude",
        label="Magnitude",
        summary="Keep the weights with the largest |W|. No data needed.",
        run=score_method("magnitude", _magnitude, lambda ctx, n, w, stats: magnitude_scores(w)),
        scores=_magnitude,
        takes_update=True,
        reference="Han et al. 2015",
        colour="#e6850e",  # orange
        explain=ScoreView(
            note="Magnitude's score is |W| alone: the boundary is a horizontal line, and the input norm plays no part.",
            power=0.0,
            toy=lambda weight, sq_sum, n_tokens, seed: magnitude_scores(weight),
            toy_note="|W_ij|: big weights matter.",
        ),
    )
)
