"""Fine-tuning machinery for any method that trains (randomized selection, MGPP, GMP, SDS's metric).

Everything trains a *copy* of the loaded model (``copy.deepcopy``); the shared model
is only ever read (as the distillation teacher and as the reference weights).

* :class:`TaskData` - minibatches of the task's TRAINING data and a held-out slice of
  it for selection and monitoring. The test and validation splits are never touched.
  Classification: the ``"train"`` split of a :class:`pruning.loading.data.ClassificationData`.
  Causal LM: calibration-style token windows of the training text, split into
  disjoint train / held-out sequences.
* :func:`held_out_metric` - accuracy (classifier) or perplexity (causal LM) of a model
  on the held-out batches, with ``score`` always "higher is better".
* :class:`FineTuner` - AdamW steps with optional logits distillation from the dense model
  and a hook that runs between ``backward`` and the optimizer step (MGPP's prior).
* :class:`ModuleMasks` - masks in module layout, re-applied in place after a step.
* :class:`TrainedPruneResult` - a :class:`PruneResult` whose ``overrides`` also carry
  the fine-tuned parameters that are not pruned (biases, LayerNorms, the head), so
  evaluating the result evaluates the fine-tuned sparse model.
* :class:`WeightSampler` - a fixed random sample of targeted weights, for histograms
  that show the same weights moving over time.

Random numbers come only from explicit generators (no ``torch.manual_seed``): minibatch
order from a seeded ``random.Random``, dropout from a ``torch.Generator`` that
:func:`seed_dropout` puts into the copy's dropout modules, so two trainings in two threads
never share a random stream.

Deviations shared by all trained methods: the input token embedding matrix is frozen (for
2-core CPUs: it is not pruned, and its AdamW update is half the model's cost); dropout on
the attention probabilities is off (transformers draws it from the process-wide generator
inside the attention function), every other dropout layer stays on.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.evaluate import label_mapping, summary
from ..analysis.stats import perplexity_interval, wilson_interval
from ..errors import PruneScopeError
from ..loading.data import LMText, calibration_batches, load_classification
from ..loading.functional import with_overrides
from ..loading.models import layer_weight, param_key, to_module_layout
from ..masks import overall_sparsity
from ..result import PruneResult, masked_weights, weight_overrides
from ..store.resume import python_random_state, set_python_random_state

CAUSAL = "causal-lm"


# ---------------------------------------------------------------- small helpers
def with_model(loaded, model: nn.Module):
    """A copy of the ``LoadedModel`` record whose ``model`` is ``model`` (the record is not changed)."""
    if dataclasses.is_dataclass(loaded):
        return dataclasses.replace(loaded, model=model)
    clone = copy.copy(loaded)
    clone.model = model
    return clone


class GeneratorDropout(nn.Module):
    """Dropout drawing its mask from an explicit ``torch.Generator`` (set by :func:`seed_dropout`).

    Its ``p`` reads 0: attention code that reads ``dropout.p`` and drops inside its own
    function (from the process-wide generator) then drops nothing."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = float(rate)
        self.p = 0.0
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0.0:
            return x
        keep = torch.empty(x.shape, dtype=x.dtype, device="cpu").bernoulli_(1.0 - self.rate, generator=self.generator)
        return x * keep.to(x.device) / (1.0 - self.rate)


def seed_dropout(model: nn.Module, seed: int) -> nn.Module:
    """Make every dropout layer of ``model`` (in place; a private copy) draw from one generator seeded
    with ``seed``: the same seed gives the same dropout masks, whatever other threads do."""
    generator = torch.Generator().manual_seed(int(seed) % 2**64)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(module, child_name, GeneratorDropout(child.p))
    for module in model.modules():
        if isinstance(module, GeneratorDropout):
            module.generator = generator
    return model


def trainable_copy(loaded, freeze_embeddings: bool = True, seed: int = 0) -> nn.Module:
    """A deep float32 copy of the loaded model in train mode, every parameter trainable
    except (by default) the input token embeddings, its dropout seeded with ``seed``."""
    model = seed_dropout(copy.deepcopy(loaded.model), seed)
    model.train()
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()  # not model.float(): some loaders mark the model as quantized
        p.requires_grad_(True)
    if freeze_embeddings:
        emb = model.get_input_embeddings()
        if emb is not None and getattr(emb, "weight", None) is not None:
            emb.weight.requires_grad_(False)
    return model


