"""Cached, shared resources: models, data, scores, masks, evaluations, sweeps.

How the app caches
------------------
One process-wide :class:`Store` lives in ``st.cache_resource`` (so Streamlit's
"Clear cache" empties it, and every session and thread sees the same one).
Every entry is keyed by *all* the settings that produced it, so a session only
ever gets what its own settings ask for: two sessions at different sparsities
look up different keys and never see each other's masks. Entries are treated
as read-only: the loaded model is never modified (evaluation goes through
overrides on a private shallow copy, see ``pruning.functional``).

Heavy work (loading a model, the minilm-rt fine-tune on first use, scores,
evaluations, sweeps) runs as a :class:`Job` on a background thread, keyed like
any entry. The page polls the job and draws a progress bar with the job's own
message; if the user moves a slider or leaves the page meanwhile, the script
run stops but the job goes on, and the next run (in this session or another
one asking for the same thing) picks it up instead of starting again. Cheap
derived data (histogram bins, mixture fits) is computed in place with
:func:`memo`. A mask at a new sparsity is a comparison against cached ranks
(``pruning.masks.MaskRanker``), a few milliseconds, so the Weights and Masks
views follow the slider without a job.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from pruning.errors import PruneScopeError

from .allocation import ALLOCATED
from .state import DATA_EMBEDDED, Settings

# How many entries of each kind the store keeps (least recently used goes first).
LIMITS = {
    "model": 2,
    "data": 6,
    "calibration": 6,
    "ranker": 4,
    "prune": 6,
    "eval": 512,
    "sweep": 16,
    "sensitivity": 16,
    "candidates": 16,
    "agreement": 8,
    "memo": 256,
}


# ---------------------------------------------------------------- store and jobs
class Job:
    """One piece of heavy work on a background thread, with progress the page can draw."""

    def __init__(self, label: str, fn: Callable[["Job"], Any]):
        self.label = label
        self.fn = fn
        self.fraction = 0.0
        self.message = "starting"
        self.value: Any = None
        self.error: BaseException | None = None
        self.partial: list = []  # rows a sweep has finished so far
        self.done = threading.Event()
        self.started = time.perf_counter()
        self.seconds = 0.0

    def progress(self, done: int, total: int, message: str) -> None:
        self.fraction = min(1.0, max(0.0, done / total)) if total else 0.0
        self.message = str(message)

    def start(self) -> "Job":
        threading.Thread(target=self._run, name=f"prunescope-{self.label[:30]}", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self.value = self.fn(self)
        except BaseException as exc:  # noqa: BLE001 - handed to the page that shows it
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - self.started
            self.fraction = 1.0
            self.done.set()


class Store:
    """Thread-safe keyed store with a least-recently-used bound per kind."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[str, OrderedDict] = {}

    def get(self, kind: str, key) -> tuple[bool, Any]:
        with self._lock:
            items = self._items.setdefault(kind, OrderedDict())
            if key in items:
                items.move_to_end(key)
                return True, items[key]
            return False, None

    def put(self, kind: str, key, value) -> None:
        with self._lock:
            items = self._items.setdefault(kind, OrderedDict())
            items[key] = value
            items.move_to_end(key)
            limit = LIMITS.get(kind, 32)
            while len(items) > limit:
                items.popitem(last=False)

    def get_or_start(self, kind: str, key, label: str, fn: Callable[[Job], Any]) -> Job:
        with self._lock:
            items = self._items.setdefault(kind, OrderedDict())
            job = items.get(key)
            if job is None:
                job = Job(label, fn)
                items[key] = job
                limit = LIMITS.get(kind, 32)
                while len(items) > limit:
                    items.popitem(last=False)
                job.start()
            else:
                items.move_to_end(key)
            return job

    def forget(self, kind: str, key, job=None) -> None:
        with self._lock:
            items = self._items.setdefault(kind, OrderedDict())
            if key in items and (job is None or items[key] is job):
                del items[key]

    def peek(self, kind: str, key):
        with self._lock:
            return self._items.get(kind, {}).get(key)


@st.cache_resource(show_spinner=False)
def store() -> Store:
    return Store()


def memo(kind_key, fn: Callable[[], Any]):
    """Compute ``fn()`` once per key, in this thread (for sub-second derived data)."""
    hit, value = store().get("memo", kind_key)
    if hit:
        return value
    value = fn()
    store().put("memo", kind_key, value)
    return value


