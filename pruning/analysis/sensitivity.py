"""Layer sensitivity: prune one layer at a time, measure the harm, suggest an allocation.

Two signals per (layer, sparsity):

* ``drop``: the task metric's paired harm against the dense model (accuracy
  points lost, perplexity gained), with its paired bootstrap interval. On a
  few hundred examples most layers' drops are a handful of examples: noise.
* ``kl``: the mean KL divergence KL(dense || pruned) of the pruned model's
  output distribution from the dense model's on the same inputs, per token
  for causal LMs and per example for classifiers, with its bootstrap
  interval. It sees every change of the output, not only the changes that
  flip a prediction, so it ranks layers with far less noise. The default.

Fast path. Pruning one layer changes nothing before its block, and nothing
before it inside its block either: the layers that ran before it there, and
the layers reading the very same input (q/k/v, gate/up), give their dense
outputs. So the dense hidden states entering the block and the dense outputs
of the block's linear layers are recorded once per block (blocks are visited
in order, one block's worth held at a time), and each evaluation runs only
from the pruned layer onward: earlier blocks and those layers (and, when it fits,
the embedding module whose output enters the first block) are replaced, in one
private copy of the model that serves every point, by modules that replay the
recorded values. Every pass of a probe runs its float32 CPU linear layers
through oneDNN (:mod:`pruning.loading.onednn`), dense passes and recordings too, so a
point that changes nothing reproduces the dense outputs exactly.
The held values must fit ``memory_mb``; without room for the layer outputs
only whole blocks are skipped, and without room for the hidden states every
evaluation is a full pass (the result says which mode ran).

Two more savings, both exact up to float rounding. A classifier whose head reads
the first position only (BERT's pooler) needs the last block at that position
alone, with the key and value projections folded into that one query
(:mod:`pruning.analysis.first_position`); the probe checks this shortcut against the
dense logits of every batch before any point uses it, and compares each point
with dense logits computed the same way. The last block's own layers run it
too, with no layer replayed there (the whole block costs less than one layer
of a full-length block). An
LM's dense log-probabilities are kept when they fit what the budget leaves, so
no point re-applies the output head to the dense states.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import PruneScopeError
from ..loading.devices import placement_of, runs_in_place
from ..loading.functional import shallow_copy
from ..loading.models import prunable_layers, transformer_blocks
from ..loading.onednn import pack_linears
from ..prune import layer_names, mask_ranker, prune
from ..result import masked_overrides
from .evaluate import check_overrides, evaluation_plan, model_runner, run_plan
from .first_position import supports_first_position, use_first_position
from .rows import append_row, checkpoint_rows, metric_columns, record_row
from .stats import mean_interval, within_noise

DEFAULT_MEMORY_MB = 1024
SIGNALS = ("kl", "drop")


# ---------------------------------------------------------------- the KL signal
WIDE_VOCAB = 1024  # above this many outputs the KL is computed in float32 (an LM's 49,152: memory and time)


def _kl_dtype(width: int) -> torch.dtype:
    return torch.float64 if width <= WIDE_VOCAB else torch.float32


def dense_log_probs(dense_logits: torch.Tensor) -> torch.Tensor:
    """The dense side of :func:`kl_divergence`, to compute once and reuse for many pruned outputs."""
    return torch.log_softmax(dense_logits.to(_kl_dtype(dense_logits.shape[-1])), dim=-1)


def kl_from_log_probs(dense_logp: torch.Tensor, pruned_logits: torch.Tensor, dense_p: torch.Tensor | None = None) -> torch.Tensor:
    """KL(dense || pruned) per row from the dense log-probabilities (:func:`dense_log_probs`)
    and, when kept too, the dense probabilities ``dense_p`` (their ``exp``: the same numbers)."""
    return kl_from_pruned_log_probs(dense_logp, torch.log_softmax(pruned_logits.to(dense_logp.dtype), dim=-1), dense_p)


def kl_from_pruned_log_probs(dense_logp: torch.Tensor, pruned_logp: torch.Tensor, dense_p: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`kl_from_log_probs` from the pruned log-probabilities, which it overwrites: the terms
    ``p_d (log p_d - log p)`` are computed in place, as ``(-log p + log p_d) p_d`` (the same
    numbers: ``b + -a`` is ``b - a`` exactly), with no temporaries the size of an LM's logits."""
    probs = dense_logp.exp() if dense_p is None else dense_p
    return pruned_logp.neg_().add_(dense_logp).mul_(probs).sum(dim=-1).clamp_min(0.0)