def layer_weights(model: nn.Module, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """(d_out, d_in) float copies of the named layers' weights."""
    return {n: layer_weight(model, n).detach().float().clone() for n in layers}


def _module_layout(model: nn.Module, name: str, tensor: torch.Tensor) -> torch.Tensor:
    return to_module_layout(model, name, tensor)


class ModuleMasks:
    """Boolean masks (given in (d_out, d_in) layout) bound to a model's weight parameters."""

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        self.masks = dict(masks)
        self.bound: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, mask in masks.items():
            param = model.get_parameter(param_key(model, name))
            module_mask = _module_layout(model, name, mask.to(torch.float32)) != 0
            if module_mask.shape != param.shape:
                raise PruneScopeError(f"mask for {name} has shape {tuple(mask.shape)}, its weight {tuple(param.shape)}")
            self.bound.append((param, module_mask.to(param.device)))

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero every pruned weight in place."""
        for param, mask in self.bound:
            param.mul_(mask)


def targeted_parameters(model: nn.Module, layers: Sequence[str]) -> list[tuple[str, nn.Parameter]]:
    """``(layer name, weight parameter)`` for the targeted layers (module layout)."""
    return [(n, model.get_parameter(param_key(model, n))) for n in layers]


# ---------------------------------------------------------------- data
@dataclass
class TaskData:
    """Training minibatches and held-out batches, both drawn from the training data only."""

    task: str
    train_items: list  # classification: (text, label); causal LM: token-id tensors
    holdout_batches: list[dict]
    batch_size: int
    tokenize: Callable[[list], dict]
    seed: int = 0
    source: str = ""
    _order: list = field(default_factory=list, repr=False)
    _rng: random.Random = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def n_train(self) -> int:
        return len(self.train_items)

    @property
    def n_holdout(self) -> int:
        return sum(int(b["_n"]) for b in self.holdout_batches)

    def restart(self, seed: int | None = None) -> None:
        """Start the batch sequence again (so several candidates train on the same batches)."""
        self._order = []
        self._rng = random.Random(self.seed if seed is None else seed)

    def next_batch(self) -> dict:
        """The next training minibatch (epochs of a seeded shuffle)."""
        if self._rng is None:
            self._rng = random.Random(self.seed)
        if len(self._order) < self.batch_size:
            order = list(range(len(self.train_items)))
            self._rng.shuffle(order)
            self._order.extend(order)
        take, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return self.tokenize([self.train_items[i] for i in take])

    def state_dict(self) -> dict:
        """Where the batch sequence stands (the rest of the shuffled epoch and the shuffle generator), as plain data."""
        return {"order": list(self._order), "rng": python_random_state(self._rng)}

    def load_state_dict(self, state: dict) -> None:
        self._order = [int(i) for i in state["order"]]
        self._rng = None
        if state["rng"] is not None:
            self._rng = random.Random()
            set_python_random_state(self._rng, state["rng"])


def _classification_tokenizer(loaded, max_length: int):
    tok = loaded.tokenizer

    def tokenize(items: list) -> dict:
        texts = [t for t, _ in items]
        enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["labels"] = torch.tensor([int(y) for _, y in items], dtype=torch.long)
        batch["_n"] = len(items)
        return batch

    return tokenize


def _lm_tokenizer(pad_id: int):
    def tokenize(items: list) -> dict:
        width = max(int(x.shape[-1]) for x in items)
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(items), width), dtype=torch.long)
        for i, x in enumerate(items):
            x = x.reshape(-1)
            ids[i, : x.numel()] = x
            att[i, : x.numel()] = 1
        return {"input_ids": ids, "attention_mask": att, "_n": len(items)}

    return tokenize


def task_data(
    loaded,
    data=None,
    holdout: int = 256,
    batch_size: int = 16,
    seed: int = 0,
    max_length: int | None = None,
    lm_sequences: int = 64,
    lm_seq_len: int = 128,
    lm_holdout: int = 8,
) -> TaskData:
    """Training batches and a held-out slice of the TRAINING data (never test/validation).

    Classification: ``data`` is a ``ClassificationData`` (default: the Rotten Tomatoes
    data the embedded classifier was fine-tuned on). A seeded shuffle of its train
    split gives ``holdout`` held-out examples and the rest for training.
    Causal LM: ``lm_sequences`` training windows + ``lm_holdout`` held-out windows of
    ``lm_seq_len`` tokens of the training text (``pruning.loading.data.calibration_batches``),
    disjoint from each other (they may overlap the calibration set drawn with the same seed).
    """
    if loaded.task not in (CAUSAL, "classification"):
        raise PruneScopeError(
            f"{loaded.name} is a bare encoder with no task head: methods that fine-tune or select on a metric "
            "need a classifier or a causal LM"
        )
    if loaded.task == CAUSAL:
        return _lm_task_data(loaded, data, batch_size, seed, lm_sequences, lm_seq_len, lm_holdout)
    return _classification_task_data(loaded, data, holdout, batch_size, seed, max_length)


def _lm_task_data(loaded, data, batch_size: int, seed: int, n_sequences: int, seq_len: int, n_holdout: int) -> TaskData:
    """Disjoint training and held-out windows of the training text."""
    n_hold = max(1, int(n_holdout))
    source = data if isinstance(data, (str, LMText)) else None
    batches = calibration_batches(loaded, source, n_samples=n_sequences + n_hold, seq_len=seq_len, seed=seed)
    seqs = []
    for b in batches:
        ids, att = b["input_ids"], b.get("attention_mask", torch.ones_like(b["input_ids"]))
        for row, a in zip(ids, att):
            seqs.append(row[a.bool()].clone())
    if len(seqs) < 2:
        raise PruneScopeError("training needs at least two text windows of the training data; got fewer")
    n_hold = min(n_hold, len(seqs) - 1)
    pad = getattr(loaded.tokenizer, "pad_token_id", None) or 0
    tokenize = _lm_tokenizer(int(pad))
    hold = seqs[len(seqs) - n_hold :]
    holdout_batches = [tokenize(hold[i : i + 4]) for i in range(0, len(hold), 4)]
    name = getattr(source, "name", source) or "rt-plots (default)"
    return TaskData(CAUSAL, seqs[: len(seqs) - n_hold], holdout_batches, batch_size, tokenize, seed, f"{name} training text")


def _classification_task_data(loaded, data, holdout: int, batch_size: int, seed: int, max_length: int | None) -> TaskData:
    """A seeded split of the train split: ``holdout`` held-out examples, the rest for training."""
    data = load_classification(data if data is not None else "rotten-tomatoes")
    source = data.name
    if "train" not in data.splits:
        raise PruneScopeError(
            f"this method fine-tunes and selects on training data, and dataset {data.name} has no train split: "
            "give a folder with train and test files (e.g. train.csv and test.csv), or a file whose name says train"
        )
    texts, labels = data.splits["train"]
    mapping = label_mapping(data.label_names, loaded.model)
    labels = [int(y) if mapping is None else mapping[int(y)] for y in labels]
    n_labels = getattr(getattr(loaded.model, "config", None), "num_labels", None)
    if n_labels is not None and labels and max(labels) >= n_labels:
        raise PruneScopeError(f"the dataset has label {max(labels)} but the model predicts only {n_labels} classes")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    holdout = min(holdout, len(order) // 2)
    hold_idx, train_idx = order[:holdout], order[holdout:]
    if not train_idx:
        raise PruneScopeError("the training split is too small to fine-tune on")
    max_length = int(max_length or getattr(loaded, "max_length", None) or 128)
    tokenize = _classification_tokenizer(loaded, max_length)
    hold_items = sorted(((texts[i], labels[i]) for i in hold_idx), key=lambda x: len(x[0]))  # length-sorted batches
    holdout_batches = [tokenize(hold_items[i : i + 64]) for i in range(0, len(hold_items), 64)]
    train_items = [(texts[i], labels[i]) for i in train_idx]
    return TaskData("classification", train_items, holdout_batches, batch_size, tokenize, seed, source)


# ---------------------------------------------------------------- forward, loss, metric
def _inputs(batch: dict, task: str) -> dict:
    out = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if task == CAUSAL:
        out["use_cache"] = False
    return out


def logits_of(model: nn.Module, batch: dict, task: str) -> torch.Tensor:
    return model(**_inputs(batch, task)).logits


def task_loss(logits: torch.Tensor, batch: dict, task: str, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy: class labels for a classifier, next tokens (padding ignored) for a causal LM."""
    if task != CAUSAL:
        return F.cross_entropy(logits.float(), batch["labels"], reduction=reduction)
    targets = batch["input_ids"][:, 1:].clone()
    targets[batch["attention_mask"][:, 1:] == 0] = -100
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction=reduction)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, batch: dict, task: str):
    """``T^2 KL(softmax(teacher/T) || softmax(student/T))``, averaged over examples (LM: over real tokens)."""
    t = float(temperature)
    s_log = F.log_softmax(student.float() / t, dim=-1)
    t_log = F.log_softmax(teacher.float() / t, dim=-1)
    kl = (t_log.exp() * (t_log - s_log)).sum(-1)
    if task == CAUSAL:
        keep = batch["attention_mask"].bool()
        kl = kl[keep]
    return kl.mean() * t * t


