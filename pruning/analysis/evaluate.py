"""Accuracy and perplexity of a shared model under weight overrides.

The loaded model is never modified. Pruned weights arrive as *overrides*
(``dict[param_key, Tensor]``), and each evaluation runs on a private structural
copy of the model (:func:`pruning.loading.functional.shallow_copy`, which shares every
tensor, so no weight is copied) with the overrides put in place on it, under
``torch.inference_mode()``; on the CPU the copy's float32 linear layers compute
through oneDNN from packed weights (:mod:`pruning.loading.onednn`, memory the size of
those weights while the evaluation runs). Any number of threads can therefore
evaluate their own overrides on one model at once; the shared model is only read.

Tokenization is done once and cached: :func:`encode_sorted` for sentences
(sorted by length so each batch is padded only to its own longest sentence)
and :func:`lm_windows` for perplexity text.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.func import functional_call

from ..errors import PruneScopeError
from ..loading.data import (
    ClassificationData,
    LMText,
    load_classification,
    load_lm_text,
    pad_batch,
    pad_id_of,
    token_ids,
    tokenize,
)
from ..loading.devices import dispatched_runner, needs_dispatch, placement_of, with_placement
from ..loading.functional import shallow_copy, with_overrides
from ..loading.onednn import available, pack_linears
from .stats import paired_interval, perplexity_interval, safe_exp, wilson_interval, within_noise

DEFAULT_PPL_SEQ_LEN = 512
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


# ---------------------------------------------------------------- running with overrides
def check_overrides(model: torch.nn.Module, overrides: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The overrides, detached, after checking every key names a parameter of the right shape."""
    if not overrides:
        return {}
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for key, value in overrides.items():
        if key not in params:
            raise PruneScopeError(f"override {key!r} is not a parameter of this model")
        if tuple(value.shape) != tuple(params[key].shape):
            raise PruneScopeError(f"override {key!r} has shape {tuple(value.shape)}, the parameter has {tuple(params[key].shape)}")
        out[key] = value.detach().to(params[key].dtype)
    return out


def model_runner(model: torch.nn.Module, overrides: Mapping[str, torch.Tensor] | None = None, placement=None) -> Callable[..., object]:
    """A callable ``run(**inputs)`` evaluating ``model`` with ``overrides`` applied, thread-safely.

    On the CPU: a private shallow copy of the model (shared tensors, own module objects)
    with the overrides put in place and its float32 linear layers packed for oneDNN
    (:mod:`pruning.loading.onednn`: the same products, faster where MKL is slow); without oneDNN,
    the shared model itself when dense, else ``functional_call`` on a private copy.
    Off the plain CPU path (a GPU ``placement``, an offloaded model) a private copy is
    placed by accelerate (:func:`pruning.loading.devices.dispatched_runner`).
    """
    tensors = check_overrides(model, overrides)
    if needs_dispatch(model, placement):
        return dispatched_runner(model, tensors, placement)
    if available():
        private = with_overrides(model, tensors) if tensors else shallow_copy(model)
        pack_linears(private)
        return lambda **inputs: private(**inputs)
    if not tensors:
        return lambda **inputs: model(**inputs)
    private = shallow_copy(model)
    return lambda **inputs: functional_call(private, tensors, (), inputs, strict=False)


def _inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in _MODEL_KEYS if k in batch}


