"""Paired comparisons of the engine's choices (issue 8), every row with its 95% intervals.

Sections (each row: setting A, setting B, both metrics with intervals, and the paired
harm of B against A on the same examples / windows, with "within noise" when its
interval covers 0):

  order      statistics order of Wanda and SparseGPT: one pass per block (the reference,
             default) against per layer ("sequential", PruneScope's former order).
  sds        SDS step 3: the paper's rule (default) against the best-iterate rule.
  allocation the allocation suggested by Layer sensitivity (KL signal; per layer at 50/70/90%,
             minilm-rt 256 validation sentences, SmolLM2 --sens-windows windows, default 16) at 50% and 70% against
             uniform per-layer pruning at the same overall sparsity: magnitude and Wanda on
             minilm-rt, Wanda on SmolLM2.

    python bench/bench_choices.py                       # every section on minilm-rt and SmolLM2 (long)
    python bench/bench_choices.py --only order --models smollm
    python bench/bench_choices.py --quick               # smoke test: tiny evaluation sets, no figures

minilm-rt is evaluated on the Rotten Tomatoes test split (1,281 sentences) and calibrates
on its train split; SmolLM2 on WikiText-2 raw test (shared/data copy; alone, the file is
halved: the first half is evaluated, calibration draws from the second), else rt-plots.
Writes bench/results/choices.json and bench/results/choices.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_engine import machine  # noqa: E402  (this folder is on sys.path when run as a script)
from bench_sensitivity import write_results  # noqa: E402
from pruning.loading.data import calibration_batches, load_classification, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import evaluate, paired_difference, summary  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.loading.models import prunable_layers  # noqa: E402
from pruning.prune import prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402
from pruning.analysis.sensitivity import layer_sensitivity, suggest_allocation  # noqa: E402

WIKITEXT = [ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw", Path("/work/shared/data/wikitext-2-raw/wiki.test.raw")]


class Setup:
    """A model with its evaluation data, calibration batches and dense evaluation."""

    def __init__(self, name: str, quick: bool, windows: int):
        self.name = name
        self.loaded = load_model(name)
        if self.loaded.task == "causal-lm":
            wiki = next((p for p in WIKITEXT if p.exists()), None)
            self.data = load_lm_text(str(wiki) if wiki else "rt-plots")
            self.n = 2 if quick else windows
            self.calibration = calibration_batches(self.loaded, self.data, n_samples=4 if quick else 16, seq_len=256)
        else:
            self.data = load_classification("rotten-tomatoes")
            self.n = 64 if quick else None
            self.calibration = calibration_batches(self.loaded, self.data, n_samples=16 if quick else 128)
        self.dense = evaluate(self.loaded, self.data, max_examples=self.n)

    def run(self, method: str, sparsity, granularity: str | None, params: dict | None = None, data=None, allocation=None):
        """(evaluation, seconds) of one pruning; ``allocation`` ({layer: sparsity}) replaces the granularity."""
        request = PruneRequest.make(method, sparsity, granularity, params, allocation=allocation)
        start = time.perf_counter()
        result = prune(self.loaded, request, calibration=self.calibration, data=data)
        seconds = time.perf_counter() - start
        return evaluate(self.loaded, self.data, result.overrides(self.loaded), max_examples=self.n), seconds


def pair_row(setup: Setup, what: str, a_label: str, a: tuple, b_label: str, b: tuple) -> dict:
    """One comparison: A and B with their intervals, and B's paired harm against A."""
    (ev_a, t_a), (ev_b, t_b) = a, b
    diff = paired_difference(ev_a, ev_b)
    row = {"model": setup.name, "comparison": what, "metric": ev_a["metric"], "n": ev_a["n"], "dense": summary(setup.dense)}
    row["a"] = {"setting": a_label, **{k: ev_a[k] for k in ("value", "ci_low", "ci_high")}, "prune_s": round(t_a, 1)}
    row["b"] = {"setting": b_label, **{k: ev_b[k] for k in ("value", "ci_low", "ci_high")}, "prune_s": round(t_b, 1)}
    row.update({k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high", "within_noise")})
    print(f"{setup.name} {what}: {a_label} {ev_a['value']:.4f} vs {b_label} {ev_b['value']:.4f}, "
          f"harm of B {diff['drop']:+.4f} [{diff['drop_ci_low']:+.4f}, {diff['drop_ci_high']:+.4f}]", flush=True)
    return row


def order_rows(setup: Setup) -> list[dict]:
    points = [("wanda", 0.5, "row"), ("wanda", 0.7, "row"), ("sparsegpt", 0.5, "layer"), ("sparsegpt", 0.5, "2:4")]
    rows = []
    for method, sparsity, gran in points:
        block = setup.run(method, sparsity, gran, {"order": "block"})
        sequential = setup.run(method, sparsity, gran, {"order": "sequential"})
        rows.append(pair_row(setup, f"{method} {gran} {sparsity:.0%} order", "block", block, "sequential", sequential))
    return rows


def sds_rows(setup: Setup, quick: bool) -> list[dict]:
    task = load_classification("rotten-tomatoes") if setup.loaded.task == "classification" else setup.data
    rows = []
    for base in ("wanda", "sparsegpt"):
        params = {"base": base, "track_metric": False, **({"iters": 5, "adjust_iters": 3} if quick else {})}
        paper = setup.run("sds", 0.5, "2:4", {**params, "adjust_rule": "paper"}, data=task)
        best = setup.run("sds", 0.5, "2:4", {**params, "adjust_rule": "best"}, data=task)
        rows.append(pair_row(setup, f"sds from {base} 2:4 step-3 rule", "paper", paper, "best iterate", best))
    return rows


def kl_allocations(loaded, data, method: str, calibration, targets, max_examples: int, checkpoint=None) -> dict[float, dict]:
    """Layer sensitivity of ``method`` (KL, the page's defaults: each layer alone at 50/70/90%, per layer) on
    ``max_examples`` validation sentences or windows, and the allocation it suggests at each target
    (bench/bench_compare.py uses it too). ``checkpoint``: a path that makes the sensitivity run resumable."""
    params = {i.name: i.params for i in prunable_layers(loaded.model)}
    request = PruneRequest.make(method, granularity="layer")
    sens = layer_sensitivity(loaded, data, request, (0.5, 0.7, 0.9), calibration=calibration, max_examples=max_examples,
                             checkpoint=checkpoint)
    return {target: suggest_allocation(sens, target, params) for target in targets}


def allocation_rows(setup: Setup, methods, quick: bool, sens_windows: int = 16) -> list[dict]:
    """Layer sensitivity (KL, the page's defaults: per layer at 50/70/90%) of each method, its suggested
    allocation at 50% and 70%, and that allocation against uniform per-layer pruning at the same mean.
    The sensitivity run measures on 256 validation sentences (minilm-rt) or ``sens_windows`` windows."""
    sens_data = load_classification("rotten-tomatoes") if setup.loaded.task == "classification" else setup.data
    rows = []
    for method in methods:
        allocations = kl_allocations(setup.loaded, sens_data, method, setup.calibration, (0.5, 0.7),
                                     16 if quick else (256 if setup.loaded.task == "classification" else sens_windows))
        for target in (0.5, 0.7):
            alloc = allocations[target]
            uniform = setup.run(method, target, "layer")
            allocated = setup.run(method, target, None, allocation=alloc)
            rows.append(pair_row(setup, f"{method} {target:.0%} allocation (KL)", "uniform", uniform, "allocated", allocated))
    return rows


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['threads']} torch threads. Harm of B: B's paired drop against A (positive: B worse).", ""]
    lines += ["| model | comparison | n | A | B | harm of B (95% CI) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        a, b = r["a"], r["b"]
        noise = " within noise" if r["within_noise"] else ""
        lines.append(
            f"| {r['model']} | {r['comparison']} | {r['n']} | {a['setting']} {a['value']:.4f} [{a['ci_low']:.4f}, {a['ci_high']:.4f}] "
            f"| {b['setting']} {b['value']:.4f} [{b['ci_low']:.4f}, {b['ci_high']:.4f}] "
            f"| {r['drop']:+.4f} [{r['drop_ci_low']:+.4f}, {r['drop_ci_high']:+.4f}]{noise} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["order", "sds", "allocation"])
    p.add_argument("--models", default="minilm,smollm", help="comma-separated: minilm, smollm")
    p.add_argument("--windows", type=int, default=32, help="SmolLM2 perplexity windows of 512 tokens")
    p.add_argument("--sens-windows", type=int, default=16, help="SmolLM2 windows the allocation's sensitivity run measures KL on")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny evaluation and calibration sets (no figures)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "choices"))
    args = p.parse_args()
    names = {"minilm": "minilm-rt", "smollm": "smollm2-135m"}
    rows = []
    for key in [k.strip() for k in args.models.split(",") if k.strip()]:
        setup = Setup(names[key], args.quick, args.windows)
        if args.only in (None, "order"):
            rows += order_rows(setup)
        if args.only in (None, "sds"):
            rows += sds_rows(setup, args.quick)
        if args.only in (None, "allocation"):
            rows += allocation_rows(setup, ["magnitude", "wanda"] if key == "minilm" else ["wanda"], args.quick, args.sens_windows)
    result = {"machine": machine(), "quick": args.quick, "rows": rows}
    write_results(result, Path(args.out), markdown)


if __name__ == "__main__":
    main()
