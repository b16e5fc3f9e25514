"""Loading models and naming their prunable layers.

:func:`load_model` returns a :class:`LoadedModel`: the model in eval mode,
float32, no gradients, with its tokenizer and task. It accepts the embedded
names in :data:`EMBEDDED_MODELS`, a local model folder, a ``.gguf`` file, or a
Hugging Face hub name. Bad input raises :class:`PruneScopeError` naming what
was tried; no raw traceback escapes.

A *layer* is an ``nn.Linear`` (or transformers' GPT-2 ``Conv1D``) inside a
transformer block, named as in ``model.named_modules()``. Weights handed around
are in (d_out, d_in) layout: :func:`layer_weight` transposes ``Conv1D``, whose
parameter is stored (d_in, d_out), and :func:`to_module_layout` converts back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..core import LoadedModel
from ..errors import PruneScopeError
from .devices import CPU_FLOAT32, Placement, host_tensor

TASKS = ("classification", "causal-lm", "encoder")

EMBEDDED_MODELS: dict[str, str] = {
    "minilm-rt": "all-MiniLM-L6-v2 (22M, BERT encoder) fine-tuned on Rotten Tomatoes snippets: "
    "positive/negative classifier (trained on first use, about 3 minutes, then cached)",
    "smollm2-135m": "SmolLM2-135M-Instruct (LLaMA architecture, causal LM) dequantized from a 4-bit GGUF to float32 "
    "(first load about 30 s, then a cached float32 copy loads in a few seconds)",
}

@dataclass(frozen=True)
class LayerInfo:
    """One prunable matrix: its module name, kind, (d_out, d_in) shape, size and block index."""

    name: str
    kind: str  # "Linear" | "Conv1D"
    shape: tuple[int, int]
    params: int
    block: int | None


# ---------------------------------------------------------------- layers
def _conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - very old or very new transformers
        return None
    return Conv1D


def _is_conv1d(module: nn.Module) -> bool:
    cls = _conv1d_class()
    return cls is not None and isinstance(module, cls)


def _is_prunable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or _is_conv1d(module)


def _has_prunable(module: nn.Module) -> bool:
    return any(_is_prunable(m) for m in module.modules())


_KNOWN_BLOCK_LISTS = (
    re.compile(r"(^|\.)encoder\.layer$"),  # BERT, RoBERTa, MiniLM, ...
    re.compile(r"(^|\.)model\.layers$"),  # LLaMA, Mistral, Qwen, SmolLM, ...
    re.compile(r"(^|\.)transformer\.h$"),  # GPT-2, GPT-J, ...
    re.compile(r"(^|\.)layers$"),  # a bare LlamaModel
    re.compile(r"(^|\.)h$"),  # a bare GPT2Model
)


def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's sequential transformer blocks in order, as ``(name, module)``.

    BERT ``*.encoder.layer.i``, LLaMA ``model.layers.i``, GPT-2 ``transformer.h.i``;
    otherwise the longest outermost ``nn.ModuleList`` whose items hold linear layers.
    """
    lists = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) > 0 and all(_has_prunable(x) for x in m)
    ]
    if not lists:
        raise PruneScopeError(f"could not find the transformer blocks of this {type(model).__name__}")
    for pattern in _KNOWN_BLOCK_LISTS:
        for name, m in lists:
            if pattern.search(name):
                return [(f"{name}.{i}", block) for i, block in enumerate(m)]
    outer = [(n, m) for n, m in lists if not any(n.startswith(o + ".") for o, _ in lists if o != n)]
    name, m = max(outer, key=lambda item: len(item[1]))  # max keeps the first of equals
    return [(f"{name}.{i}", block) for i, block in enumerate(m)]


def _compile(pattern: str | None, what: str):
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise PruneScopeError(f"--{what} {pattern!r} is not a valid regular expression: {exc}") from None


