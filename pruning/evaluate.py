"""Accuracy and perplexity of a shared model under weight overrides.

The loaded model is never modified. Pruned weights arrive as *overrides*
(``dict[param_key, Tensor]``) and every forward pass runs through
``torch.func.functional_call(copy, overrides, (), inputs)`` under
``torch.inference_mode()``. ``functional_call`` swaps tensors on the module it
is given for the length of the call, so it is never given the shared model:
each evaluation builds a private structural copy (:func:`pruning.functional.shallow_copy`,
which shares every tensor, so no memory is copied) and swaps on that. Any
number of threads can therefore evaluate their own overrides on one model at
once. With no overrides the shared model is only read.

Tokenization is done once and cached: :func:`encode_sorted` for sentences
(sorted by length so each batch is padded only to its own longest sentence)
and :func:`lm_windows` for perplexity text.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Mapping, Sequence

import torch
from torch.func import functional_call

from .devices import placement_of, with_placement
from .errors import PruneScopeError

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

    Dense (no overrides): the shared model itself. Otherwise ``functional_call``
    on a private shallow copy of the model (shared tensors, own module objects).
    Off the plain CPU path (a GPU ``placement``, an offloaded model) a private copy is
    placed by accelerate (:func:`pruning.devices.dispatched_runner`).
    """
    from .devices import dispatched_runner, needs_dispatch

    tensors = check_overrides(model, overrides)
    if needs_dispatch(model, placement):
        return dispatched_runner(model, tensors, placement)
    if not tensors:
        return lambda **inputs: model(**inputs)
    from .functional import shallow_copy

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
    from .data import pad_batch, pad_id_of, tokenize

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
    gold = torch.as_tensor(list(labels), dtype=torch.long)
    run = model_runner(loaded.model, overrides, placement_of(loaded))
    correct = 0
    with torch.inference_mode():
        for i, batch in enumerate(batches):
            logits = run(**_inputs(batch)).logits
            correct += int((logits.argmax(dim=-1) == gold[batch["order"]]).sum())
            _report(progress, i + 1, len(batches), f"accuracy: batch {i + 1}/{len(batches)}")
    return correct / n


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
    from .data import token_ids

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
    return _perplexity(loaded, text, overrides, seq_len, max_windows, progress, batch_size)["value"]


def _perplexity(loaded, text, overrides, seq_len, max_windows, progress, batch_size) -> dict:
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
    run = model_runner(loaded.model, overrides, placement_of(loaded))
    total_nll, total_tokens = 0.0, 0
    step = max(1, int(batch_size))
    count = math.ceil(windows.shape[0] / step)
    with torch.inference_mode():
        for i in range(count):
            w = windows[i * step : (i + 1) * step]
            logits = run(input_ids=w, attention_mask=torch.ones_like(w), use_cache=False).logits
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1), reduction="sum"
            )
            total_nll += float(nll)
            total_tokens += int(w[:, 1:].numel())
            _report(progress, i + 1, count, f"perplexity: window {min((i + 1) * step, windows.shape[0])}/{windows.shape[0]}")
    mean = total_nll / max(1, total_tokens)
    value = math.exp(mean) if mean < 700 else float("inf")
    return {"value": value, "windows": int(windows.shape[0]), "tokens": total_tokens, "seq_len": int(windows.shape[1])}


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
    placement=None,
) -> dict:
    """The task's metric for ``loaded`` with ``overrides`` (on ``placement``'s device when given,
    else where ``loaded`` was loaded for).

    Classification: ``accuracy`` on ``data.split(split)`` (``data`` a
    :class:`pruning.data.ClassificationData` or a source name; default
    rotten-tomatoes), first ``max_examples`` sentences. Causal LM: ``perplexity``
    on ``data.eval_text`` (default rt-plots), first ``max_examples`` windows.
    Returns ``{"metric", "value", "n", "higher_is_better", ...}``.
    """
    from .data import ClassificationData, LMText, load_classification, load_lm_text

    if placement is not None:
        loaded = with_placement(loaded, placement)
    if loaded.task == "classification":
        if isinstance(data, LMText):
            raise PruneScopeError("a classification model needs labelled sentences, not plain text")
        data = load_classification(data) if not isinstance(data, ClassificationData) else data
        texts, labels = data.split(split)
        mapping = label_mapping(data.label_names, loaded.model)
        if mapping is not None:
            labels = [mapping[y] for y in labels]
        value = accuracy(loaded, texts, labels, overrides, max_examples=max_examples, progress=progress)
        n = len(texts) if max_examples is None else min(len(texts), int(max_examples))
        return {"metric": "accuracy", "value": value, "n": n, "higher_is_better": True, "split": split, "dataset": data.name}
    if loaded.task == "causal-lm":
        if isinstance(data, ClassificationData):
            raise PruneScopeError("a causal language model is evaluated on plain text (perplexity), not on labelled sentences")
        data = load_lm_text(data) if not isinstance(data, LMText) else data
        out = _perplexity(loaded, data.eval_text, overrides, None, max_examples, progress, 1)
        return {
            "metric": "perplexity",
            "value": out["value"],
            "n": out["windows"],
            "higher_is_better": False,
            "tokens": out["tokens"],
            "seq_len": out["seq_len"],
            "dataset": data.name,
        }
    raise PruneScopeError(
        f"{loaded.name} is a bare encoder with no task head, so it has no accuracy or perplexity; "
        "load a classifier (task='classification') or a causal LM"
    )
