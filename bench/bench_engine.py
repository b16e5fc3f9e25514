"""Benchmark of the pruning engine on the embedded defaults (figures rendered into docs/BENCHMARKS.md by bench/report.py).

Measures, in one run on this machine:
  minilm-rt     dense accuracy; accuracy at 50% and 70% per method; time per method;
                re-thresholding all masks from cached scores; evaluation pass vs a
                pass with no padding; peak memory.
  smollm2-135m  WikiText-2 perplexity dense, at 50% and 2:4 for magnitude, Wanda and
                SparseGPT, Wanda also per row (16 calibration sequences of 256 tokens);
                time per method.
Every metric carries its 95% interval and n, and every pruned row its paired difference
from the dense model on the same sentences or windows (drop_ci_low, drop_ci_high).

    python bench/bench_engine.py            # everything (about 15-25 minutes on 2 cores)
    python bench/bench_engine.py --quick    # smaller evaluation sets
    python bench/bench_engine.py --only minilm

Writes bench/results/engine.json and bench/results/engine.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import commit  # noqa: E402,F401  (bench_seeds.py imports it from here)
from pruning import threads  # noqa: E402

threads.prepare()  # the entry point's OpenMP wait settings, before torch loads (pruning/threads.py)

import torch  # noqa: E402

threads.apply()

from pruning.loading.data import calibration_batches, load_classification, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import evaluate, paired_difference, summary  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.loading.models import prunable_layers  # noqa: E402
from pruning.prune import mask_ranker, prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402

R = PruneRequest.make

WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
METHODS = ["magnitude", "random", "wanda", "sparsegpt"]
# SmolLM2 rows, each at 50%: Wanda also per output row (its paper's default granularity).
GRANULARITIES_LM = [
    ("magnitude", "layer"),
    ("magnitude", "2:4"),
    ("wanda", "layer"),
    ("wanda", "row"),
    ("wanda", "2:4"),
    ("sparsegpt", "layer"),
    ("sparsegpt", "2:4"),
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    """What the figures were measured on (bench_seeds.py uses it too)."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "thread_settings": threads.record(),  # the wait settings and thread counts in force (pruning/threads.py)
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit(),
    }


def timed(fn, repeat=1):
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def bench_padding(loaded, texts, batch_size=64, max_length=128):
    """Sorted, padded evaluation pass vs a pass over the same batches cut to their shortest
    sentence (no padding at all, and never more tokens). Ratio <= 1.3 is the target."""
    from pruning.analysis.evaluate import encode_sorted

    batches = encode_sorted(loaded.tokenizer, texts, batch_size, max_length)
    model = loaded.model

    def run(bs):
        with torch.inference_mode():
            for b in bs:
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])

    unpadded = []
    for b in batches:
        shortest = int(b["attention_mask"].sum(dim=1).min())
        unpadded.append({"input_ids": b["input_ids"][:, :shortest], "attention_mask": b["attention_mask"][:, :shortest]})
    run(batches[:2])
    _, t_padded = timed(lambda: run(batches), repeat=3)
    _, t_unpadded = timed(lambda: run(unpadded), repeat=3)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    total = sum(b["attention_mask"].numel() for b in batches)
    return {"padded_s": t_padded, "unpadded_s": t_unpadded, "ratio": t_padded / t_unpadded, "padding_fraction": 1 - real / total}