def prunable_layers(model: nn.Module, include: str | None = None, exclude: str | None = None) -> list[LayerInfo]:
    """The ``nn.Linear`` / ``Conv1D`` layers inside the transformer blocks, in model order.

    Embeddings, pooler and classifier / ``lm_head`` are outside the blocks and so
    never listed. ``include`` / ``exclude`` are regular expressions searched in
    the layer name.
    """
    inc, exc = _compile(include, "include"), _compile(exclude, "exclude")
    out = []
    for index, (prefix, block) in enumerate(transformer_blocks(model)):
        for local, module in block.named_modules():
            if not local or not _is_prunable(module):
                continue
            name = f"{prefix}.{local}"
            if inc is not None and not inc.search(name):
                continue
            if exc is not None and exc.search(name):
                continue
            conv = _is_conv1d(module)
            w = module.weight
            shape = (int(w.shape[1]), int(w.shape[0])) if conv else (int(w.shape[0]), int(w.shape[1]))
            out.append(LayerInfo(name, "Conv1D" if conv else "Linear", shape, int(w.numel()), index))
    return out


def _layer_module(model: nn.Module, name: str) -> nn.Module:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise PruneScopeError(f"the model has no layer named {name!r}") from None
    if not _is_prunable(module):
        raise PruneScopeError(f"{name!r} is a {type(module).__name__}, not a Linear or Conv1D layer")
    return module


def layer_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The layer's weight in (d_out, d_in) layout (a view of the shared tensor: do not modify it)."""
    module = _layer_module(model, name)
    w = module.weight.detach()
    if w.device.type == "meta":  # offloaded to disk by accelerate: read it from there
        w = host_tensor(module, "weight").detach()
    return w.t() if _is_conv1d(module) else w


def param_key(model: nn.Module, name: str) -> str:
    """The ``named_parameters`` key of the layer's weight (``name + ".weight"``)."""
    _layer_module(model, name)
    return f"{name}.weight"


