"""Memory budget of a calibration request, estimated before any token is made.

The block-by-block walk (:mod:`pruning.calibration`) runs all calibration
samples through one transformer block as one batch on the CPU (on an
accelerator, in slices that fit :data:`DEVICE_ACTIVATIONS`, see
:func:`calibration_chunk`). At its peak it holds, per
token, the block's input and output hidden states, the query/key/value and
attention outputs (about 6 x hidden size floats) and the FFN activation
(intermediate size floats), plus each sample's attention scores (heads x
length x length). A request whose estimate exceeds the memory free now is
refused with the largest count that fits.
"""

from __future__ import annotations

import os

from .errors import PruneScopeError

FLOAT = 4  # bytes; the engine works in float32
HEADROOM = 0.8  # share of the free memory a calibration pass may take
DEVICE_ACTIVATIONS = 8 << 30  # bytes one block pass may take on an accelerator (at most a quarter of its memory)


def available_bytes() -> int:
    """Memory free for new allocations now (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no way to tell: do not refuse
        return 1 << 62


def _dims(model) -> tuple[int, int, int]:
    config = getattr(model, "config", None)
    hidden = int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 768)
    inter = int(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 1)
    return hidden, inter, heads


def calibration_bytes(model, n_samples: int, seq_len: int) -> int:
    """Peak bytes of one block pass over ``n_samples`` sequences of at most ``seq_len`` tokens."""
    hidden, inter, heads = _dims(model)
    tokens = int(n_samples) * int(seq_len)
    return FLOAT * (tokens * (6 * hidden + inter) + int(n_samples) * heads * int(seq_len) ** 2)


def check_calibration(loaded, n_samples: int, seq_len: int, available: int | None = None) -> None:
    """Refuse a calibration request that would not fit in memory, naming the largest one that does."""
    need = calibration_bytes(loaded.model, n_samples, seq_len)
    budget = int(HEADROOM * (available_bytes() if available is None else available))
    if need <= budget:
        return
    fits = max(0, budget // max(1, calibration_bytes(loaded.model, 1, seq_len)))
    hidden, inter, _ = _dims(loaded.model)
    raise PruneScopeError(
        f"calibration with {n_samples:,} samples of up to {seq_len} tokens would need about {need / 1e9:,.1f} GB at once "
        f"(hidden size {hidden}, FFN {inter}: every sample passes through a block together), more than the "
        f"{budget / 1e9:.1f} GB free; use at most {fits:,} samples (--calib {fits})"
    )


def calibration_chunk(model, n_samples: int, seq_len: int, placement) -> int:
    """Calibration samples per block pass: all of them on the CPU (one batch, the fastest there);
    on an accelerator as many as keep one pass's activations within :data:`DEVICE_ACTIVATIONS`
    or a quarter of the device's memory, whichever is smaller (at least one).

    For a 7B LLaMA shape (hidden 4096, FFN 11008, 32 heads) at 2048 tokens that is 10 samples of
    the papers' 128, so about 8 GB of activations beside the hidden states kept between blocks
    (2 x 128 x 2048 x 4096 values) and one block's weights.
    """
    if getattr(placement, "on_cpu", True):
        return int(n_samples)
    budget = DEVICE_ACTIVATIONS
    try:
        import torch

        device = placement.torch_device
        if device.type == "cuda":
            budget = min(budget, torch.cuda.get_device_properties(device).total_memory // 4)
    except Exception:  # noqa: BLE001 - no way to ask the device: keep the fixed budget
        pass
    return int(max(1, min(int(n_samples), budget // max(1, calibration_bytes(model, 1, seq_len)))))