def wait_for(job: Job, kind: str, key, on_partial: Callable[[list], None] | None = None, poll: float = 0.2):
    """Block this script run until ``job`` is done, drawing its progress; return its value.

    A failed job is forgotten (so fixing the input and trying again works) and
    its error raised here, where the page shows it.
    """
    if not job.done.wait(0.05):
        box = st.empty()
        with box.container():
            st.caption(f"{job.label} ...")
            bar = st.progress(0.0)
        seen = -1
        while not job.done.wait(poll):
            elapsed = time.perf_counter() - job.started
            bar.progress(job.fraction, text=f"{job.message} ({elapsed:.0f} s{remaining(elapsed, job.fraction)})")
            if on_partial is not None and len(job.partial) != seen:
                seen = len(job.partial)
                on_partial(list(job.partial))
        box.empty()
    if job.error is not None:
        store().forget(kind, key, job)
        raise job.error
    return job.value


def remaining(elapsed: float, fraction: float) -> str:
    """``", about 3 min left"`` from the time so far and the share done (nothing until 2% is done)."""
    if fraction < 0.02 or fraction >= 1.0 or elapsed < 5:
        return ""
    left = elapsed * (1.0 - fraction) / fraction
    return f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left"


def run_job(kind: str, key, label: str, fn: Callable[[Job], Any], on_partial=None):
    job = store().get_or_start(kind, key, label, fn)
    return wait_for(job, kind, key, on_partial)


# ---------------------------------------------------------------- model and data
def loaded_model(s: Settings):
    """The LoadedModel for the session's model choice (loading or fine-tuning it on first use)."""
    if not s.model:
        raise PruneScopeError("type a hub model name, a local model folder or a .gguf file in the sidebar")
    from pruning.models import load_model

    def load(job: Job):
        return load_model(s.model, gguf_file=s.gguf_file, progress=job.progress)

    return run_job("model", s.model_key, f"Loading {s.model} (the first use of minilm-rt fine-tunes it: a few minutes)", load)


def task_data(s: Settings, loaded):
    """Evaluation data for the model's task: labelled sentences, or text for perplexity.

    ``None`` for a bare encoder, which has no task metric.
    """
    if loaded.task == "encoder":
        return None
    if s.data_kind != DATA_EMBEDDED and not s.data_source:
        raise PruneScopeError("choose a dataset in the sidebar: a file path, an uploaded file or a hub name")
    from pruning import data as D

    def load(job: Job):
        job.progress(0, 1, "reading")
        if loaded.task == "causal-lm":
            return D.load_lm_text(s.data_source or D.RT_PLOTS_NAME)
        return D.load_classification(s.data_source or D.RT_NAME, text_column=s.text_column, label_column=s.label_column)

    return run_job("data", (loaded.task, s.data_key), f"Reading dataset {s.data_source or 'embedded'}", load)


def calibration(s: Settings, loaded, data):
    from pruning.data import calibration_batches

    key = (s.model_key, s.data_key, s.calibration, s.seed)

    def build(job: Job):
        job.progress(0, 1, f"tokenizing {s.calibration} calibration samples")
        return calibration_batches(loaded, data, n_samples=s.calibration, seq_len=128, seed=s.seed)

    return run_job("calibration", key, "Preparing calibration data", build)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    shape: tuple
    params: int
    block: Any


def layers(s: Settings, loaded) -> list[LayerRow]:
    from pruning.models import prunable_layers

    def build():
        return [LayerRow(i.name, i.kind, tuple(i.shape), int(i.params), i.block) for i in prunable_layers(loaded.model)]

    return memo(("layers", s.model_key), build)


def dense_weight(s: Settings, loaded, layer: str):
    from pruning.models import layer_weight

    return layer_weight(loaded.model, layer)


# ---------------------------------------------------------------- methods, scores, masks
def method_info(name: str):
    from pruning.registry import get_method

    return get_method(name)


def ranker(s: Settings, loaded, method_name: str):
    """The MaskRanker of a score-based method: scores computed once, ranked once per granularity."""
    from pruning.prune import mask_ranker

    m = method_info(method_name)
    calib = None
    if m.needs_calibration:
        calib = calibration(s, loaded, task_data(s, loaded))
    seed_part = None if method_name == "magnitude" else s.seed
    calib_part = (s.data_key, s.calibration, s.seed) if m.needs_calibration else None
    params = s.params_for(method_name)
    key = (s.model_key, method_name, seed_part, calib_part, tuple(sorted(params.items())))

    def build(job: Job):
        job.progress(0, 1, f"computing {m.label} scores")
        r = mask_ranker(loaded, method_name, calibration=calib, seed=s.seed, params=params, progress=job.progress)
        job.progress(1, 2, "ranking scores")
        r.masks(0.5, "layer")  # ranks the scores now, so the first slider move is already fast
        return r

    return run_job("ranker", key, f"Scoring every weight with {m.label}", build)




def needs_start(method) -> bool:
    """Methods that train or run several passes (the seed methods) take minutes on a small CPU:
    they start when the user asks, after setting their budget, never on a slider move."""
    return method.family == "seed" or method.needs_training_data