def to_module_layout(model: nn.Module, name: str, w: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`layer_weight`: a (d_out, d_in) tensor in the module's own layout."""
    module = _layer_module(model, name)
    out = w.t().contiguous() if _is_conv1d(module) else w
    if tuple(out.shape) != tuple(module.weight.shape):
        raise PruneScopeError(
            f"layer {name}: a weight of shape {tuple(w.shape)} does not fit (expected "
            f"{tuple(layer_weight(model, name).shape)} in (d_out, d_in) layout)"
        )
    return out


# ---------------------------------------------------------------- task detection
def detect_task(config) -> str:
    """``classification`` / ``causal-lm`` / ``encoder`` from ``config.architectures``."""
    archs = list(getattr(config, "architectures", None) or [])
    for arch in archs:
        if arch.endswith("ForSequenceClassification"):
            return "classification"
    for arch in archs:
        if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
            return "causal-lm"
    return "encoder"


def _check_task(task: str | None) -> str | None:
    if task is None:
        return None
    t = str(task).strip().lower().replace("_", "-")
    t = {"causal": "causal-lm", "lm": "causal-lm", "causallm": "causal-lm", "cls": "classification"}.get(t, t)
    if t not in TASKS:
        raise PruneScopeError(f"unknown task {task!r}: use classification, causal-lm or encoder")
    return t


def _auto_class(task: str):
    import transformers  # lazy: a heavy optional import, loaded on first use

    return {
        "classification": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "encoder": transformers.AutoModel,
    }[task]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _prepare(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Eval mode, ``dtype`` (float32 unless a placement asks for less), no gradients.

    Runs on a model nobody else holds yet, so converting it in place is safe. A model accelerate
    dispatched (``max_memory``) was loaded in ``dtype`` and cannot be moved: it is left as loaded."""
    dispatched = getattr(model, "hf_device_map", None) is not None
    if not dispatched and any(p.is_floating_point() and p.dtype != dtype for p in model.parameters()):
        model = model.to(dtype)
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _max_length(model: nn.Module, tokenizer) -> int:
    config = getattr(model, "config", None)
    limits = []
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    return min(limits) if limits else 512


def _finish_tokenizer(tokenizer):
    """Give a tokenizer without a pad token its eos token as pad (our own instance only)."""
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _label_names(model: nn.Module) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not id2label:
        return None
    return [str(id2label[i]) for i in sorted(id2label)]


def _report(progress, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def _quiet():
    """Silence transformers' warnings and progress bars while loading."""
    @contextlib.contextmanager
    def ctx():
        from transformers.utils import logging as tlog  # lazy: a heavy optional import, loaded on first use

        old = tlog.get_verbosity()
        tlog.set_verbosity_error()
        progress_on = tlog.is_progress_bar_enabled()
        tlog.disable_progress_bar()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            tlog.set_verbosity(old)
            if progress_on:
                tlog.enable_progress_bar()

    return ctx()


def _from_pretrained(
    what: str,
    task: str,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    local_only: bool = True,
    placement=None,
):
    """(model, tokenizer) through the Auto classes; exceptions pass through.

    A placement with ``max_memory`` loads through accelerate's dispatch: what does not fit in
    host memory stays on disk (in ``offload_folder``), read back block by block."""
    from transformers import AutoTokenizer  # lazy: a heavy optional import, loaded on first use

    kwargs: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code), "local_files_only": local_only}
    model_kwargs: dict[str, Any] = {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
        try:  # ask for plain dense float32 layers, never packed GGUF blocks
            from transformers import GgufConfig

            model_kwargs["quantization_config"] = GgufConfig(dequantize=True)
        except ImportError:  # older transformers always dequantize
            pass

    place = placement or CPU_FLOAT32
    if place.max_memory:
        model_kwargs.update(device_map="auto", max_memory=place.accelerate_max_memory(), offload_folder=_offload_folder(place))
    with _quiet():
        model = _auto_class(task).from_pretrained(what, dtype=place.torch_dtype, **kwargs, **model_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(what, **kwargs)
    if gguf_file:
        model = _dense_gguf_model(model)
    return _prepare(model, place.torch_dtype), _finish_tokenizer(tokenizer)


def _offload_folder(place) -> str:
    """The placement's offload folder, or a fresh temporary one (left in the temporary folder)."""
    if place.offload_folder:
        return place.offload_folder

    return tempfile.mkdtemp(prefix="prunescope-offload-")


def _dense_gguf_model(model: nn.Module) -> nn.Module:
    """Drop the GGUF quantizer left on a dequantized model (so it can be saved), and check
    that no layer kept packed GGUF weights."""
    packed = [n for n, m in model.named_modules() if "gguf" in type(m).__name__.lower()]
    if packed:
        raise PruneScopeError(f"the GGUF weights stayed packed ({packed[0]}); PruneScope needs dense float32 layers")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        if hasattr(quantizer, "remove_quantization_config"):
            quantizer.remove_quantization_config(model)
        else:  # pragma: no cover - other transformers versions
            model.hf_quantizer = None
    return model


# ---------------------------------------------------------------- sources
def _load_local_folder(folder: Path, task: str | None, gguf_file: str | None, trust_remote_code: bool, shown: str, placement=None):
    config_file = folder / "config.json"
    if gguf_file is None and not config_file.exists():
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            gguf_file = ggufs[0].name
        elif len(ggufs) > 1:
            raise PruneScopeError(
                f"could not load {shown!r}: the folder holds several .gguf files ({', '.join(g.name for g in ggufs[:4])}); "
                "choose one with gguf_file="
            )
        else:
            raise PruneScopeError(f"could not load {shown!r}: the folder holds no model (no config.json and no .gguf file)")
    if gguf_file is not None:
        if not (folder / gguf_file).exists():
            raise PruneScopeError(f"could not load {shown!r}: no GGUF file {gguf_file!r} in {folder}")
        return _load_gguf(folder, gguf_file, task, trust_remote_code, shown, placement)
    from transformers import AutoConfig  # lazy: a heavy optional import, loaded on first use

    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=bool(trust_remote_code), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - bad or unknown config
        raise PruneScopeError(f"could not load {shown!r}: its config.json is not a model config transformers knows ({_short(exc)})") from None
    task = task or detect_task(config)
    try:
        model, tokenizer = _from_pretrained(str(folder), task, trust_remote_code=trust_remote_code, placement=placement)
    except Exception as exc:  # noqa: BLE001
        raise PruneScopeError(f"could not load {shown!r} as a {task} model from the local folder: {_short(exc)}") from None
    return model, tokenizer, task, str(folder)


def _load_gguf(folder: Path, gguf_file: str, task: str | None, trust_remote_code: bool, shown: str, placement=None):
    task = task or "causal-lm"
    try:
        model, tokenizer = _from_pretrained(str(folder), task, gguf_file=gguf_file, trust_remote_code=trust_remote_code, placement=placement)
    except Exception as exc:  # noqa: BLE001
        raise PruneScopeError(f"could not load {shown!r}: the GGUF file could not be read as a {task} model ({_short(exc)})") from None
    return model, tokenizer, task, str(folder / gguf_file)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    Returns False at once when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set.
    With a proxy configured the check is skipped (True): the download decides.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    result = {"ok": False}

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)  # DNS look-ups are not bounded by the socket timeout
    return result["ok"]


_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _load_hub(name: str, task: str | None, gguf_file: str | None, trust_remote_code: bool, progress, placement=None):
    from transformers import AutoConfig  # lazy: a heavy optional import, loaded on first use

    def config(local_only: bool):
        return AutoConfig.from_pretrained(
            name, trust_remote_code=bool(trust_remote_code), local_files_only=local_only, **({"gguf_file": gguf_file} if gguf_file else {})
        )

    local_only = True
    try:
        with _quiet():
            cfg = config(True)  # already in the local Hugging Face cache: no network needed
    except Exception:  # noqa: BLE001
        if not _hub_reachable():
            raise PruneScopeError(
                f"could not load {name!r}: not a local folder or file, not in the Hugging Face cache, "
                "and the Hugging Face hub is unreachable (offline)"
            ) from None
        local_only = False
        _report(progress, 0, 3, f"downloading {name} from the Hugging Face hub")
        try:
            with _quiet():
                cfg = config(False)
        except Exception as exc:  # noqa: BLE001 - not found, gated, remote code refused, ...
            raise PruneScopeError(f"could not load {name!r} from the Hugging Face hub: {_short(exc)}") from None
    task = task or ("causal-lm" if gguf_file else detect_task(cfg))
    try:
        model, tokenizer = _from_pretrained(
            name, task, gguf_file=gguf_file, trust_remote_code=trust_remote_code, local_only=local_only, placement=placement
        )
    except Exception as exc:  # noqa: BLE001
        raise PruneScopeError(f"could not load {name!r} as a {task} model from the Hugging Face hub: {_short(exc)}") from None
    return model, tokenizer, task, f"hub:{name}" + (f" ({gguf_file})" if gguf_file else "")


# ---------------------------------------------------------------- entry point
def load_model(
    name_or_path: str,
    task: str | None = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    progress=None,
    device: str = "auto",
    dtype: str = "float32",
    placement=None,
) -> LoadedModel:
    """Load a model for pruning: eval mode, float32 (or ``dtype``), ``requires_grad`` off.

    ``name_or_path``: a local model
    folder (task from ``config.architectures``: ``*ForSequenceClassification`` ->
    classification, ``*ForCausalLM`` / ``*LMHeadModel`` -> causal-lm, else
    encoder), a ``.gguf`` file (causal-lm), or a Hugging Face hub name (online, or
    already in the local Hugging Face cache). ``task`` overrides the detected
    task. Remote code runs only with ``trust_remote_code=True``.

    ``device`` / ``dtype`` (or a :class:`pruning.loading.devices.Placement`, which also carries
    ``max_memory`` and an offload folder) say where pruning and evaluation run and in
    which storage dtype; the model itself stays in host memory (or, past ``max_memory``,
    on disk) and is onloaded block by block. A missing device is refused before loading.

    The embedded defaults (:data:`EMBEDDED_MODELS`) are built on first use; they load through
    :func:`pruning.embedded.load_model`, which takes the same arguments.
    """
    placement = placement or Placement.make(device, dtype)
    loaded = _load(name_or_path, task, gguf_file, trust_remote_code, progress, placement)
    loaded.placement = placement
    return loaded


def _load(name_or_path, task, gguf_file, trust_remote_code, progress, placement) -> LoadedModel:
    task = _check_task(task)
    shown = str(name_or_path).strip()
    if not shown:
        raise PruneScopeError("no model given: use minilm-rt, smollm2-135m, a local folder, a .gguf file or a hub name")
    if shown in EMBEDDED_MODELS:  # built (fine-tuned, dequantized) on first use: pruning.embedded decides that, not loading
        raise PruneScopeError(f"{shown} is an embedded default model: load it with pruning.embedded.load_model")
    path = Path(shown).expanduser()
    _report(progress, 0, 1, f"loading {shown}")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise PruneScopeError(f"could not load {shown!r}: a model file must be a .gguf file; otherwise give the model's folder")
        model, tokenizer, task, source = _load_gguf(path.parent, path.name, task, trust_remote_code, shown, placement)
    elif path.is_dir():
        model, tokenizer, task, source = _load_local_folder(path, task, gguf_file, trust_remote_code, shown, placement)
    elif shown.startswith((".", "/", "~")) or "\\" in shown or shown.count("/") > 1 or shown.lower().endswith(".gguf"):
        raise PruneScopeError(f"could not load {shown!r}: no such file or folder")
    elif not _HUB_NAME.match(shown):
        raise PruneScopeError(f"could not load {shown!r}: not a local folder or file, and not a valid hub name (owner/name)")
    else:
        model, tokenizer, task, source = _load_hub(shown, task, gguf_file, trust_remote_code, progress, placement)
    info: dict = {}
    if task == "classification":
        info["label_names"] = _label_names(model)
    _report(progress, 1, 1, f"{shown} loaded")
    return LoadedModel(shown, model, tokenizer, task, _max_length(model, tokenizer), source, info)


# The roles of a block's matrices, in the order a reader expects them (checked in this order, first match wins).
LAYER_ROLES = (
    ("q", re.compile(r"(query|q_proj|\.q_lin|\.q)$")),
    ("k", re.compile(r"(key|k_proj|\.k_lin|\.k)$")),
    ("v", re.compile(r"(value|v_proj|\.v_lin|\.v)$")),
    ("qkv", re.compile(r"(c_attn|qkv_proj|query_key_value|Wqkv)$")),
    ("attention out", re.compile(r"(attention\.output\.dense|o_proj|out_proj|attn\.c_proj|\.out_lin)$")),
    ("FFN gate", re.compile(r"gate_proj$")),
    ("FFN in", re.compile(r"(intermediate\.dense|up_proj|fc1|c_fc|lin1|fc_in|dense_h_to_4h)$")),
    ("FFN out", re.compile(r"(output\.dense|down_proj|fc2|mlp\.c_proj|lin2|fc_out|dense_4h_to_h)$")),
)


def layer_role(name: str) -> tuple[int, str]:
    """``(rank, role)`` of a layer inside its block: q, k, v, attention out, FFN in, FFN out
    (rank ``len(LAYER_ROLES)`` and role "other" for a name none of them matches)."""
    for rank, (role, pattern) in enumerate(LAYER_ROLES):
        if pattern.search(name):
            return rank, role
    return len(LAYER_ROLES), "other"


def block_role_order(layers) -> list:
    """``layers`` (LayerInfo-like: ``name`` and ``block``) sorted by block, then by :func:`layer_role`
    (model order breaks ties)."""
    indexed = list(enumerate(layers))
    indexed.sort(key=lambda t: (t[1].block if t[1].block is not None else -1, layer_role(t[1].name)[0], t[0]))
    return [layer for _, layer in indexed]