def row(method: str, gran: str, sparsity: float, dense: dict, ev: dict, seconds: float) -> dict:
    """One table row: the metric with its 95% interval and n, and the paired harm against dense."""
    diff = paired_difference(dense, ev)
    return {
        "method": method,
        "granularity": gran,
        "sparsity": sparsity,
        "metric": ev["metric"],
        **{k: ev[k] for k in ("value", "ci_low", "ci_high", "n")},
        **{k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high", "within_noise")},
        "prune_s": seconds,
    }


def cell(x: dict, digits: int) -> str:
    return f"{x['value']:.{digits}f} [{x['ci_low']:.{digits}f}, {x['ci_high']:.{digits}f}]"


def drop_cell(x: dict, digits: int) -> str:
    noise = " (within noise)" if x["within_noise"] else ""
    return f"{x['drop']:+.{digits}f} [{x['drop_ci_low']:+.{digits}f}, {x['drop_ci_high']:+.{digits}f}]{noise}"


def bench_minilm(args) -> dict:
    out: dict = {}
    (loaded, t_load) = timed(lambda: load_model("minilm-rt"))
    out["load_s"] = t_load
    data = load_classification("rotten-tomatoes")
    texts, labels = data.splits["test"]
    n_eval = args.eval_size or len(texts)
    out["eval_n"] = min(n_eval, len(texts))
    dense, t_dense = timed(lambda: evaluate(loaded, data, None, max_examples=n_eval))
    out["dense_accuracy"] = dense["value"]
    out["dense"] = summary(dense)
    out["eval_pass_s"] = t_dense
    out["padding"] = bench_padding(loaded, texts[:n_eval])
    calib = calibration_batches(loaded, None, n_samples=args.calib, seed=0)
    out["calibration_samples"] = args.calib
    # re-thresholding from cached scores (what a slider move costs)
    rethreshold = {}
    for method in ("magnitude", "wanda"):
        ranker = mask_ranker(loaded, R(method), calibration=calib)
        for g in ("layer", "row", "global"):
            ranker.masks(0.5, g)  # first call ranks the scores once
            times = []
            for s in (0.3, 0.45, 0.6, 0.75, 0.9):
                _, t = timed(lambda: ranker.masks(s, g))
                times.append(t)
            rethreshold[f"{method}/{g}"] = statistics.median(times)
    out["rethreshold_ms"] = {k: v * 1000 for k, v in rethreshold.items()}
    rows = []
    for method in METHODS:
        for gran, sparsities in (("layer", (0.5, 0.7)), ("2:4", (0.5,))):
            for s in sparsities:
                result, t = timed(lambda: prune(loaded, R(method, s, gran, seed=0), calibration=calib))
                ev = evaluate(loaded, data, result.overrides(loaded), max_examples=n_eval)
                rows.append(row(method, gran, s, dense, ev, t))
                print(f"minilm-rt {method:10s} {gran:6s} {s:.0%}: acc {ev['value']:.4f}  {t:.2f} s", flush=True)
    out["methods"] = rows
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def bench_smollm(args) -> dict:
    out: dict = {}
    (loaded, t_load) = timed(lambda: load_model("smollm2-135m"))
    out["load_s"] = t_load
    if WIKITEXT.exists():
        text = load_lm_text(str(WIKITEXT))
        out["eval_text"] = "WikiText-2 raw test (shared/data copy)"
    else:
        text = load_lm_text("rt-plots")
        out["eval_text"] = "Rotten Tomatoes plot texts (WikiText-2 not found)"
    seq_len, windows = 512, args.windows
    out["eval"] = f"{windows} windows x {seq_len} tokens"
    calib = calibration_batches(loaded, "rt-plots", n_samples=16, seq_len=256, seed=0)
    out["calibration"] = "16 x 256 tokens of the Rotten Tomatoes plot texts (train split), seed 0"

    def ppl(overrides):
        return evaluate(loaded, text, overrides, max_examples=windows)

    dense, t_eval = timed(lambda: ppl(None))
    if dense["seq_len"] != seq_len:
        raise SystemExit(f"error: evaluated on windows of {dense['seq_len']} tokens, not {seq_len}")
    out["dense_ppl"], out["eval_s"], out["dense"] = dense["value"], t_eval, summary(dense)
    print(f"smollm2 dense ppl {dense['value']:.2f} ({t_eval:.1f} s)", flush=True)
    rows = []
    for method, gran in GRANULARITIES_LM:
        result, t = timed(lambda: prune(loaded, R(method, 0.5, gran, seed=0), calibration=calib))
        ev = ppl(result.overrides(loaded))
        rows.append(row(method, gran, 0.5, dense, ev, t))
        print(f"smollm2 {method:10s} {gran:6s}: ppl {ev['value']:.2f}  {t:.1f} s", flush=True)
    out["methods"] = rows
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def to_markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Machine: {m['cpu']}, {m['threads']} torch threads, torch {m['torch']}, Python {m['python']}.", ""]
    if "minilm" in res:
        r = res["minilm"]
        lines += [
            f"**minilm-rt** (test split, n={r['eval_n']}; calibration {r['calibration_samples']} sentences, seed 0)",
            "",
            f"- dense accuracy {r['dense_accuracy']:.4f}; load {r['load_s']:.1f} s; evaluation pass {r['eval_pass_s']:.2f} s",
            f"- evaluation pass vs no padding: {r['padding']['ratio']:.2f}x "
            f"({r['padding']['padding_fraction']:.1%} padding tokens)",
            "- re-thresholding all masks from cached scores (median ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in r["rethreshold_ms"].items()),
            f"- peak memory (RSS) {r['peak_rss_mb']:.0f} MB",
            "",
            f"Dense: {cell(r['dense'], 4)} (n = {r['dense']['n']}). Accuracy with its 95% Wilson interval; "
            "drop = dense minus pruned on the same sentences, with its paired bootstrap interval.",
            "",
            "| method | granularity | sparsity | accuracy [95%] | drop vs dense [95%] | prune time (s) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['method']} | {x['granularity']} | {x['sparsity']:.0%} | {cell(x, 4)} | {drop_cell(x, 4)} | {x['prune_s']:.2f} |"
            for x in r["methods"]
        ]
        lines.append("")
    if "smollm" in res:
        r = res["smollm"]
        lines += [
            f"**smollm2-135m** perplexity on {r['eval_text']}, {r['eval']}; calibration {r['calibration']}",
            "",
            f"- dense perplexity {r['dense_ppl']:.2f}; load {r['load_s']:.1f} s; one evaluation {r['eval_s']:.1f} s",
            f"- peak memory (RSS, whole run) {r['peak_rss_mb']:.0f} MB",
            "",
            f"Dense: {cell(r['dense'], 2)} ({r['dense']['n']} windows). Perplexity with its 95% bootstrap interval over "
            "windows; increase = pruned minus dense on the same windows, with its paired bootstrap interval.",
            "",
            "| method | granularity | perplexity [95%] | increase vs dense [95%] | prune time (s) |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['method']} | {x['granularity']} 50% | {cell(x, 2)} | {drop_cell(x, 2)} | {x['prune_s']:.1f} |" for x in r["methods"]
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["minilm", "smollm"])
    parser.add_argument("--quick", action="store_true", help="smaller evaluation sets")
    parser.add_argument("--eval-size", type=int, default=None, help="minilm-rt test sentences (default: all)")
    parser.add_argument("--windows", type=int, default=32, help="smollm2 perplexity windows of 512 tokens")
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.quick:
        args.eval_size = args.eval_size or 256
        args.windows = min(args.windows, 8)
    res = {"machine": machine(), "args": vars(args)}
    if args.only in (None, "minilm"):
        res["minilm"] = bench_minilm(args)
    if args.only in (None, "smollm"):
        res["smollm"] = bench_smollm(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.only}" if args.only else ""
    (out / f"engine{suffix}.json").write_text(json.dumps(res, indent=2))
    (out / f"engine{suffix}.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