def kl_divergence(dense_logits: torch.Tensor, pruned_logits: torch.Tensor) -> torch.Tensor:
    """KL(dense || pruned) over the last dimension, per row: ``sum p_d (log p_d - log p_p)``; in
    float64 for a classifier's few outputs, in float32 over an LM's vocabulary."""
    return kl_from_log_probs(dense_log_probs(dense_logits), pruned_logits)


def kl_items(metric: str, dense_logits: torch.Tensor, pruned_logits: torch.Tensor) -> np.ndarray:
    """Per-item KL: per example (classifier logits (B, C)), or per window the mean over its
    predicted positions (causal-LM logits (B, T, V); the last position predicts nothing evaluated)."""
    return kl_items_from_log_probs(metric, kl_reference(metric, dense_logits), pruned_logits)


def kl_items_from_log_probs(metric: str, dense_logp: torch.Tensor, pruned_logits: torch.Tensor, dense_p=None) -> np.ndarray:
    """:func:`kl_items` with the dense side already turned into log-probabilities (the same
    positions: a causal LM's last position dropped, see :func:`kl_reference`)."""
    if metric == "accuracy":
        return kl_from_log_probs(dense_logp, pruned_logits, dense_p).double().numpy()
    return kl_from_log_probs(dense_logp, pruned_logits[:, :-1], dense_p).double().mean(dim=1).numpy()


def kl_reference(metric: str, dense_logits: torch.Tensor) -> torch.Tensor:
    """The dense log-probabilities :func:`kl_items_from_log_probs` compares against."""
    return dense_log_probs(dense_logits if metric == "accuracy" else dense_logits[:, :-1])


def kl_columns(kl: np.ndarray, weights: np.ndarray | None, seed: int = 0) -> dict:
    """``kl, kl_ci_low, kl_ci_high``: the (token-weighted) mean KL and its bootstrap interval."""
    w = np.ones_like(kl) if weights is None else weights
    mean = float(np.sum(kl * w) / np.sum(w))
    low, high = mean_interval(kl, w, seed=seed)
    return {"kl": mean, "kl_ci_low": low, "kl_ci_high": high}


def _put_in_place(private: nn.Module, tensors: dict[str, torch.Tensor]):
    """Put ``tensors`` (parameter name -> value) into the private copy ``private`` in place of its
    parameters, in every module holding the same parameter (tied weights stay tied); returns
    the function that puts the originals back. Cheaper per batch than ``functional_call``,
    which re-walks the whole module tree on every call. Only for a copy no one else runs:
    the shared model's module objects are never touched (the copy has its own)."""
    if not tensors:
        return lambda: None
    owners: dict[int, list] = {}
    for _, module in private.named_modules(remove_duplicate=False):
        for attr, param in module._parameters.items():
            if param is not None:
                owners.setdefault(id(param), []).append((module, attr, param))
    swapped = []
    for key, value in tensors.items():
        owner_name, _, attr = key.rpartition(".")
        original = private.get_submodule(owner_name)._parameters[attr]
        replacement = nn.Parameter(value, requires_grad=False)
        for module, name, param in owners[id(original)]:
            module._parameters[name] = replacement
            swapped.append((module, name, param))

    def undo() -> None:
        for module, name, param in swapped:
            module._parameters[name] = param

    return undo


# ---------------------------------------------------------------- replaying recorded values
class _Replay(nn.Module):
    """Stands in for a module whose output for the current batch is already known."""

    def __init__(self, outputs: list, state: dict):
        super().__init__()
        self.outputs, self.state = outputs, state

    def forward(self, *args, **kwargs):
        return self.outputs[self.state["batch"]]


class _Stop(Exception):
    pass


@dataclass
class _BlockRecord:
    """The dense values of one block for every evaluation batch."""

    index: int
    inputs: list | None  # output objects of the previous block (None for the first block)
    outputs: list = field(default_factory=list)  # this block's output objects
    linear_out: dict = field(default_factory=dict)  # local name -> per-batch outputs (when they fit)
    order: list = field(default_factory=list)  # local names of linear layers in first-run order
    groups: dict = field(default_factory=dict)  # local name -> locals reading the same input tensor


