"""Where the work runs and in which dtype: device and dtype choices, block onloading, peak memory.

A :class:`Placement` says where the heavy work runs (``cpu``, ``cuda:N``, ``mps``), in which
storage dtype (``float32``, ``bfloat16``, ``float16``), and optionally how much memory each
place may hold (``max_memory``, accelerate's notion) with a folder for what does not fit.
It is validated once, by :meth:`Placement.make`; ``auto`` means CUDA when present, else CPU.

Onloading never touches the shared model. The engine works on a *private copy*
(:func:`private_copy`: new module objects, the same tensors, accelerate's hooks left
behind); :func:`onloaded` then swaps, inside that copy only, the tensors of the modules it
is given for copies on the device in the compute dtype, and swaps the originals back on
exit. Weights that accelerate offloaded to disk (on the ``meta`` device in the model) are
read from the offload hook's weights map. On the CPU in the model's own dtype nothing is
swapped, so the CPU path costs what it did before.

Statistics (input norms, ``X X^T``) accumulate in float32 or better whatever the storage
dtype (:func:`stats_dtype`), and SparseGPT factorises in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch import nn

from ..errors import PruneScopeError
from .functional import shallow_copy, with_overrides

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_ALIASES = {"fp32": "float32", "f32": "float32", "bf16": "bfloat16", "fp16": "float16", "f16": "float16", "half": "float16"}
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps"


# ---------------------------------------------------------------- parsing and resolving
def parse_dtype(value) -> torch.dtype:
    """``float32`` / ``bfloat16`` / ``float16`` (or a torch dtype) as a torch dtype, or a clear error."""
    if isinstance(value, torch.dtype):
        if value in DTYPES.values():
            return value
        raise PruneScopeError(f"dtype {value} is not supported: use {', '.join(DTYPES)}")
    key = str(value).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise PruneScopeError(f"unknown dtype {value!r}: use {', '.join(DTYPES)}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The devices this machine has: ``cpu``, then ``cuda:0`` ..., then ``mps``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(value="auto") -> torch.device:
    """A concrete device from ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps``; a missing one is refused."""
    text = str(value if value is not None else "auto").strip().lower()
    if text in ("", "auto"):
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise PruneScopeError(f"unknown device {value!r}: use {DEVICE_HELP}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        return _cuda_device(device, value)
    if device.type == "mps":
        if not _mps_available():
            raise PruneScopeError(f"--device {value}: this machine has no MPS (Apple GPU) backend; use --device cpu or auto")
        return torch.device("mps")
    raise PruneScopeError(f"device {value!r} is not supported: use {DEVICE_HELP}")


def _cuda_device(device: torch.device, shown) -> torch.device:
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise PruneScopeError(f"--device {shown}: CUDA is not available on this machine ({why}); use --device cpu or auto")
    index = 0 if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise PruneScopeError(f"--device {shown}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def parse_max_memory(value) -> tuple[tuple[str, str], ...]:
    """``"cpu=2GiB,cuda:0=20GiB"`` (or a mapping) as sorted ``(place, size)`` pairs, sizes checked."""
    if not value:
        return ()
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            if "=" not in part:
                raise PruneScopeError(f"--max-memory takes PLACE=SIZE pairs such as cpu=64GiB,cuda:0=20GiB; got {part!r}")
            pairs.append(tuple(s.strip() for s in part.split("=", 1)))
    else:
        pairs = list(value)
    from accelerate.utils import convert_file_size_to_int  # lazy: a heavy optional import, loaded on first use

    out = []
    for place, size in pairs:
        place = str(place).strip().lower()
        if place not in ("cpu", "mps", "disk") and not place.startswith("cuda"):
            raise PruneScopeError(f"--max-memory: unknown place {place!r}; use cpu, cuda:N or mps")
        try:
            convert_file_size_to_int(size)
        except (ValueError, TypeError):
            raise PruneScopeError(f"--max-memory: {size!r} is not a size such as 512MiB or 20GiB") from None
        out.append((place, str(size)))
    return tuple(sorted(out))


# ---------------------------------------------------------------- the record
@dataclass(frozen=True)
class Placement:
    """Where and in which dtype: a concrete ``device`` string, a ``dtype`` name, optional memory limits.

    Build it with :meth:`make` (which resolves ``auto`` and refuses missing devices).
    """

    device: str = "cpu"
    dtype: str = "float32"
    max_memory: tuple[tuple[str, str], ...] = ()
    offload_folder: str | None = None

    @classmethod
    def make(cls, device="auto", dtype="float32", max_memory=None, offload_folder=None) -> "Placement":
        resolved = resolve_device(device)
        limits = parse_max_memory(max_memory)
        for place, _ in limits:
            if place not in ("cpu", "disk"):
                resolve_device(place)
        name = str(resolved) if resolved.type != "cuda" else f"cuda:{resolved.index}"
        return cls(name, dtype_name(parse_dtype(dtype)), limits, str(offload_folder) if offload_folder else None)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    def accelerate_max_memory(self) -> dict:
        """``max_memory`` in accelerate's keys (CUDA devices by index)."""
        return {(int(p.split(":")[1]) if p.startswith("cuda:") else (0 if p == "cuda" else p)): s for p, s in self.max_memory}

    def summary(self) -> dict:
        return {"device": self.device, "dtype": self.dtype, "max_memory": dict(self.max_memory) or None}


