"""The registry of allocations: how many weights each layer (row, group) keeps at a target sparsity.

Every file of ``pruning/allocations/`` registers one with :func:`register_allocation`;
:func:`all_allocations` imports them all (no hand-kept list). There are two kinds:

* a **rule** (per layer, per row, global, N:M, a fixed ``{layer: sparsity}``) says where the threshold
  applies; its :class:`Shape` turns scores into masks (``pruning.masks.compute_masks`` and the slider's
  ``MaskRanker`` call it), answers to its words (``--granularity row``, ``2:4``) and gives a block walk
  each layer's sparsity;
* a **measured** allocation (OWL) looks at the model first: its ``compute(loaded, layers, calibration,
  sparsity, params, progress)`` returns ``(allocation {layer: sparsity}, info)``, and the request then
  prunes each layer at its own sparsity with the chosen criterion (the rule ``allocated``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import PruneScopeError
from ..maskmath import Granularity
from ..plugins import import_all
from ..registry import Param


@dataclass(frozen=True)
class Shape:
    """A rule's mask math, in the rule's own file.

    ``parse(word)``: its :class:`pruning.maskmath.Granularity` for a word it answers to (``"row"``, ``"2:4"``),
    else None. ``masks(scores, sparsity, g, weights)``: exact masks from ``{layer: scores}``.
    ``ranked(ranker, sparsity, g, names)``: the same masks from a :class:`pruning.masks.MaskRanker`'s
    prepared scores, caching what it ranks in ``ranker.cache`` (the slider re-thresholds in milliseconds).
    ``budgets(names, sparsity, g, dense_masks)``: each layer's sparsity for a block walk, where
    ``dense_masks()`` gives this rule's masks from one dense pass of the criterion (only a rule whose
    threshold spans layers needs it). ``words``: how users name it (the sidebar's choices, ``methods``).
    ``fits(g, d_in, layer)``: why a layer of that input size cannot hold the rule (N:M), else None."""

    parse: Callable[[str], Granularity | None]
    masks: Callable[..., dict]
    ranked: Callable[..., dict]
    budgets: Callable[..., dict[str, float]]
    words: tuple[tuple[str, str], ...] = ()  # (word, label) pairs, e.g. ("2:4", "2:4 semi-structured ...")
    fits: Callable[..., str | None] | None = None  # fits(g, d_in, layer) -> why a layer cannot hold the rule, or None
    by_word: bool = True  # False: not chosen by a word (allocated: from a FILE.json or a measured allocation)


@dataclass(frozen=True)
class Allocation:
    name: str
    label: str
    summary: str
    compute: Callable[..., tuple[dict[str, float], dict]] | None = None  # a measured allocation
    params: dict[str, Param] = field(default_factory=dict)
    needs_calibration: bool = True
    reference: str = ""
    shape: Shape | None = None  # a rule (per layer, row, global, N:M, allocated)
    order: int = 100  # where it is listed (the sidebar, `methods`): lower first
    rebuild: Callable[[dict, float, dict], dict[str, float]] | None = None  # (info, sparsity, params) -> the allocation at
    # another target from what one measurement found (``compute``'s info), so the app re-allocates on every slider move

    @property
    def measured(self) -> bool:
        """True when it measures the model first (``compute``); False for a threshold rule."""
        return self.compute is not None

    def resolve_params(self, given: dict | None) -> dict[str, Any]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise PruneScopeError(f"allocation {self.name} has no parameter {', '.join(unknown)} (it takes: {', '.join(self.params) or 'none'})")
        return {k: p.coerce(k, given.get(k)) for k, p in self.params.items()}


def same_everywhere(names, sparsity, g, dense_masks) -> dict[str, float]:
    """``Shape.budgets`` of a rule that prunes every layer at the target itself (per layer, per row)."""
    return {n: sparsity for n in names}


_ALLOCATIONS: dict[str, Allocation] = {}


def register_allocation(allocation: Allocation) -> Allocation:
    _ALLOCATIONS[allocation.name] = allocation
    return allocation


def all_allocations() -> dict[str, Allocation]:
    """Every allocation, rules first, each group in its listing order."""
    import_all("pruning.allocations")
    return dict(sorted(_ALLOCATIONS.items(), key=lambda kv: (kv[1].measured, kv[1].order, kv[0])))


def rules() -> dict[str, Allocation]:
    """The threshold rules (allocations with a :class:`Shape`), by ``Granularity.kind``."""
    return {a.name: a for a in all_allocations().values() if a.shape is not None}


def measured() -> dict[str, Allocation]:
    """The allocations that measure the model first (OWL), by name."""
    return {a.name: a for a in all_allocations().values() if a.measured}


def rule_of(g: Granularity) -> Shape:
    """The :class:`Shape` of a parsed rule."""
    found = rules().get(g.kind)
    if found is None:
        raise PruneScopeError(f"no allocation rule {g.kind!r}; rules: {', '.join(sorted(rules()))}")
    return found.shape  # type: ignore[return-value]


def parse_rule(text: str) -> Granularity | None:
    """The rule a word names (``layer``, ``row``, ``global``, ``2:4``), or None when no rule answers to it."""
    word = str(text).strip().lower()
    for a in rules().values():
        g = a.shape.parse(word)  # type: ignore[union-attr]
        if g is not None:
            return g
    return None


def rule_words() -> dict[str, str]:
    """Every word a rule is chosen by (``--granularity``, the sidebar), with its label, in listing order."""
    out: dict[str, str] = {}
    for a in sorted(rules().values(), key=lambda a: (a.order, a.name)):
        if a.shape.by_word:  # type: ignore[union-attr]
            out.update(dict(a.shape.words))  # type: ignore[union-attr]
    return out


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