# What every point pays whatever layer it prunes, as a share of one dense pass. A causal LM applies its output head
# and takes the log-softmax, the NLL and the KL over its whole vocabulary at every position of every window, once per
# point (the dense log-probabilities are re-derived per batch when they do not fit the memory budget). Measured on
# SmolLM2 (30 blocks, a 49,152-token vocabulary, 16 windows, 2 threads, nice 10, load average 7-8): a point in block 0
# took 50.4 s and one in block 29 17.4 s (neither recording blocks), so a block costs 1.14 s and every point 16.3 s on
# top, 0.4 of the probe's 40.5 s dense pass (0.31 of a plain dense evaluation's 53 s). (The first point of a block
# also records that block's dense values once, about one block run: a first point in block 29 after none before it
# took 46.8 s, which is why a walk-through saw 37 s there against a 19 s dense pass.) A classifier's head and KL over
# a few labels cost next to nothing.
POINT_FIXED_SHARE = {"causal-lm": 0.4, "classification": 0.0}


def point_fixed_blocks(task: str, n_blocks: int) -> float:
    """A point's fixed cost (head and metric, :data:`POINT_FIXED_SHARE`) in blocks, when a dense pass counts as ``n_blocks``."""
    return POINT_FIXED_SHARE.get(task, 0.0) * int(n_blocks)


def point_cost(block: int | None, n_blocks: int, fixed: float = 0.0) -> float:
    """What evaluating one layer of block ``block`` pruned alone costs, in blocks run (``None``: a full pass), plus
    ``fixed`` (see :func:`point_fixed_blocks`): a layer near the output costs a fraction of one near the input,
    so a time estimate must weigh points by their block, and by what each point pays on top."""
    return max(1, int(n_blocks) - int(block or 0)) + float(fixed)


def _dense_progress(progress):
    """The dense pass's batches as sub-progress of a sensitivity run (share 0: its points have not started)."""
    if progress is None:
        return None
    return lambda done, total, message: progress(0, 1, f"dense pass, {message}")


