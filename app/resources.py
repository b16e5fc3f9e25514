"""Cached, shared results the pages ask for: models, data, scores, masks, evaluations, sweeps.

Pages never build cache keys or touch the store: they call these functions with the
session's settings. Every entry is keyed by *all* the settings that produced it, so
two sessions at different sparsities look up different keys and never see each
other's masks; heavy work runs as a job of ``app.jobs`` (one place for the store,
progress, Stop and the one-job-per-kind-per-session rule). A function here returns
the result (waiting for a running job while drawing its progress and a Stop button)
or raises ``NotStarted`` for a slow computation nobody started; the Run-button
views (sparsity ramp, layer sensitivity, random candidates) get an ``Answer``
instead and start the job from their button. Cheap derived data (histogram bins,
mixture fits) is computed in place with ``memo``. A mask at a new sparsity is a
comparison against cached ranks (``pruning.masks.MaskRanker``), a few
milliseconds, so the Weights and Masks views follow the slider without a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pruning.errors import PruneScopeError

from . import intervals as I
from .jobs import Answer, Job, NotStarted, answer, memo, result, session, store
from .masksets import MaskSet
from .state import DATA_EMBEDDED, DATA_PATH, Settings


# ---------------------------------------------------------------- model and data
def loaded_model(s: Settings):
    """The LoadedModel for the session's model choice (loading or fine-tuning it on first use)."""
    if not s.model:
        raise PruneScopeError("type a hub model name, a local model folder or a .gguf file in the sidebar")
    from pruning.loading.devices import Placement, with_placement
    from pruning.embedded import load_model
    from pruning.store.roots import check_allowed, looks_like_path

    from .state import model_choices

    if s.model not in model_choices() and looks_like_path(s.model):  # typed into the browser
        check_allowed(s.model, "model")

    placement = Placement.make(s.device)  # a device this machine lacks is refused here, as st.error

    def load(job: Job):
        return load_model(s.model, gguf_file=s.gguf_file, progress=job.progress, device="cpu")

    shared = result("model", s.model_key, f"Loading {s.model} (the first use of minilm-rt fine-tunes it: a few minutes)", load)
    return with_placement(shared, placement)  # this session's device; the shared model is the same object


def task_data(s: Settings, loaded):
    """Evaluation data for the model's task: labelled sentences, or text for perplexity.

    ``None`` for a bare encoder, which has no task metric.
    """
    if loaded.task == "encoder":
        return None
    if s.data_kind != DATA_EMBEDDED and not s.data_source:
        raise PruneScopeError("choose a dataset in the sidebar: a file path, an uploaded file or a hub name")
    from pruning.loading import data as D
    from pruning.store.roots import check_allowed

    if s.data_kind == DATA_PATH:  # typed into the browser
        check_allowed(s.data_source, "dataset")

    def load(job: Job):
        job.progress(0, 1, "reading")
        if loaded.task == "causal-lm":
            return D.load_lm_text(s.data_source or D.RT_PLOTS_NAME)
        return D.load_classification(s.data_source or D.RT_NAME, text_column=s.text_column, label_column=s.label_column)

    return result("data", (loaded.task, s.data_key), f"Reading dataset {s.data_source or 'embedded'}", load)


def calibration(s: Settings, loaded, data):
    """The calibration batches of the session's request (samples, tokens per sample, seed) from ``data``."""
    from pruning.loading.data import calibration_batches

    r = s.request
    key = (s.model_key, s.data_key, r.calib_samples, r.calib_len, r.seed)

    def build(job: Job):
        job.progress(0, 1, f"tokenizing {r.calib_samples} calibration samples")
        return calibration_batches(loaded, data, n_samples=r.calib_samples, seq_len=r.calib_len, seed=r.seed)

    return result("calibration", key, "Preparing calibration data", build)