class NotStarted(Exception):
    """A slow method's result was asked for and nobody has started it yet; ``start()`` starts it
    (as a shared background job). The page shows a button that calls it (see ``ui.guarded``)."""

    def __init__(self, method, params: dict, start: Callable[[], Job], model_size: int = 0, task: str = ""):
        super().__init__(f"{method.label} has not been run at these settings yet")
        self.method = method
        self.params = params  # the parameters it will run with (those that differ from the defaults)
        self.start = start
        self.model_size = model_size  # parameters of the model it will train or pass over
        self.task = task


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

    ident: tuple = ()  # everything that produced these masks (model, data, calibration, seed): a safe cache key

    @property
    def key(self) -> tuple:
        return (self.method, self.granularity, round(self.sparsity, 6)) + self.ident


def granularity_of(s: Settings, text: str):
    """The engine's granularity for a sidebar choice; "allocated" carries the allocation applied on the
    Layer sensitivity page, rebuilt for the target sparsity (``Settings.allocation``)."""
    from pruning import masks as M

    if text != ALLOCATED:
        return M.parse_granularity(text)
    if not s.allocation:
        raise PruneScopeError("granularity 'allocated' needs an allocation: measure Layer sensitivity and press Apply there")
    return M.allocated(dict(s.allocation))


def one_pass_approximation(method) -> bool:
    """Whether re-thresholding cached scores only approximates the method: Wanda's scores come from one
    dense pass, while the method itself walks the blocks in order (each block sees the pruned ones before it)."""
    return method.score_based and method.needs_calibration


def masks(
    s: Settings,
    loaded,
    method: str | None = None,
    sparsity: float | None = None,
    granularity: str | None = None,
    on_partial=None,
    exact: bool = False,
) -> MaskSet:
    """Masks for the session's settings (or the given overrides of them).

    Score-based methods re-threshold cached ranks (milliseconds); others run
    ``pruning.prune.prune`` once per setting, as a cached job. ``on_partial(entries)``
    is called while such a job runs with what the method has reported so far
    (MGPP/GMP snapshots, SDS stages), so a page can draw them live. ``exact=True`` (for
    every metric the app shows) runs the method itself where the cached ranks are only a
    one-pass approximation of it (Wanda).
    """
    from pruning.masks import validate_sparsity

    method = method or s.method
    g = granularity_of(s, granularity or s.granularity)
    sparsity = g.fixed_sparsity if g.is_nm else validate_sparsity(s.sparsity if sparsity is None else sparsity)
    m = method_info(method)
    if str(g) not in m.granularities and not (g.is_nm and "2:4" in m.granularities):
        raise PruneScopeError(f"{m.label} does not support granularity {g}; it supports {', '.join(m.granularities)}")
    params = s.params_for(method)
    param_part = tuple(sorted(params.items()))
    alloc_part = s.allocation if str(g) == ALLOCATED else ()
    ident = (s.model_key, s.data_key if (m.needs_calibration or m.needs_training_data) else None, s.calibration, s.seed, param_part, alloc_part)
    if m.score_based and not (exact and one_pass_approximation(m)):
        r = ranker(s, loaded, method)
        one_pass = ("one-pass scores",) if one_pass_approximation(m) else ()  # never the same cache entry as the method's own masks
        return MaskSet(method, sparsity, str(g), r.masks(sparsity, g), ident=ident + one_pass)
    if m.needs_training_data and loaded.task == "encoder":
        raise PruneScopeError(f"{m.label} trains on the task, and this model has no task head")
    data = task_data(s, loaded) if (m.needs_calibration or m.needs_training_data) else None
    calib = calibration(s, loaded, data) if m.needs_calibration else None
    key = (s.model_key, s.data_key, method, str(g), round(sparsity, 6), s.calibration, s.seed, param_part, alloc_part)

    def run(job: Job):
        from pruning.prune import prune

        def observe(kind: str, entry: dict) -> None:
            job.partial.append(entry)

        return prune(
            loaded, method, sparsity, str(g), calibration=calib, seed=s.seed, progress=job.progress, data=data, params=params, observe=observe
        )

    label = f"Pruning with {m.label} at {sparsity:.0%} ({g})"
    if needs_start(m) and store().peek("prune", key) is None:
        size = sum(p.numel() for p in loaded.model.parameters())
        raise NotStarted(m, params, lambda: store().get_or_start("prune", key, label, run), model_size=size, task=loaded.task)
    result = run_job("prune", key, label, run, on_partial)
    other = dict(getattr(result, "other_params", None) or {}) or None
    return MaskSet(method, sparsity, str(g), result.masks, result.weights, dict(result.info), other=other, ident=ident)


