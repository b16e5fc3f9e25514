"""MaskSet: one method's masks at one sparsity and granularity, as the app's resources and an opened
run folder (:mod:`app.runs`) both hand them to the pages. It imports nothing of the app."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MaskSet:
    """The masks (True = kept) of one method at one sparsity and granularity, and new weights if any."""

    method: str
    sparsity: float
    granularity: str
    masks: dict
    weights: dict | None = None
    info: dict = field(default_factory=dict)
    other: dict | None = None  # parameters a trained method fine-tuned besides the pruned layers (module layout)

    ident: tuple = ()  # everything that produced these masks (model, data, the request's key): a safe cache key

    @property
    def key(self) -> tuple:
        return self.ident
