"""Mask stability across calibration draws on the two embedded defaults, and what a stability run costs.

For each model and method at 50% (each method's own granularity): R disjoint calibration draws of the
default size (16 samples x 128 tokens, the CLI's and the app's default), one prune and one evaluation
per draw, on the app's default data (minilm-rt: Rotten Tomatoes, calibration from its train split,
accuracy on its test split; SmolLM2: the Rotten Tomatoes plot texts, calibration from their training
part, perplexity on the rest). Reported per method: the mean pairwise Jaccard of the kept sets (all
layers, and by kind of layer), the undecided share, the metric of the draws (mean, sd, t interval,
pairs of draws apart beyond evaluation noise), flips against the dense model and between draws, the
items that flip most often, and the time of the stability run against one prune and one evaluation.

    nice -n 19 python bench/bench_stability.py                    # both models, R = 8, 3 methods (long on 2 cores)
    nice -n 19 python bench/bench_stability.py --only minilm
    nice -n 19 python bench/bench_stability.py --only smollm --draws 4 --eval-size 16

Writes bench/results/stability-<model>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import machine, peak_rss_mb  # noqa: E402  (this folder is on sys.path when run as a script)
from pruning.loading.data import load_classification, load_lm_text  # noqa: E402
from pruning.analysis.flips import predict  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402
from pruning.analysis.stability import report, stability  # noqa: E402

MODELS = {
    "minilm": ("minilm-rt", lambda: load_classification("rotten-tomatoes"), 512),
    "smollm": ("smollm2-135m", lambda: load_lm_text("rt-plots"), 32),
}
METHODS = ("magnitude", "wanda", "sparsegpt")


def kind_of(layer: str) -> str:
    """The kind of a layer: its name after the block index (``bert.encoder.layer.0.attention.self.query`` ->
    ``attention.self.query``, ``model.layers.3.mlp.up_proj`` -> ``mlp.up_proj``)."""
    parts = layer.split(".")
    block = next((i for i, p in enumerate(parts) if p.isdigit()), -1)
    return ".".join(parts[block + 1 :]) or layer


def by_kind(layers: list[dict]) -> dict:
    """Mean Jaccard and undecided share per kind of layer (weighted by parameters for the share)."""
    groups = defaultdict(list)
    for r in layers:
        groups[kind_of(r["layer"])].append(r)
    out = {}
    for kind, rows in groups.items():
        n = sum(r["params"] for r in rows)
        out[kind] = {
            "layers": len(rows),
            "jaccard_mean": sum(r["jaccard"] for r in rows) / len(rows),
            "jaccard_lowest": min(r["jaccard"] for r in rows),
            "undecided": sum(r["undecided"] * r["params"] for r in rows) / n,
        }
    return out


def run_model(key: str, args, on_method=None) -> dict:
    name, data_fn, default_eval = MODELS[key]
    eval_size = args.eval_size or default_eval
    start = time.perf_counter()
    loaded = load_model(name)
    load_s = time.perf_counter() - start
    data = data_fn()
    out = {
        "machine": machine(),
        "load_average_start": os.getloadavg(),
        "model": name,
        "data": data.name,
        "eval_size": eval_size,
        "draws": args.draws,
        "kind": args.kind,
        "sparsity": args.sparsity,
        "calibration": "16 samples x 128 tokens per draw (the default size)",
        "load_s": load_s,
        "methods": {},
    }
    results = []
    t0 = time.perf_counter()
    dense = predict(loaded, data, None, max_examples=eval_size)  # once for every method
    out["dense_eval_s"] = time.perf_counter() - t0
    for method in args.methods.split(","):
        request = PruneRequest.make(method, args.sparsity)
        t0 = time.perf_counter()
        res = stability(loaded, request, draws=args.draws, kind=args.kind, data=data, max_examples=eval_size, fragile_top=10, dense=dense,
                        progress=lambda d, t, m, method=method: print(f"  {name} {method}: {d}/{t} {m}", flush=True) if "batch" not in m and "pruned" not in m else None)
        total = time.perf_counter() - t0
        results.append(res)
        prune_s = [r["seconds"] for r in res.rows]
        o, m, b = res.overall, res.metric, res.between
        out["methods"][method] = {
            "granularity": str(request.granularity),
            "verdict": res.verdict,
            "jaccard": o["jaccard"], "jaccard_sd": o["jaccard_sd"], "jaccard_min": o["jaccard_min"],
            "kept_by_all": o["kept_by_all"], "pruned_by_all": o["pruned_by_all"], "undecided": o["undecided"],
            "histogram": o["histogram"],
            "by_kind": by_kind(res.layers),
            "least_decided": [{"layer": r["layer"], "jaccard": r["jaccard"], "undecided": r["undecided"]} for r in sorted(res.layers, key=lambda r: r["jaccard"])[:5]],
            "metric": res.rows[0]["metric"], "metric_summary": m, "dense": res.dense,
            "flips_vs_dense": [r["flips"] for r in res.rows], "items": res.rows[0]["items"],
            "to_wrong": [r["to_wrong"] for r in res.rows], "to_right": [r["to_right"] for r in res.rows],
            "flips_between_draws": {k: b[k] for k in ("flips_mean", "flips_sd", "flips_min", "flips_max")},
            "fragile": res.fragile[:5],
            "seconds": {"stability_run": total, "one_prune_mean": sum(prune_s) / len(prune_s), "prunes": sum(prune_s),
                        "ratio_to_one_prune": total / max(1e-9, sum(prune_s) / len(prune_s))},
        }
        print(f"{name} {method}: {res.verdict}; Jaccard {o['jaccard']:.4f}, undecided {o['undecided']:.2%}, {total:.0f} s", flush=True)
        if on_method is not None:  # what is measured so far, written at once (a long run stopped later keeps it)
            on_method({**out, "ranking": report(name, results)["ranking"], "load_average_end": os.getloadavg(), "peak_rss_mb": peak_rss_mb(),
                       "per_layer": {r.request.method: r.layer_rows() for r in results}})
    out["ranking"] = report(name, results)["ranking"]
    out["load_average_end"] = os.getloadavg()
    out["peak_rss_mb"] = peak_rss_mb()
    out["per_layer"] = {r.request.method: r.layer_rows() for r in results}
    return out


def fmt_metric(metric: str, v: float) -> str:
    return f"{v:.4f}" if metric == "accuracy" else f"{v:.2f}"


def markdown(out: dict, note: str | None = None) -> str:
    """The report of a result file (its recorded note unless one is given); bench/report.py renders it into docs."""
    note = out.get("note", "") if note is None else note
    mc = out["machine"]
    lines = [
        f"# Stability of the mask: {out['model']}, {out['sparsity']:.0%}, R = {out['draws']} {out['kind']} draws",
        "",
        f"Machine: {mc.get('cpu')}, {mc.get('threads')} torch threads, torch {mc.get('torch')}; load average at start "
        f"{out['load_average_start'][0]:.1f}, at end {out['load_average_end'][0]:.1f} (2 cores shared with other work: times are upper bounds).",
        f"Data: {out['data']} (calibration from its training part; evaluation on {out['eval_size']} items). Calibration: {out['calibration']}.",
        "",
    ]
    if note:
        lines += [note, ""]
    lines += [
        "| method | mean Jaccard (sd, lowest pair) | kept by all | pruned by all | undecided | metric mean [95% t] (sd) | pairs beyond noise | flips vs dense | flips between draws | run / one prune |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in out["methods"].items():
        m, metric = r["metric_summary"], r["metric"]
        fb = r["flips_between_draws"]
        s = r["seconds"]
        lines.append(
            f"| {method} ({r['granularity']}) | {r['jaccard']:.4f} ({r['jaccard_sd']:.4f}, {r['jaccard_min']:.4f}) | {r['kept_by_all']:.2%} | "
            f"{r['pruned_by_all']:.2%} | {r['undecided']:.2%} | {metric} {fmt_metric(metric, m['mean'])} [{fmt_metric(metric, m['mean_ci_low'])}, "
            f"{fmt_metric(metric, m['mean_ci_high'])}] ({m['sd']:.3g}) | {m['pairs_beyond_noise']}/{m['pairs']} | "
            f"{min(r['flips_vs_dense']):.2%}-{max(r['flips_vs_dense']):.2%} of {r['items']:,} | {fb['flips_mean']:.2%} ({fb['flips_min']:.2%}-{fb['flips_max']:.2%}) | "
            f"{s['stability_run']:.0f} s / {s['one_prune_mean']:.1f} s |"
        )
    dense = next(iter(out["methods"].values()))["dense"]
    lines += ["", f"Dense {dense['metric']}: {fmt_metric(dense['metric'], dense['value'])} [{fmt_metric(dense['metric'], dense['ci_low'])}, {fmt_metric(dense['metric'], dense['ci_high'])}] (n = {dense['n']}).", ""]
    lines += ["Verdicts:", ""] + [f"- {m}: {r['verdict']}" for m, r in out["methods"].items()]
    lines += ["", "Ranked by stability (mean Jaccard): " + ", ".join(f"{r['rank']}. {r['method']} ({r['jaccard']:.4f})" for r in out["ranking"]), ""]
    lines += ["## By kind of layer (mean Jaccard over the layers of that kind; lowest layer; undecided share)", ""]
    kinds = list(dict.fromkeys(k for r in out["methods"].values() for k in r["by_kind"]))
    lines += ["| kind | " + " | ".join(out["methods"]) + " |", "|---|" + "---|" * len(out["methods"])]
    for k in kinds:
        cells = []
        for r in out["methods"].values():
            g = r["by_kind"].get(k)
            cells.append("" if g is None else f"{g['jaccard_mean']:.4f} (low {g['jaccard_lowest']:.4f}; {g['undecided']:.1%})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "## Cost", ""]
    for method, r in out["methods"].items():
        s = r["seconds"]
        shared = "dense_eval_s" in out  # the dense evaluation made once for every method (else inside each run)
        evals = out["draws"] + (0 if shared else 1)
        per_eval = (s["stability_run"] - s["prunes"]) / evals  # the summary is small beside the evaluations
        one = s["one_prune_mean"] + per_eval
        lines.append(f"- {method}: stability run {s['stability_run']:.0f} s for {out['draws']} draws: prunes {s['prunes']:.0f} s, the rest "
                     f"{evals} evaluations ({'each draw; the dense one, ' + format(out['dense_eval_s'], '.0f') + ' s, is shared' if shared else 'dense and each draw'}, about {per_eval:.0f} s each) and the summary. One prune "
                     f"{s['one_prune_mean']:.1f} s; one prune and its evaluation about {one:.0f} s, so the run costs about "
                     f"{s['stability_run'] / one:.1f}x a single evaluated prune ({s['ratio_to_one_prune']:.0f}x the prune alone).")
    lines += ["", f"Peak memory (RSS, whole run): {out['peak_rss_mb']:.0f} MB. Load {out['load_s']:.1f} s.", "", "## Most often flipped items (against dense)", ""]
    for method, r in out["methods"].items():
        if not r["fragile"]:
            lines.append(f"- {method}: none.")
            continue
        for f in r["fragile"][:3]:
            text = f["text"].replace("|", "/").replace("\n", " ")[:90]
            lines.append(f"- {method}: \"{text}\" (truth {f['truth']}, dense {f['reference']}): flipped in {f['flipped']}/{f['draws']} draws, "
                         f"{f['to_wrong']} to wrong, {f['to_right']} to right; pruned answers {f['answers']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=list(MODELS))
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--kind", default="calib")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--eval-size", type=int, help="items evaluated (default: 512 sentences for minilm-rt, 32 windows for SmolLM2)")
    p.add_argument("--note", default="", help="a line for the report (e.g. what was reduced and why)")
    p.add_argument("--markdown-only", action="store_true", help="write the .md again from the .json of an earlier run")
    args = p.parse_args()
    threads = os.environ.get("PRUNESCOPE_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    out_dir = ROOT / "bench" / "results"
    if args.markdown_only:
        for key in [args.only] if args.only else list(MODELS):
            out = json.loads((out_dir / f"stability-{key}.json").read_text())
            (out_dir / f"stability-{key}.md").write_text(markdown(out, args.note or None))
        return
    for key in [args.only] if args.only else list(MODELS):
        def write(out, key=key):
            out["note"] = args.note
            (out_dir / f"stability-{key}.json").write_text(json.dumps(out, indent=2, default=str))
            (out_dir / f"stability-{key}.md").write_text(markdown(out, args.note))
            print(f"wrote bench/results/stability-{key}.json and .md", flush=True)

        write(run_model(key, args, on_method=write))


if __name__ == "__main__":
    main()
