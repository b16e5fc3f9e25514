"""Float32 linear layers through oneDNN with pre-packed weights, on the CPU.

``torch.nn.functional.linear`` on the CPU calls MKL's sgemm. On AMD processors MKL
takes a slower code path than on Intel's: on this project's 2-core AMD EPYC machine
it runs the transformer's matrix products at about 70 GFLOP/s a core, while oneDNN,
given the weight already reordered into its blocked layout, runs the same float32
products at 110-190, by shape (``bench/bench_sensitivity.py`` measures what that does to a
whole sensitivity run). The arithmetic is the same: float32 products with float32
accumulation, in another summation order (results differ from MKL's by float
rounding, about 1e-6 relative).

:class:`PackedLinear` is an ``nn.Linear`` (hooks, ``isinstance`` checks and
``.weight`` reads keep working) that keeps the packed form of its current weight and
packs again whenever the weight object changes (a parameter swapped in, as overrides
are). :func:`pack_linears` puts it in place of every float32 CPU ``nn.Linear`` of a
module tree, and is meant for private copies (:func:`pruning.loading.functional.shallow_copy`):
the shared model's modules are never replaced. The packed weights are extra memory,
the size of the linear weights, for as long as the copy lives.

The ops are PyTorch's own (the ones ``torch.compile`` uses for frozen CPU linears),
reached through ``torch.ops.mkldnn``; :func:`available` checks that they exist and
agree with ``F.linear`` on a small product before anything uses them, and
``PRUNESCOPE_ONEDNN=0`` turns the path off.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn
from torch.nn import functional as F


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@functools.lru_cache(maxsize=1)
def _self_test() -> bool:
    """Whether the oneDNN ops exist here and give ``F.linear``'s result on a small product."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        w, b = torch.randn(48, 64, generator=gen), torch.randn(48, generator=gen)
        x = torch.randn(3, 5, 64, generator=gen)
        with torch.inference_mode():
            got = _linear(x, _pack(w), b)
        return got.shape == (3, 5, 48) and bool(torch.allclose(got, F.linear(x, w, b), rtol=1e-5, atol=1e-5))
    except Exception:  # noqa: BLE001 - a build without the ops, or one that fails them: MKL, as before
        return False


def available() -> bool:
    """oneDNN's packed float32 linear can be used (present, agreeing, not turned off)."""
    return os.environ.get("PRUNESCOPE_ONEDNN", "1") != "0" and _self_test()


def packable(module: nn.Module) -> bool:
    """A plain ``nn.Linear`` with a float32 weight on the CPU."""
    w = getattr(module, "weight", None)
    return type(module) is nn.Linear and isinstance(w, torch.Tensor) and w.dtype == torch.float32 and w.device.type == "cpu"


class PackedLinear(nn.Linear):
    """``nn.Linear`` computed by oneDNN from a packed copy of its weight (see the module notes).

    It holds the very parameter objects of the layer it replaces (no copy); the packed
    form is made on the first call and again whenever ``self.weight`` is another object
    or was changed in place (its version counter moved)."""

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)  # not nn.Linear's: that would allocate a new weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self._packed: tuple | None = None  # (the weight object it was made from, its version, packed weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if x.dtype != torch.float32 or x.device.type != "cpu" or w.dtype != torch.float32 or w.device.type != "cpu":
            return F.linear(x, w, self.bias)
        version = _version(w)
        if self._packed is None or self._packed[0] is not w or self._packed[1] != version:
            self._packed = (w, version, _pack(w))
        return _linear(x, self._packed[2], self.bias)


def _version(t: torch.Tensor) -> int | None:
    """The tensor's in-place version counter (``None`` for an inference tensor, which has none
    and cannot be changed in place outside inference mode)."""
    try:
        return t._version
    except RuntimeError:
        return None


def pack_linears(module: nn.Module) -> int:
    """Replace every packable ``nn.Linear`` of ``module`` (a private copy, never a shared
    model) by a :class:`PackedLinear`; returns how many. Does nothing (returns 0) where
    :func:`available` is false."""
    if not available():
        return 0
    targets = [name for name, m in module.named_modules() if name and packable(m)]
    for name in targets:
        module.set_submodule(name, PackedLinear(module.get_submodule(name)))
    return len(targets)
