"""The one registry of pruning methods.

Each method registers itself under a name with :func:`register`; :mod:`pruning.catalog`
imports every file that registers one and is what the CLI, the app's sidebar and the tests
list and describe methods from, so adding a method is one file and no hand-kept list. This
module holds only the types, the dict and :func:`register`: it imports no method.

A method is described by a :class:`Method` and run through its ``run``
callable, which takes a :class:`PruneContext` and returns a
:class:`pruning.result.PruneResult`. Methods whose mask at any sparsity is a
top-k of fixed scores also give ``scores``; callers cache those scores and
re-threshold them on every slider move (see :func:`pruning.prune.mask_ranker`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .core import PruneContext
from .errors import PruneScopeError

@dataclass(frozen=True)
class Param:
    """A user-tunable parameter of a method (drawn as a widget in the app, a flag in the CLI)."""

    default: Any
    help: str
    choices: tuple | Callable[[], tuple] | None = None  # a tuple, or a function read when asked (SDS's base: the registry's block-walking criteria)
    minimum: float | None = None
    maximum: float | None = None
    group: str = "advanced"  # "budget": the few that set how long a run takes (shown first); "advanced": the rest
    normalize: Callable[[Any], Any] | None = None  # maps another accepted spelling to the canonical value before the check (a method's alias to its name)

    @property
    def options(self) -> tuple | None:
        """The allowed values (``choices`` resolved), or None when any value of the default's type is allowed."""
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def coerce(self, name: str, value: Any) -> Any:
        """Convert ``value`` to the default's type and check its range, or raise a clear error."""
        if value is None:
            return self.default
        kind = type(self.default)
        try:
            if kind is bool and isinstance(value, str):
                out = value.strip().lower() in ("1", "true", "yes", "on")
            else:
                out = kind(value) if self.default is not None else value
        except (TypeError, ValueError, OverflowError):
            raise PruneScopeError(f"parameter {name}: {value!r} is not a valid {kind.__name__}") from None
        if isinstance(out, float) and not math.isfinite(out):  # NaN passes every comparison below
            raise PruneScopeError(f"parameter {name}: {value!r} is not a finite number")
        given = out
        if self.normalize is not None:
            out = self.normalize(out)
        options = self.options
        if options is not None and out not in options:
            shown = repr(out) if out == given else f"{given!r} ({out})"
            raise PruneScopeError(f"parameter {name}: {shown} is not one of {', '.join(map(str, options))}")
        if self.minimum is not None and out < self.minimum:
            raise PruneScopeError(f"parameter {name}: {out!r} is below its minimum {self.minimum}")
        if self.maximum is not None and out > self.maximum:
            raise PruneScopeError(f"parameter {name}: {out!r} is above its maximum {self.maximum}")
        return out