def measured_allocation(s: Settings, loaded, data, name: str):
    """A registered measured allocation (OWL) measured on this model with the sidebar's calibration, as an
    :class:`app.allocation.MeasuredSource` the sidebar's "allocated" rebuilds for any target (one dense pass)."""
    import json

    from pruning.allocations.registry import get_allocation
    from pruning.prune import layer_names

    from .allocation import MeasuredSource

    rule = get_allocation(name)
    params = rule.resolve_params({})
    calib = calibration(s, loaded, data)
    r = s.request
    key = (s.model_key, s.data_key, r.calib_samples, r.calib_len, r.seed, name)

    def build(job: Job):
        _, info = rule.compute(loaded, layer_names(loaded), calib, r.sparsity, params, progress=job.progress)
        return MeasuredSource(s.model_key, name, rule.label, tuple(sorted(params.items())), json.dumps(info),
                              f"{r.calib_samples} calibration samples (seed {r.seed})")

    return result("measured-allocation", key, f"Measuring {rule.label} on {s.model}", build)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    shape: tuple
    params: int
    block: Any


def layers(s: Settings, loaded) -> list[LayerRow]:
    from pruning.loading.models import prunable_layers

    def build():
        return [LayerRow(i.name, i.kind, tuple(i.shape), int(i.params), i.block) for i in prunable_layers(loaded.model)]

    return memo(("layers", s.model_key), build)


def dense_weight(s: Settings, loaded, layer: str):
    from pruning.loading.models import layer_weight

    return layer_weight(loaded.model, layer)


# ---------------------------------------------------------------- methods, scores, masks
def method_info(name: str):
    from pruning.catalog import get_method

    from . import runs

    return runs.method_spec(name) if runs.is_run(name) else get_method(name)


def request_for(s: Settings, method: str | None = None):
    """The session's request, or the same request for another method (with that method's default parameters)."""
    r = s.request
    return r if method in (None, r.method) else r.replace(method=method)


def ranker(s: Settings, loaded, method_name: str):
    """The MaskRanker of a score-based method: scores computed once, ranked once per granularity."""
    from pruning.prune import mask_ranker

    req = request_for(s, method_name)
    m = req.method_info
    calib = calibration(s, loaded, task_data(s, loaded)) if m.needs_calibration else None
    # scores do not depend on the sparsity or the granularity: one ranker serves every slider position
    key = (s.model_key, s.data_key if m.needs_calibration else None, req.method, req.params, req.seed, req.calib_samples if m.needs_calibration else None)

    def build(job: Job):
        job.progress(0, 1, f"computing {m.label} scores")
        r = mask_ranker(loaded, req, calibration=calib, progress=job.progress)
        job.progress(1, 2, "ranking scores")
        r.masks(0.5, "layer")  # ranks the scores now, so the first slider move is already fast
        return r

    return result("ranker", key, f"Scoring every weight with {m.label}", build)


def needs_start(method) -> bool:
    """Methods that train or run several passes (the seed methods) take minutes on a small CPU:
    they start when the user asks, after setting their budget, never on a slider move."""
    return method.family == "seed" or method.needs_training_data


ONE_PASS = "one-pass scores"  # the last entry of a mask set's key when its masks re-threshold one-pass scores


def one_pass_approximation(method) -> bool:
    """Whether re-thresholding cached scores only approximates the method: its scores come from one
    dense pass, while the method itself walks the blocks in order (each block sees the pruned ones before
    it; the registry's ``walks_blocks``: Wanda, RIA). A calibrated criterion whose own masks are its dense
    scores is exact, and gets no label and no background job."""
    return method.score_based and method.walks_blocks


