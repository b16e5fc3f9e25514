"""The registry of updates: what happens to the weights a criterion's mask keeps.

Every file of ``pruning/updates/`` that defines an update registers it here with
:func:`register_update`; :func:`all_updates` imports them all (no hand-kept list). The block walk
(:mod:`pruning.walk`) calls an update once per layer, after the criterion's mask, with the layer's
calibration statistics from the already-pruned blocks before it (SparseGPT's order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import PruneScopeError
from ..plugins import import_all


@dataclass(frozen=True)
class UpdateEnv:
    """What an update may need besides the layer's weight, mask and input statistics."""

    n_samples: int  # calibration samples (DSnoT averages its per-sample sums over them)
    granularity: Any  # the within-layer :class:`pruning.masks.Granularity` the mask was chosen at
    layer: str = ""  # the layer's module name (DSnoT leaves the FFN layers alone, as its authors' default)


@dataclass(frozen=True)
class Update:
    """An update: ``apply(weight, keep, stats, env) -> (new_weight or None, keep)``.

    ``weight`` is the layer's (d_out, d_in) weight before pruning, ``keep`` the criterion's mask
    (True = kept), ``stats`` a :class:`pruning.calibration.InputStats` of the layer's inputs (its Gram
    matrix present when ``want_gram``). ``None`` as the new weight means "the weights stay"."""

    name: str
    label: str
    summary: str
    apply: Callable[[torch.Tensor, torch.Tensor, Any, UpdateEnv], tuple[torch.Tensor | None, torch.Tensor]]
    needs_calibration: bool = True
    want_gram: bool = False
    changes_weights: bool = False  # True: kept weights change (the run saves new weights)
    reference: str = ""


_UPDATES: dict[str, Update] = {}


def register_update(update: Update) -> Update:
    """Add ``update`` to the registry (a later registration under the same name replaces it)."""
    _UPDATES[update.name] = update
    return update


def all_updates() -> dict[str, Update]:
    import_all("pruning.updates")
    return dict(_UPDATES)


def get_update(name: str) -> Update:
    updates = all_updates()
    key = str(name).strip().lower()
    if key not in updates:
        raise PruneScopeError(f"unknown update {name!r}; available: {', '.join(sorted(updates))}")
    return updates[key]
