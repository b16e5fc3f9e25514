"""Flips: the answers that change when a model is pruned (Dutta et al. 2024, "Accuracy is not all you need").

An *answer* is what the model says for one evaluation item: a classifier's predicted
label per example, a causal LM's top-1 next token per predicted token. Two models on
the same items flip on the items where their answers differ; beside an unchanged
accuracy, 9% of answers may have changed. :func:`predict` evaluates a model as
:func:`pruning.analysis.evaluate.evaluate` does (the same plan, the same metric) and also keeps
its answers; :func:`flips` counts the changed items with a Wilson interval and splits
them by direction (to wrong, to right, wrong to another wrong); :func:`fragile_items`
lists the items that flip most often across several pruned models, with their text.

Pure NumPy over answers, apart from :func:`predict`, which runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import PruneScopeError
from ..loading.data import ClassificationData, load_classification
from ..loading.devices import placement_of
from .evaluate import evaluation_plan, model_runner, paired_difference, run_plan
from .stats import wilson_interval

CONTEXT_TOKENS = 12  # tokens of text shown before a causal LM's flipped token


@dataclass
class Predictions:
    """One model's evaluation and its answers on every item.

    ``answers`` and ``gold`` have one entry per item: ``(n_examples,)`` labels for a
    classifier, ``(n_windows, seq_len - 1)`` token ids for a causal LM (``gold`` is the
    true next token). ``evaluation`` is the :func:`pruning.analysis.evaluate.evaluate` result
    (with ``per_item``, which also holds ``answer`` and ``gold``). ``texts`` (classifier) or ``windows`` (causal LM) let
    :func:`item_text` show an item.
    """

    metric: str
    answers: np.ndarray
    gold: np.ndarray
    evaluation: dict
    texts: list[str] | None = None
    windows: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)


def predict(loaded, data=None, overrides: Mapping[str, torch.Tensor] | None = None, max_examples=None, split: str = "test", progress=None, seed: int = 0, plan=None) -> Predictions:
    """Evaluate ``loaded`` with ``overrides`` like :func:`pruning.analysis.evaluate.evaluate` and keep every answer.

    ``plan`` (an :class:`pruning.analysis.evaluate.EvalPlan` from :func:`pruning.analysis.evaluate.evaluation_plan`)
    may be given to evaluate several models on exactly the same items without building it again.
    """
    plan = plan if plan is not None else evaluation_plan(loaded, data, max_examples, split)
    answers: list[np.ndarray] = []

    def keep(i: int, logits: torch.Tensor) -> None:
        if plan.metric == "accuracy":
            answers.append(logits.argmax(dim=-1).cpu().numpy().astype(np.int64))
        else:
            answers.append(logits[:, :-1].argmax(dim=-1).cpu().numpy().astype(np.int64))

    run = model_runner(loaded.model, overrides, placement_of(loaded))
    evaluation = run_plan(plan, run, progress, seed, on_logits=keep)
    ordered = plan.ordered(answers)
    gold = plan.gold.numpy()[: ordered.size] if plan.metric == "accuracy" else None
    config = getattr(loaded.model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    if plan.metric == "accuracy":
        evaluation["per_item"].update(answer=ordered, gold=gold)  # for flips between two cached evaluations
        texts = _plan_texts(loaded, data, split, max_examples, ordered.size)
        return Predictions("accuracy", ordered, gold, evaluation, texts=texts, label_names=names)
    windows = torch.cat([b["input_ids"] for b in plan.batches]).numpy()
    evaluation["per_item"].update(answer=ordered, gold=windows[:, 1:])
    return Predictions("perplexity", ordered, windows[:, 1:], evaluation, windows=windows)


def evaluation_flips(first: dict, second: dict) -> dict | None:
    """:func:`flips` of two evaluations of :func:`predict` on the same items (their ``per_item``
    holds ``answer`` and ``gold``); None when either has no answers (an evaluation from elsewhere)."""
    a, b = first.get("per_item", {}), second.get("per_item", {})
    if "answer" not in a or "answer" not in b or np.shape(a["answer"]) != np.shape(b["answer"]):
        return None
    return flips(a["answer"], b["answer"], a.get("gold"))


def _plan_texts(loaded, data, split: str, max_examples, n: int) -> list[str] | None:
    """The evaluated sentences in their original order (for showing flipped examples)."""
    try:
        data = data if isinstance(data, ClassificationData) else load_classification(data)
    except PruneScopeError:
        return None
    texts = list(data.split(split)[0])
    return texts[:n]


def flips(a: np.ndarray, b: np.ndarray, gold: np.ndarray | None = None) -> dict:
    """How many of the same items get a different answer from model ``a`` and model ``b``.

    Returns ``{"flips", "flips_ci_low", "flips_ci_high", "flipped", "items"}`` (the share,
    its 95% Wilson interval, the count, the number of items) and, with ``gold``,
    ``to_wrong`` (``a`` right, ``b`` wrong), ``to_right`` (``a`` wrong, ``b`` right) and
    ``wrong_to_wrong`` (both wrong, differently). For a causal LM every predicted token
    is an item; tokens of one window are not independent, so its interval is narrower
    than the truth.
    """
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise PruneScopeError(f"flips need answers on the same items: {a.size} against {b.size}")
    if a.size == 0:
        raise PruneScopeError("flips need at least one item")
    changed = a != b
    k = int(changed.sum())
    low, high = wilson_interval(k, a.size)
    out = {"flips": k / a.size, "flips_ci_low": low, "flips_ci_high": high, "flipped": k, "items": int(a.size)}
    if gold is not None:
        g = np.asarray(gold).reshape(-1)
        if g.shape != a.shape:
            raise PruneScopeError(f"{g.size} true answers for {a.size} items")
        right_a, right_b = a == g, b == g
        out["to_wrong"] = int((right_a & ~right_b).sum())
        out["to_right"] = int((~right_a & right_b).sum())
        out["wrong_to_wrong"] = int((changed & ~right_a & ~right_b).sum())
    return out


def compare(first: Predictions, second: Predictions, seed: int = 0) -> dict:
    """``second`` against ``first`` on the same items: :func:`flips` beside the paired metric
    difference (:func:`pruning.analysis.evaluate.paired_difference`: positive ``drop`` = ``second`` is worse)."""
    diff = paired_difference(first.evaluation, second.evaluation, seed=seed)
    return {**diff, **flips(first.answers, second.answers, first.gold)}


def pairwise_flips(answers: Sequence[np.ndarray]) -> list[dict]:
    """:func:`flips` of every pair ``i < j`` of the given answers (``{"a": i, "b": j, ...}``)."""
    return [{"a": i, "b": j, **flips(answers[i], answers[j])} for i in range(len(answers)) for j in range(i + 1, len(answers))]


def flip_counts(reference: np.ndarray, answers: Sequence[np.ndarray], gold: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per item (flattened): in how many of ``answers`` it differs from ``reference`` (``flipped``)
    and, with ``gold``, in how many it goes from right to wrong (``to_wrong``) and wrong to right (``to_right``)."""
    ref = np.asarray(reference).reshape(-1)
    stack = np.stack([np.asarray(x).reshape(-1) for x in answers]) if len(answers) else np.zeros((0, ref.size), dtype=ref.dtype)
    out = {"flipped": (stack != ref).sum(axis=0)}
    if gold is not None:
        g = np.asarray(gold).reshape(-1)
        right_ref, right = ref == g, stack == g
        out["to_wrong"] = (right_ref & ~right).sum(axis=0)
        out["to_right"] = (~right_ref & right).sum(axis=0)
    return out