def masks(s: Settings, loaded, method: str | None = None, on_partial=None, exact: bool = False) -> MaskSet:
    """Masks for the session's request (or the same request for another ``method``).

    Score-based methods re-threshold cached ranks (milliseconds); others run
    ``pruning.prune.prune`` once per request, as a cached job. ``on_partial(entries)``
    is called while such a job runs with what the method has reported so far
    (MGPP/GMP snapshots, SDS stages), so a page can draw them live. ``exact=True`` (for
    every metric the app shows) runs the method itself where the cached ranks are only a
    one-pass approximation of it (Wanda).
    """
    from . import runs

    if runs.is_run(method or s.method):  # an opened run folder: its saved masks, whatever the sliders say
        return runs.mask_set(s, loaded, method or s.method)
    req = request_for(s, method)
    m = req.method_info
    ident = (s.model_key, s.data_key, req.key)
    if m.score_based and req.update == "none" and req.numerics == "fast" and not (exact and one_pass_approximation(m)):  # an update or the reference numerics change what the scores keep
        r = ranker(s, loaded, req.method)
        one_pass = (ONE_PASS,) if one_pass_approximation(m) else ()  # never the same cache entry as the method's own masks
        return MaskSet(req.method, req.sparsity, str(req.granularity), r.masks(req.sparsity, req.granularity), ident=ident + one_pass)
    if m.needs_training_data and loaded.task == "encoder":
        raise PruneScopeError(f"{m.label} trains on the task, and this model has no task head")
    data = task_data(s, loaded) if (req.needs_calibration or m.needs_training_data) else None
    calib = calibration(s, loaded, data) if req.needs_calibration else None

    def run(job: Job):
        from pruning.prune import prune

        return prune(loaded, req, calibration=calib, data=data, progress=job.progress, observe=job.observe)

    label = f"Pruning with {m.label} at {req.sparsity:.0%} ({req.granularity})"
    ask = None
    if needs_start(m):
        size = sum(p.numel() for p in loaded.model.parameters())

        def ask(start):
            return NotStarted(label, start, "prune", method=m, params=s.params_for(req.method), model_size=size, task=loaded.task)

    out = result("prune", ident, label, run, on_partial, ask=ask)
    other = dict(getattr(out, "other_params", None) or {}) or None
    return MaskSet(req.method, req.sparsity, str(req.granularity), out.masks, out.weights, dict(out.info), other=other, ident=ident)


def of_masks(mask_sets, what: str, fn: Callable[[], Any]):
    """A value derived from one mask set (or a tuple of them) by ``fn``, computed once; ``what`` names it
    among the values derived from the same masks."""
    sets = mask_sets if isinstance(mask_sets, tuple) else (mask_sets,)
    return memo((what,) + tuple(m.key for m in sets), fn)


def exact_agreement(s: Settings, loaded, fast: MaskSet) -> Job | None:
    """How far the one-pass masks ``fast`` (the slider views') are from the method's own masks at the
    same request: a background job, started when a page has drawn at this setting (the slider rests),
    never waited for; a newer setting of the same session replaces (and stops) it, and so does its Stop
    button (then ``None`` until the setting changes). Its value: ``pruning.masks.mask_overlap`` (Jaccard,
    Hamming and agreement, per layer and overall)."""
    from pruning.masks import mask_overlap

    if store().was_stopped(session(), "agreement", fast.key):
        return None

    req = request_for(s, fast.method)
    calib = calibration(s, loaded, task_data(s, loaded))

    def run(job: Job):
        from pruning.prune import prune

        exact = prune(loaded, req, calibration=calib, progress=job.progress)
        return mask_overlap(fast.masks, exact.masks)

    return store().get_or_start("agreement", fast.key, f"Exact {req.method_info.label} masks for the agreement", run, session())


def overrides(loaded, mask_set: MaskSet) -> dict:
    """Overrides that evaluate the pruned model: masked (and updated) layers, plus whatever else a
    trained method fine-tuned (biases, LayerNorms, the head)."""
    from pruning.result import masked_overrides

    out = masked_overrides(loaded, mask_set.masks, mask_set.weights)
    for key, value in (mask_set.other or {}).items():
        out[key] = value.to(loaded.model.get_parameter(key).dtype)
    return out