@torch.no_grad()
def held_out_metric(model: nn.Module, data: TaskData) -> dict:
    """``{"score", "metric", "value", "ci_low", "ci_high", "loss", "n", "per_item"}`` on the held-out
    batches; ``score`` is accuracy for a classifier and minus the perplexity for a causal LM (higher
    is better). The interval is Wilson's (accuracy) or a seeded bootstrap over sequences
    (perplexity); ``per_item`` has the shapes of :func:`pruning.analysis.evaluate.evaluate`'s (``correct``
    per example, or ``nll``/``tokens`` per sequence), for paired comparisons; ``n`` counts
    examples, or predicted tokens for a causal LM."""
    was_training = model.training
    model.eval()
    values, weights = [], []
    try:
        for batch in data.holdout_batches:
            logits = logits_of(model, batch, data.task)
            if data.task == CAUSAL:
                losses = task_loss(logits, batch, data.task, reduction="none").view(logits.shape[0], -1).double()
                valid = (batch["attention_mask"][:, 1:] != 0).double()
                tokens = valid.sum(dim=1)
                values.append((losses * valid).sum(dim=1) / tokens.clamp_min(1))
                weights.append(tokens)
            else:
                values.append(F.cross_entropy(logits.float(), batch["labels"], reduction="none").double())
                weights.append((logits.argmax(-1) == batch["labels"]).double())
    finally:
        model.train(was_training)
    return _held_out_result(data.task, torch.cat(values).numpy(), torch.cat(weights).numpy())


