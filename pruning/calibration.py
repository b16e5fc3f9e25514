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
pruned layers before them. Only the hidden states between blocks are kept for
every sample, never every layer's activations. On the CPU all calibration
samples go through a block as one batch; on an accelerator (and whenever
``chunk`` is given) the one-pass order runs them in slices of samples whose
activations fit a budget (:func:`pruning.budget.calibration_chunk`), the
statistics adding up over the slices, so a paper-size calibration set of a 7B
model never holds all its activations at once. Layers that read the very same
tensor (q/k/v, gate/up) share one set of statistics and, for SparseGPT, one
factorisation.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .budget import calibration_chunk
from .errors import PruneScopeError
from .loading.devices import (
    onload_each,
    onloaded,
    outside_blocks,
    placement_of,
    private_copy,
    runs_in_place,
    stats_dtype,
    to_device,
)
from .loading.functional import shallow_copy
from .loading.models import layer_weight, to_module_layout, transformer_blocks


STATS_CHUNK = 16384  # tokens per float32 slice when statistics accumulate (one slice at the CPU defaults)


@dataclass
class InputStats:
    """Running statistics of the inputs of one layer (or a group sharing one input)."""

    d_in: int
    want_gram: bool = False
    device: torch.device | str = "cpu"  # where the inputs arrive (the statistics stay there)
    n_tokens: int = 0
    sq_sum: torch.Tensor = field(init=False)
    lin_sum: torch.Tensor = field(init=False)  # sum over tokens of x_j (DSnoT's mean and variance)
    gram: torch.Tensor | None = field(init=False, default=None)
    cache: dict = field(default_factory=dict)  # derived objects shared by the group (e.g. SparseGPT's factor)

    def __post_init__(self) -> None:
        self.sq_sum = torch.zeros(self.d_in, dtype=stats_dtype(self.device), device=self.device)
        self.lin_sum = torch.zeros_like(self.sq_sum)
        if self.want_gram:
            self.gram = torch.zeros(self.d_in, self.d_in, dtype=torch.float32, device=self.device)

    def add(self, x: torch.Tensor, samples: int = 1) -> None:
        """Add a (tokens, d_in) batch of inputs (from ``samples`` calibration samples), in float32 slices
        of at most ``STATS_CHUNK`` tokens (a paper-size calibration set in one float32 copy would take
        gigabytes of device memory)."""
        x = x.detach().reshape(-1, self.d_in)
        self.n_tokens += x.shape[0]
        for part in x.split(STATS_CHUNK):
            part = part.to(torch.float32)
            self.sq_sum += (part * part).sum(dim=0).to(self.sq_sum.dtype)
            self.lin_sum += part.sum(dim=0).to(self.lin_sum.dtype)
            if self.gram is not None:
                self.gram += part.T @ part

    def sq_norms(self) -> torch.Tensor:
        """The per-feature ``||X_j||^2`` Wanda multiplies ``|W_ij|`` by (up to one factor for the whole layer)."""
        return self.sq_sum

    def hessian(self) -> torch.Tensor:
        """SparseGPT's ``H = 2 X X^T / n`` (float32, a new tensor the caller may change)."""
        return self.gram.to(torch.float32) * (2.0 / max(1, self.n_tokens))


