"""The ``numerics`` choice side by side: "fast" (PruneScope's default) against "reference" (the
published Wanda and SparseGPT code's calibration arithmetic), on SmolLM2.

Protocol of bench/bench_engine.py: WikiText-2 raw test (shared/data copy), 16 windows of 512
tokens; calibration 16 x 256 tokens of the Rotten Tomatoes plot texts, seed 0. For Wanda per row
at 50%, Wanda 2:4, SparseGPT 50% (per layer) and SparseGPT 2:4, each with both numerics:

- mask agreement: the share of all mask entries on which the two numerics agree;
- each one's sparsity (the reference SparseGPT rule prunes about one extra weight per 128-column block);
- perplexity with its 95% bootstrap interval, and the paired difference reference minus fast on the
  same windows with its paired interval;
- pruning time of each, the machine's load average before and after.

The published code itself is not run here (no network): "reference" is PruneScope's rendering of
its arithmetic (docs/CLI.md, "Numerics").

    nice -n 10 python bench/bench_numerics.py            # about 10-20 minutes on 2 busy cores
    python bench/bench_numerics.py --quick               # smoke test: 2 windows, 4 calibration samples

Writes bench/results/numerics.json and bench/results/numerics.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_engine import machine  # noqa: E402  (this folder is on sys.path when run as a script)
from pruning.loading.data import calibration_batches, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import evaluate, paired_difference, summary  # noqa: E402
from pruning.masks import overall_sparsity  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.prune import prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402

WIKITEXT = [ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw", Path("/work/shared/data/wikitext-2-raw/wiki.test.raw")]
SETTINGS = [("wanda", "row"), ("wanda", "2:4"), ("sparsegpt", "layer"), ("sparsegpt", "2:4")]
NUMERICS = ("fast", "reference")


def agreement(a: dict, b: dict) -> dict:
    """Entries on which two mask sets agree, over all their layers together."""
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    total = sum(a[n].numel() for n in a)
    return {"agree": same / total, "differ": total - same, "entries": total}


def measure(quick: bool) -> dict:
    loaded = load_model("smollm2-135m")
    wiki = next((p for p in WIKITEXT if p.exists()), None)
    text = load_lm_text(str(wiki) if wiki else "rt-plots")
    windows = 2 if quick else 16
    calib_n = 4 if quick else 16
    calib = calibration_batches(loaded, "rt-plots", n_samples=calib_n, seq_len=256, seed=0)
    out: dict = {
        "machine": machine(),
        "model": "smollm2-135m",
        "eval_text": "WikiText-2 raw test (shared/data copy)" if wiki else "Rotten Tomatoes plot texts (WikiText-2 not found)",
        "eval": f"{windows} windows x 512 tokens",
        "calibration": f"{calib_n} x 256 tokens of the Rotten Tomatoes plot texts (train split), seed 0",
        "quick": quick,
    }
    load_before = [round(x, 2) for x in os.getloadavg()]
    dense = evaluate(loaded, text, None, max_examples=windows)
    out["dense"] = summary(dense)
    rows = []
    for method, gran in SETTINGS:
        runs, evals = {}, {}
        for numerics in NUMERICS:
            request = PruneRequest.make(method, 0.5, gran, seed=0, numerics=numerics)
            start = time.perf_counter()
            result = prune(loaded, request, calibration=calib)
            seconds = time.perf_counter() - start
            ev = evaluate(loaded, text, result.overrides(loaded), max_examples=windows)
            runs[numerics], evals[numerics] = (result, seconds), ev
            print(f"{method} {gran} {numerics}: ppl {ev['value']:.2f}, {seconds:.1f} s", flush=True)
        (fast, t_fast), (ref, t_ref) = runs["fast"], runs["reference"]
        diff = paired_difference(evals["fast"], evals["reference"])  # reference minus fast on the same windows
        rows.append({
            "method": method,
            "granularity": gran,
            "sparsity_asked": 0.5,
            "agreement": agreement(fast.masks, ref.masks),
            "fast": {"sparsity": overall_sparsity(fast.masks), "seconds": t_fast, **summary(evals["fast"])},
            "reference": {"sparsity": overall_sparsity(ref.masks), "seconds": t_ref, **summary(evals["reference"])},
            "reference_minus_fast": diff,
        })
    out["rows"] = rows
    out["load_avg_before"] = load_before
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _ci(x: dict, digits: int = 2) -> str:
    return f"{x['value']:.{digits}f} [{x['ci_low']:.{digits}f}, {x['ci_high']:.{digits}f}]"


def markdown(res: dict) -> str:
    """The table docs/BENCHMARKS.md shows (rendered by bench/report.py)."""
    lines = [
        f"**{res['model']}**, perplexity on {res['eval_text']}, {res['eval']}; calibration {res['calibration']}. "
        f"Dense: {_ci(res['dense'])} (n = {res['dense']['n']} windows). Perplexity with its 95% bootstrap interval over "
        "windows; the difference is reference minus fast on the same windows with its paired 95% interval. "
        "Agreement: the share of all mask entries (every pruned layer) equal under both numerics.",
        "",
        "| method | pattern | mask agreement | sparsity fast / reference | perplexity fast [95%] | perplexity reference [95%] "
        "| reference − fast [95%] | prune time fast / reference (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        f, ref, d, a = r["fast"], r["reference"], r["reference_minus_fast"], r["agreement"]
        noise = " (within noise)" if d["within_noise"] else ""
        pattern = "2:4" if r["granularity"] == "2:4" else f"{r['granularity']} 50%"
        lines.append(
            f"| {r['method']} | {pattern} | {a['agree']:.2%} ({a['differ']:,d} of {a['entries']:,d} differ) "
            f"| {f['sparsity']:.4%} / {ref['sparsity']:.4%} | {_ci(f)} | {_ci(ref)} "
            f"| {d['drop']:+.2f} [{d['drop_ci_low']:+.2f}, {d['drop_ci_high']:+.2f}]{noise} | {f['seconds']:.1f} / {ref['seconds']:.1f} |"
        )
    if res.get("quick"):
        lines += ["", "*Quick smoke run: too few windows and samples for figures.*"]
    lines += [
        "",
        "The published Wanda and SparseGPT code was not run on this machine (no network): the reference column is "
        "PruneScope's rendering of that code's arithmetic (one calibration sample per block pass, its running averages "
        "in float32, SparseGPT's per-block quantile and N:M rules, each layer solved on its own), so these figures measure "
        "how far the fast default is from it, not agreement with the published code itself.",
    ]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke test: 2 windows, 4 calibration samples (no figures)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "numerics"))
    args = p.parse_args()
    res = measure(args.quick)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out.with_suffix(".json"), json.dumps(res, indent=2))
    _write(out.with_suffix(".md"), markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