def evaluation(s: Settings, loaded, data, mask_set: MaskSet | None = None) -> dict:
    """The task metric of the dense model (``mask_set=None``) or of the masked one, cached; its
    ``per_item`` also holds every answer, for flips between two of them."""
    from pruning.analysis.flips import predict

    what = "dense" if mask_set is None else mask_set.key
    key = (s.model_key, s.data_key, s.eval_size, what)

    def run(job: Job):
        job.progress(0, 1, f"evaluating on {s.eval_size} examples")
        ov = None if mask_set is None else overrides(loaded, mask_set)
        return predict(loaded, data, ov, max_examples=s.eval_size, progress=job.progress).evaluation

    label = "Evaluating the dense model" if mask_set is None else f"Evaluating {mask_set.method} at {mask_set.sparsity:.0%}"
    return result("eval", key, label, run)


# ---------------------------------------------------------------- views that start from a Run button
def ramp(s: Settings, loaded, data, methods: list, granularities: list, sparsities: list) -> Answer:
    """The sparsity ramp of ``methods`` x ``granularities`` x ``sparsities`` (rows: dense first, then one per point).

    Every point prunes with the session's request for that method (its parameters, data and seed);
    the ramp sets the sparsity and the granularity, so the sidebar's do not key it."""
    requests = [request_for(s, m).replace(sparsity=0.5, granularity="layer") for m in methods]
    key = (s.model_key, s.data_key, tuple(r.key for r in requests), tuple(granularities), tuple(sparsities), s.eval_size)

    def prepare():
        calib = calibration(s, loaded, data) if any(r.needs_calibration for r in requests) else None

        def work(job: Job):
            from pruning.analysis.sweep import sparsity_ramp

            return sparsity_ramp(
                loaded, data, requests, granularities, sparsities, calibration=calib,
                max_examples=s.eval_size, progress=job.progress, on_point=job.add,
            )

        return work

    return answer("sweep", key, "Sparsity ramp", prepare)


def allocated_ramp(s: Settings, loaded, data, methods: list, sparsities: list, source) -> Answer:
    """The applied allocation against uniform per-layer pruning at each sparsity, both measured on the same
    examples: per method and sparsity a ``layer`` and an ``allocated`` row (``value, ci_low, ci_high, n``),
    the allocated one with the paired ``drop, drop_ci_low, drop_ci_high`` against uniform (harm-positive).
    The allocation is rebuilt from ``source`` (an ``app.allocation.AllocationSource``) for every sparsity."""
    from pruning.masks import allocated, supports

    able = [m for m in methods if supports(method_info(m), "allocated")]
    pairs = [
        (request_for(s, m).replace(granularity="layer", sparsity=sp), request_for(s, m).replace(granularity=allocated(source.at(sp)), sparsity=sp))
        for m in able
        for sp in sparsities
    ]
    key = (s.model_key, s.data_key, tuple((u.key, a.key) for u, a in pairs), s.eval_size)

    def prepare():
        calib = calibration(s, loaded, data) if any(method_info(m).needs_calibration for m in able) else None

        def work(job: Job):
            rows = []
            for i, (uniform, alloc) in enumerate(pairs):
                job.progress(i, len(pairs), f"{uniform.method} at {uniform.sparsity:.0%}: uniform and allocated")
                rows += compare_requests(loaded, data, uniform, alloc, calib, s.eval_size)
                for row in rows[-2:]:
                    job.add(row)
            return rows

        return work

    return answer("allocated-ramp", key, "Allocated against uniform", prepare)


def compare_requests(loaded, data, uniform, alloc, calib, eval_size: int) -> list[dict]:
    """Prune with both requests, evaluate both on the same examples, and the paired harm of the second."""
    from pruning.analysis.evaluate import evaluate, paired_difference
    from pruning.prune import prune

    evs = []
    for req in (uniform, alloc):
        result = prune(loaded, req, calibration=calib if req.needs_calibration else None)
        evs.append(evaluate(loaded, data, overrides=result.overrides(loaded), max_examples=eval_size))
    diff = paired_difference(*evs)
    base = {"method": uniform.method, "sparsity": uniform.sparsity, "metric": evs[0]["metric"]}
    return [
        {**base, "granularity": "layer", **I.value_columns(evs[0])},
        {**base, "granularity": "allocated", **I.value_columns(evs[1]), **I.drop_columns(diff)},
    ]