@dataclass
class ReferenceStats(InputStats):
    """:class:`InputStats` that also keeps the published Wanda and SparseGPT code's running averages
    (``numerics="reference"``), fed one calibration sample per call.

    Per batch of ``t`` samples, in float32: Wanda's ``s <- s * n/(n+t); n <- n+t; s <- s + ||X_j||^2 / n``
    (the norm over the batch's tokens, squared), SparseGPT's ``H <- H * n/(n+t); n <- n+t;
    H <- H + (sqrt(2/n) X)^T (sqrt(2/n) X)``, with ``n`` counting samples, not tokens. :meth:`sq_norms`
    and :meth:`hessian` give those; the plain sums (RIA, DSnoT, the reconstruction error) are kept too.
    """

    n_samples: int = 0
    scaler_row: torch.Tensor = field(init=False)
    running_h: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scaler_row = torch.zeros(self.d_in, dtype=torch.float32, device=self.device)
        if self.want_gram:
            self.running_h = torch.zeros(self.d_in, self.d_in, dtype=torch.float32, device=self.device)

    def add(self, x: torch.Tensor, samples: int = 1) -> None:
        super().add(x, samples)
        cols = x.detach().reshape(-1, self.d_in).t()  # (d_in, tokens), as the reference's hook sees its input
        before, self.n_samples = self.n_samples, self.n_samples + samples
        self.scaler_row *= before / self.n_samples
        self.scaler_row += torch.norm(cols.to(torch.float32), p=2, dim=1) ** 2 / self.n_samples
        if self.running_h is not None:
            self.running_h *= before / self.n_samples
            scaled = math.sqrt(2 / self.n_samples) * cols.to(torch.float32)
            self.running_h += scaled.matmul(scaled.t())

    def sq_norms(self) -> torch.Tensor:
        return self.scaler_row

    def hessian(self) -> torch.Tensor:
        return self.running_h.clone()


NUMERICS = ("fast", "reference")


def stats_plan(numerics: str, order: str, chunk: int | None) -> tuple[type, int | None]:
    """The statistics class and samples per block pass for ``numerics``: ``"fast"`` as given;
    ``"reference"`` the published code's way, one sample per pass with its running averages (only in
    the one-pass ``order="block"``, the order that code has)."""
    if numerics not in NUMERICS:
        raise PruneScopeError(f"unknown numerics {numerics!r}: use {' or '.join(NUMERICS)}")
    if numerics == "fast":
        return InputStats, chunk
    if order != "block":
        raise PruneScopeError("numerics 'reference' follows the published code's block order; it cannot be combined with order 'sequential'")
    return ReferenceStats, 1


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


def _first_block_inputs(loaded, model: nn.Module, blocks, batch: dict, place) -> tuple[tuple, dict]:
    """The first block's (args, kwargs), computed on the placement's device with only the
    modules outside the blocks (embeddings, rotary tables) onloaded there."""
    with onloaded(outside_blocks(model, blocks), place):
        return capture_first_block_inputs(loaded, model, blocks, to_device(batch, place.torch_device))


def _block_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _SharedInputs:
    """Statistics keyed by the input tensor object itself, so q/k/v (or gate/up) share one.

    Keyed by ``id`` and checked through a weak reference: an id can be reused once
    a tensor is freed, and holding strong references would keep every activation.
    """

    def __init__(self, want_gram: bool, token_mask: torch.Tensor | None, stats_type: type = InputStats):
        self.want_gram, self.token_mask = want_gram, token_mask  # token_mask: of the slice of samples now running
        self.stats_type = stats_type
        self._seen: dict[int, tuple[weakref.ref, InputStats]] = {}
        self._by_layer: dict[str, InputStats] = {}

    def stats_for(self, x: torch.Tensor, layer: str) -> InputStats:
        """``layer``'s statistics with ``x`` added (once per tensor: its group shares them). In a later
        slice of samples the layer's statistics from the earlier slices grow."""
        entry = self._seen.get(id(x))
        if entry is not None and entry[0]() is x:
            stats = entry[1]
        else:
            stats = self._by_layer.get(layer) or self.stats_type(x.shape[-1], self.want_gram, x.device)
            stats.add(_valid_tokens(x, self.token_mask), int(x.shape[0]) if x.dim() == 3 else 1)
            self._seen[id(x)] = (weakref.ref(x), stats)
        self._by_layer[layer] = stats
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
    host_dtype: torch.dtype = torch.float32  # new weights come back to host memory in the storage dtype

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
        self.masks[name] = mask.cpu()  # results live in host memory (no copy on the CPU)
        if new_w is not None:
            self.new_weights[name] = new_w.to("cpu", self.host_dtype)
        base = new_w if new_w is not None else layer_weight(self.model, name)
        _set_weight(self.model, block, name[len(prefix) + 1 :], name, base * mask)
        if self.progress is not None:
            self.progress(len(self.masks), len(set(self.layers)), f"pruned {name}")