def _held_out_result(task: str, values, weights) -> dict:
    """The :func:`held_out_metric` dict from per-item losses and (LM) token counts or (classifier) correctness."""
    if task == CAUSAL:
        tokens = weights.astype("int64")
        loss = float((values * tokens).sum() / max(1, int(tokens.sum())))
        ppl = math.exp(min(loss, 50.0))
        low, high = perplexity_interval(values, tokens)
        per_item = {"nll": values, "tokens": tokens}
        return {"score": -ppl, "metric": "perplexity", "value": ppl, "ci_low": low, "ci_high": high, "loss": loss, "n": int(tokens.sum()), "per_item": per_item}
    correct = weights.astype(bool)
    acc = float(correct.mean()) if correct.size else 0.0
    low, high = wilson_interval(int(correct.sum()), correct.size) if correct.size else (0.0, 1.0)
    loss = float(values.mean()) if values.size else 0.0
    return {"score": acc, "metric": "accuracy", "value": acc, "ci_low": low, "ci_high": high, "loss": loss, "n": int(correct.size), "per_item": {"correct": correct}}


def masked_metric(loaded, masks: Mapping[str, torch.Tensor], data: TaskData, base: nn.Module | None = None) -> dict:
    """Held-out metric of ``base`` (default: the loaded model) with ``masks`` applied, no training.

    Uses a shallow copy with overridden weights, so neither model is modified.
    """
    model = base if base is not None else loaded.model
    return held_out_metric(with_overrides(model, weight_overrides(model, masked_weights(model, masks))), data)


