"""The embedded default models, built on first use and cached: ``minilm-rt`` (fine-tuned here,
:mod:`pruning.embedded.minilm_rt`) and ``smollm2-135m`` (dequantized from a GGUF,
:mod:`pruning.embedded.smollm2`).

Loading a model (:mod:`pruning.loading.models`) knows nothing of how they are made; the entry
points load through :func:`load_model` here, which builds an embedded default when needed and
hands every other name to loading.
"""

from __future__ import annotations

from ..errors import PruneScopeError
from ..loading import models
from ..loading.devices import Placement
from .minilm_rt import load_minilm_rt
from .smollm2 import load_smollm2

# name -> (its task, its loader(progress, placement)); the names and descriptions are models.EMBEDDED_MODELS
LOADERS = {"minilm-rt": ("classification", load_minilm_rt), "smollm2-135m": ("causal-lm", load_smollm2)}


def load_model(
    name_or_path: str,
    task: str | None = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    progress=None,
    device: str = "auto",
    dtype: str = "float32",
    placement=None,
) -> models.LoadedModel:
    """:func:`pruning.loading.models.load_model` (same arguments), which also takes the embedded
    names of :data:`pruning.loading.models.EMBEDDED_MODELS`: built on first use, then cached."""
    shown = str(name_or_path).strip()
    if shown not in LOADERS:
        return models.load_model(name_or_path, task, gguf_file, trust_remote_code, progress, device, dtype, placement)
    placement = placement or Placement.make(device, dtype)
    task = models._check_task(task)
    native, loader = LOADERS[shown]
    if task not in (None, native):
        raise PruneScopeError(f"the embedded model {shown} is a {native} model; it cannot be loaded as {task}")
    loaded = loader(progress, placement)
    loaded.placement = placement
    return loaded
