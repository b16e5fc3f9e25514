"""One pruning request: what to prune, how, with which data and seed, validated once.

A :class:`PruneRequest` is made by :meth:`PruneRequest.make` from loose values (a method
name, a sparsity, a granularity string, parameter strings from a form or a command line)
and is then a frozen, hashable record: every later step (:func:`pruning.prune.prune`,
:func:`pruning.prune.mask_ranker`, the sweeps, the candidate pool, the CLI and the app)
reads it and checks nothing again. Its :attr:`~PruneRequest.key` identifies the request
in caches.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from .catalog import get_method
from .core import MAX_SEED
from .calibration import NUMERICS
from .errors import PruneScopeError
from .masks import Granularity, allocated, parse_granularity, supported_rules, supports, validate_sparsity
from .updates.registry import get_update



def validate_seed(seed: Any) -> int:
    """``seed`` as an int in [0, 2**63 - 1], or a clear error (every bit of it is used)."""
    if isinstance(seed, bool):
        raise PruneScopeError(f"seed must be a whole number from 0 to 2**63-1, got {seed!r}")
    try:
        value = operator.index(seed) if not isinstance(seed, str) else int(seed.strip())
    except (TypeError, ValueError):
        raise PruneScopeError(f"seed must be a whole number from 0 to 2**63-1, got {seed!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise PruneScopeError(f"seed must be from 0 to 2**63-1 = {MAX_SEED}, got {value}")
    return value


def _positive(name: str, value: Any) -> int:
    try:
        out = operator.index(value)
    except TypeError:
        raise PruneScopeError(f"{name} must be a whole number, got {value!r}") from None
    if out < 1:
        raise PruneScopeError(f"{name} must be at least 1, got {out}")
    return out


@dataclass(frozen=True)
class PruneRequest:
    """A validated pruning request. Build it with :meth:`make`; change it with :meth:`replace`.

    ``params`` holds every parameter of the method, resolved (defaults filled in), as sorted
    ``(name, value)`` pairs; :attr:`param_dict` is a read-only dict view. ``dataset`` is a
    dataset name or path (``None``: the model's default), ``calib_samples``/``calib_len`` the
    calibration choice, ``layers`` the layer names to prune (``None``: every prunable layer
    matching ``include``/``exclude``). For N:M the sparsity is N/M; for an allocation it is the
    value given, else the mean of the allocation (the parameter-weighted mean needs the model:
    :func:`pruning.prune.prune` reports it).
    """

    method: str
    granularity: Granularity
    sparsity: float
    params: tuple[tuple[str, Any], ...] = ()
    dataset: str | None = None
    calib_samples: int = 16
    calib_len: int = 128
    seed: int = 0
    layers: tuple[str, ...] | None = None
    include: str | None = None
    exclude: str | None = None
    update: str = "none"  # what happens to the kept weights: a name from pruning.updates.registry
    numerics: str = "fast"  # "fast", or "reference": the published Wanda/SparseGPT code's calibration arithmetic

    @classmethod
    def make(
        cls,
        method: str,
        sparsity: float | None = None,
        granularity: str | Granularity | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        allocation: Mapping[str, float] | None = None,
        dataset: str | None = None,
        calib_samples: int = 16,
        calib_len: int = 128,
        seed: Any = 0,
        layers=None,
        include: str | None = None,
        exclude: str | None = None,
        update: str | None = None,
        numerics: str | None = None,
    ) -> "PruneRequest":
        """Check every value once and build the request.

        ``granularity=None`` takes the method's paper default (:attr:`Method.default_granularity`);
        ``allocation`` (``{layer: sparsity}``) makes the granularity ``allocated`` and, when no
        ``layers`` are given, prunes exactly the listed layers. ``update=None`` takes the method's
        own for these parameters (:meth:`Method.update_for`: ``"none"``, SparseGPT ``"obs"``, SDS its base's). ``numerics`` (``None``:
        ``"fast"``): ``"reference"`` runs the calibration walk one sample per block pass with the published
        code's running averages and SparseGPT's per-block mask rule (docs/CLI.md, "Numerics").
        """
        m = get_method(method)
        resolved = m.resolve_params(dict(params or {}))
        g = _granularity(m, granularity, allocation, resolved)
        if g.is_nm:
            value = g.fixed_sparsity
        elif g.is_allocated:
            alloc = g.allocation_dict
            value = validate_sparsity(sum(alloc.values()) / len(alloc) if sparsity is None else sparsity)
        else:
            value = validate_sparsity(0.5 if sparsity is None else sparsity)
        if layers is None and g.is_allocated:
            layers = [name for name, _ in g.allocation]
        return cls(
            method=m.name,
            granularity=g,
            sparsity=float(value),
            params=tuple(sorted(resolved.items())),
            dataset=None if dataset is None else str(dataset),
            calib_samples=_positive("calibration samples", calib_samples),
            calib_len=_positive("calibration tokens per sample", calib_len),
            seed=validate_seed(seed),
            layers=None if layers is None else _layer_tuple(layers),
            include=include or None,
            exclude=exclude or None,
            update=_update(m, update, resolved),
            numerics=_numerics(numerics, resolved),
        )

    def replace(self, **changes) -> "PruneRequest":
        """A new request with some fields changed, validated by :meth:`make` again.

        A new ``method`` without new ``params`` takes that method's defaults; a new
        ``granularity`` replaces an allocation.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if "method" in changes and "params" not in changes and get_method(changes["method"]).name != self.method:
            fields["params"] = None
        if "update" not in changes and ({"method", "params"} & set(changes)):
            # the method's own update (for its parameters: SDS's base's) goes with it; a chosen one stays where
            # the new method takes it
            new = get_method(changes.get("method", self.method))
            own = self.update == self.method_info.update_for(self.param_dict)
            fields["update"] = None if own or not new.takes_update else self.update
        fields.update(changes)
        if "granularity" in changes and self.granularity.is_allocated and "layers" not in changes:
            fields["layers"] = None
        fields["params"] = None if fields["params"] is None else dict(fields["params"])
        return PruneRequest.make(**fields)

    @property
    def param_dict(self) -> Mapping[str, Any]:
        """The resolved method parameters as a read-only dict."""
        return MappingProxyType(dict(self.params))

    @property
    def key(self) -> tuple:
        """A hashable identity of the request (equal requests, equal keys), for caches."""
        return dataclasses.astuple(self)

    @property
    def update_info(self):
        """The registered :class:`pruning.updates.registry.Update`."""
        return get_update(self.update)

    @property
    def needs_calibration(self) -> bool:
        """Whether running this request needs calibration batches (its method's or its update's)."""
        return self.method_info.needs_calibration or self.update_info.needs_calibration

    @property
    def method_info(self):
        """The registered :class:`pruning.registry.Method`."""
        return get_method(self.method)

    def describe(self) -> dict:
        """A JSON-able summary for reports."""
        out = {
            "method": self.method,
            "granularity": str(self.granularity),
            "sparsity": self.sparsity,
            "params": dict(self.params),
            "dataset": self.dataset,
            "calibration": {"samples": self.calib_samples, "tokens_per_sample": self.calib_len},
            "seed": self.seed,
            "update": self.update,
            "numerics": self.numerics,
        }
        if self.granularity.is_allocated:
            out["allocation"] = self.granularity.allocation_dict
        return out


def _granularity(method, granularity, allocation, params: dict) -> Granularity:
    if allocation is not None:
        if granularity is not None and str(granularity) != "allocated":
            raise PruneScopeError(f"an allocation gives each layer its own sparsity; it cannot be combined with granularity {granularity}")
        g = allocated(allocation)
    elif granularity is None:
        g = parse_granularity(method.granularity_for(params))
    else:
        g = parse_granularity(granularity)
    if g.is_allocated and not g.allocation:
        raise PruneScopeError("granularity 'allocated' needs an allocation {layer: sparsity}")
    if not supports(method, g):
        raise PruneScopeError(
            f"method {method.name} does not support granularity {g}; it supports {', '.join(supported_rules(method))}"
        )
    return g


def _update(method, update: str | None, params: dict) -> str:
    """The request's update, checked: a registered one, and one the method takes (``None``: the method's own
    for its resolved ``params``)."""
    own = method.update_for(params)
    if update is None or str(update).strip() == "":
        return own
    name = get_update(update).name
    if name != own and not method.takes_update:
        raise PruneScopeError(
            f"method {method.name} does not take an update choice (its own is {own!r}); "
            "updates follow the one-shot criteria and the procedures that take one (see `python -m pruning methods`)"
        )
    return name


def _numerics(numerics: str | None, params: dict) -> str:
    """The request's numerics, checked: ``fast`` or ``reference`` (which has only the block order)."""
    name = "fast" if numerics is None or str(numerics).strip() == "" else str(numerics).strip().lower()
    if name not in NUMERICS:
        raise PruneScopeError(f"numerics must be {' or '.join(NUMERICS)}, got {numerics!r}")
    if name == "reference" and params.get("order", "block") != "block":
        raise PruneScopeError("numerics 'reference' follows the published code's block order; it cannot be combined with order 'sequential'")
    return name


def _layer_tuple(layers) -> tuple[str, ...]:
    if isinstance(layers, str):
        layers = [layers]
    out = tuple(str(n) for n in layers)
    if not out:
        raise PruneScopeError("the list of layers to prune is empty")
    return out
