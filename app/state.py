"""Session settings: what one browser session chose in the sidebar.

Every widget of the sidebar stores its value under a ``ps_*`` key of
``st.session_state``; :func:`current` reads them into a frozen
:class:`Settings`. Nothing session-specific lives anywhere else, so two
browser sessions never share a choice, a mask or a result: shared caches are
keyed by the full settings that produced each entry (see ``app/resources.py``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import streamlit as st

from pruning.masks import granularity_labels

EMBEDDED_MODELS = ("minilm-rt", "smollm2-135m")
OTHER_MODEL = "other (hub name, local folder or GGUF file)"
TEST_MODEL_ENV = "PRUNESCOPE_TEST_MODEL"  # a local model folder the tests use instead of the default

DATA_EMBEDDED = "embedded"
DATA_PATH = "local file or folder"
DATA_UPLOAD = "upload a file"
DATA_HUB = "hub name"
DATA_CHOICES = (DATA_EMBEDDED, DATA_PATH, DATA_UPLOAD, DATA_HUB)

GRANULARITIES = tuple(granularity_labels())  # the words of the rules in pruning/allocations/
CUSTOM_NM = "custom N:M"

SPARSITY_MIN, SPARSITY_MAX, SPARSITY_STEP = 0.0, 0.95, 0.05


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def test_model_path() -> str | None:
    """The tiny local model the tests point the app at, if any."""
    path = os.environ.get(TEST_MODEL_ENV, "").strip()
    return path or None


def model_choices() -> list[str]:
    test = test_model_path()
    return ([test] if test else []) + list(EMBEDDED_MODELS) + [OTHER_MODEL]


DEFAULTS = {
    "ps_model_choice": None,  # filled by model_choices()[0]
    "ps_model_text": "",
    "ps_gguf_file": "",
    "ps_data_choice": DATA_EMBEDDED,
    "ps_data_text": "",
    "ps_text_column": "",
    "ps_label_column": "",
    "ps_method": "magnitude",
    "ps_granularity": "layer",
    "ps_custom_nm": "2:4",
    "ps_sparsity": 0.5,
    "ps_calibration": 16,
    "ps_eval_size": 256,
    "ps_seed": 0,
    "ps_device": "auto",
    "ps_update": "default",
    "ps_numerics": "fast",
}

UPDATE_DEFAULT = "default"  # the Update select's "the method's own" (none; SparseGPT: obs)


def init_defaults() -> None:
    """Put every sidebar key in session state once (widgets then keep them across pages)."""
    defaults = dict(DEFAULTS)
    defaults["ps_model_choice"] = model_choices()[0]
    defaults["ps_eval_size"] = _env_int("PRUNESCOPE_EVAL_SIZE", DEFAULTS["ps_eval_size"])
    defaults["ps_calibration"] = _env_int("PRUNESCOPE_CALIBRATION", DEFAULTS["ps_calibration"])
    for key, value in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = value


@dataclass(frozen=True)
class Settings:
    """One session's choices; hashable, so it can key shared caches."""

    model: str  # embedded name, hub name, folder or .gguf path
    gguf_file: str | None
    data_kind: str  # one of DATA_CHOICES
    data_source: str | None  # None = the embedded data for the model's task
    text_column: str | None
    label_column: str | None
    method: str
    granularity: str  # "layer" | "global" | "row" | "N:M"
    sparsity: float
    calibration: int
    eval_size: int
    seed: int
    params: tuple = ()  # (name, value) of the chosen method's parameters that differ from their defaults
    allocation: tuple = ()  # granularity "allocated": sorted (layer, sparsity) pairs at the target sparsity
    device: str = "auto"  # where pruning and evaluation run; results do not depend on it, so no cache key holds it
    update: str = UPDATE_DEFAULT  # what happens to the kept weights (a registered update, or the method's own)
    numerics: str = "fast"  # calibration arithmetic: "fast" or the published code's ("reference")

    def params_for(self, method: str) -> dict:
        """The parameters set in the sidebar for ``method`` (only the chosen method has any)."""
        return dict(self.params) if method == self.method else {}

    @property
    def request(self):
        """The validated :class:`pruning.request.PruneRequest` of these settings (made once per settings);
        an impossible combination raises ``PruneScopeError``, which the sidebar and the pages show."""
        return _request(self)

    @property
    def model_key(self) -> tuple:
        return (self.model, self.gguf_file)

    @property
    def data_key(self) -> tuple:
        return (self.data_source, self.text_column, self.label_column)


