"""The one registry of pruning methods.

Each method registers itself under a name with :func:`register`. The CLI, the
app's sidebar and the tests list and describe methods from here only, so adding
a method is one module and no hand-kept list.

A method is described by a :class:`Method` and run through its ``run``
callable, which takes a :class:`PruneContext` and returns a
:class:`pruning.prune.PruneResult`. Methods whose mask at any sparsity is a
top-k of fixed scores also give ``scores``; callers cache those scores and
re-threshold them on every slider move (see :func:`pruning.prune.mask_ranker`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import PruneScopeError

ProgressFn = Optional[Callable[[int, int, str], None]]
ObserveFn = Optional[Callable[[str, dict], None]]


@dataclass(frozen=True)
class Param:
    """A user-tunable parameter of a method (drawn as a widget in the app, a flag in the CLI)."""

    default: Any
    help: str
    choices: tuple | Callable[[], tuple] | None = None  # a tuple, or a function read when asked (SDS's base: the registry's block-walking criteria)
    minimum: float | None = None
    maximum: float | None = None
    group: str = "advanced"  # "budget": the few that set how long a run takes (shown first); "advanced": the rest

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
        options = self.options
        if options is not None and out not in options:
            raise PruneScopeError(f"parameter {name}: {out!r} is not one of {', '.join(map(str, options))}")
        if self.minimum is not None and out < self.minimum:
            raise PruneScopeError(f"parameter {name}: {out!r} is below its minimum {self.minimum}")
        if self.maximum is not None and out > self.maximum:
            raise PruneScopeError(f"parameter {name}: {out!r} is above its maximum {self.maximum}")
        return out


@dataclass
class PruneContext:
    """Everything a method needs to prune one model once: the request and what it resolved to.

    ``loaded`` is a :class:`pruning.models.LoadedModel` (never modified in place), ``request``
    the validated :class:`pruning.request.PruneRequest`, ``layers`` the layer names it names on
    this model, ``calibration`` a list of model-input batches (dicts of tensors) or ``None``,
    ``data`` the task data for methods that train or select, ``checkpoint`` (or ``None``) where a
    method that trains saves its state and resumes from (:mod:`pruning.resume`).
    """

    loaded: Any
    request: Any
    layers: list[str]
    calibration: list | None = None
    progress: ProgressFn = None
    data: Any = None
    observe: ObserveFn = None  # receives intermediate results while the method runs (the app draws them live)
    checkpoint: Any = None  # a pruning.resume.TrainingCheckpoint: trained methods save and resume their state there

    @property
    def sparsity(self) -> float:
        return self.request.sparsity

    @property
    def granularity(self):
        """The parsed :class:`pruning.masks.Granularity`."""
        return self.request.granularity

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def params(self):
        return self.request.param_dict

    def report(self, done: int, total: int, message: str) -> None:
        if self.progress is not None:
            self.progress(done, total, message)

    def emit(self, kind: str, entry: dict) -> None:
        """Hand an intermediate result (an MGPP snapshot, an SDS step, a randomized stage) to the observer, if any.

        ``entry`` is the same dict the method also puts in its final ``info``; observers must
        treat it as read-only.
        """
        if self.observe is not None:
            self.observe(kind, entry)


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
    granularities: tuple[str, ...] = ("layer", "global", "row", "2:4", "4:8", "allocated")
    params: dict[str, Param] = field(default_factory=dict)
    reference: str = ""
    granularity: str | Callable[[dict], str] = "layer"  # the paper's default, or a function of the resolved params
    steps_view: str | None = None  # how the app shows the method's steps: "schedule" | "stages" | "candidates" | None
    claim: str | None = None  # anchor of its paper's claim in docs/CLAIMS.md, measured at the paper's budget
    resumable: bool = False  # works in steps and takes a training checkpoint (ctx.checkpoint, pruning.resume)
    takes_update: bool = False  # True: any registered update (none, obs, dsnot) may follow its mask (the block walk applies it)
    default_update: str = "none"  # the update a request gets when it names none (SparseGPT: "obs", its own reconstruction)
    walks_blocks: bool = False  # True: its own masks come from the block walk, so scores from one dense pass only approximate them
    colour: str | None = None  # "#rrggbb": its colour in every view of the app; None: the next free one of app/style.py's palette
    explain: ScoreView | None = None  # how the Weights and Learn views explain its scores (None: the generic words, not in Learn)

    @property
    def default_granularity(self) -> str:
        """The granularity the method's paper uses with its default parameters."""
        return self.granularity_for(self.resolve_params({}))

    def granularity_for(self, params: dict) -> str:
        """The paper's granularity for these resolved parameters (SDS: its base method's)."""
        return self.granularity(params) if callable(self.granularity) else self.granularity

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


def _load_builtin() -> None:
    # Importing these modules registers their methods; every file of pruning/criteria/ registers its criterion.
    from . import methods  # noqa: F401
    from .plugins import import_all

    import_all("pruning.criteria")
    from . import seeds  # noqa: F401  (MGPP, GMP, SDS, randomized: a module that fails to import is an error, never a missing method)


def all_methods(family: str | None = None) -> dict[str, Method]:
    _load_builtin()
    return {n: m for n, m in _METHODS.items() if family is None or m.family == family}


def walking_criteria() -> tuple[str, ...]:
    """The one-shot criteria that prune block by block from calibration inputs (Wanda, SparseGPT, RIA and any
    calibrated criterion added by the recipe), in registration order: what SDS may use as its base."""
    return tuple(n for n, m in all_methods("baseline").items() if m.walks_blocks)


def score_criteria() -> tuple[str, ...]:
    """The criteria whose mask at any sparsity is a top-k of scores computed once, in registration order:
    what randomized selection samples around."""
    return tuple(n for n, m in all_methods("baseline").items() if m.score_based)


def get_method(name: str) -> Method:
    methods = all_methods()
    key = str(name).strip().lower()
    if key not in methods:
        raise PruneScopeError(f"unknown method {name!r}; available: {', '.join(sorted(methods))}")
    return methods[key]