def _pruning_hook(walk: _Walk, block: nn.Module, prefix: str, name: str, shared, pending: dict):
    """A forward pre-hook that prunes ``name``'s input group the first time one of its members runs."""
    local = name[len(prefix) + 1 :]

    def hook(module, inputs):
        stats = shared.stats_for(inputs[0], name)
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
    seen: dict[str, InputStats] = {}

    def make_hook(name: str):
        def hook(module, inputs):
            seen[name] = shared.stats_for(inputs[0], name)

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
    chunk: int | None = None,
    numerics: str = "fast",
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

    ``chunk``: calibration samples per block pass in the one-pass order (default:
    all of them on the CPU, a memory budget's worth on an accelerator); the
    per-layer order always runs them as one batch.

    ``numerics="reference"`` (:func:`stats_plan`): one sample per block pass, statistics kept as the
    published code's running averages (:class:`ReferenceStats`).
    """
    if order not in ORDERS:
        raise PruneScopeError(f"unknown statistics order {order!r}: use {' or '.join(ORDERS)}")
    stats_type, chunk = stats_plan(numerics, order, chunk)
    step = _block_sequential if order == "sequential" else _block_once
    place = placement_of(loaded)
    model = private_copy(loaded.model)
    blocks = transformer_blocks(model)
    batch = merge_batches(calibration, pad_id=_pad_id(loaded))
    token_mask = _token_mask(batch, place)
    args, kwargs = _first_block_inputs(loaded, model, blocks, batch, place)
    hidden, rest = args[0], tuple(args[1:])
    spans = _sample_spans(model, hidden, place, order, chunk)
    with onloaded(list(blocks[0][1].modules()), place):
        groups_by_local = {local: group for group in input_groups(blocks[0][1], args, kwargs) for local in group}
    walk = _Walk(model, list(dict.fromkeys(layers)), prune_group, groups_by_local, progress, host_dtype=place.torch_dtype)
    for prefix, block in onload_each(blocks, place):  # one block on the device at a time
        names = [n for n in layers if n.startswith(prefix + ".")]
        if not names and walk.finished:
            break
        shared = _SharedInputs(want_gram, token_mask, stats_type)
        with torch.inference_mode():
            hidden = step(walk, block, prefix, names, shared, _block_runner(block, hidden, rest, kwargs, spans, shared, token_mask))
        if walk.finished:
            break  # later blocks hold no targeted layer: no need to run them
    missing = [n for n in layers if n not in walk.masks]
    if missing:
        raise PruneScopeError(f"these layers are not inside a transformer block, so calibration never reached them: {missing[:3]}")
    return walk.masks, walk.new_weights


def _token_mask(batch: dict, place) -> torch.Tensor | None:
    """Which positions are calibration tokens, or ``None`` when there is no padding (all are)."""
    mask = batch["attention_mask"].bool().to(place.torch_device)
    return None if bool(mask.all()) else mask


def _sample_spans(model: nn.Module, hidden: torch.Tensor, place, order: str, chunk: int | None) -> list[tuple[int, int]]:
    """The slices of calibration samples one block pass runs: one slice in the per-layer order
    (it prunes inside the pass), else ``chunk`` samples or what the memory budget allows."""
    n = int(hidden.shape[0])
    if order == "sequential":
        chunk = n
    elif chunk is None:
        chunk = calibration_chunk(model, n, int(hidden.shape[1]), place)
    step = max(1, int(chunk))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _block_runner(block: nn.Module, hidden: torch.Tensor, rest: tuple, kwargs: dict, spans, shared, token_mask):
    """``run()``: the block's output for every sample, computed slice by slice of samples
    (``spans``), the shared statistics told which slice's padding mask applies."""
    n = int(hidden.shape[0])

    def run() -> torch.Tensor:
        outs = []
        for a, b in spans:
            shared.token_mask = None if token_mask is None else token_mask[a:b]
            out = block(_rows(hidden, a, b, n), *_rows(rest, a, b, n), **_rows(kwargs, a, b, n))
            outs.append(_block_output(out))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    return run


def _rows(value, a: int, b: int, n: int):
    """``value`` with every per-sample tensor (2 or more dimensions, ``n`` rows first) cut to
    samples ``a:b``, inside tuples, lists and dicts too; anything else as it is."""
    if (a, b) == (0, n):
        return value
    if isinstance(value, torch.Tensor):
        return value[a:b] if value.dim() >= 2 and value.shape[0] == n else value
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, a, b, n) for v in value)
    if isinstance(value, dict):
        return {k: _rows(v, a, b, n) for k, v in value.items()}
    return value