def _report(progress, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


# ---------------------------------------------------------------- classification
def encode_sorted(
    tokenizer, texts: Sequence[str], batch_size: int = 64, max_length: int = 128, spread: float = 1.1
) -> list[dict[str, torch.Tensor]]:
    """Tokenize ``texts`` once and cut them into length-sorted, padded batches.

    Each batch is ``{"input_ids", "attention_mask", "order"}``; ``order`` holds the
    positions of its rows in ``texts`` (to pick their labels). Sentences are sorted
    longest first (ties keep input order) and a batch holds at most ``batch_size``
    of them whose longest is at most ``spread`` times its shortest (in tokens), so
    padding stays below ~10% in every batch. The result depends only on the
    arguments: callers may cache it (see :func:`cached_encode_sorted`).
    """
    if len(texts) == 0:
        return []
    ids = tokenize(tokenizer, list(map(str, texts)), truncation=True, max_length=int(max_length), return_attention_mask=False)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad = pad_id_of(tokenizer)
    size = max(1, int(batch_size))
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        if group is None or len(group) >= size or len(ids[group[0]]) > spread * max(1, len(ids[i])):
            groups.append([i])
        else:
            group.append(i)
    batches = []
    for rows in groups:
        batch = pad_batch([ids[i] for i in rows], pad, left)
        batch["order"] = torch.tensor(rows, dtype=torch.long)
        batches.append(batch)
    return batches


@functools.lru_cache(maxsize=8)
def _encode_cached(tokenizer, texts: tuple[str, ...], batch_size: int, max_length: int):
    return encode_sorted(tokenizer, texts, batch_size, max_length)


def cached_encode_sorted(tokenizer, texts: Sequence[str], batch_size: int = 64, max_length: int = 128) -> list[dict]:
    """:func:`encode_sorted`, memoized on (tokenizer, texts, batch size, max length) (8 entries)."""
    return _encode_cached(tokenizer, tuple(texts), int(batch_size), int(max_length))


def _is_encoded(texts) -> bool:
    return len(texts) > 0 and isinstance(texts[0], Mapping)


def accuracy(
    loaded,
    texts,
    labels: Sequence[int],
    overrides: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 64,
    max_examples: int | None = None,
    progress=None,
    max_length: int | None = None,
) -> float:
    """Fraction of ``texts`` whose predicted class equals ``labels``.

    ``texts`` is a list of strings, or batches from :func:`encode_sorted` made
    from the same list (``labels`` stays in the original order). Only the first
    ``max_examples`` sentences are used when it is given.
    """
    plan = classification_plan(loaded, texts, labels, batch_size, max_examples, max_length)
    return run_plan(plan, model_runner(loaded.model, overrides, placement_of(loaded)), progress)["value"]


@dataclass
class EvalPlan:
    """What one evaluation runs: the model-input batches, and how their logits become per-item values.

    ``metric`` is ``"accuracy"`` (items: examples; ``gold`` holds every label and
    each batch an ``order`` of its rows) or ``"perplexity"`` (items: windows).
    Any runner that gives the model's logits for ``inputs(i)`` can be scored by
    :func:`run_plan`, so the same items are scored the same way everywhere.
    """

    metric: str
    batches: list[dict]
    gold: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def inputs(self, i: int) -> dict:
        if self.metric == "accuracy":
            return _inputs(self.batches[i])
        w = self.batches[i]["input_ids"]
        return {"input_ids": w, "attention_mask": torch.ones_like(w), "use_cache": False}

    def items(self, i: int, logits: torch.Tensor) -> np.ndarray:
        """Per-item values of batch ``i``: correct (bool) per example, or mean NLL per window."""
        if self.metric == "accuracy":
            return (logits.argmax(dim=-1).cpu() == self.gold[self.batches[i]["order"]]).numpy()
        # one row per predicted token: a reduction over contiguous memory (the (B, V, T) layout is ~6x slower)
        return self.window_nll(i, torch.log_softmax(logits[:, :-1].float(), dim=-1))

    def window_nll(self, i: int, log_probs: torch.Tensor) -> np.ndarray:
        """Mean NLL per window of batch ``i`` from the float32 log-probabilities of its predicted
        positions, ``(B, T - 1, V)`` (what ``cross_entropy`` computes, from its own log-softmax)."""
        targets = self.batches[i]["input_ids"][:, 1:].to(log_probs.device)
        nll = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).neg()
        return nll.double().mean(dim=1).cpu().numpy()

    def ordered(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """Per-batch item values as one array, examples put back in their original order."""
        v = np.concatenate(list(values))
        if self.metric == "accuracy":
            return v[np.argsort(torch.cat([b["order"] for b in self.batches]).numpy(), kind="stable")]
        return v

    def result(self, values: Sequence[np.ndarray], seed: int = 0) -> dict:
        """The metric, its 95% interval, ``n`` and the per-item values (examples in their original order)."""
        v = self.ordered(values)
        if self.metric == "accuracy":
            correct = v.astype(bool)
            low, high = wilson_interval(int(correct.sum()), correct.size)
            out = {"value": float(correct.mean()), "ci_low": low, "ci_high": high, "n": int(correct.size)}
            return {"metric": "accuracy", **out, "higher_is_better": True, **self.info, "per_item": {"correct": correct}}
        seq_len = int(self.batches[0]["input_ids"].shape[1])
        tokens = np.full(v.size, seq_len - 1, dtype=np.int64)
        mean = float(np.sum(v * tokens) / max(1, int(tokens.sum())))
        low, high = perplexity_interval(v, tokens, seed=seed)
        out = {"value": math.exp(mean) if mean < 700 else float("inf"), "ci_low": low, "ci_high": high, "n": int(v.size)}
        extra = {"tokens": int(tokens.sum()), "seq_len": seq_len}
        return {"metric": "perplexity", **out, "higher_is_better": False, **extra, **self.info, "per_item": {"nll": v, "tokens": tokens}}


def run_plan(plan: EvalPlan, run: Callable[..., object], progress=None, seed: int = 0, on_logits=None, items=None) -> dict:
    """Score every batch of ``plan`` with ``run(**inputs) -> output with .logits``; the :meth:`EvalPlan.result`.

    ``on_logits(i, logits)``, when given, also sees each batch's logits (for divergences);
    ``items(i, logits)`` stands in for :meth:`EvalPlan.items` (giving the same values).
    """
    values = []
    items = items or plan.items
    with torch.inference_mode():
        for i in range(len(plan.batches)):
            logits = run(**plan.inputs(i)).logits
            values.append(items(i, logits))
            if on_logits is not None:
                on_logits(i, logits)
            _report(progress, i + 1, len(plan.batches), f"{plan.metric}: batch {i + 1}/{len(plan.batches)}")
    return plan.result(values, seed)


def classification_plan(loaded, texts, labels, batch_size: int = 64, max_examples=None, max_length=None) -> EvalPlan:
    """The padded, length-sorted batches :func:`accuracy` evaluates (strings are encoded once, cached)."""
    if getattr(loaded, "task", "classification") != "classification":
        raise PruneScopeError(f"accuracy needs a classification model; {getattr(loaded, 'name', 'this model')} is a {loaded.task} model")
    if max_examples is not None and int(max_examples) < 1:
        raise PruneScopeError(f"max_examples must be at least 1, got {max_examples}")
    if _is_encoded(texts):
        batches = list(texts)
        if max_examples is not None:
            batches = [_rows(b, b["order"] < int(max_examples)) for b in batches]
            batches = [b for b in batches if b["order"].numel() > 0]
    else:
        texts = list(texts)
        if len(texts) != len(labels):
            raise PruneScopeError(f"{len(texts)} texts but {len(labels)} labels")
        if max_examples is not None:
            texts = texts[: int(max_examples)]
        length = int(max_length or min(int(getattr(loaded, "max_length", 512) or 512), 512))
        batches = cached_encode_sorted(loaded.tokenizer, texts, batch_size, length)
    n = sum(int(b["order"].numel()) for b in batches)
    if n == 0:
        raise PruneScopeError("there are no sentences to evaluate on")
    return EvalPlan("accuracy", batches, torch.as_tensor(list(labels), dtype=torch.long))


def _rows(batch: dict, keep: torch.Tensor) -> dict:
    """The rows of a padded batch where ``keep`` is True (padding columns trimmed)."""
    out = {k: v[keep] for k, v in batch.items()}
    if "attention_mask" in out and out["attention_mask"].numel() > 0:
        width = int(out["attention_mask"].sum(dim=1).max())
        left = bool(out["attention_mask"][:, 0].eq(0).any())
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            if k in out:
                out[k] = out[k][:, -width:] if left else out[k][:, :width]
    return out


# ---------------------------------------------------------------- perplexity
@functools.lru_cache(maxsize=8)
def lm_windows(tokenizer, text: str, seq_len: int) -> torch.Tensor:
    """``text`` tokenized once and cut into non-overlapping windows: (n_windows, seq_len).

    The tokenizer's usual special tokens are added once at the start (as the
    pruning literature's WikiText code does); a trailing partial window is
    dropped. A text shorter than one window gives a single shorter window.
    Cached per (tokenizer, text, seq_len).
    """
    if int(seq_len) < 2:
        raise PruneScopeError(f"perplexity windows need at least 2 tokens, got seq_len={seq_len}")
    ids = token_ids(tokenizer, text, True)
    n = ids.numel() // int(seq_len)
    if n == 0:
        if ids.numel() < 2:
            raise PruneScopeError("the text has fewer than 2 tokens: no perplexity can be computed")
        return ids.unsqueeze(0)
    return ids[: n * int(seq_len)].view(n, int(seq_len))


def perplexity(
    loaded,
    text,
    overrides: Mapping[str, torch.Tensor] | None = None,
    seq_len: int | None = None,
    max_windows: int | None = None,
    progress=None,
    batch_size: int = 1,
) -> float:
    """exp(mean next-token negative log-likelihood) over non-overlapping windows.

    ``text`` is a string (tokenized once, cached) or a windows tensor from
    :func:`lm_windows`. ``seq_len`` defaults to ``min(model max length, 512)``;
    ``max_windows`` keeps the first windows only. Every token but the first of
    each window is predicted; the mean is over all predicted tokens.
    """
    plan = lm_plan(loaded, text, seq_len, max_windows, batch_size)
    return run_plan(plan, model_runner(loaded.model, overrides, placement_of(loaded)), progress)["value"]


def lm_plan(loaded, text, seq_len: int | None = None, max_windows: int | None = None, batch_size: int = 1) -> EvalPlan:
    """The windows :func:`perplexity` evaluates, ``batch_size`` windows per batch."""
    if getattr(loaded, "task", "causal-lm") != "causal-lm":
        raise PruneScopeError(f"perplexity needs a causal language model; {getattr(loaded, 'name', 'this model')} is a {loaded.task} model")
    if isinstance(text, torch.Tensor):
        windows = text if text.dim() == 2 else text.view(1, -1)
    else:
        if not isinstance(text, str) or not text.strip():
            raise PruneScopeError("there is no text to compute perplexity on")
        length = int(seq_len or min(int(getattr(loaded, "max_length", DEFAULT_PPL_SEQ_LEN) or DEFAULT_PPL_SEQ_LEN), DEFAULT_PPL_SEQ_LEN))
        windows = lm_windows(loaded.tokenizer, text, length)
    if max_windows is not None:
        if int(max_windows) < 1:
            raise PruneScopeError(f"max_windows must be at least 1, got {max_windows}")
        windows = windows[: int(max_windows)]
    step = max(1, int(batch_size))
    batches = [{"input_ids": windows[i : i + step]} for i in range(0, windows.shape[0], step)]
    return EvalPlan("perplexity", batches)


# ---------------------------------------------------------------- dispatch
def label_mapping(data_label_names: Sequence[str], model) -> list[int] | None:
    """Model class index for each dataset label index, when the names say so; else None (identity).

    Names are matched case-insensitively against ``config.id2label`` (generic
    ``LABEL_0`` names are not matched). A dataset with more labels than the
    model has outputs raises a clear error.
    """
    config = getattr(model, "config", None)
    num = int(getattr(config, "num_labels", 0) or 0)
    if num and len(data_label_names) > num:
        raise PruneScopeError(f"the dataset has {len(data_label_names)} labels but the model predicts only {num} classes")
    id2label = getattr(config, "id2label", None) or {}
    model_names = [str(id2label[i]).strip().lower() for i in sorted(id2label)]
    wanted = [str(n).strip().lower() for n in data_label_names]
    if not model_names or all(n.startswith("label_") for n in model_names):
        return None
    if all(n in model_names for n in wanted):
        return [model_names.index(n) for n in wanted]
    return None


def evaluate(
    loaded,
    data=None,
    overrides: Mapping[str, torch.Tensor] | None = None,
    max_examples: int | None = None,
    split: str = "test",
    progress=None,
    seed: int = 0,
    placement=None,
) -> dict:
    """The task's metric for ``loaded`` with ``overrides`` (on ``placement``'s device when given,
    else where ``loaded`` was loaded for), with its 95% interval.

    Classification: ``accuracy`` on ``data.split(split)`` (``data`` a
    :class:`pruning.loading.data.ClassificationData` or a source name; default
    rotten-tomatoes), first ``max_examples`` sentences. Causal LM: ``perplexity``
    on ``data.eval_text`` (default rt-plots), first ``max_examples`` windows; with
    ``split="validation"`` on the windows of ``data.train_text`` instead, so that a
    choice made on them (Layer sensitivity's allocation) is judged on other text.
    Returns ``{"metric", "value", "ci_low", "ci_high", "n", "higher_is_better",
    ..., "per_item"}``: accuracy's interval is Wilson's; perplexity's a percentile
    bootstrap over windows (``seed``). ``per_item`` holds numpy arrays for paired
    comparisons (:func:`paired_difference`): ``{"correct"}`` per example, or
    ``{"nll", "tokens"}`` per window (mean NLL, predicted tokens); drop it before
    writing JSON (:func:`summary`).
    """
    if placement is not None:
        loaded = with_placement(loaded, placement)
    run = model_runner(loaded.model, overrides, placement_of(loaded))
    return run_plan(evaluation_plan(loaded, data, max_examples, split), run, progress, seed)


def evaluation_plan(loaded, data=None, max_examples: int | None = None, split: str = "test") -> EvalPlan:
    """The :class:`EvalPlan` that :func:`evaluate` runs for this model's task (see there)."""
    if loaded.task == "classification":
        if isinstance(data, LMText):
            raise PruneScopeError("a classification model needs labelled sentences, not plain text")
        data = load_classification(data) if not isinstance(data, ClassificationData) else data
        texts, labels = data.split(split)
        mapping = label_mapping(data.label_names, loaded.model)
        if mapping is not None:
            labels = [mapping[y] for y in labels]
        plan = classification_plan(loaded, texts, labels, max_examples=max_examples)
        plan.info = {"split": split, "dataset": data.name}
        return plan
    if loaded.task == "causal-lm":
        if isinstance(data, ClassificationData):
            raise PruneScopeError("a causal language model is evaluated on plain text (perplexity), not on labelled sentences")
        data = load_lm_text(data) if not isinstance(data, LMText) else data
        if split == "validation":  # held out from the evaluated text: the calibration part's windows
            plan = lm_plan(loaded, data.train_text, None, max_examples, 1)
            plan.info = {"dataset": data.name, "split": "validation", "text": "the calibration part, disjoint from the evaluated text"}
            return plan
        plan = lm_plan(loaded, data.eval_text, None, max_examples, 1)
        plan.info = {"dataset": data.name, "split": split}
        return plan
    raise PruneScopeError(
        f"{loaded.name} is a bare encoder with no task head, so it has no accuracy or perplexity; "
        "load a classifier (task='classification') or a causal LM"
    )


def summary(evaluation: dict | None) -> dict | None:
    """An :func:`evaluate` result without its per-item arrays (JSON-able)."""
    if evaluation is None:
        return None
    return {k: v for k, v in evaluation.items() if k != "per_item"}


def paired_difference(dense: dict, pruned: dict, seed: int = 0) -> dict:
    """The harm of pruning, measured on the same items, with its paired 95% bootstrap interval.

    ``drop`` is dense minus pruned accuracy, or pruned minus dense perplexity, so
    a positive drop always means the pruned model is worse. Both arguments are
    :func:`evaluate` results on the same data and examples. Returns ``{"drop",
    "drop_ci_low", "drop_ci_high", "within_noise", "n"}``.
    """
    if dense.get("metric") != pruned.get("metric") or dense.get("n") != pruned.get("n"):
        raise PruneScopeError(
            f"a paired difference needs two evaluations on the same items; got {dense.get('metric')} on {dense.get('n')} "
            f"and {pruned.get('metric')} on {pruned.get('n')}"
        )
    a, b = dense["per_item"], pruned["per_item"]
    if dense["metric"] == "accuracy":
        drop, low, high = paired_interval(a["correct"], b["correct"], seed=seed)
    else:
        drop, low, high = paired_interval(b["nll"], a["nll"], weights=a["tokens"], transform=safe_exp, seed=seed)
    return {"drop": drop, "drop_ci_low": low, "drop_ci_high": high, "within_noise": within_noise(low, high), "n": int(dense["n"])}