@dataclass(frozen=True)
class ScoreView:
    """How the app explains a criterion's scores, given in the criterion's own registration (no table elsewhere):
    the Weights view's score picture (|W_ij| against the input norm ||X_j||) and the Learn view's 8x8 toy layer."""

    note: str = ""  # the Weights view's sentence under its score picture
    power: float | None = None  # score = |W_ij| * ||X_j||^power (magnitude 0, Wanda 1): the picture draws that boundary; None: no such line
    toy: Callable[..., Any] | None = None  # toy(weight, sq_sum, n_tokens, seed) -> scores of one (d_out, d_in) layer: Learn shows it; None: not in Learn
    toy_note: str = ""  # Learn's one line under its score matrix


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    summary: str
    run: Callable[[PruneContext], Any]
    scores: Callable[[PruneContext], dict] | None = None
    needs_calibration: bool = False
    needs_training_data: bool = False
    updates_weights: bool = False
    family: str = "baseline"  # "baseline" | "seed"
    granularities: tuple[str, ...] | None = None  # the allocation rules it takes (their words); None: every registered one (pruning.masks.supported_rules)
    params: dict[str, Param] = field(default_factory=dict)
    reference: str = ""
    granularity: str | Callable[[dict], str] = "layer"  # the paper's default, or a function of the resolved params
    steps_view: str | None = None  # how the app shows the method's steps: "schedule" | "stages" | "candidates" | None
    claim: str | None = None  # anchor of its paper's claim in docs/CLAIMS.md, measured at the paper's budget
    resumable: bool = False  # works in steps and takes a training checkpoint (ctx.checkpoint, pruning.store.resume)
    takes_update: bool = False  # True: any registered update (none, obs, dsnot) may follow its mask (the block walk applies it)
    default_update: str | Callable[[dict], str] = "none"  # the update a request gets when it names none (SparseGPT: "obs", its own reconstruction), or a function of the resolved params (SDS: its base's)
    walks_blocks: bool = False  # True: its own masks come from the block walk, so scores from one dense pass only approximate them
    colour: str | None = None  # "#rrggbb": its colour in every view of the app; None: the next free one of app/style.py's palette
    explain: ScoreView | None = None  # how the Weights and Learn views explain its scores (None: the generic words, not in Learn)
    aliases: tuple[str, ...] = ()  # other names every lookup accepts for it (SparseGPT: "obs", its criterion's name); never listed as methods

    @property
    def default_granularity(self) -> str:
        """The granularity the method's paper uses with its default parameters."""
        return self.granularity_for(self.resolve_params({}))

    def granularity_for(self, params: dict) -> str:
        """The paper's granularity for these resolved parameters (SDS: its base method's)."""
        return self.granularity(params) if callable(self.granularity) else self.granularity

    def update_for(self, params: dict) -> str:
        """The update a request with these resolved parameters gets when it names none (SDS: its base method's own)."""
        return self.default_update(params) if callable(self.default_update) else self.default_update

    @property
    def own_update(self) -> str:
        """The update a request with the default parameters gets when it names none."""
        return self.update_for(self.resolve_params({}))

    @property
    def score_based(self) -> bool:
        """True when a mask at any sparsity is a top-k of scores computed once."""
        return self.scores is not None

    def resolve_params(self, given: dict | None) -> dict:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise PruneScopeError(f"method {self.name} has no parameter {', '.join(unknown)} (it takes: {known})")
        return {k: p.coerce(k, given.get(k)) for k, p in self.params.items()}


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a later registration under the same name replaces it)."""
    _METHODS[method.name] = method
    return method


def walking_criteria() -> tuple[str, ...]:
    """The one-shot criteria that prune block by block from calibration inputs (Wanda, SparseGPT, RIA and any
    calibrated criterion added by the recipe), in registration order: what SDS may use as its base. Read when
    a choice is checked or listed, after :mod:`pruning.catalog` registered every method."""
    return tuple(n for n, m in registered().items() if m.family == "baseline" and m.walks_blocks)


def score_criteria() -> tuple[str, ...]:
    """The criteria whose mask at any sparsity is a top-k of scores computed once, in registration order:
    what randomized selection samples around."""
    return tuple(n for n, m in registered().items() if m.family == "baseline" and m.score_based)


def registered() -> dict[str, Method]:
    """Every method registered so far, by name. Nothing is imported here: :mod:`pruning.catalog`
    imports every criterion and procedure file (each registers itself) and lists them; a procedure
    that runs another method (SDS's base, randomized selection's criterion) looks it up here, after
    the catalog made its request."""
    return dict(_METHODS)


def lookup(methods: dict[str, Method], name: str) -> Method:
    """The method called ``name`` in ``methods``, by its name or one of its :attr:`Method.aliases`
    (case and surrounding spaces ignored), or a clear error listing the names there are."""
    key = str(name).strip().lower()
    if key in methods:
        return methods[key]
    for m in methods.values():
        if key in m.aliases:
            return m
    raise PruneScopeError(f"unknown method {name!r}; available: {', '.join(sorted(methods))}")


def method_name(value: Any) -> Any:
    """The registered method's own name for ``value`` when it is a method's name or alias (``obs`` -> ``sparsegpt``),
    else ``value`` unchanged (for a method-valued :class:`Param`: its choices then say what is allowed)."""
    try:
        return lookup(_METHODS, value).name
    except PruneScopeError:
        return value


def registered_method(name: str) -> Method:
    """The registered method ``name`` or alias (a clear error for an unknown one)."""
    return lookup(_METHODS, name)