def collect_input_stats(
    loaded, layers: Sequence[str], calibration: Sequence[dict], want_gram: bool = False, progress=None
) -> dict[str, InputStats]:
    """One dense forward pass over the calibration set; input statistics for every layer.

    Layers that read the same tensor get the same :class:`InputStats` object. Off the plain
    CPU path (another device or dtype, an offloaded model) the pass goes block by block.
    """
    if not runs_in_place(loaded):
        return _stats_by_blocks(loaded, layers, calibration, want_gram, progress)
    model = shallow_copy(loaded.model)
    batch = merge_batches(calibration, pad_id=_pad_id(loaded))
    token_mask = batch["attention_mask"].bool()
    out: dict[str, InputStats] = {}
    shared = _SharedInputs(want_gram, token_mask)
    handles = []

    def make_hook(name: str):
        def hook(module, inputs):
            out[name] = shared.stats_for(inputs[0], name)
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


def _stats_by_blocks(loaded, layers, calibration, want_gram: bool, progress) -> dict[str, InputStats]:
    """:func:`collect_input_stats` through the block walk with nothing pruned; statistics in host memory."""
    out: dict[str, InputStats] = {}

    def record(names, weights, stats: InputStats):
        if torch.device(stats.device).type != "cpu":
            stats.sq_sum, stats.lin_sum, stats.device = stats.sq_sum.cpu(), stats.lin_sum.cpu(), "cpu"
            stats.gram = None if stats.gram is None else stats.gram.cpu()
        out.update((n, stats) for n in names)
        return [(None, torch.ones_like(w, dtype=torch.bool)) for w in weights]

    sequential_prune(loaded, layers, calibration, record, want_gram=want_gram, progress=progress)
    return out


def _pad_id(loaded) -> int:
    tok = getattr(loaded, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _set_weight(model: nn.Module, block: nn.Module, local: str, name: str, weight_out_in: torch.Tensor) -> None:
    """Put a (d_out, d_in) weight into the private copy's layer (Conv1D stores it transposed)."""
    module = block.get_submodule(local)
    value = to_module_layout(model, name, weight_out_in).to(module.weight.dtype)  # SparseGPT solves in float32
    module._parameters["weight"] = nn.Parameter(value, requires_grad=False)


def input_feature_norms(loaded, layers: Sequence[str], calibration: Sequence[dict], progress=None) -> dict[str, torch.Tensor]:
    """``||X_j||_2`` of every input feature ``j`` of each layer over the calibration tokens (dense
    model, one forward pass): the factor Wanda multiplies ``|W_ij|`` by. Float32, shape ``(d_in,)``."""
    stats = collect_input_stats(loaded, layers, calibration, progress=progress)
    return {n: stats[n].sq_sum.clamp_min(0).sqrt().to(torch.float32) for n in layers}
