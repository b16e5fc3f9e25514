"""The registry of computed allocations: rules that measure the model to give each layer its own
sparsity (``--allocation NAME``). Per layer, per row, global and N:M are granularities
(:mod:`pruning.masks`); a fixed ``{layer: sparsity}`` file is ``--allocation FILE.json``.

Every file of ``pruning/allocations/`` that defines one registers it with :func:`register_allocation`;
:func:`all_allocations` imports them all. An allocation's ``compute(loaded, layers, calibration,
sparsity, params, progress)`` returns ``(allocation {layer: sparsity}, info)``; the request then
prunes each layer at its own sparsity with the chosen criterion (granularity ``allocated``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import PruneScopeError
from ..plugins import import_all
from ..registry import Param


@dataclass(frozen=True)
class Allocation:
    name: str
    label: str
    summary: str
    compute: Callable[..., tuple[dict[str, float], dict]]
    params: dict[str, Param] = field(default_factory=dict)
    needs_calibration: bool = True
    reference: str = ""

    def resolve_params(self, given: dict | None) -> dict[str, Any]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise PruneScopeError(f"allocation {self.name} has no parameter {', '.join(unknown)} (it takes: {', '.join(self.params) or 'none'})")
        return {k: p.coerce(k, given.get(k)) for k, p in self.params.items()}


_ALLOCATIONS: dict[str, Allocation] = {}


def register_allocation(allocation: Allocation) -> Allocation:
    _ALLOCATIONS[allocation.name] = allocation
    return allocation


def all_allocations() -> dict[str, Allocation]:
    import_all("pruning.allocations")
    return dict(_ALLOCATIONS)


def get_allocation(name: str) -> Allocation:
    allocations = all_allocations()
    key = str(name).strip().lower()
    if key not in allocations:
        raise PruneScopeError(f"unknown allocation {name!r}; available: {', '.join(sorted(allocations))} or a FILE.json")
    return allocations[key]


def parse_spec(text: str) -> tuple[str, dict[str, str]]:
    """``"owl:m=5,lambda=0.08"`` -> ``("owl", {"m": "5", "lambda": "0.08"})`` (values checked by the allocation)."""
    name, _, rest = str(text).partition(":")
    params = {}
    for pair in (p.strip() for p in rest.split(",") if p.strip()):
        if "=" not in pair:
            raise PruneScopeError(f"allocation parameters are NAME=VALUE pairs, as in owl:m=5,lambda=0.08; got {pair!r}")
        key, value = pair.split("=", 1)
        params[key.strip().lower()] = value.strip()
    return name.strip().lower(), params
