"""The types every part of the engine passes around, in a module that imports no other part of it.

:class:`LoadedModel` (what :mod:`pruning.loading.models` loads), :class:`PruneContext` (what a
registered method's ``run`` receives) and the progress / observer callback types. The result of a
run, :class:`pruning.result.PruneResult`, lives in :mod:`pruning.result` beside the functions that
turn masks into weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

ProgressFn = Optional[Callable[[int, int, str], None]]
ObserveFn = Optional[Callable[[str, dict], None]]

MAX_SEED = 2**63 - 1  # the largest seed a request takes (a torch.Generator seed is 64 bits)


@dataclass
class LoadedModel:
    """A model ready to prune and evaluate (never modified in place by PruneScope)."""

    name: str
    model: nn.Module
    tokenizer: Any
    task: str  # "classification" | "causal-lm" | "encoder"
    max_length: int
    source: str
    info: dict = field(default_factory=dict)
    placement: Any = None  # a pruning.loading.devices.Placement (None: CPU, float32)


@dataclass
class PruneContext:
    """Everything a method needs to prune one model once: the request and what it resolved to.

    ``loaded`` is a :class:`LoadedModel` (never modified in place), ``request``
    the validated :class:`pruning.request.PruneRequest`, ``layers`` the layer names it names on
    this model, ``calibration`` a list of model-input batches (dicts of tensors) or ``None``,
    ``data`` the task data for methods that train or select, ``checkpoint`` (or ``None``) where a
    method that trains saves its state and resumes from (:mod:`pruning.store.resume`).
    """

    loaded: Any
    request: Any
    layers: list[str]
    calibration: list | None = None
    progress: ProgressFn = None
    data: Any = None
    observe: ObserveFn = None  # receives intermediate results while the method runs (the app draws them live)
    checkpoint: Any = None  # a pruning.store.resume.TrainingCheckpoint: trained methods save and resume their state there

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
