"""Wanda and SparseGPT at LLaMA shapes on a GPU: time per block, whole model, peak memory.

The models are LLaMA-architecture models with random weights, built from a config (nothing is
downloaded): the shapes of SmolLM2-135M, of a 1.1B model (TinyLlama-1.1B) and of a 7B model
(LLaMA-2-7B). Shapes decide the time; the values of the weights do not. Each model is built on
the meta device and then given storage in the bench's dtype only (the 7B shape takes 13.5 GB of
host memory in bfloat16, never 27 GB in float32), and its weights are drawn from a seeded
generator. Calibration is the papers' 128 sequences of 2048 tokens (random token ids: the cost
is the same as for real text).

    python bench/bench_gpu.py                          # every shape, on the GPU, bfloat16
    python bench/bench_gpu.py --shapes 7b --methods wanda
    python bench/bench_gpu.py --shapes tiny --device cpu --calib 4 --calib-len 32   # smoke test, any machine

Writes bench/results/gpu.json and bench/results/gpu.md (``--out`` to change). The columns for
the papers' own times are left for the lead to fill in from the papers' text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # provenance.py, also when a test loads this file by path

from pruning import threads  # noqa: E402
from provenance import commit  # noqa: E402

threads.prepare()  # the entry point's OpenMP wait settings, before torch loads (pruning/threads.py)

import torch  # noqa: E402

threads.apply()

from pruning.loading.devices import Placement, host_peak_mb, reset_device_peak  # noqa: E402
from pruning.core import LoadedModel  # noqa: E402
from pruning.loading.models import prunable_layers  # noqa: E402
from pruning.paths import atomic_file  # noqa: E402
from pruning.prune import prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402

# name -> (hidden, intermediate, layers, heads, key-value heads, vocabulary, tied embeddings)
SHAPES = {
    "tiny": (64, 128, 2, 4, 2, 256, False),
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, True),
    "1.1b": (2048, 5632, 22, 32, 4, 32000, False),  # TinyLlama-1.1B
    "7b": (4096, 11008, 32, 32, 32, 32000, False),  # LLaMA-2-7B
}
TARGETS_7B = {"wanda": 180.0, "sparsegpt": 600.0, "peak_device_gb": 24.0}  # issue 12, one H100


def build_model(shape: str, dtype: torch.dtype, seed: int = 0) -> LoadedModel:
    """A random-initialised LlamaForCausalLM of ``shape``: built on meta, then stored in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv, vocab, tied = SHAPES[shape]
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
        tie_word_embeddings=tied, architectures=["LlamaForCausalLM"],
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to(dtype).to_empty(device="cpu")  # storage in the bench's dtype only (meta costs nothing)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:  # drawn in float32 one tensor at a time, then stored in the model's dtype
                p.copy_(torch.randn(p.shape, generator=generator) * config.initializer_range)
    rotary = type(model.model.rotary_emb)(config=config)  # its tables are computed, not stored
    model.model.rotary_emb = rotary
    model.eval().requires_grad_(False)
    return LoadedModel(f"random {shape}", model, None, "causal-lm", 4096, f"random LLaMA shape {shape}")


def calibration(vocab: int, n: int, length: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (n, length), generator=g)}]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def block_clock(loaded: LoadedModel, device: str):
    """A progress callback that stamps the time each block's last layer is pruned."""
    last_layer = {}
    for info in prunable_layers(loaded.model):
        last_layer[info.block] = info.name
    finishing = {name: block for block, name in last_layer.items()}
    stamps: list[float] = [time.perf_counter()]

    def progress(done: int, total: int, message: str) -> None:
        name = message.removeprefix("pruned ")
        if name in finishing:
            _sync(device)
            stamps.append(time.perf_counter())
            print(f"  block {finishing[name]} done at {stamps[-1] - stamps[0]:.1f} s", file=sys.stderr, flush=True)

    return progress, stamps