def item_text(pred: Predictions, index: int, tokenizer=None) -> str:
    """Item ``index`` (flattened) in words: a classifier's sentence, or a causal LM's preceding tokens."""
    if pred.metric == "accuracy":
        return pred.texts[index] if pred.texts is not None and index < len(pred.texts) else f"example {index}"
    width = pred.answers.shape[1]
    w, p = divmod(int(index), width)
    if tokenizer is None:
        return f"window {w}, token {p + 1}"
    start = max(0, p + 1 - CONTEXT_TOKENS)
    return "…" * (start > 0) + tokenizer.decode(pred.windows[w, start : p + 1].tolist())


def answer_text(pred: Predictions, value: int, tokenizer=None) -> str:
    """An answer in words: a label name, or a decoded token."""
    if pred.metric == "accuracy":
        return pred.label_names[value] if 0 <= value < len(pred.label_names) else str(value)
    return repr(tokenizer.decode([int(value)])) if tokenizer is not None else str(value)


def fragile_items(reference: Predictions, answers: Sequence[np.ndarray], tokenizer=None, top: int = 20) -> list[dict]:
    """The items whose answer most often differs from ``reference``'s across ``answers`` (e.g. the
    dense model against R pruned draws), most often first (ties: item order), with their text.

    Each row: ``item``, ``text``, ``truth``, ``reference`` (the reference's answer), ``flipped``
    (in how many of the answers it changes), ``to_wrong`` / ``to_right`` (how many of those go
    from right to wrong / wrong to right), ``answers`` (the changed answers, most common first)
    and ``draws``. Only items that flip at least once are listed.
    """
    counts = flip_counts(reference.answers, answers, reference.gold)
    flipped = counts["flipped"]
    order = np.lexsort((np.arange(flipped.size), -flipped))
    ref, gold = reference.answers.reshape(-1), reference.gold.reshape(-1)
    stack = [np.asarray(x).reshape(-1) for x in answers]
    rows = []
    for i in order[: int(top)]:
        if flipped[i] == 0:
            break
        changed = [int(x[i]) for x in stack if x[i] != ref[i]]
        values, n = np.unique(changed, return_counts=True)
        common = [int(values[j]) for j in np.lexsort((values, -n))]
        rows.append(
            {
                "item": int(i),
                "text": item_text(reference, int(i), tokenizer),
                "truth": answer_text(reference, int(gold[i]), tokenizer),
                "reference": answer_text(reference, int(ref[i]), tokenizer),
                "flipped": int(flipped[i]),
                "to_wrong": int(counts["to_wrong"][i]),
                "to_right": int(counts["to_right"][i]),
                "answers": ", ".join(answer_text(reference, v, tokenizer) for v in common[:3]),
                "draws": len(stack),
            }
        )
    return rows