def exact_agreement(s: Settings, loaded, fast: MaskSet) -> Job:
    """How far the one-pass masks ``fast`` (the slider views') are from the method's own masks at the
    same setting: a background job, started when a page has drawn at this setting (the slider rests),
    never waited for. Its value: ``pruning.masks.mask_overlap`` (Jaccard and Hamming, per layer and overall)."""
    from pruning.masks import mask_overlap

    m = method_info(fast.method)
    calib = calibration(s, loaded, task_data(s, loaded))

    def run(job: Job):
        from pruning.prune import prune

        exact = prune(loaded, fast.method, fast.sparsity, fast.granularity, calibration=calib, seed=s.seed, params=s.params_for(fast.method), progress=job.progress)
        return mask_overlap(fast.masks, exact.masks)

    return store().get_or_start("agreement", fast.key, f"Exact {m.label} masks for the agreement", run)


def overrides(loaded, mask_set: MaskSet) -> dict:
    """Overrides that evaluate the pruned model: masked (and updated) layers, plus whatever else a
    trained method fine-tuned (biases, LayerNorms, the head)."""
    from pruning.prune import masked_overrides

    out = masked_overrides(loaded, mask_set.masks, mask_set.weights)
    for key, value in (mask_set.other or {}).items():
        out[key] = value.to(loaded.model.get_parameter(key).dtype)
    return out


def evaluation(s: Settings, loaded, data, mask_set: MaskSet | None = None) -> dict:
    """The task metric of the dense model (``mask_set=None``) or of the masked one, cached."""
    from pruning.evaluate import evaluate

    what = "dense" if mask_set is None else mask_set.key
    key = (s.model_key, s.data_key, s.eval_size, what)

    def run(job: Job):
        job.progress(0, 1, f"evaluating on {s.eval_size} examples")
        ov = None if mask_set is None else overrides(loaded, mask_set)
        return evaluate(loaded, data, overrides=ov, max_examples=s.eval_size)

    label = "Evaluating the dense model" if mask_set is None else f"Evaluating {mask_set.method} at {mask_set.sparsity:.0%}"
    return run_job("eval", key, label, run)


def comparison(s: Settings, loaded, data, first: MaskSet | None, second: MaskSet) -> tuple[dict, dict, dict]:
    """Both models' metrics on the same examples and the paired difference: the harm of ``second``
    against ``first`` (``None``: the dense model) with its paired 95% interval, cached."""
    from pruning.evaluate import paired_difference

    a, b = evaluation(s, loaded, data, first), evaluation(s, loaded, data, second)
    ident = ("paired", s.model_key, s.data_key, s.eval_size, "dense" if first is None else first.key, second.key)
    return a, b, memo(ident, lambda: paired_difference(a, b))


def against_deterministic(pool) -> list[dict]:
    """Each random candidate against the deterministic mask on the same held-out examples: the paired
    difference (harm-positive: positive = the candidate is worse) with its 95% interval."""
    from pruning.evaluate import paired_difference

    return [paired_difference(pool.deterministic_score, score) for score in pool.scores]


def score_methods() -> dict:
    from pruning.registry import all_methods

    return {n: m for n, m in all_methods().items() if m.score_based}


# ---------------------------------------------------------------- weights and their distribution
def binned(s: Settings, loaded, layer: str, values_key: str = "dense", values=None, bins: int = 80, quantile: float = 1.0):
    from pruning.distribution import bin_weights

    return memo(
        ("bins", s.model_key, layer, values_key, bins, quantile),
        lambda: bin_weights(values if values is not None else dense_weight(s, loaded, layer), bins, quantile=quantile),
    )


def mixture(s: Settings, loaded, layer: str, k, values_key: str = "dense", values=None):
    from pruning.distribution import fit_gmm

    return memo(
        ("gmm", s.model_key, layer, values_key, k, s.seed),
        lambda: fit_gmm(values if values is not None else dense_weight(s, loaded, layer), k, seed=s.seed),
    )


def spike_slab(s: Settings, loaded, layer: str, values_key: str = "dense", values=None):
    from pruning.distribution import fit_spike_slab

    return memo(
        ("spikeslab", s.model_key, layer, values_key, s.seed),
        lambda: fit_spike_slab(values if values is not None else dense_weight(s, loaded, layer), seed=s.seed),
    )


def small_sample(s: Settings, loaded, layer: str, n: int = 4000):
    """Positions (flat indices) and values of a fixed random sample of a layer's weights."""
    import numpy as np

    from pruning.distribution import to_numpy

    def build():
        w = to_numpy(dense_weight(s, loaded, layer)).ravel()
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(w.size, size=min(n, w.size), replace=False))
        return idx, w[idx]

    return memo(("sample", s.model_key, layer, n), build)
