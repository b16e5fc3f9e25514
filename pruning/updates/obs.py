"""The OBS update on a given mask: SparseGPT's reconstruction with the mask fixed.

SparseGPT (Frantar & Alistarh 2023) chooses its mask inside the column walk; Wanda's repository
ablates the other half of it (``lib/ablate.py``): keep a mask chosen by any criterion and let
the walk spread each pruned weight's error over the columns after it, through the upper Cholesky
factor of the dampened inverse Hessian H = 2 X X^T / n. The mask is kept exactly; only the kept
weights change, so the layer's output on its calibration inputs moves less than with the mask
alone.
"""

from __future__ import annotations

import torch

from .sparsegpt_solver import hessian_factor, hessian_inverse_factor, sparsegpt_solve
from .registry import Update, register_update


def obs_update(weight: torch.Tensor, keep: torch.Tensor, gram: torch.Tensor, n_tokens: int, damp: float = 0.01, blocksize: int = 128) -> torch.Tensor:
    """New (d_out, d_in) weight: ``weight`` pruned by ``keep`` (True = kept) with the kept weights
    updated by the OBS column walk; ``gram = X X^T`` of the layer's calibration inputs."""
    U, dead = hessian_inverse_factor(gram, n_tokens, damp=damp)
    new, _ = sparsegpt_solve(weight, U, 0.0, "layer", dead=dead, blocksize=blocksize, keep=keep.to(torch.bool))
    return new


def _apply(weight, keep, stats, env):
    key = ("obs", 0.01)
    if key not in stats.cache:  # layers reading one input share the factorisation
        stats.cache[key] = hessian_factor(stats.hessian(), damp=0.01)  # the reference's running H under numerics "reference"
    U, dead = stats.cache[key]
    new, _ = sparsegpt_solve(weight.to(torch.float32), U, 0.0, "layer", dead=dead, keep=keep.to(torch.bool))
    return new, keep  # the mask stays exactly (a never-active input's kept weight is set to 0, harmlessly)


register_update(
    Update(
        name="obs",
        label="OBS",
        summary="SparseGPT's column walk on the given mask: each pruned weight's error is spread over the kept "
        "weights after it through the inverse Hessian of the layer's inputs. The mask stays; kept weights change.",
        apply=_apply,
        want_gram=True,
        changes_weights=True,
        reference="Frantar & Alistarh 2023 (SparseGPT); Sun et al. 2023 (Wanda's ablate code)",
    )
)