class SensitivityProbe:
    """Evaluates a model with one layer's weight replaced, running only what that layer changes.

    Built once per sensitivity run: one dense pass gives the dense evaluation and
    the reference outputs for KL. ``evaluate(name, overrides)`` then returns the
    pruned evaluation (as :func:`pruning.analysis.evaluate.evaluate`) and per-item KL.
    ``mode`` is ``"cached"``, ``"blocks"`` or ``"full"`` (see the module notes).
    """

    def __init__(self, loaded, plan, memory_mb: float = DEFAULT_MEMORY_MB, cache: bool = True, seed: int = 0, onednn: bool = True,
                 progress=None):
        self.loaded, self.plan, self.seed, self.onednn = loaded, plan, seed, onednn
        self.between_batches = None  # called before each batch of a point's evaluation (progress, so a Stop is seen)
        self.model = loaded.model
        self.blocks = transformer_blocks(self.model)
        self.budget = float(memory_mb) * 2**20
        self._reference: list = []
        self._embedding: dict | None = None  # {path: per-batch outputs} of the module whose output enters block 0, when kept
        self._placed = None
        self.first_position, self._dense_logp = False, None
        if not runs_in_place(loaded):  # another device, dtype or offloading: full passes, dense logits kept on the host
            self._placed = lambda overrides: model_runner(self.model, overrides, placement_of(loaded))
            self._head = None
            self.dense = run_plan(plan, self._placed(None), progress=_dense_progress(progress), seed=seed, on_logits=self._keep_logits)
            self.mode, self._record = "full", None
            return
        private = self._copy()  # our hook never touches the shared model
        self._head = private.get_output_embeddings() if loaded.task == "causal-lm" else None
        handle = None
        if self._head is not None:  # an LM's logits are huge: keep the head's input, re-apply the head
            handle = self._head.register_forward_pre_hook(lambda m, a: self._reference.append(a[0]))
        self.dense = run_plan(plan, lambda **inputs: private(**inputs), progress=_dense_progress(progress), seed=seed, on_logits=self._keep_logits)
        if handle is not None:
            handle.remove()
        self.mode = self._mode(cache)
        self._dense_logp = self._keep_log_probs()
        self._record: _BlockRecord | None = None
        self._points: tuple | None = None  # (private copy, replay state, {path: module replaced}) evaluating every point
        self._points_for: tuple = (None, None)  # (layer, record) its replays are set for
        self._reference_first: list = []  # the dense logits by the shortcut: KL compares like with like
        self.first_position = self._check_first_position()

    def _mode(self, cache: bool) -> str:
        """``cached`` when a block's hidden states in and out plus its layers' outputs fit the
        budget, ``blocks`` when only the hidden states do, else ``full``."""
        if not cache:
            return "full"
        tokens = sum(int(b["input_ids"].numel()) for b in self.plan.batches)
        layers = prunable_layers(self.model)
        hidden = 4 * tokens * layers[0].shape[1]
        widest = max(sum(i.shape[0] for i in layers if i.block == b) for b in {i.block for i in layers})
        if 2 * hidden > self.budget:
            return "full"
        if 2 * hidden + 4 * tokens * widest <= self.budget:
            self._held = 2 * hidden + 4 * tokens * widest
            mode = "cached"
        else:
            self._held, mode = 2 * hidden, "blocks"
        if self._held + hidden <= self.budget:  # what enters the first block, held for the whole run
            self._held += hidden
            self._embedding = {}
        return mode

    def _keep_log_probs(self) -> list | None:
        """An LM's dense log-probabilities and probabilities per batch, when they fit what the
        budget has left after the activations: every point then skips re-applying the output
        head to the dense states and the dense half of the KL. Otherwise ``None`` (both are
        recomputed per point)."""
        if self.mode == "full" or self._head is None:
            return None
        tokens = sum(int(b["input_ids"].numel()) for b in self.plan.batches)
        if self._held + 2 * 4 * tokens * int(self._head.weight.shape[0]) > self.budget:  # log-probs and probs
            return None
        with torch.inference_mode():
            logps = [kl_reference(self.plan.metric, self._dense_logits(i)) for i in range(len(self.plan.batches))]
            return [(lp, lp.exp()) for lp in logps]

    def _keep_logits(self, i: int, logits: torch.Tensor) -> None:
        if self._head is None:
            self._reference.append(logits.detach().to("cpu", copy=True))

    def _dense_logits(self, i: int, first_position: bool = False) -> torch.Tensor:
        if first_position:
            return self._reference_first[i]
        if self._head is None:
            return self._reference[i]
        return self._head(self._reference[i])

    def point_cost(self, name: str) -> float:
        """What evaluating one pruned layer costs, in transformer blocks run: the cached modes run only the blocks
        from the layer's own to the last, a full pass runs them all; plus what every point pays for the output head
        and the metric (the time estimate weighs points by it)."""
        fixed = point_fixed_blocks(self.loaded.task, len(self.blocks))
        return point_cost(self.block_of(name) if self.mode != "full" else 0, len(self.blocks), fixed)

    def block_of(self, name: str) -> int:
        for index, (prefix, _) in enumerate(self.blocks):
            if name.startswith(prefix + "."):
                return index
        raise PruneScopeError(f"layer {name} is not inside a transformer block")

    # ------------------------------------------------------------ recording
    def _copy(self) -> nn.Module:
        """A private copy of the model; with ``onednn``, its float32 CPU linear layers packed
        for oneDNN (:mod:`pruning.loading.onednn`). Every pass of a probe (dense, recording, points)
        runs on such a copy, so the same values come out of the same arithmetic: a point
        that changes nothing gives exactly the dense outputs (KL 0)."""
        private = shallow_copy(self.model)
        if self.onednn:
            pack_linears(private)
        return private

    def _private(self, replaced: dict[str, list], state: dict, first_position: bool = False) -> nn.Module:
        """A private copy with ``replaced`` modules replaying per-batch values (and, with
        ``first_position``, the last block computed at the position the head reads)."""
        private = self._copy()
        for path, outputs in replaced.items():
            private.set_submodule(path, _Replay(outputs, state))
        if first_position:
            use_first_position(private.get_submodule(self.blocks[-1][0]))
        return private

    def _runner(self, replaced: dict[str, list], overrides: dict, state: dict, private: nn.Module | None = None):
        """``run(**inputs)`` on a private copy (``private``, or a new one) with ``overrides`` put in
        place on it (see :func:`_put_in_place`; the caller restores it with the returned undo)."""
        private = private if private is not None else self._private(replaced, state)
        undo = _put_in_place(private, check_overrides(self.model, overrides))
        counter = iter(range(len(self.plan.batches)))

        def run(**inputs):
            state["batch"] = next(counter)
            return private(**inputs)

        return run, private, undo

    def _check_first_position(self) -> bool:
        """Whether the last block may run at the head's position only: a model whose head reads
        the first position (:mod:`pruning.analysis.first_position`), checked against the dense logits of
        every evaluation batch (largest difference at most 1e-4) before any point uses it."""
        if self.mode == "full" or self._head is not None or not supports_first_position(self.model, self.blocks[-1][1]):
            return False
        private, worst = self._private({}, {}, first_position=True), [0.0]

        def compare(i, logits):
            worst[0] = max(worst[0], float((logits.float() - self._reference[i].float()).abs().max()))
            self._reference_first.append(logits.detach().to("cpu", copy=True))

        try:
            run_plan(self.plan, lambda **inputs: private(**inputs), seed=self.seed, on_logits=compare)
        except Exception:  # noqa: BLE001 - a layout it does not handle: full blocks, as before
            return False
        return worst[0] <= 1e-4

    def _prefix_replays(self, record: _BlockRecord) -> dict[str, list]:
        """What runs before block ``record.index``, replayed: the earlier blocks and what feeds the first."""
        replaced = dict(self._embedding or {})
        if record.inputs is not None:
            replaced.update({self.blocks[j][0]: record.inputs for j in range(record.index)})
        return replaced

    def _embedding_hooks(self, block: nn.Module, private: nn.Module) -> tuple[list, object]:
        """Hooks that see, batch by batch, what enters the first block and what every module
        outside the blocks returns, and ``settle()``, which keeps in ``self._embedding`` the
        outputs of the module whose output objects are those inputs (the embeddings)."""
        inside = tuple(prefix + "." for prefix, _ in self.blocks)
        prefixes = tuple(prefix for prefix, _ in self.blocks)
        entering: list = []
        seen: dict[str, list] = {}

        def keep(path):
            return lambda m, a, out: seen.setdefault(path, []).append(out)

        def enter(module, args, kwargs):
            entering.append(args[0] if args else kwargs.get("hidden_states"))

        handles = [block.register_forward_pre_hook(enter, with_kwargs=True)]
        for path, module in private.named_modules():
            if path and not path.startswith(inside) and not any(p == path or p.startswith(path + ".") for p in prefixes):
                handles.append(module.register_forward_hook(keep(path)))

        def settle():  # the outermost such module (an embedding module, not its last norm or dropout)
            batches = len(self.plan.batches)
            found = [p for p, out in seen.items() if len(out) == len(entering) == batches and all(o is e for o, e in zip(out, entering))]
            outer = min(found, key=lambda p: p.count(".")) if found else None
            self._embedding = {outer: seen[outer]} if outer else None

        return handles, settle

    def _capture(self, index: int, inputs: list | None) -> _BlockRecord | None:
        """Run the dense model up to the end of block ``index`` for every batch, recording its values."""
        record = _BlockRecord(index, inputs)
        run, private, _ = self._runner(self._prefix_replays(record), {}, {})
        prefix = self.blocks[index][0]
        block = private.get_submodule(prefix)
        first_inputs: dict[str, torch.Tensor] = {}
        handles = [block.register_forward_hook(lambda m, a, out: self._end_block(record, out))]
        settle = None
        if index == 0 and self._embedding == {}:  # kept (see _mode), not found yet
            more, settle = self._embedding_hooks(block, private)
            handles += more
        for local, module in block.named_modules():
            if self.mode == "cached" and local and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"):
                handles.append(module.register_forward_hook(self._linear_hook(record, local, first_inputs)))
        try:
            with torch.inference_mode():
                for i in range(len(self.plan.batches)):
                    try:
                        run(**self.plan.inputs(i))
                    except _Stop:
                        pass
        finally:
            for h in handles:
                h.remove()
        if settle is not None:
            settle()
        for local, x in first_inputs.items():
            record.groups[local] = [other for other, y in first_inputs.items() if y is x]
        if any(len(v) != len(self.plan.batches) for v in record.linear_out.values()):
            record.linear_out, record.order = {}, []  # a layer ran twice in a batch: not replayable
        return record

    def _linear_hook(self, record: _BlockRecord, local: str, first_inputs: dict):
        def hook(module, args, out):
            record.linear_out.setdefault(local, []).append(out.detach())
            if not record.outputs and local not in first_inputs:
                first_inputs[local] = args[0]
                record.order.append(local)

        return hook

    def _end_block(self, record: _BlockRecord, out) -> None:
        record.outputs.append(out)
        raise _Stop

    def _record_for(self, index: int) -> _BlockRecord | None:
        """The record of block ``index``, walking forward from the last one (or from the start)."""
        if self.mode == "full":
            return None
        record = self._record if self._record is not None and self._record.index <= index else None
        if record is None:
            record = self._capture(0, None)
        while record.index < index:
            record = self._capture(record.index + 1, record.outputs)
        self._record = record
        return record

    # ------------------------------------------------------------ evaluating
    def _replays(self, name: str) -> dict[str, list]:
        """Module path -> per-batch values to replay instead of running it, for pruning ``name``."""
        index = self.block_of(name)
        record = self._record_for(index)
        if record is None:
            return {}
        prefix = self.blocks[index][0]
        replaced = self._prefix_replays(record)
        local = name[len(prefix) + 1 :]
        if self.first_position and index == len(self.blocks) - 1:
            return replaced  # the last block at the first position costs little: its own layers all run
        if record.linear_out and local in record.order:
            before = record.order[: record.order.index(local)]
            for other in before + record.groups.get(local, []):
                if other != local:
                    replaced[f"{prefix}.{other}"] = record.linear_out[other]
        return replaced

    def _private_for(self, name: str) -> tuple[nn.Module, dict, bool]:
        """The private copy that evaluates a change of layer ``name``, its replay state, and
        whether its last block runs at the first position only. One copy serves the whole run
        (building one costs tens of milliseconds, and its packed weights are made once): the
        modules replaying recorded values for the previous layer are put back and this layer's
        put in (the same ones for every sparsity of a layer)."""
        replaced = self._replays(name)
        if self._points is None:
            state: dict = {}
            self._points = (self._private({}, state, self.first_position), state, {})
        private, state, swapped = self._points
        if self._points_for[0] != name or self._points_for[1] is not self._record:
            for path in reversed(list(swapped)):
                private.set_submodule(path, swapped.pop(path))
            for path, outputs in replaced.items():
                swapped[path] = private.get_submodule(path)
                private.set_submodule(path, _Replay(outputs, state))
            self._points_for = (name, self._record)
        return private, state, self.first_position

    def evaluate(self, name: str, overrides: dict, on_logits=None) -> tuple[dict, np.ndarray]:
        """The evaluation with ``overrides`` (which change layer ``name`` only) and its per-item KL.

        ``on_logits(i, logits)`` also sees each batch's logits (to compare with full passes)."""
        first_position = False
        if self._placed is not None:
            run = self._placed(overrides)
        else:
            private, state, first_position = self._private_for(name)
            run, _, undo = self._runner({}, overrides, state, private)
        kls: list[np.ndarray] = []

        def items(i, logits):
            """The batch's metric items, and its KL into ``kls``. An LM's float32 log-softmax is
            taken once for both: its NLL first, then the KL overwrites it."""
            if self.between_batches is not None:  # a Stop lands within one batch, not after the whole point
                self.between_batches()
            if self._dense_logp is not None:
                dense_logp, probs = self._dense_logp[i]
            else:
                dense_logp, probs = kl_reference(self.plan.metric, self._dense_logits(i, first_position)), None
            if self.plan.metric == "perplexity" and dense_logp.dtype == torch.float32:
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                values = self.plan.window_nll(i, logp)
                kls.append(kl_from_pruned_log_probs(dense_logp, logp.cpu(), probs).double().mean(dim=1).numpy())
                return values
            kls.append(kl_items_from_log_probs(self.plan.metric, dense_logp, logits.cpu(), probs))
            return self.plan.items(i, logits)

        try:
            ev = run_plan(self.plan, run, seed=self.seed, on_logits=on_logits, items=items)
        finally:
            if self._placed is None:
                undo()  # the copy is reused for the layer's next sparsity: back to dense
        return ev, self.plan.ordered(kls)


