"""The per-layer sparsity allocation built on the Layer sensitivity page, and its use elsewhere.

**Apply** on that page stores an :class:`AllocationSource` in the session (the measured
sensitivity, not one fixed allocation) and makes ``"allocated"`` the sidebar's granularity.
The allocation is then rebuilt for whatever overall sparsity is asked for (the sidebar's
target, or each point of the sparsity ramp), so allocated and uniform pruning are always
compared at the same parameter-weighted overall sparsity. No Streamlit here: pure data
and the two download formats.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass

ALLOCATED = "allocated"
SOURCE_KEY = "ps_allocation_source"  # session-state key of the applied AllocationSource
PENDING_KEY = "ps_allocation_pending"  # a source measured during a run, applied by the sidebar before its widgets are drawn
SIGNALS = {"kl": "KL divergence from the dense model", "drop": "metric drop"}


class MeasuredOnModel:
    """What every applied allocation answers: which model it was measured on, and whether it fits another."""

    model_key: tuple

    def model_name(self) -> str:
        return str(self.model_key[0])

    def fits(self, model_key: tuple) -> bool:
        """Whether this allocation was measured on the model ``model_key`` names (its layers are that model's)."""
        return tuple(model_key) == self.model_key

    def mismatch(self, model_key: tuple) -> str | None:
        """What is wrong when the allocation is used with another model (None when it fits)."""
        return None if self.fits(model_key) else _mismatch(model_key, self.model_name())


@dataclass(frozen=True)
class AllocationSource(MeasuredOnModel):
    """What an allocation is built from: one sensitivity measurement of one model (hashable)."""

    model_key: tuple
    method: str
    signal: str  # "kl" or "drop": the column that ranks the layers
    rows: tuple  # (layer, sparsity, signal value) per measured point
    params: tuple  # (layer, parameter count)
    granularity: str = "layer"  # the granularity within one layer that the measurement used

    @classmethod
    def from_rows(cls, model_key: tuple, method: str, signal: str, rows, params: dict, granularity: str = "layer") -> "AllocationSource":
        points = tuple((r["layer"], float(r["sparsity"]), float(r[signal])) for r in rows if r["layer"] != "-")
        return cls(tuple(model_key), method, signal, points, tuple(sorted(params.items())), str(granularity))

    @property
    def label(self) -> str:
        return "Layer sensitivity"

    def at(self, target: float) -> dict[str, float]:
        """``{layer: sparsity}`` with the parameter-weighted mean at ``target``."""
        return dict(_allocate(self, round(float(target), 6)))

    def describe(self) -> str:
        return f"from the {self.method} layer sensitivity, ranked by {SIGNALS.get(self.signal, self.signal)}"


def _mismatch(model_key: tuple, measured_on: str) -> str:
    from .text import md  # model names come from the address or a typed path: text, never Markdown

    here, there = md(model_key[0]), md(measured_on)
    return (
        f"The applied per-layer allocation was measured on **{there}**, and names that model's layers; "
        f"**{here}** has other layers, so it cannot be pruned with it. Go back to uniform pruning (one sparsity "
        f"for every layer), or switch the model back to {there}."
    )


@dataclass(frozen=True)
class MeasuredSource(MeasuredOnModel):
    """A registered measured allocation (OWL) as measured once on one model with one calibration set: what its
    ``compute`` found (``info``, kept as JSON so the source is hashable), rebuilt for any target by its ``rebuild``."""

    model_key: tuple
    name: str  # the registered allocation's name
    label: str
    params: tuple  # its resolved (name, value) parameters
    info_json: str
    calibration: str  # in words: what it measured on
    granularity: str = "layer"  # each layer is pruned per layer at its own sparsity

    def at(self, target: float) -> dict[str, float]:
        """``{layer: sparsity}`` at ``target``, by the allocation's own rule (OWL: the mean over its blocks)."""
        return dict(_rebuild(self, round(float(target), 6)))

    def describe(self) -> str:
        return f"by {self.label}, measured on this model's {self.calibration}"


@functools.lru_cache(maxsize=64)
def _rebuild(source: MeasuredSource, target: float) -> tuple:
    from pruning.allocations.registry import get_allocation

    return tuple(get_allocation(source.name).rebuild(json.loads(source.info_json), target, dict(source.params)).items())


@functools.lru_cache(maxsize=64)
def _allocate(source: AllocationSource, target: float) -> tuple:
    from pruning.analysis.sensitivity import suggest_allocation

    rows = [{"layer": layer, "sparsity": s, source.signal: v} for layer, s, v in source.rows]
    return tuple(suggest_allocation(rows, target, dict(source.params), signal=source.signal).items())


def mean_sparsity(allocation: dict[str, float], params: dict[str, int]) -> float:
    """The parameter-weighted mean sparsity of an allocation: the overall sparsity it gives."""
    total = sum(params[n] for n in allocation)
    return sum(params[n] * v for n, v in allocation.items()) / max(1, total)


def to_json(allocation: dict[str, float]) -> str:
    """``{layer: sparsity}``, what ``python -m pruning prune --allocation FILE.json`` reads."""
    return json.dumps(allocation, indent=1)


def to_csv(allocation: dict[str, float], params: dict[str, int]) -> str:
    """One row per layer: ``layer, sparsity, parameters``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["layer", "sparsity", "parameters"])
    for name, value in allocation.items():
        writer.writerow([name, value, params[name]])
    return out.getvalue()