def majority_share(s: Settings, loaded, data) -> float | None:
    """The share of the evaluated examples in their most common class: what a model that always says that class
    scores (the accuracy floor the ramp draws); ``None`` for perplexity."""
    if loaded.task != "classification" or data is None:
        return None

    def build():
        from pruning.analysis.evaluate import evaluation_plan

        gold = evaluation_plan(loaded, data, s.eval_size).gold
        return float(gold.bincount().max()) / max(1, int(gold.numel()))

    return memo(("majority", s.model_key, s.data_key, s.eval_size), build)


SENSITIVITY_LM_SIZE = 8  # windows: a causal LM's Layer sensitivity default, so its default run takes minutes (docs/VIEWS.md)


def sensitivity_eval_size(task: str, sidebar: int) -> int:
    """Layer sensitivity's own evaluation size to start from: a few windows for a causal LM (every point pays the
    output head and the KL over the whole vocabulary), the sidebar's size for a classifier."""
    return min(int(sidebar), SENSITIVITY_LM_SIZE) if task == "causal-lm" else int(sidebar)


_SENSITIVITY_RATES: dict = {}  # (model, data, evaluation size) -> seconds per block run by a point, measured on this server


def sensitivity(s: Settings, loaded, data, method: str, sparsities: list, granularity: str | None = None,
                layers: tuple | None = None, done_rows=None, eval_size: int | None = None) -> Answer:
    """Layer sensitivity: the metric with one layer pruned at a time (rows: dense first, then layer x sparsity),
    at the sidebar's granularity within one layer (an N:M pattern fixes the only sparsity), or at ``granularity``
    (the one an applied allocation was measured at: applying it must not change what was measured).
    ``layers``: measure only these; ``done_rows()``: rows kept from a stopped run at these settings (not measured again);
    ``eval_size``: the view's own number of examples or windows (default: the sidebar's).
    Each run records its seconds per block run (see :func:`sensitivity_estimate`)."""
    size = s.eval_size if eval_size is None else int(eval_size)
    request = request_for(s, method)
    changes = {"sparsity": 0.5} if granularity is None else {"sparsity": 0.5, "granularity": granularity}
    if layers:
        changes["layers"] = tuple(layers)
    request = request.replace(**changes)
    key = (s.model_key, s.data_key, request.key, tuple(sparsities), size)
    rate_key = (s.model_key, s.data_key, size)

    def prepare():
        calib = calibration(s, loaded, data) if request.needs_calibration else None
        kept = list(done_rows() or []) if done_rows is not None else []

        def work(job: Job):
            import time

            from pruning.analysis.sweep import layer_sensitivity

            first: list = []  # (time, blocks done) at the first point; the dense pass comes before it

            def progress(done, total, message):
                if "point" in message or message.startswith("done"):
                    now = time.perf_counter()
                    if not first:
                        first.append((now, done))
                    elif done > first[0][1]:
                        _SENSITIVITY_RATES[rate_key] = ((now - first[0][0]) / (done - first[0][1]), first[0][0] - job.started)
                job.progress(done, total, message)

            return layer_sensitivity(
                loaded, data, request, sparsities, calibration=calib, max_examples=size, progress=progress, on_point=job.add,
                done_rows=kept,
            )

        return work

    return answer("sensitivity", key, "Layer sensitivity", prepare)


