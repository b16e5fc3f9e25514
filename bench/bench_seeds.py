"""Benchmark of the seed methods against their baselines at the same budget (embedded defaults).

  randomized  minilm-rt accuracy at 70% and 90% (per-layer): magnitude one-shot vs randomized
              with cheap selection (no training, same as magnitude's cost class); magnitude
              mask fine-tuned for N steps vs randomized with early selection spending the
              same N steps in all (K candidates x steps + final steps).
  mgpp        minilm-rt accuracy at 70% and 90% (global): MGPP vs GMP, same schedule and steps.
  sds         smollm2-135m perplexity and minilm-rt accuracy at 2:4 and 50% (per-layer):
              one-shot SparseGPT / Wanda vs SDS started from it.

Every number is printed with its evaluation size, seed and budget. Evaluation is on the
test split (minilm-rt) or the WikiText-2 copy in ../shared/data (smollm2; the embedded
rt-plots text when it is absent); selection and monitoring inside the methods only ever
use the TRAINING data.

    python bench/bench_seeds.py --quick              # reduced budgets and evaluation sets
    python bench/bench_seeds.py --only sds --quick
    python bench/bench_seeds.py --only minilm         # every minilm-rt comparison, full budgets
    python bench/bench_seeds.py                      # the full comparison (an hour or more on 2 cores)

Writes bench/results/seeds[-ONLY][-quick].json and .md, updated after every row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import threads  # noqa: E402

threads.prepare()  # the entry point's OpenMP wait settings, before torch loads (pruning/threads.py)

import torch  # noqa: E402

threads.apply()

from bench_engine import commit, machine  # noqa: E402  (this folder is on sys.path when run as a script)
from pruning.loading.data import calibration_batches, load_classification, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import evaluate, paired_difference  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.prune import prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402

R = PruneRequest.make
from pruning.procedures import training as T  # noqa: E402

WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"


class Table:
    """Rows written to JSON and markdown after every addition (a long run keeps what it measured)."""

    def __init__(self, args):
        self.args = args
        suffix = (f"-{args.only}" if args.only else "") + ("-quick" if args.quick else "")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        self.json_path, self.md_path = out / f"seeds{suffix}.json", out / f"seeds{suffix}.md"
        self.res = {"machine": machine(), "commit": _commit(), "args": vars(args), "rows": []}

    def add(self, ev: dict, vs: tuple[str, dict] | None = None, **row):
        """One row: ``ev`` (an ``evaluate()`` result) gives value, 95% interval and n; ``vs``
        (label, baseline evaluation on the same items) gives the paired drop against it."""
        row.update({k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")})
        if vs is not None:
            diff = paired_difference(vs[1], ev)
            row.update({"vs": vs[0], **{k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high", "within_noise")}})
        self.res["rows"].append(row)
        print(" | ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
        self.json_path.write_text(json.dumps(self.res, indent=2, default=float))
        self.md_path.write_text(self.markdown())

    def markdown(self) -> str:
        return markdown(self.res)


def markdown(res: dict) -> str:
    """The seed table of a result file (bench/report.py renders it into docs/BENCHMARKS.md)."""
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['threads']} torch threads, torch {m['torch']}, Python {m['python']}. "
        f"Commit {res['commit']}. Arguments: {json.dumps(res['args'])}",
        "",
        "Every value with its 95% interval (accuracy: Wilson; perplexity: bootstrap over windows); `drop` is the "
        "paired difference against the row named in `vs` on the same items (positive: this row is worse), with "
        "its paired bootstrap interval.",
        "",
        "| section | model | method | granularity | sparsity | metric | value [95%] | vs | drop [95%] | eval size | seed | budget | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        drop = "-"
        if "drop" in r:
            noise = " (within noise)" if r["within_noise"] else ""
            drop = f"{r['drop']:+.4f} [{r['drop_ci_low']:+.4f}, {r['drop_ci_high']:+.4f}]{noise}"
        lines.append(
            f"| {r['section']} | {r['model']} | {r['method']} | {r['granularity']} | {_fmt(r['sparsity'])} | {r['metric']} | "
            f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {r.get('vs', '-')} | {drop} | {r['eval']} | "
            f"{r['seed']} | {r['budget']} | {_fmt(r['seconds'])} |"
        )
    return "\n".join(lines) + "\n"


def _commit() -> str:
    return commit()


def _fmt(v):
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ---------------------------------------------------------------- minilm-rt helpers
class Classifier:
    def __init__(self, args):
        self.loaded = load_model("minilm-rt")
        self.data = load_classification("rotten-tomatoes")
        n_test = len(self.data.split("test")[0])
        self.n_eval = min(args.eval_size or n_test, n_test)
        self.eval = f"test n={self.n_eval}"
        self.dense = self.accuracy(None)

    def accuracy(self, result) -> dict:
        over = None if result is None else result.overrides(self.loaded)
        return evaluate(self.loaded, self.data, over, max_examples=self.n_eval, split="test")


def bench_randomized(args, table: Table, clf: Classifier):
    seed = args.seed
    k, steps, final = (3, 10, 30) if args.quick else (4, 20, 80)
    params = {"k": k, "steps": steps, "final_steps": final, "eval_every": 5 if args.quick else 10, "randomness": args.randomness}
    total = k * steps + final
    task = T.task_data(clf.loaded, clf.data, holdout=256, batch_size=16, seed=seed)
    common = {"section": "randomized", "model": "minilm-rt", "granularity": "layer", "eval": clf.eval, "seed": seed}
    for s in args.sparsities:
        mag, t = timed(lambda: prune(clf.loaded, R("magnitude", s, "layer", seed=seed)))
        mag_ev = clf.accuracy(mag)
        table.add(mag_ev, ("dense", clf.dense), **common, method="magnitude one-shot", sparsity=s, budget="no training", seconds=t)
        cheap, t = timed(lambda: prune(clf.loaded, R("randomized", s, "layer", params={**params, "selection": "cheap"}, seed=seed), data=clf.data))
        table.add(
            clf.accuracy(cheap), ("magnitude one-shot", mag_ev), **common, method=f"randomized cheap (K={k}, r={args.randomness})",
            sparsity=s, budget="no training; selection on 256 held-out train sentences", seconds=t,
        )
        ft, t = timed(lambda: T.finetune_masked(clf.loaded, mag.masks, task, total, method="magnitude+ft", seed=seed))
        ft_ev = clf.accuracy(ft)
        table.add(ft_ev, ("dense", clf.dense), **common, method="magnitude + fine-tune", sparsity=s, budget=f"{total} steps x 16", seconds=t)
        early, t = timed(lambda: prune(clf.loaded, R("randomized", s, "layer", params={**params, "selection": "early"}, seed=seed), data=clf.data))
        table.add(
            clf.accuracy(early), ("magnitude + fine-tune", ft_ev), **common, method=f"randomized early (K={k}, r={args.randomness})",
            sparsity=s, budget=f"{total} steps x 16 ({k}x{steps} + {final})", seconds=t,
        )


def bench_mgpp(args, table: Table, clf: Classifier):
    seed = args.seed
    params = {"steps": 60, "t0": 10, "t1": 40, "interval": 5, "history_points": 3} if args.quick else {"steps": 200, "t0": 30, "t1": 140, "interval": 10}
    common = {"section": "mgpp", "model": "minilm-rt", "granularity": "global", "eval": clf.eval, "seed": seed}
    budget = f"{params['steps']} steps x 16, t0={params['t0']}, t1={params['t1']}, every {params['interval']}"
    for s in args.sparsities:
        base = ("dense", clf.dense)
        for method in ("gmp", "mgpp"):
            result, t = timed(lambda: prune(clf.loaded, R(method, s, "global", params=params, seed=seed), data=clf.data))
            ev = clf.accuracy(result)
            table.add(ev, base, **common, method=method, sparsity=s, budget=budget, seconds=t)
            base = ("gmp", ev)


def sds_params(args, base: str) -> dict:
    params = {"base": base, "track_metric": False}
    if args.sds_iters is not None:
        params["iters"] = args.sds_iters
    if args.sds_adjust_iters is not None:
        params["adjust_iters"] = args.sds_adjust_iters
    return params


def bench_sds_classifier(args, table: Table, clf: Classifier):
    seed = args.seed
    calib = calibration_batches(clf.loaded, None, n_samples=args.calib, seed=seed)
    common = {"section": "sds", "model": "minilm-rt", "eval": clf.eval, "seed": seed}
    budget = f"calibration {args.calib} sentences"
    sds_pairs(args, table, clf.loaded, clf.accuracy, clf.dense, calib, common, budget)


def sds_pairs(args, table: Table, loaded, evaluate_result, dense: dict, calib, common: dict, budget: str) -> None:
    """Each base method one-shot (against dense) and SDS started from it (against that one-shot)."""
    seed = args.seed
    for base in args.sds_bases:
        for gran in args.sds_granularities:
            one, t = timed(lambda: prune(loaded, R(base, 0.5, gran, seed=seed), calibration=calib))
            one_ev = evaluate_result(one)
            table.add(one_ev, ("dense", dense), **common, method=base, granularity=gran, sparsity=0.5, budget=budget, seconds=t)
            sds, t = timed(lambda: prune(loaded, R("sds", 0.5, gran, params=sds_params(args, base), seed=seed), calibration=calib))
            p = sds.info["params"]
            table.add(
                evaluate_result(sds), (base, one_ev), **common, method=f"sds from {base}", granularity=gran, sparsity=0.5,
                budget=f"{budget}; {p['iters']} dense + {p['adjust_iters']} adjust iterations, rule {p.get('adjust_rule', '-')}",
                seconds=t,
            )


def bench_sds_lm(args, table: Table):
    seed = args.seed
    loaded = load_model("smollm2-135m")
    if WIKITEXT.exists():
        text, name = load_lm_text(str(WIKITEXT)), "WikiText-2 test (shared copy)"
    else:
        text, name = load_lm_text("rt-plots"), "rt-plots eval text"
    seq_len, windows = 512, args.windows
    calib = calibration_batches(loaded, "rt-plots", n_samples=args.calib, seq_len=256, seed=seed)

    def ppl(result):
        ev = evaluate(loaded, text, None if result is None else result.overrides(loaded), max_examples=windows)
        if ev["seq_len"] != seq_len:
            raise SystemExit(f"error: evaluated on windows of {ev['seq_len']} tokens, not {seq_len}")
        return ev

    common = {"section": "sds", "model": "smollm2-135m", "eval": f"{name}, {windows}x{seq_len} tokens", "seed": seed}
    budget = f"calibration {args.calib}x256 tokens of rt-plots train text"
    dense, t = timed(lambda: ppl(None))
    table.add(dense, **common, method="dense", granularity="-", sparsity=0.0, budget="-", seconds=t)
    sds_pairs(args, table, loaded, ppl, dense, calib, common, budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["randomized", "mgpp", "sds", "sds-lm", "sds-classifier", "minilm"])
    parser.add_argument("--quick", action="store_true", help="reduced budgets and evaluation sets")
    parser.add_argument("--eval-size", type=int, default=None, help="minilm-rt test sentences (default: all)")
    parser.add_argument("--windows", type=int, default=32, help="smollm2 perplexity windows of 512 tokens")
    parser.add_argument("--calib", type=int, default=16, help="calibration samples")
    parser.add_argument("--sparsities", default="0.7,0.9", help="sparsities of the randomized and MGPP comparisons")
    parser.add_argument("--randomness", type=float, default=1e-4)
    parser.add_argument("--sds-bases", default="sparsegpt,wanda")
    parser.add_argument("--sds-granularities", default="2:4,layer")
    parser.add_argument("--sds-iters", type=int, default=None, help="dense-step iterations (default: the method's)")
    parser.add_argument("--sds-adjust-iters", type=int, default=None, help="adjustment iterations (default: the method's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    args.sparsities = [float(x) for x in args.sparsities.split(",") if x.strip()]
    args.sds_bases = [x.strip() for x in args.sds_bases.split(",") if x.strip()]
    args.sds_granularities = [x.strip() for x in args.sds_granularities.split(",") if x.strip()]
    if args.quick:
        args.eval_size = args.eval_size or 300
        args.windows = min(args.windows, 8)
    table = Table(args)
    only = args.only
    clf = None
    if only in (None, "randomized", "mgpp", "sds", "sds-classifier", "minilm"):
        clf = Classifier(args)
        table.add(
            clf.dense, section="dense", model="minilm-rt", method="dense", granularity="-", sparsity=0.0,
            eval=clf.eval, seed=args.seed, budget="-", seconds=0.0,
        )
    if only in (None, "sds", "sds-classifier", "minilm"):
        bench_sds_classifier(args, table, clf)
    if only in (None, "mgpp", "minilm"):
        bench_mgpp(args, table, clf)
    if only in (None, "randomized", "minilm"):
        bench_randomized(args, table, clf)
    if only in (None, "sds", "sds-lm"):
        bench_sds_lm(args, table)
    print(table.markdown())


if __name__ == "__main__":
    main()