# ---------------------------------------------------------------- the sweep
def _prune_one(loaded, request, name: str, sparsity: float, ranker, calibration, data) -> dict:
    """Overrides that prune layer ``name`` alone at ``sparsity`` (the request's granularity within one layer)."""
    within = request.granularity.within_layer
    if ranker is not None:
        return masked_overrides(loaded, ranker.masks(sparsity, within, layers=[name]))
    one = request.replace(granularity=within, sparsity=sparsity, layers=(name,))
    return prune(loaded, one, calibration=calibration, data=data).overrides(loaded)


def _row_point(row: dict) -> tuple:
    """The grid point a sensitivity row belongs to: ``(layer, sparsity)`` (the dense row is ``("-", 0.0)``)."""
    return (row["layer"], round(float(row["sparsity"]), 6))


def _signal_interval(row: dict, signal: str) -> tuple[float, float]:
    return (row["kl_ci_low"], row["kl_ci_high"]) if signal == "kl" else (row["drop_ci_low"], row["drop_ci_high"])


def sensitivity_row(name, sparsity, method, ev, dense_ev, kl, plan, signal: str, seed: int = 0) -> dict:
    """One result row: the metric columns, the paired drop, the KL and whether the signal is told from 0."""
    weights = ev["per_item"]["tokens"].astype(np.float64) if plan.metric == "perplexity" else None
    row = {"layer": name, "sparsity": sparsity, **metric_columns(ev, dense_ev), **kl_columns(kl, weights, seed), "method": method}
    row["distinguishable"] = not within_noise(*_signal_interval(row, signal))
    return row