def sensitivity_estimate(s: Settings, blocks_run: float, n_blocks: int, eval_size: int | None = None) -> tuple[float, str] | None:
    """Seconds a sensitivity run of ``blocks_run`` blocks (summed over its points, with their fixed costs: see
    :func:`pruning.analysis.sensitivity.point_cost`) will take on this server at ``eval_size`` items (default: the
    sidebar's), and how that was measured: from an earlier sensitivity run on this model, data and size, else from the
    dense model's evaluation at that size (one pass through all ``n_blocks`` blocks, as the Overview ran it); failing
    both, either one at another size, scaled by the number of items (the work is linear in it), and said so.
    ``None`` when nothing ran on this model and data."""
    size = s.eval_size if eval_size is None else int(eval_size)
    rates = {k[2]: v for k, v in list(_SENSITIVITY_RATES.items()) if k[:2] == (s.model_key, s.data_key)}
    dense = {}  # items evaluated -> seconds of a finished dense evaluation of this model and data
    for key, job in store().items("eval"):
        if len(key) == 4 and key[:2] == (s.model_key, s.data_key) and key[3] == "dense" and isinstance(job, Job) and job.done.is_set() \
                and job.error is None and getattr(job, "seconds", 0.0) > 0:
            n = job.value.get("n") if isinstance(job.value, dict) else None
            dense[int(n) if n else key[2]] = job.seconds  # what it evaluated: the text may hold fewer items than asked
    return estimate_from(blocks_run, n_blocks, size, rates, dense)


def estimate_from(blocks_run: float, n_blocks: int, size: int, rates: dict, dense: dict) -> tuple[float, str] | None:
    """:func:`sensitivity_estimate` from ``rates`` (size -> (seconds per block run, seconds before the first point)
    measured by sensitivity runs) and ``dense`` (items evaluated -> seconds of a dense evaluation)."""
    if size in rates:
        per_block, before = rates[size]
        return before + per_block * blocks_run, "measured by the last sensitivity run on this model at this size, per block run"
    if size in dense:
        seconds = dense[size]
        return seconds + seconds / max(1, n_blocks) * blocks_run, f"from the dense evaluation ({seconds:.0f} s for all {n_blocks} blocks)"
    other = min(rates or dense, key=lambda n: abs(n - size), default=None)
    if other is None:
        return None
    scale = size / other
    if other in rates:
        per_block, before = rates[other]
        how = f"the last sensitivity run at {other} items"
        seconds = (before + per_block * blocks_run) * scale
    else:
        how = f"the dense evaluation at {other} items ({dense[other]:.0f} s)"
        seconds = dense[other] * scale * (1 + blocks_run / max(1, n_blocks))
    return seconds, f"nothing measured at {size} items yet: scaled from {how} by the number of items"


@dataclass(frozen=True)
class CandidateChoice:
    """The Random candidates view's own settings."""

    base: str
    randomness: float
    k: int
    power: float
    seed: int
    holdout: int


def candidates(s: Settings, loaded, data, c: CandidateChoice) -> Answer:
    """K masks sampled around ``c.base``'s scores at the session's sparsity and granularity, each scored
    on held-out training data (a ``CandidatePool``)."""
    params = {"base": c.base, "k": c.k, "randomness": c.randomness, "power": c.power, "holdout": c.holdout}
    request = s.request.replace(method="randomized", params=params, seed=c.seed)
    key = (s.model_key, s.data_key, request.key)

    def prepare():
        from pruning.procedures.randomized import candidate_pool

        rk = ranker(s, loaded, c.base)

        def work(job: Job):
            return candidate_pool(loaded, rk.scores, request, data=data, progress=job.progress)

        return work

    return answer("candidates", key, f"Sampling {c.k} candidates", prepare)


def comparison(s: Settings, loaded, data, first: MaskSet | None, second: MaskSet) -> tuple[dict, dict, dict]:
    """Both models' metrics on the same examples and the paired difference: the harm of ``second``
    against ``first`` (``None``: the dense model) with its paired 95% interval, cached."""
    from pruning.analysis.evaluate import paired_difference

    a, b = evaluation(s, loaded, data, first), evaluation(s, loaded, data, second)
    ident = ("paired", s.model_key, s.data_key, s.eval_size, "dense" if first is None else first.key, second.key)
    return a, b, memo(ident, lambda: paired_difference(a, b))