def run_one(loaded: LoadedModel, shape: str, method: str, n: int, length: int, granularity: str) -> dict:
    placement = loaded.placement
    calib = calibration(SHAPES[shape][5], n, length)
    progress, stamps = block_clock(loaded, placement.device)
    _sync(placement.device)
    reset_device_peak(placement)  # this run's own peak
    start = time.perf_counter()
    result = prune(loaded, PruneRequest.make(method, 0.5, granularity), calibration=calib, progress=progress)
    _sync(placement.device)
    total = time.perf_counter() - start
    per_block = [b - a for a, b in zip(stamps, stamps[1:])]
    res = result.info["resources"]
    row = {
        "shape": shape,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "method": method,
        "granularity": granularity,
        "calibration": f"{n} x {length}",
        "device": placement.device,
        "dtype": placement.dtype,
        "seconds": round(total, 2),
        "seconds_per_block_median": round(statistics.median(per_block), 3) if per_block else None,
        "seconds_first_block": round(per_block[0], 3) if per_block else None,
        "blocks": len(per_block),
        "peak_device_memory_gb": None if res["peak_device_memory_mb"] is None else round(res["peak_device_memory_mb"] / 1024, 2),
        "peak_host_memory_gb": round(host_peak_mb() / 1024, 2),
        "paper_seconds": None,  # for the lead: the paper's own figure at this size, with its GPU
    }
    if shape == "7b":
        target = TARGETS_7B[method]
        row["target_seconds"] = target
        row["meets_targets"] = total <= target and (row["peak_device_memory_gb"] or 0) <= TARGETS_7B["peak_device_gb"]
    return row


def machine(device: str) -> dict:
    import transformers

    out = {"cpu": f"{os.cpu_count()}-core host", "python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "device": device, "thread_settings": threads.record()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        out["cpu"] = f"{props.name} ({out['gpu_memory_gb']} GiB), {out['cpu']}"
    return out


def provenance() -> dict:
    """When, where in the history and under what load the figures were taken (bench/report.py prints it)."""
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_average": [round(x, 2) for x in os.getloadavg()], "commit": commit()}


def render(result: dict) -> str:
    """The table of a result file (bench/report.py's renderer)."""
    return markdown(result["rows"], result["machine"])


def markdown(rows: list[dict], info: dict) -> str:
    head = ("| shape | parameters | method | calibration | dtype | whole model (s) | per block, median (s) | peak device (GB) "
            "| peak host (GB) | target (issue 12) | paper (s) |")
    lines = [f"Machine: {json.dumps(info)}", "", head, "|" + "---|" * 11]
    for r in rows:
        paper = "(lead: from the paper)" if r["paper_seconds"] is None else r["paper_seconds"]
        target = "-"
        if "target_seconds" in r:
            met = "met" if r["meets_targets"] else "**missed**"
            target = f"<= {r['target_seconds']:.0f} s, <= {TARGETS_7B['peak_device_gb']:.0f} GB: {met}"
        lines.append(
            f"| {r['shape']} | {r['parameters'] / 1e6:,.0f}M | {r['method']} | {r['calibration']} | {r['dtype']} | {r['seconds']} | "
            f"{r['seconds_per_block_median']} | {r['peak_device_memory_gb']} | {r['peak_host_memory_gb']} | {target} | {paper} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="smollm2-135m,1.1b,7b", help=f"comma-separated: {', '.join(SHAPES)}")
    parser.add_argument("--methods", default="wanda,sparsegpt")
    parser.add_argument("--granularity", default="layer", help="layer (the papers' 50%% runs use per-row for Wanda: try row)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="default bfloat16 on a GPU, float32 on the CPU")
    parser.add_argument("--calib", type=int, default=128)
    parser.add_argument("--calib-len", type=int, default=2048)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu"))
    args = parser.parse_args(argv)
    placement = Placement.make(args.device, args.dtype or "float32")
    if args.dtype is None and not placement.on_cpu:
        placement = Placement.make(args.device, "bfloat16")
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for shape in shapes:
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}: use {', '.join(SHAPES)}")
    info, out, rows = machine(placement.device), Path(args.out), []
    stamp = provenance()  # taken before the run: its own work is no load
    for shape in shapes:
        loaded = build_model(shape, placement.torch_dtype)  # once per shape: pruning never changes it
        loaded.placement = placement
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            row = run_one(loaded, shape, method, args.calib, args.calib_len, args.granularity)
            print(json.dumps(row), flush=True)
            rows.append(row)
            write(out, rows, info, stamp)  # after every row: a run stopped at a time limit keeps what finished
        del loaded
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def write(out: Path, rows: list[dict], info: dict, stamp: dict) -> None:
    """The JSON and markdown results, each renamed into place whole."""
    for suffix, text in ((".json", json.dumps({"machine": info, **stamp, "rows": rows}, indent=2)), (".md", markdown(rows, info))):
        with atomic_file(out.with_suffix(suffix)) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