# ---------------------------------------------------------------- training
class FineTuner:
    """AdamW fine-tuning of ``model`` on ``data`` with optional logits distillation.

    ``step(before_update)`` runs one minibatch: forward, loss, backward, then
    ``before_update()`` (to edit gradients, e.g. MGPP's prior), then the optimizer step.
    Loss = ``(1 - distill) * task loss + distill * T^2 KL(teacher || student)``.
    """

    def __init__(
        self,
        model: nn.Module,
        data: TaskData,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        teacher: nn.Module | None = None,
        distill: float = 0.0,
        temperature: float = 2.0,
    ):
        self.model, self.data, self.teacher = model, data, teacher
        self.distill, self.temperature = float(distill), float(temperature)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.steps = 0

    def loss(self, batch: dict) -> torch.Tensor:
        logits = logits_of(self.model, batch, self.data.task)
        loss = task_loss(logits, batch, self.data.task)
        if self.teacher is not None and self.distill > 0:
            with torch.no_grad():
                teacher_logits = logits_of(self.teacher, batch, self.data.task)
            kd = distillation_loss(logits, teacher_logits, self.temperature, batch, self.data.task)
            loss = (1.0 - self.distill) * loss + self.distill * kd
        return loss

    def step(self, before_update: Callable[[], None] | None = None) -> float:
        self.model.train()
        batch = self.data.next_batch()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        if before_update is not None:
            before_update()
        self.optimizer.step()
        self.steps += 1
        return float(loss.detach())

    def state_dict(self) -> dict:
        """Everything the next steps depend on, as plain data: the trainable parameters, the optimizer,
        the dropout generators, the data order and the step count (see :mod:`pruning.store.resume`)."""
        return {
            "params": trainable_state(self.model),
            "generators": generator_states(self.model),
            "optimizer": self.optimizer.state_dict(),
            "data": self.data.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        load_trainable_state(self.model, state["params"])
        set_generator_states(self.model, state["generators"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data.load_state_dict(state["data"])
        self.steps = int(state["steps"])


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (the frozen ones are the loaded model's)."""
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = sorted(k for k, p in params.items() if p.requires_grad and k not in state)
    if missing or any(k not in params for k in state):
        raise PruneScopeError(f"the checkpoint's parameters do not match this model (e.g. {(missing or sorted(set(state) - set(params)))[0]})")
    for key, value in state.items():
        params[key].copy_(value)


def _generators(model: nn.Module) -> list[torch.Generator]:
    """The distinct dropout generators of ``model``, in module order."""
    seen: dict[int, torch.Generator] = {}
    for module in model.modules():
        if isinstance(module, GeneratorDropout):
            seen.setdefault(id(module.generator), module.generator)
    return list(seen.values())


def generator_states(model: nn.Module) -> list[torch.Tensor]:
    return [g.get_state() for g in _generators(model)]


def set_generator_states(model: nn.Module, states: Sequence[torch.Tensor]) -> None:
    generators = _generators(model)
    if len(generators) != len(states):
        raise PruneScopeError(f"the checkpoint has {len(states)} dropout generators, this model {len(generators)}")
    for g, state in zip(generators, states):
        g.set_state(state)


# ---------------------------------------------------------------- results
@dataclass
class TrainedPruneResult(PruneResult):
    """A pruning result produced by fine-tuning: ``weights`` are the fine-tuned pruned layers,
    ``other_params`` every other parameter the fine-tuning changed (``named_parameters``
    key -> tensor in module layout); :meth:`overrides` returns both, so the result
    evaluates as the fine-tuned sparse model."""

    other_params: dict[str, torch.Tensor] = field(default_factory=dict)

    def overrides(self, loaded) -> dict[str, torch.Tensor]:
        out = super().overrides(loaded)
        for key, value in self.other_params.items():
            original = loaded.model.get_parameter(key)
            out[key] = value.to(original.dtype)
        return out


def trained_result(
    method: str, loaded, model: nn.Module, masks: Mapping[str, torch.Tensor], sparsity: float, granularity: str, info: dict
) -> TrainedPruneResult:
    """Package a fine-tuned copy: pruned layers' weights (masked) and the other changed parameters."""
    layers = list(masks)
    weights = masked_weights(model, masks)
    targeted = {param_key(model, n) for n in layers}
    other = {}
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key in targeted:
                continue
            try:
                original = loaded.model.get_parameter(key)
            except AttributeError:
                continue
            if original.shape == p.shape and not torch.equal(original.detach().float(), p.detach()):
                other[key] = p.detach().clone()
    info = dict(info)
    info.setdefault("fine_tuned_other_params", len(other))
    return TrainedPruneResult(
        method, sparsity, granularity, {n: m.clone() for n, m in masks.items()}, weights, info=info, other_params=other
    )


# ---------------------------------------------------------------- histograms
class WeightSampler:
    """The same random sample of targeted weights every time (histograms that show weights move)."""

    def __init__(self, shapes: Mapping[str, tuple], n: int = 4000, seed: int = 0):
        g = torch.Generator().manual_seed(int(seed))
        sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        total = max(1, sum(sizes.values()))
        self.index: dict[str, torch.Tensor] = {}
        for name, size in sizes.items():
            take = min(size, max(1, round(n * size / total)))
            self.index[name] = torch.randperm(size, generator=g)[:take]

    def take(self, weights: Mapping[str, torch.Tensor]) -> list[float]:
        values = [weights[n].detach().reshape(-1)[i].float() for n, i in self.index.items() if n in weights]
        return torch.cat(values).tolist() if values else []


def histogram(values: Sequence[float], bins: int = 60, limit: float | None = None) -> dict:
    """``{"edges", "counts"}`` of ``values`` on a symmetric range (``limit`` or the largest |value|)."""
    t = torch.tensor(list(values), dtype=torch.float32)
    if t.numel() == 0:
        return {"edges": [], "counts": []}
    lim = float(limit) if limit else float(t.abs().max()) or 1.0
    counts = torch.histc(t.clamp(-lim, lim), bins=bins, min=-lim, max=lim)
    edges = torch.linspace(-lim, lim, bins + 1)
    return {"edges": edges.tolist(), "counts": [int(c) for c in counts]}


def exact_zero_fraction(model: nn.Module, layers: Sequence[str]) -> float:
    """Fraction of exactly-zero entries over the targeted weights."""
    zeros, total = 0, 0
    for _, p in targeted_parameters(model, layers):
        zeros += int((p.detach() == 0).sum())
        total += p.numel()
    return zeros / max(1, total)


def finetune_masked(
    loaded,
    masks: Mapping[str, torch.Tensor],
    data: TaskData,
    steps: int,
    lr: float = 5e-5,
    distill: float = 0.0,
    temperature: float = 2.0,
    method: str = "finetuned",
    sparsity: float | None = None,
    granularity: str = "layer",
    seed: int = 0,
) -> TrainedPruneResult:
    """Fine-tune a copy of the loaded model with ``masks`` fixed (re-applied after every step).

    The equal-budget baseline of the trained seed methods: e.g. the magnitude mask
    fine-tuned for as many steps as randomized selection spends in all.
    """
    model = trainable_copy(loaded, seed=seed)
    bound = ModuleMasks(model, masks)
    bound.apply_()
    teacher = loaded.model if distill > 0 else None
    tuner = FineTuner(model, data, lr, teacher=teacher, distill=distill, temperature=temperature)
    losses = []
    for _ in range(int(steps)):
        losses.append(tuner.step())
        bound.apply_()
    final = summary(held_out_metric(model, data))
    info = {"steps": int(steps), "lr": lr, "final_loss": losses[-1] if losses else None, "held_out_metric": final}
    s = overall_sparsity(masks) if sparsity is None else sparsity
    return trained_result(method, loaded, model, masks, s, granularity, info)