def against_deterministic(pool) -> list[dict]:
    """Each random candidate against the deterministic mask on the same held-out examples: the paired
    difference (harm-positive: positive = the candidate is worse) with its 95% interval."""
    from pruning.analysis.evaluate import paired_difference

    return [paired_difference(pool.deterministic_score, score) for score in pool.scores]


def score_methods() -> dict:
    from pruning.catalog import all_methods

    return {n: m for n, m in all_methods().items() if m.score_based}


# ---------------------------------------------------------------- weights and their distribution
def layer_values(s: Settings, loaded, mask_set: MaskSet, layer: str):
    """``(values, values_key)``: a layer's weights as the method left them (its updated weights if it changed
    them, else the dense ones), and the token that keys what is derived from them."""
    if mask_set.weights is not None and layer in mask_set.weights:
        return mask_set.weights[layer], ("updated", mask_set.key)
    return dense_weight(s, loaded, layer), "dense"


def threshold(s: Settings, layer: str, values_key, values, sparsity: float) -> float:
    """The |w| below which a ``sparsity`` share of the values lies (per-layer magnitude pruning's exact cut)."""
    from pruning.analysis.distribution import equivalent_threshold

    return memo(("threshold", s.model_key, layer, values_key, round(sparsity, 6)), lambda: equivalent_threshold(values, sparsity))


def binned(s: Settings, loaded, layer: str, values_key: str = "dense", values=None, bins: int = 80, quantile: float = 1.0):
    from pruning.analysis.distribution import bin_weights

    return memo(
        ("bins", s.model_key, layer, values_key, bins, quantile),
        lambda: bin_weights(values if values is not None else dense_weight(s, loaded, layer), bins, quantile=quantile),
    )


def mixture(s: Settings, loaded, layer: str, k, values_key: str = "dense", values=None):
    from pruning.analysis.distribution import fit_gmm

    return memo(
        ("gmm", s.model_key, layer, values_key, k, s.seed),
        lambda: fit_gmm(values if values is not None else dense_weight(s, loaded, layer), k, seed=s.seed),
    )


def spike_slab(s: Settings, loaded, layer: str, values_key: str = "dense", values=None):
    from pruning.analysis.distribution import fit_spike_slab

    return memo(
        ("spikeslab", s.model_key, layer, values_key, s.seed),
        lambda: fit_spike_slab(values if values is not None else dense_weight(s, loaded, layer), seed=s.seed),
    )


def small_sample(s: Settings, loaded, layer: str, n: int = 4000):
    """Positions (flat indices) and values of a fixed random sample of a layer's weights."""
    import numpy as np

    from pruning.analysis.distribution import to_numpy

    def build():
        w = to_numpy(dense_weight(s, loaded, layer)).ravel()
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(w.size, size=min(n, w.size), replace=False))
        return idx, w[idx]

    return memo(("sample", s.model_key, layer, n), build)


def input_norms(s: Settings, loaded) -> dict:
    """``||X_j||`` of every input feature of every prunable layer, over the session's calibration
    set through the dense model (what Wanda multiplies |W| by), as NumPy arrays; a cached job."""
    from pruning.calibration import input_feature_norms
    from pruning.analysis.distribution import to_numpy

    calib = calibration(s, loaded, task_data(s, loaded))
    names = [r.name for r in layers(s, loaded)]
    r = s.request
    key = (s.model_key, s.data_key, r.calib_samples, r.calib_len, r.seed)

    def build(job: Job):
        job.progress(0, 1, "one forward pass over the calibration set")
        return {n: to_numpy(v) for n, v in input_feature_norms(loaded, names, calib, progress=job.progress).items()}

    return result("input-norms", key, "Measuring the input-feature norms ||X_j||", build)
