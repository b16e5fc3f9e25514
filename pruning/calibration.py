"""Calibration statistics, collected block by block.

Wanda needs, per layer, the squared norm of every input feature over the
calibration tokens; SparseGPT needs the Gram matrix ``X X^T``. Both are
accumulated by forward pre-hooks (the shape of SparseGPT's ``add_batch``), on a
shallow copy of the model so that the shared model never carries our hooks.

:func:`sequential_prune` walks the transformer blocks in order. Block ``b`` gets
the hidden states produced by the already-pruned blocks before it. By default
(``order="block"``, as the reference Wanda and SparseGPT code) all of a block's
statistics come from one pass over the unpruned block; with ``order="sequential"``
every layer is pruned the moment its input is known, so later layers of the
block (the attention output, the FFN down projection) see inputs from the
pruned layers before them. All calibration samples go through a block as one
batch, which keeps only the hidden states between blocks in memory, never every
layer's activations. Layers that read the very same tensor (q/k/v, gate/up)
share one set of statistics and, for SparseGPT, one factorisation.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import PruneScopeError
from .functional import shallow_copy


@dataclass
class InputStats:
    """Running statistics of the inputs of one layer (or a group sharing one input)."""

    d_in: int
    want_gram: bool = False
    n_tokens: int = 0
    sq_sum: torch.Tensor = field(init=False)
    gram: torch.Tensor | None = field(init=False, default=None)
    cache: dict = field(default_factory=dict)  # derived objects shared by the group (e.g. SparseGPT's factor)

    def __post_init__(self) -> None:
        self.sq_sum = torch.zeros(self.d_in, dtype=torch.float64)
        if self.want_gram:
            self.gram = torch.zeros(self.d_in, self.d_in, dtype=torch.float32)

    def add(self, x: torch.Tensor) -> None:
        """Add a (tokens, d_in) batch of inputs."""
        x = x.detach().reshape(-1, self.d_in).to(torch.float32)
        self.n_tokens += x.shape[0]
        self.sq_sum += (x * x).sum(dim=0).to(torch.float64)
        if self.gram is not None:
            self.gram += x.T @ x


def merge_batches(batches: Sequence[dict], pad_id: int = 0) -> dict:
    """Pad and concatenate model-input batches into one batch (right padding)."""
    if not batches:
        raise PruneScopeError("calibration needs at least one sample; the calibration set is empty")
    width = max(b["input_ids"].shape[1] for b in batches)
    ids, att = [], []
    for b in batches:
        x = b["input_ids"]
        a = b.get("attention_mask", torch.ones_like(x))
        pad = width - x.shape[1]
        ids.append(torch.nn.functional.pad(x, (0, pad), value=pad_id))
        att.append(torch.nn.functional.pad(a, (0, pad), value=0))
    return {"input_ids": torch.cat(ids), "attention_mask": torch.cat(att)}


class _Stop(Exception):
    pass


def _model_inputs(loaded, batch: dict) -> dict:
    inputs = dict(batch)
    if loaded.task == "causal-lm":
        inputs["use_cache"] = False
    return inputs


def capture_first_block_inputs(loaded, model: nn.Module, blocks, batch: dict) -> tuple[tuple, dict]:
    """Run the model up to its first transformer block and return that block's (args, kwargs)."""
    captured: dict = {}

    def hook(module, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs
        raise _Stop

    handle = blocks[0][1].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            model(**_model_inputs(loaded, batch))
    except _Stop:
        pass
    finally:
        handle.remove()
    if "args" not in captured:
        raise PruneScopeError("could not reach the first transformer block of this model during calibration")
    return captured["args"], captured["kwargs"]


def _block_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _SharedInputs:
    """Statistics keyed by the input tensor object itself, so q/k/v (or gate/up) share one.

    Keyed by ``id`` and checked through a weak reference: an id can be reused once
    a tensor is freed, and holding strong references would keep every activation.
    """

    def __init__(self, want_gram: bool, token_mask: torch.Tensor | None):
        self.want_gram, self.token_mask = want_gram, token_mask
        self._seen: dict[int, tuple[weakref.ref, InputStats]] = {}

    def stats_for(self, x: torch.Tensor) -> InputStats:
        entry = self._seen.get(id(x))
        if entry is not None and entry[0]() is x:
            return entry[1]
        stats = InputStats(x.shape[-1], self.want_gram)
        stats.add(_valid_tokens(x, self.token_mask))
        self._seen[id(x)] = (weakref.ref(x), stats)
        return stats


def _valid_tokens(x: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """Drop padding positions from a (batch, seq, d) input when the mask fits it."""
    if token_mask is not None and x.dim() == 3 and tuple(x.shape[:2]) == tuple(token_mask.shape):
        return x[token_mask]
    return x.reshape(-1, x.shape[-1])


GroupPruner = Callable[[list[str], list[torch.Tensor], InputStats], list[tuple[torch.Tensor | None, torch.Tensor]]]


def input_groups(block: nn.Module, args: tuple, kwargs: dict, token_mask=None) -> list[list[str]]:
    """Local names of the block's linear layers, grouped by the input tensor they read.

    Found by running the block once and watching which layers receive the very
    same tensor: q/k/v form one group in attention, gate/up one in a LLaMA MLP.
    """
    order: list[str] = []
    seen: dict[int, tuple[weakref.ref, list[str]]] = {}
    handles = []

    def make_hook(local: str):
        def hook(module, inputs):
            x = inputs[0]
            entry = seen.get(id(x))
            if entry is not None and entry[0]() is x:
                entry[1].append(local)
            else:
                seen[id(x)] = (weakref.ref(x), [local])
            order.append(local)

        return hook

    for local, module in block.named_modules():
        if local and _is_linear(module):
            handles.append(module.register_forward_pre_hook(make_hook(local)))
    try:
        with torch.inference_mode():
            block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    groups = [members for _, members in seen.values()]
    return sorted(groups, key=lambda g: order.index(g[0]))


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


@dataclass
class _Walk:
    """What a sequential walk shares across blocks: the private model copy, the targets, the pruner and the results."""

    model: nn.Module
    layers: Sequence[str]
    prune_group: GroupPruner
    groups_by_local: dict
    progress: object
    masks: dict = field(default_factory=dict)
    new_weights: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return all(n in self.masks for n in self.layers)

    def group_of(self, prefix: str, local: str, name: str) -> list[str]:
        """The not yet pruned targeted layers of ``name``'s input group (at least ``name``)."""
        members = [prefix + "." + m for m in self.groups_by_local.get(local, [local])]
        members = [m for m in members if m in self.layers and m not in self.masks] or [name]
        return members if name in members else [name]

    def keep(self, block: nn.Module, prefix: str, name: str, new_w, mask) -> None:
        """Record a layer's result and put its pruned weight into the private copy."""
        from .models import layer_weight

        self.masks[name] = mask
        if new_w is not None:
            self.new_weights[name] = new_w
        base = new_w if new_w is not None else layer_weight(self.model, name)
        _set_weight(self.model, block, name[len(prefix) + 1 :], name, base * mask)
        if self.progress is not None:
            self.progress(len(self.masks), len(set(self.layers)), f"pruned {name}")


def _pruning_hook(walk: _Walk, block: nn.Module, prefix: str, name: str, shared, pending: dict):
    """A forward pre-hook that prunes ``name``'s input group the first time one of its members runs."""
    from .models import layer_weight

    local = name[len(prefix) + 1 :]

    def hook(module, inputs):
        stats = shared.stats_for(inputs[0])
        if not (name in pending and pending[name][0] is stats):  # first of its group to run: prune the group now
            members = walk.group_of(prefix, local, name)
            outcome = walk.prune_group(members, [layer_weight(walk.model, m) for m in members], stats)
            for member, result in zip(members, outcome):
                pending[member] = (stats, result)
        new_w, mask = pending.pop(name)[1]
        walk.keep(block, prefix, name, new_w, mask)

    return hook


def _hooked(block: nn.Module, prefix: str, names: Sequence[str], make_hook, run):
    """``run()`` with ``make_hook(name)`` as forward pre-hook of each named layer of ``block``."""
    handles = [block.get_submodule(n[len(prefix) + 1 :]).register_forward_pre_hook(make_hook(n)) for n in names]
    try:
        return run()
    finally:
        for h in handles:
            h.remove()


def _block_sequential(walk: _Walk, block: nn.Module, prefix: str, names, shared, run):
    """Prune each layer (group) in its pre-hook, as soon as its input is known; the block's output."""
    pending: dict = {}
    return _hooked(block, prefix, names, lambda n: _pruning_hook(walk, block, prefix, n, shared, pending), run)


def _block_once(walk: _Walk, block: nn.Module, prefix: str, names, shared, run):
    """Collect every layer's statistics in one pass over the unpruned block, prune, then rerun the block."""
    from .models import layer_weight

    seen: dict[str, InputStats] = {}

    def make_hook(name: str):
        def hook(module, inputs):
            seen[name] = shared.stats_for(inputs[0])

        return hook

    first = _hooked(block, prefix, names, make_hook, run)
    if not names:
        return first
    for name in names:
        if name in walk.masks:
            continue
        group = walk.group_of(prefix, name[len(prefix) + 1 :], name)
        members = [m for m in group if seen.get(m) is seen[name]] or [name]
        outcome = walk.prune_group(members, [layer_weight(walk.model, m) for m in members], seen[name])
        for member, (new_w, mask) in zip(members, outcome):
            walk.keep(block, prefix, member, new_w, mask)
    return run()


ORDERS = ("block", "sequential")


def sequential_prune(
    loaded,
    layers: Sequence[str],
    calibration: Sequence[dict],
    prune_group: GroupPruner,
    want_gram: bool = False,
    progress=None,
    order: str = "block",
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Walk the blocks in order, each block's inputs coming from the already-pruned blocks before it.

    ``order="block"`` (the reference Wanda and SparseGPT code): all statistics of a
    block are collected in one pass over the still-unpruned block, then its layers
    are pruned, then the pruned block is run to give the next block its inputs.
    ``order="sequential"`` (SparseGPT's ``true_sequential``, finer still): every
    layer is pruned the moment its input is known, so later layers of the block
    (attention output, FFN down projection) see inputs from the pruned layers
    before them.

    ``prune_group(names, weights (d_out, d_in), stats) -> [(new_weight or None, mask)]``
    is called once per set of layers that read the same input (q/k/v, gate/up),
    so those can share statistics and work. Returns ``(masks, new_weights)``;
    new_weights holds only layers whose weights the pruner changed. The shared
    model is untouched.
    """
    from .models import transformer_blocks

    if order not in ORDERS:
        raise PruneScopeError(f"unknown statistics order {order!r}: use {' or '.join(ORDERS)}")
    step = _block_sequential if order == "sequential" else _block_once
    model = shallow_copy(loaded.model)
    blocks = transformer_blocks(model)
    batch = merge_batches(calibration, pad_id=_pad_id(loaded))
    token_mask = batch["attention_mask"].bool()
    if bool(token_mask.all()):
        token_mask = None  # no padding: every position is a calibration token
    args, kwargs = capture_first_block_inputs(loaded, model, blocks, batch)
    hidden, rest = args[0], tuple(args[1:])
    groups_by_local = {local: group for group in input_groups(blocks[0][1], args, kwargs) for local in group}
    walk = _Walk(model, list(dict.fromkeys(layers)), prune_group, groups_by_local, progress)
    for prefix, block in blocks:
        names = [n for n in layers if n.startswith(prefix + ".")]
        if not names and walk.finished:
            break
        with torch.inference_mode():
            run = lambda: _block_output(block(hidden, *rest, **kwargs))  # noqa: E731 - this block, these inputs
            hidden = step(walk, block, prefix, names, _SharedInputs(want_gram, token_mask), run)
        if walk.finished:
            break  # later blocks hold no targeted layer: no need to run them
    missing = [n for n in layers if n not in walk.masks]
    if missing:
        raise PruneScopeError(f"these layers are not inside a transformer block, so calibration never reached them: {missing[:3]}")
    return walk.masks, walk.new_weights


def collect_input_stats(
    loaded, layers: Sequence[str], calibration: Sequence[dict], want_gram: bool = False, progress=None
) -> dict[str, InputStats]:
    """One dense forward pass over the calibration set; input statistics for every layer.

    Layers that read the same tensor get the same :class:`InputStats` object.
    """
    model = shallow_copy(loaded.model)
    batch = merge_batches(calibration, pad_id=_pad_id(loaded))
    token_mask = batch["attention_mask"].bool()
    out: dict[str, InputStats] = {}
    shared = _SharedInputs(want_gram, token_mask)
    handles = []

    def make_hook(name: str):
        def hook(module, inputs):
            out[name] = shared.stats_for(inputs[0])
            if progress is not None:
                progress(len(out), len(layers), f"statistics of {name}")

        return hook

    for name in layers:
        handles.append(model.get_submodule(name).register_forward_pre_hook(make_hook(name)))
    try:
        with torch.inference_mode():
            model(**_model_inputs(loaded, batch))
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in layers if n not in out]
    if missing:
        raise PruneScopeError(f"calibration never reached these layers: {missing[:3]}")
    return out


def _pad_id(loaded) -> int:
    tok = getattr(loaded, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _set_weight(model: nn.Module, block: nn.Module, local: str, name: str, weight_out_in: torch.Tensor) -> None:
    """Put a (d_out, d_in) weight into the private copy's layer (Conv1D stores it transposed)."""
    from .models import to_module_layout

    module = block.get_submodule(local)
    module._parameters["weight"] = nn.Parameter(to_module_layout(model, name, weight_out_in), requires_grad=False)