CPU_FLOAT32 = Placement()


def placement_of(loaded) -> Placement:
    """The placement a LoadedModel was loaded with (CPU float32 for one made by hand)."""
    return getattr(loaded, "placement", None) or CPU_FLOAT32


def stats_dtype(device: torch.device | str) -> torch.dtype:
    """Accumulator dtype for input norms: float64, except on MPS, which has none (float32 there)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


# ---------------------------------------------------------------- private copies and onloading
def is_offloaded(model: nn.Module) -> bool:
    """Whether accelerate dispatched this model (hooks; some weights possibly on ``meta``)."""
    return any(hasattr(m, "_hf_hook") for m in model.modules())


def private_copy(model: nn.Module) -> nn.Module:
    """A structural copy sharing every tensor, with accelerate's hooks removed from the copy.

    An offloaded module's weights map stays reachable as ``_prunescope_source`` (shared, not
    copied), so :func:`onloaded` can read its ``meta`` weights. The shared model keeps its hooks.
    """
    hooks = [m._hf_hook for m in model.modules() if hasattr(m, "_hf_hook")]
    copy = shallow_copy(model, share=hooks)
    for module in copy.modules():
        hook = module.__dict__.pop("_hf_hook", None)
        if hook is None:
            continue
        module.__dict__.pop("forward", None)  # back to the class's own forward
        module.__dict__.pop("_old_forward", None)
        source = getattr(hook, "weights_map", None)
        if source is not None:
            module.__dict__["_prunescope_source"] = source
    return copy


def _host_value(module: nn.Module, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself, or for a weight accelerate offloaded (``meta``) its value from the weights map."""
    if tensor.device.type != "meta":
        return tensor
    source = module.__dict__.get("_prunescope_source")
    if source is None:
        source = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
    if source is None:
        raise PruneScopeError(f"a weight of {type(module).__name__} is on the meta device and no offload folder holds it")
    return source[name]


def host_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """A direct parameter of ``module``, read from accelerate's offload when the model holds it on ``meta``."""
    return _host_value(module, name, module._parameters[name])


@contextlib.contextmanager
def onloaded(modules: Iterable[nn.Module], placement: Placement):
    """Inside a private copy: the direct tensors of ``modules`` as copies on the placement's device,
    floating parameters in its dtype; the originals are put back on exit (freeing the copies).

    Nothing is swapped when a tensor is already where and what it should be (the CPU path).
    Tensors shared by two modules (tied embeddings) get one copy.
    """
    device, dtype = placement.torch_device, placement.torch_dtype
    swapped, copies = [], {}
    try:
        for module in modules:
            for table in (module._parameters, module._buffers):
                for name, tensor in list(table.items()):
                    if tensor is None:
                        continue
                    cast = dtype if table is module._parameters and tensor.is_floating_point() else tensor.dtype
                    if tensor.device == device and tensor.dtype == cast:
                        continue
                    if id(tensor) not in copies:
                        value = _host_value(module, name, tensor).to(device=device, dtype=cast)
                        copies[id(tensor)] = nn.Parameter(value, requires_grad=False) if table is module._parameters else value
                    swapped.append((table, name, tensor))
                    table[name] = copies[id(tensor)]
        yield
    finally:
        for table, name, tensor in reversed(swapped):
            table[name] = tensor


def outside_blocks(model: nn.Module, blocks: list[tuple[str, nn.Module]]) -> list[nn.Module]:
    """The modules of ``model`` that are not inside any transformer block (embeddings, norms, heads)."""
    inside = {id(m) for _, block in blocks for m in block.modules()}
    return [m for m in model.modules() if id(m) not in inside]