def _check_signal(signal: str) -> str:
    if signal not in SIGNALS:
        raise PruneScopeError(f"unknown sensitivity signal {signal!r}: use {' or '.join(SIGNALS)}")
    return signal


def layer_sensitivity(
    loaded,
    data,
    request,
    sparsities: Sequence[float] = (0.5,),
    calibration=None,
    max_examples: int | None = 256,
    split: str = "validation",
    progress=None,
    on_point=None,
    done_rows: Iterable[dict] | None = None,
    checkpoint=None,
    signal: str = "kl",
    memory_mb: float = DEFAULT_MEMORY_MB,
    cache: bool = True,
) -> list[dict]:
    """Prune one layer at a time; harm and KL for each layer and sparsity.

    ``request`` (a :class:`pruning.request.PruneRequest`) gives the method, its parameters,
    the seed and the layers; each layer is pruned alone at the request's granularity within
    one layer (per layer for global and allocated, or per row, or its N:M pattern, which
    fixes the only sparsity at N/M). Rows: ``layer, sparsity, metric, value, ci_low,
    ci_high, n, drop, drop_ci_low, drop_ci_high, kl, kl_ci_low, kl_ci_high, method,
    distinguishable`` (the last: whether the interval of ``signal`` excludes 0), the dense
    row first (layer ``"-"``). ``drop`` is harm-positive (see
    :func:`pruning.analysis.evaluate.paired_difference`). For a score-based method the scores are
    computed once: pruning a single layer leaves its inputs dense, so the dense-input
    scores are the exact ones. ``cache=False`` forces full passes (same numbers, slower).
    """
    _check_signal(signal)
    names = layer_names(loaded, request.layers, request.include, request.exclude)
    if request.granularity.within_layer.is_nm:
        sparsities = [request.granularity.within_layer.fixed_sparsity]
    grid = {("-", 0.0)} | {(n, round(float(s), 6)) for n in names for s in sparsities}
    rows = list(done_rows or []) + checkpoint_rows(checkpoint, _row_point, grid)
    done = {_row_point(r) for r in rows}
    plan = evaluation_plan(loaded, data, max_examples, split)
    probe = SensitivityProbe(loaded, plan, memory_mb, cache, request.seed, progress=progress)
    if not any(r["layer"] == "-" for r in rows):
        zero = {"kl": 0.0, "kl_ci_low": 0.0, "kl_ci_high": 0.0, "method": request.method, "distinguishable": False}
        dense = {"layer": "-", "sparsity": 0.0, **metric_columns(probe.dense, probe.dense), **zero}
        rows.insert(0, dense)  # first, also when rows of a stopped run are handed in
        append_row(checkpoint, dense)
    # an update, or the reference numerics, change what the one-pass scores keep
    exact_scores = request.method_info.score_based and request.update == "none" and request.numerics == "fast"
    ranker = mask_ranker(loaded, request.replace(layers=tuple(names)), calibration) if exact_scores else None
    todo = [(n, round(float(s), 6)) for n in names for s in sparsities if (n, round(float(s), 6)) not in done]
    todo.sort(key=lambda point: probe.block_of(point[0]))  # stable: block by block, as the probe walks
    costs = [probe.point_cost(name) for name, _ in todo]  # progress counts blocks run, so its share of time is right
    spent, total = 0, max(1, sum(costs))
    for i, (name, sparsity) in enumerate(todo):
        if progress is not None:
            message = f"{name} at {sparsity:.0%} (point {i + 1} of {len(todo)})"
            progress(spent, total, message)
            probe.between_batches = functools.partial(progress, spent, total, message)
        spent += costs[i]
        ev, kl = probe.evaluate(name, _prune_one(loaded, request, name, sparsity, ranker, calibration, data))
        row = sensitivity_row(name, sparsity, request.method, ev, probe.dense, kl, plan, signal, request.seed)
        record_row(rows, row, checkpoint, on_point)
    if progress is not None:
        progress(total, total, f"done ({probe.mode} evaluation)")
    return rows


