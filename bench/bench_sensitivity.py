"""Layer sensitivity with the prefix cache against full passes, in one run.

For every (layer, sparsity) point the one-layer mask is made once and evaluated
twice: by a probe that replays the cached dense activations (runs from the
pruned layer onward) and by one that runs the whole model. Reported: the time
of each (probe set-up + evaluations; the masks are shared and timed apart),
their ratio, the largest absolute logit difference between the two (every
logit for minilm-rt; for SmolLM2 the logits of the first ``--compare-windows``
windows, plus the per-window NLL and KL of every window), and the end-to-end
time of the public ``layer_sensitivity`` default run.

    python bench/bench_sensitivity.py                 # minilm-rt default run + SmolLM2 (all its layers: long)
    python bench/bench_sensitivity.py --only minilm
    python bench/bench_sensitivity.py --smollm-blocks 0,15,29 --smollm-windows 32
    python bench/bench_sensitivity.py --quick         # smoke test: a few layers, few examples

Writes bench/results/sensitivity.json and bench/results/sensitivity.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import machine, peak_rss_mb  # noqa: E402  (this folder is on sys.path when run as a script)
from pruning.loading.data import calibration_batches, load_classification, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import evaluation_plan  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.loading.models import prunable_layers  # noqa: E402
from pruning.prune import mask_ranker  # noqa: E402
from pruning.result import masked_overrides  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402
from pruning.analysis.sensitivity import DEFAULT_MEMORY_MB, SensitivityProbe, layer_sensitivity  # noqa: E402

SPARSITIES = (0.5, 0.7, 0.9)  # the Layer sensitivity page's default


def compare(loaded, data, layers, sparsities, max_examples, method, calibration, compare_batches, memory_mb) -> dict:
    """Cached and full probes on the same points: times, ratio, largest logit / NLL / KL differences."""
    plan = evaluation_plan(loaded, data, max_examples, "validation")
    start = time.perf_counter()
    ranker = mask_ranker(loaded, PruneRequest.make(method, layers=layers), calibration)
    mask_seconds = time.perf_counter() - start
    seconds = {}
    probes = {}
    for kind, cache in (("cached", True), ("full", False)):
        start = time.perf_counter()
        probes[kind] = SensitivityProbe(loaded, plan, memory_mb, cache)
        seconds[kind] = time.perf_counter() - start
    logit_diff = item_diff = kl_diff = 0.0
    for name in layers:
        for s in sparsities:
            start = time.perf_counter()
            overrides = masked_overrides(loaded, ranker.masks(s, "layer", layers=[name]))
            mask_seconds += time.perf_counter() - start
            out = {}
            for kind, probe in probes.items():
                logits = []
                keep = (lambda i, x, logits=logits: logits.append(x.clone()) if i < compare_batches else None)
                start = time.perf_counter()
                ev, kl = probe.evaluate(name, overrides, on_logits=keep)
                seconds[kind] += time.perf_counter() - start
                out[kind] = (ev, kl, logits)
            (ev_c, kl_c, lg_c), (ev_f, kl_f, lg_f) = out["cached"], out["full"]
            logit_diff = max([logit_diff] + [float((a - b).abs().max()) for a, b in zip(lg_c, lg_f)])
            key = "correct" if plan.metric == "accuracy" else "nll"
            item_diff = max(item_diff, float(np.abs(ev_c["per_item"][key].astype(float) - ev_f["per_item"][key].astype(float)).max()))
            kl_diff = max(kl_diff, float(np.abs(kl_c - kl_f).max()))
    return {
        "points": len(layers) * len(sparsities),
        "items": int(probes["full"].dense["n"]),
        "cache_mode": probes["cached"].mode,
        "memory_mb": memory_mb,
        "seconds_cached": round(seconds["cached"], 2),
        "seconds_full": round(seconds["full"], 2),
        "ratio": round(seconds["cached"] / seconds["full"], 3),
        "seconds_masks": round(mask_seconds, 2),
        "max_abs_logit_diff": logit_diff,
        "logits_compared_batches": compare_batches,
        "max_abs_item_diff": item_diff,
        "max_abs_kl_diff": kl_diff,
    }


def default_run(loaded, data, layers, sparsities, max_examples, method, calibration, memory_mb, onednn: bool = True) -> dict:
    """The public ``layer_sensitivity`` end to end; ``onednn=False`` runs it with MKL's linear
    (``PRUNESCOPE_ONEDNN=0``, set by this script for the one call: it owns its process)."""
    previous = os.environ.get("PRUNESCOPE_ONEDNN")
    os.environ["PRUNESCOPE_ONEDNN"] = "1" if onednn else "0"
    try:
        start = time.perf_counter()
        request = PruneRequest.make(method, granularity="layer", layers=layers)
        rows = layer_sensitivity(loaded, data, request, sparsities, calibration=calibration, max_examples=max_examples, memory_mb=memory_mb)
    finally:
        if previous is None:
            os.environ.pop("PRUNESCOPE_ONEDNN")
        else:
            os.environ["PRUNESCOPE_ONEDNN"] = previous
    told = sum(1 for r in rows if r["layer"] != "-" and r["distinguishable"])
    noisy = sum(1 for r in rows if r["layer"] != "-" and r["drop_ci_low"] <= 0 <= r["drop_ci_high"])
    return {"seconds": round(time.perf_counter() - start, 2), "rows": len(rows) - 1, "kl_excludes_0": told, "drop_within_noise": noisy}


def bench_minilm(args) -> dict:
    loaded = load_model("minilm-rt")
    data = load_classification("rotten-tomatoes")
    layers = [i.name for i in prunable_layers(loaded.model)][: args.layers or None]
    sparsities = SPARSITIES[: 1 if args.quick else None]
    n = 16 if args.quick else 256
    out = {"model": "minilm-rt", "method": "magnitude", "layers": len(layers), "sparsities": list(sparsities), "examples": n}
    out["default_run"] = default_run(loaded, data, layers, sparsities, n, "magnitude", None, args.memory_mb)
    out["default_run_mkl"] = default_run(loaded, data, layers, sparsities, n, "magnitude", None, args.memory_mb, onednn=False)
    out["compare"] = compare(loaded, data, layers, sparsities, n, "magnitude", None, 10**9, args.memory_mb)
    return out


def bench_smollm(args) -> dict:
    loaded = load_model("smollm2-135m")
    data = load_lm_text("rt-plots")
    infos = prunable_layers(loaded.model)
    blocks = [int(b) for b in args.smollm_blocks.split(",")] if args.smollm_blocks else sorted({i.block for i in infos})
    layers = [i.name for i in infos if i.block in blocks][: args.layers or None]
    sparsities = SPARSITIES[: 1 if args.quick else None]
    windows = 2 if args.quick else args.smollm_windows
    calibration = calibration_batches(loaded, data, n_samples=4 if args.quick else 16)
    out = {"model": "smollm2-135m", "method": "wanda", "layers": len(layers), "blocks": blocks, "sparsities": list(sparsities), "windows": windows}
    out["compare"] = compare(loaded, data, layers, sparsities, windows, "wanda", calibration, args.compare_windows, args.memory_mb)
    return out


def markdown(result: dict) -> str:
    load = f"; load average {result['load_avg_before'][0]:.2f} before, {result['load_avg_after'][0]:.2f} after" if "load_avg_before" in result else ""
    lines = [f"Machine: {result['machine']['cpu']}, {result['machine']['threads']} threads{load}", ""]
    lines += ["| model | points | items | cache | cached s | full s | ratio | max abs logit diff |", "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        c = r["compare"]
        row = [r["model"], c["points"], c["items"], c["cache_mode"], c["seconds_cached"], c["seconds_full"], c["ratio"], f"{c['max_abs_logit_diff']:.2e}"]
        lines.append("| " + " | ".join(map(str, row)) + " |")
    for r in result["runs"]:
        if "default_run" in r:
            d = r["default_run"]
            lines += ["", f"{r['model']} default run ({r['layers']} layers x {len(r['sparsities'])} sparsities, {r['examples']} examples): "
                      f"{d['seconds']} s; KL interval excludes 0 in {d['kl_excludes_0']} of {d['rows']} rows, "
                      f"accuracy drop within noise in {d['drop_within_noise']}"]
        if "default_run_mkl" in r:
            m = r["default_run_mkl"]
            lines += ["", f"{r['model']} the same run with MKL's linear (PRUNESCOPE_ONEDNN=0), in the same process: {m['seconds']} s "
                      f"(oneDNN / MKL {r['default_run']['seconds'] / m['seconds']:.2f}x)"]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: Path, to_markdown) -> None:
    """``out``.json and ``out``.md (``to_markdown(result)``), and the table printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(to_markdown(result))
    print(to_markdown(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["minilm", "smollm"])
    p.add_argument("--quick", action="store_true", help="smoke test: one sparsity, few examples (no figures)")
    p.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    p.add_argument("--smollm-blocks", default="", help="comma-separated SmolLM2 blocks to probe (default: all 30)")
    p.add_argument("--smollm-windows", type=int, default=256, help="evaluation windows of 512 tokens (at most what rt-plots has)")
    p.add_argument("--compare-windows", type=int, default=4, help="SmolLM2 windows whose full logits are compared")
    p.add_argument("--memory-mb", type=float, default=DEFAULT_MEMORY_MB)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "sensitivity"))
    args = p.parse_args()
    runs, load_before = [], os.getloadavg()
    if args.only in (None, "minilm"):
        runs.append(bench_minilm(args))
    if args.only in (None, "smollm"):
        runs.append(bench_smollm(args))
    result = {"machine": machine(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "peak_rss_mb": round(peak_rss_mb()), "quick": args.quick, "runs": runs}
    write_results(result, Path(args.out), markdown)


if __name__ == "__main__":
    main()
