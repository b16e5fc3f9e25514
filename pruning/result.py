"""The result of one pruning run (:class:`PruneResult`) and the functions that turn masks into weights.

A result is data: masks (True = kept) per layer, new weights for methods that change them, and
``info``. The loaded model is never modified; :func:`masked_overrides` gives the tensors an
evaluation swaps in on a private copy (:func:`pruning.loading.functional.with_overrides`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

from .loading.models import layer_weight, param_key, to_module_layout
from .masks import overall_sparsity


@dataclass
class PruneResult:
    """Masks (True = kept) per layer, plus new weights for methods that change them."""

    method: str
    sparsity: float
    granularity: str
    masks: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def pruned_weights(self, loaded) -> dict[str, torch.Tensor]:
        """The (d_out, d_in) weight of every pruned layer after pruning."""
        return masked_weights(loaded.model, self.masks, self.weights)

    def overrides(self, loaded) -> dict[str, torch.Tensor]:
        """``named_parameters`` key -> pruned tensor, for :func:`pruning.loading.functional.with_overrides`."""
        return masked_overrides(loaded, self.masks, self.weights)

    @property
    def overall_sparsity(self) -> float:
        return overall_sparsity(self.masks)


def masked_weights(model, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None):
    """The (d_out, d_in) float weight of every masked layer: ``weights[name]`` (or the model's) times its mask."""
    out = {}
    for name, mask in masks.items():
        base = weights[name] if weights is not None and name in weights else layer_weight(model, name)
        out[name] = base.detach().to(torch.float32) * mask
    return out


def weight_overrides(model, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``named_parameters`` key -> tensor in the module's layout and dtype, for
    :func:`pruning.loading.functional.with_overrides`, from (d_out, d_in) layer weights."""
    out = {}
    for name, w in weights.items():
        key = param_key(model, name)
        out[key] = to_module_layout(model, name, w).to(model.get_parameter(key).dtype)
    return out


def masked_overrides(loaded, masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor] | None = None):
    """Overrides that apply ``masks`` (and new ``weights``) to the shared model without changing it."""
    return weight_overrides(loaded.model, masked_weights(loaded.model, masks, weights))