@functools.lru_cache(maxsize=64)
def _request(s: Settings):
    from pruning.request import PruneRequest

    from .allocation import ALLOCATED
    from .runs import is_run

    method = "magnitude" if is_run(s.method) else s.method  # an opened run: the request carries only the other settings
    from pruning.catalog import get_method

    update = None if s.update == UPDATE_DEFAULT or not get_method(method).takes_update else s.update
    allocation = dict(s.allocation) if s.granularity == ALLOCATED else None  # rebuilt for the target sparsity
    return PruneRequest.make(
        method,
        s.sparsity,
        s.granularity,
        dict(s.params),
        allocation=allocation,
        dataset=s.data_source or None,
        calib_samples=s.calibration,
        seed=s.seed,
        update=update,
        numerics=s.numerics,
    )


def param_key(method: str, name: str) -> str:
    """Session-state key of one method parameter's widget."""
    return f"ps_param_{method}_{name}"


def method_params(method: str) -> tuple:
    """``(name, value)`` pairs of ``method``'s parameters whose widgets differ from the defaults."""
    try:
        from pruning.catalog import get_method

        spec = get_method(method)
    except Exception:  # noqa: BLE001 - an unknown method has no parameters to read
        return ()
    out = []
    for name, param in spec.params.items():
        value = st.session_state.get(param_key(method, name), param.default)
        if value != param.default:
            out.append((name, value))
    return tuple(out)


def current() -> Settings:
    """The settings of this session, from ``st.session_state``."""
    init_defaults()
    s = st.session_state
    choice = s["ps_model_choice"]
    model = s["ps_model_text"].strip() if choice == OTHER_MODEL else choice
    gguf = s["ps_gguf_file"].strip() or None if choice == OTHER_MODEL else None
    kind = s["ps_data_choice"]
    if kind == DATA_EMBEDDED:
        source = None
    elif kind == DATA_UPLOAD:
        source = s.get("ps_upload_path") or ""
    else:
        source = s["ps_data_text"].strip()
    granularity = s["ps_custom_nm"].strip() if s["ps_granularity"] == CUSTOM_NM else s["ps_granularity"]
    sparsity = round(float(s["ps_sparsity"]), 4)
    return Settings(
        model=model,
        gguf_file=gguf,
        data_kind=kind,
        data_source=source,
        text_column=s["ps_text_column"].strip() or None,
        label_column=s["ps_label_column"].strip() or None,
        method=s["ps_method"],
        granularity=granularity,
        sparsity=sparsity,
        calibration=int(s["ps_calibration"]),
        eval_size=int(s["ps_eval_size"]),
        seed=int(s["ps_seed"]),
        params=method_params(s["ps_method"]),
        allocation=applied_allocation(granularity, sparsity),
        device=s["ps_device"],
        update=s.get("ps_update", UPDATE_DEFAULT),
        numerics=s.get("ps_numerics", "fast"),
    )


def applied_allocation(granularity: str, sparsity: float) -> tuple:
    """The allocation applied from the Layer sensitivity page, rebuilt for ``sparsity`` (only when the
    granularity is "allocated")."""
    from .allocation import ALLOCATED, SOURCE_KEY

    source = st.session_state.get(SOURCE_KEY)
    if granularity != ALLOCATED or source is None:
        return ()
    return tuple(sorted(source.at(sparsity).items()))