def distinguishable_layers(rows: Sequence[dict], signal: str = "kl") -> list[str]:
    """Layers with at least one row whose ``signal`` interval excludes 0, in row order."""
    _check_signal(signal)
    out = []
    for r in rows:
        if r["layer"] != "-" and r["layer"] not in out and not within_noise(*_signal_interval(r, signal)):
            out.append(r["layer"])
    return out


# ---------------------------------------------------------------- allocation
def _layer_signal(rows: Sequence[dict], layer_params: dict[str, int], signal: str) -> dict[str, float]:
    """Each layer's sensitivity: mean drop over its sparsities, or log10 of its mean KL (KL spans decades)."""
    per_layer: dict[str, list[float]] = {}
    for r in rows:
        if r["layer"] != "-" and r["layer"] in layer_params:
            per_layer.setdefault(r["layer"], []).append(float(r[signal]))
    if signal == "drop":
        return {n: statistics.fmean(v) for n, v in per_layer.items()}
    return {n: math.log10(statistics.fmean(v) + 1e-12) for n, v in per_layer.items()}


def suggest_allocation(
    rows: Sequence[dict],
    target_sparsity: float,
    layer_params: dict[str, int],
    strength: float = 0.1,
    max_sparsity: float = 0.95,
    signal: str = "kl",
) -> dict[str, float]:
    """Per-layer sparsities averaging ``target_sparsity`` (weighted by parameters), sensitive layers pruned less.

    Each layer's sensitivity comes from ``signal`` (``"kl"``: log10 of its mean KL;
    ``"drop"``: its mean metric drop) over the measured sparsities; the z-scored
    sensitivity moves the layer's sparsity by up to ``strength`` per standard
    deviation (the outlier-weighted rule of OWL, Yin et al. 2023), and a common
    offset, found by bisection, restores the parameter-weighted target.
    """
    sens = _layer_signal(rows, layer_params, _check_signal(signal))
    if not sens:
        return {}
    mean = statistics.fmean(sens.values())
    std = statistics.pstdev(sens.values()) or 1.0
    base = {n: target_sparsity - strength * (s - mean) / std for n, s in sens.items()}
    total = sum(layer_params[n] for n in base)

    def allocated(offset: float) -> dict[str, float]:
        return {n: min(max_sparsity, max(0.0, b + offset)) for n, b in base.items()}

    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        mean_s = sum(layer_params[n] * s for n, s in allocated(mid).items()) / total
        lo, hi = (mid, hi) if mean_s < target_sparsity else (lo, mid)
    return {n: round(s, 4) for n, s in allocated((lo + hi) / 2).items()}