def to_device(value, device: torch.device):
    """``value`` with every tensor in it (tuples, lists, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- peak memory
def host_peak_mb() -> float:
    """Peak resident memory of this process so far, in MB (``ru_maxrss``: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def reset_device_peak(placement: Placement) -> None:
    """Start CUDA's peak-memory count afresh. Process-wide state: entry points (the CLI, a bench)
    call it before a run, engine calls never do (two runs in two threads would reset each other)."""
    if placement.torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(placement.torch_device)


@contextlib.contextmanager
def peak_memory(placement: Placement):
    """Measure a run: yields a dict that holds, on exit, the device, the dtype, the peak device
    memory (CUDA's ``max_memory_allocated`` since the last :func:`reset_device_peak`, so the run's
    own peak when an entry point reset it first; ``None`` off CUDA) and the process's host peak."""
    out: dict = {"device": placement.device, "dtype": placement.dtype}
    cuda = placement.torch_device.type == "cuda"
    try:
        yield out
    finally:
        out["peak_device_memory_mb"] = round(torch.cuda.max_memory_allocated(placement.torch_device) / 2**20, 1) if cuda else None
        out["peak_host_memory_mb"] = host_peak_mb()


def runs_in_place(loaded) -> bool:
    """True on the plain path: CPU, the model's own dtype, nothing offloaded (no onloading needed)."""
    return _plain(loaded.model, placement_of(loaded))


def _plain(model: nn.Module, place: Placement) -> bool:
    if not place.on_cpu or place.max_memory or is_offloaded(model):
        return False
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    return first is None or first.dtype == place.torch_dtype


# ---------------------------------------------------------------- evaluation through accelerate
def needs_dispatch(model: nn.Module, placement: Placement | None) -> bool:
    """Whether evaluating ``model`` at ``placement`` goes through accelerate (any device but the
    plain CPU path)."""
    return placement is not None and not _plain(model, placement)


def dispatched_runner(model: nn.Module, overrides: Mapping[str, torch.Tensor], placement: Placement):
    """``run(**inputs)`` on a private copy of ``model`` with ``overrides``, placed by accelerate.

    A model in host memory is dispatched over the device (and, past its share of
    ``max_memory``, host memory and an offload folder) with ``infer_auto_device_map`` and
    ``dispatch_model``; a model accelerate already offloaded at load runs through copies of
    its own hooks, the overrides read in place of the offloaded weights. Accelerate replaces
    module entries of the copy only, so the shared model is never moved.
    """
    if is_offloaded(model):
        return _rehooked_copy(model, overrides)
    from accelerate import dispatch_model, infer_auto_device_map  # lazy: a heavy optional import, loaded on first use

    copy = with_overrides(model, overrides) if overrides else shallow_copy(model)  # never the shared model
    device = placement.torch_device
    budget = placement.accelerate_max_memory() or _default_budget(device)
    device_map = infer_auto_device_map(
        copy, max_memory=budget, no_split_module_classes=getattr(copy, "_no_split_modules", None), clean_result=False
    )
    folder = None
    if "disk" in device_map.values():
        import shutil
        import tempfile
        import weakref

        # always a fresh folder: accelerate reuses (stale) weights from one that holds an index
        folder = tempfile.mkdtemp(prefix="prunescope-eval-offload-", dir=placement.offload_folder)
        weakref.finalize(copy, shutil.rmtree, folder, True)
    dispatch_model(copy, device_map, main_device=device, offload_dir=folder, force_hooks=True)
    return lambda **inputs: copy(**inputs)


def _default_budget(device: torch.device) -> dict:
    """All of the device's free memory (less 10%) and all host memory, in accelerate's keys."""
    from accelerate.utils import get_max_memory  # lazy: a heavy optional import, loaded on first use

    every = get_max_memory()
    key = device.index if device.type == "cuda" else device.type
    budget = {"cpu": every["cpu"]}
    if device.type == "cuda":
        budget[key] = int(every[key] * 0.9)
    elif device.type == "mps":
        budget["mps"] = every.get("mps", every["cpu"])
    return budget


class _Overlay(Mapping):
    """A weights map with some entries replaced (the pruned weights of an offloaded module)."""

    def __init__(self, base: Mapping, extra: dict):
        self.base, self.extra = base, extra

    def __getitem__(self, key):
        return self.extra[key] if key in self.extra else self.base[key]

    def __iter__(self):
        return iter(self.base)

    def __len__(self):
        return len(self.base)


def _rehooked_copy(model: nn.Module, overrides: Mapping[str, torch.Tensor]):
    """A shallow copy of an accelerate-dispatched model with its own hook objects (their weights
    maps and tied-weight caches shared, not copied) and ``overrides`` put in."""
    hooks = [m._hf_hook for m in model.modules() if hasattr(m, "_hf_hook")]
    shared = [x for h in hooks for x in (getattr(h, "weights_map", None), getattr(h, "tied_params_map", None)) if x is not None]

    copy = shallow_copy(model, share=shared)
    for key, value in overrides.items():
        owner_name, _, attr = key.rpartition(".")
        owner = copy.get_submodule(owner_name) if owner_name else copy
        hook, current = owner.__dict__.get("_hf_hook"), owner._parameters[attr]
        if current.device.type == "meta" and getattr(hook, "weights_map", None) is not None:
            hook.weights_map = _Overlay(hook.weights_map, {attr: value})  # read when the hook loads the module
        else:  # a module accelerate keeps on its device: the pruned weight goes there
            owner._parameters[attr] = nn.Parameter(value.detach().to(current.device), requires_grad=False)
    return lambda **inputs: copy(**inputs)


def onload_each(blocks: Iterable[tuple[str, nn.Module]], placement: Placement):
    """Yield each ``(name, block)`` of a private copy with the block onloaded while the loop body
    runs; it goes back (its device copies freed) when the loop moves on or stops."""
    for name, block in blocks:
        with onloaded(list(block.modules()), placement):
            yield name, block


def with_placement(loaded, placement: Placement):
    """The same loaded model (the same tensors, storage dtype unchanged) run at another placement."""
    return dataclasses.replace(loaded, placement=placement)
