"""The three choices measured (issue 20): criterion x update, and Wanda's allocation, at 50% and 70%.

Per model and sparsity, one run of :func:`pruning.analysis.compare.compare` (the engine behind
`python -m pruning compare` and the Compare view):

  criterion x update  magnitude, Wanda, RIA, SparseGPT, each with update none / OBS / DSnoT, uniform
                      per layer (granularity "layer" for every cell, so only the named choice differs);
  allocation          Wanda (update none) with OWL (its paper's M = 5, lambda = 0.08) and with the KL
                      allocation that Layer sensitivity measures (bench/bench_choices.py's kl_allocations:
                      Wanda, each layer alone at 50/70/90%, on held-out text), against uniform per layer.

Every cell: the metric with its 95% interval and n, the paired difference against the reference
cell wanda+none on the same windows / sentences ("within noise" when its interval covers 0), the
achieved sparsity, the mean reconstruction error, pruning and evaluation seconds, and the 1-minute
load average before and after it.

  smollm   SmolLM2-135M, the engine bench's protocol (bench/bench_engine.py): WikiText-2 raw test
           (shared/data copy), 16 windows x 512 tokens; calibration 16 x 256 tokens of the Rotten
           Tomatoes plot texts (train split), seed 0. KL allocation: sensitivity on --sens-windows
           windows of the file's other half.
  minilm   minilm-rt, accuracy on the Rotten Tomatoes test split (all 1,281 sentences); calibration
           16 train sentences, seed 0 (the engine bench's); KL allocation on 256 validation sentences.

    nice -n 10 python bench/bench_compare.py --models smollm
    python bench/bench_compare.py --models minilm --quick      # smoke test, no figures

Resumable: each cell is appended to out/bench-compare/<model>-<sparsity>.jsonl (and the sensitivity
run to out/bench-compare/<model>-kl-<examples>.jsonl) as it finishes; a rerun redoes only what is missing.
Writes bench/results/compare-<model>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_choices import WIKITEXT, kl_allocations  # noqa: E402  (this folder is on sys.path when run as a script)
from bench_engine import machine  # noqa: E402
from bench_sensitivity import write_results  # noqa: E402
from pruning.store.checkpoint import Checkpoint  # noqa: E402
from pruning.analysis.compare import Cell, compare, fixed_allocation, matrix, rule_allocation  # noqa: E402
from pruning.loading.data import calibration_batches, load_classification, load_lm_text  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402

CRITERIA = ["magnitude", "wanda", "ria", "sparsegpt"]
UPDATES = ["none", "obs", "dsnot"]
REFERENCE = "wanda+none"
NAMES = {"minilm": "minilm-rt", "smollm": "smollm2-135m"}
PARTIAL = ROOT / "out" / "bench-compare"


def setup(key: str, quick: bool, windows: int):
    """(loaded, evaluation data, calibration, max_examples, sensitivity data, protocol)."""
    loaded = load_model(NAMES[key])
    if loaded.task == "causal-lm":
        wiki = next((p for p in WIKITEXT if p.exists()), None)
        data = load_lm_text(str(wiki) if wiki else "rt-plots")
        calib = calibration_batches(loaded, "rt-plots", n_samples=4 if quick else 16, seq_len=256, seed=0)
        n = 2 if quick else windows
        protocol = {
            "eval": f"perplexity on {'WikiText-2 raw test (shared/data copy)' if wiki else 'rt-plots (WikiText-2 not found)'}, "
            f"{n} windows x 512 tokens",
            "calibration": f"{4 if quick else 16} x 256 tokens of the Rotten Tomatoes plot texts (train split), seed 0",
        }
        return loaded, data, calib, n, data, protocol
    data = load_classification("rotten-tomatoes")
    calib = calibration_batches(loaded, None, n_samples=16, seed=0)
    n = 64 if quick else None
    protocol = {"eval": f"accuracy on the Rotten Tomatoes test split ({'64' if quick else 'all'} sentences)",
                "calibration": "16 train sentences, seed 0"}
    return loaded, data, calib, n, data, protocol


def cells_for(kl: dict | None) -> list[Cell]:
    cells = matrix(CRITERIA, UPDATES) + [Cell("wanda", "none", rule_allocation("owl"))]
    if kl is not None:
        cells.append(Cell("wanda", "none", fixed_allocation("kl", kl)))
    return cells


def run_model(key: str, args) -> dict:
    loaded, data, calib, n, sens_data, protocol = setup(key, args.quick, args.windows)
    PARTIAL.mkdir(parents=True, exist_ok=True)
    tag = f"{key}{'-quick' if args.quick else ''}"
    classifier = loaded.task == "classification"
    sens_n = (16 if classifier else 1) if args.quick else (256 if classifier else args.sens_windows)
    out = {"model": loaded.name, **protocol, "granularity": "layer", "reference": REFERENCE, "criteria": CRITERIA,
           "updates": UPDATES, "kl_sensitivity": f"Wanda, each layer alone at 50/70/90%, KL on {sens_n} held-out "
           f"{'sentences (validation split)' if loaded.task == 'classification' else 'windows (the text not evaluated)'}",
           "runs": []}
    start_load = [round(x, 2) for x in os.getloadavg()]
    checkpoints, bases = {}, {}
    for sparsity in args.sparsities:
        header = {"bench": "compare", "model": loaded.name, "sparsity": sparsity, "n": n, "kl_examples": sens_n, "quick": args.quick, **protocol}
        checkpoints[sparsity] = Checkpoint(PARTIAL / f"{tag}-{sparsity:g}.jsonl", header, ("cell", "metric", "per_item"),
                                           warn=lambda m: print("warning:", m, flush=True), note=lambda m: print("note:", m, flush=True))
        checkpoints[sparsity].begin()
        bases[sparsity] = PruneRequest.make("magnitude", sparsity, "layer", calib_samples=len(calib), calib_len=256, update="none")

    def say(row):
        print(f"{loaded.name} {row['cell']:24s} {row.get('value') or 0:.4f} [{row.get('ci_low') or 0:.4f}, {row.get('ci_high') or 0:.4f}] "
              f"vs ref {row.get('drop') or 0:+.4f} {row.get('verdict') or row.get('reason')}; sparsity {row.get('sparsity')}; "
              f"{row.get('seconds') or 0:.1f} s; load {row.get('load_before')} -> {row.get('load_after')}", flush=True)

    # the matrix and OWL at every sparsity first (resumable), then the sensitivity run, then the KL cells (the rest resumed)
    if args.stage in ("all", "matrix"):
        for sparsity in args.sparsities:
            if args.reverse:  # a second worker on the same checkpoint, from the other end (pairs are computed when written)
                compare(loaded, bases[sparsity], cells_for(None)[::-1], data, None, calibration=calib, max_examples=n, dense=False,
                        on_cell=say, checkpoint=checkpoints[sparsity])
                continue
            compare(loaded, bases[sparsity], cells_for(None), data, REFERENCE, calibration=calib, max_examples=n, dense=False,
                    on_cell=say, checkpoint=checkpoints[sparsity])
    if args.stage == "matrix":
        return None
    kl = None
    kl_path = PARTIAL / f"{tag}-kl-{sens_n}.jsonl"
    if args.stage == "write" and not args.no_kl:  # the KL cell only when its sensitivity run has finished (stage kl)
        from pruning.loading.models import prunable_layers

        points = {(r.get("layer"), r.get("sparsity")) for r in Checkpoint(kl_path).rows()}
        if len(points) < 1 + 3 * len(prunable_layers(loaded.model)):
            args.no_kl = True
            out["kl_sensitivity"] = f"not measured: its sensitivity run ({out['kl_sensitivity']}) had {len(points)} of " \
                f"{1 + 3 * len(prunable_layers(loaded.model))} points when the time was up"
    if not args.no_kl:
        started = time.perf_counter()
        kl_load = [round(x, 2) for x in os.getloadavg()]
        kl = kl_allocations(loaded, sens_data, "wanda", calib, args.sparsities, sens_n, checkpoint=kl_path)
        out["kl_seconds_this_run"] = round(time.perf_counter() - started, 1)
        out["kl_load"] = {"before": kl_load, "after": [round(x, 2) for x in os.getloadavg()]}
    elif "not measured" not in out["kl_sensitivity"]:
        out["kl_sensitivity"] = "not measured in this run (--no-kl: the sensitivity run did not fit the time)"
    if args.stage == "kl":
        if kl is not None:  # the KL cells now (the reference resumed, or computed when the matrix has not reached it)
            for sparsity in args.sparsities:
                compare(loaded, bases[sparsity], [Cell("wanda", "none"), cells_for(kl[sparsity])[-1]], data, REFERENCE,
                        calibration=calib, max_examples=n, dense=False, on_cell=say, checkpoint=checkpoints[sparsity])
        return None
    out["not_measured"] = {}
    for sparsity in args.sparsities:
        cells = cells_for(None if kl is None else kl[sparsity])
        if args.stage == "write":  # the finished cells only (and the KL cell, computed now if need be)
            done = {r["cell"] for r in checkpoints[sparsity].rows()}
            missing = [c.label for c in cells if c.label not in done and not c.label.endswith("@kl")]
            out["not_measured"][f"{sparsity:g}"] = missing
            cells = [c for c in cells if c.label not in missing]
        res = compare(loaded, bases[sparsity], cells, data, REFERENCE, calibration=calib, dense=not args.no_dense,
                      max_examples=n, on_cell=say, checkpoint=checkpoints[sparsity])
        out["runs"].append({"sparsity": sparsity, "dense": res.dense, "rows": res.rows, "allocation_kl": None if kl is None else kl[sparsity],
                            "own_baseline": own_baseline(res.evaluations)})
    out["load_average_start"], out["load_average_end"] = start_load, [round(x, 2) for x in os.getloadavg()]
    return out


def own_baseline(evaluations: dict) -> list[dict]:
    """Each update and allocation against the same criterion with update none, uniform (paired, same items):
    what the choice itself does, whatever the criterion."""
    from pruning.analysis.evaluate import paired_difference

    out = []
    for label, ev in evaluations.items():
        base = label.split("+")[0] + "+none"
        if label == base or base not in evaluations:
            continue
        d = paired_difference(evaluations[base], ev)
        out.append({"cell": label, "against": base, **{k: d[k] for k in ("drop", "drop_ci_low", "drop_ci_high", "within_noise")}})
    return out


# ---------------------------------------------------------------- rendering
def _num(x, digits):
    return "-" if x is None else f"{x:.{digits}f}"


def _value(r: dict, digits: int) -> str:
    return f"{r['value']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"


def _diff(r: dict, digits: int) -> str:
    if r["cell"] == r["reference"]:
        return "reference"
    noise = " within noise" if r["within_noise"] else ""
    return f"{r['drop']:+.{digits}f} [{r['drop_ci_low']:+.{digits}f}, {r['drop_ci_high']:+.{digits}f}]{noise}"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['threads']} torch threads; load average {result['load_average_start']} at the start, "
        f"{result['load_average_end']} at the end (per cell below). Model {result['model']}: {result['eval']}; calibration "
        f"{result['calibration']}. Every uniform cell prunes each layer at the target (granularity layer); the reference is "
        f"{result['reference']}; vs reference = the cell's paired harm against it on the same items (positive: worse). "
        f"KL allocation: {result['kl_sensitivity']}.",
        "",
    ]
    digits = 2 if result["runs"] and result["runs"][0]["rows"][0]["metric"] == "perplexity" else 4
    for run in result["runs"]:
        rows = {r["cell"]: r for r in run["rows"]}
        metric = run["rows"][0]["metric"]
        dense = run["dense"]
        said = f"dense {metric} {_value(dense, digits)}, n = {dense['n']}" if dense else "the dense model not evaluated in this run"
        lines += [f"**{run['sparsity']:.0%} sparsity** ({said})", ""]
        lines += ["| criterion | update none | update OBS | update DSnoT |", "|---|---|---|---|"]
        for c in result["criteria"]:
            cells = [rows.get(f"{c}+{u}") for u in result["updates"]]
            lines.append(f"| {c} | " + " | ".join(
                ("not measured" if r is None else "skipped" if r["status"] != "done" else f"{_value(r, digits)}<br>vs ref {_diff(r, digits)}")
                for r in cells
            ) + " |")
        lines += ["", "| cell | " + metric + " [95%] | vs reference [95%] | sparsity | recon. error | prune s | alloc s | eval s | load before -> after |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in run["rows"]:
            if r["status"] != "done":
                lines.append(f"| {r['cell']} | skipped: {r['reason']} | | | | | | | |")
                continue
            lines.append(
                f"| {r['cell']} | {_value(r, digits)} | {_diff(r, digits)} | {r['sparsity']:.4f} | {_num(r['reconstruction_error'], 4)} "
                f"| {r['seconds']:.1f} | {r['allocation_seconds']:.1f} | {r['eval_seconds']:.1f} | {r['load_before']} -> {r['load_after']} |"
            )
        if run.get("own_baseline"):
            lines += ["", "Each choice against its own criterion with update none, uniform (paired harm, positive: the choice is worse): "
                      + "; ".join(f"{x['cell']} {x['drop']:+.{digits}f} [{x['drop_ci_low']:+.{digits}f}, {x['drop_ci_high']:+.{digits}f}]"
                                  + (" within noise" if x["within_noise"] else "") for x in run["own_baseline"]) + "."]
        missing = result.get("not_measured", {}).get(f"{run['sparsity']:g}")
        if missing:
            lines += ["", f"Not measured (the time ran out on this machine's load): {', '.join(missing)}."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="smollm,minilm", help="comma-separated: smollm, minilm")
    p.add_argument("--sparsities", default="0.5,0.7")
    p.add_argument("--windows", type=int, default=16, help="SmolLM2 perplexity windows of 512 tokens (the engine bench's 16)")
    p.add_argument("--sens-windows", type=int, default=2, help="SmolLM2 windows the KL allocation's sensitivity run measures on")
    p.add_argument("--stage", choices=["all", "matrix", "kl", "write"], default="all",
                   help="matrix: only the cells without the KL allocation (no results written); kl: the sensitivity run and the KL "
                   "cells; all: everything, resuming what the other stages finished, then the results; write: the results from the "
                   "finished cells only (the others listed as not measured)")
    p.add_argument("--reverse", action="store_true", help="stage matrix: run the cells from the last (a second worker on a busy machine)")
    p.add_argument("--no-dense", action="store_true", help="skip the dense model's evaluation (said in the results)")
    p.add_argument("--no-kl", action="store_true", help="write the results without the KL allocation's cell (said in the results)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny evaluation sets, results under out/ (no figures)")
    args = p.parse_args()
    args.sparsities = [float(s) for s in args.sparsities.split(",")]
    for key in [k.strip() for k in args.models.split(",") if k.strip()]:
        started = machine()
        measured = run_model(key, args)
        if measured is None:  # a stage that writes no results
            continue
        result = {"machine": started, "date": started["date"], "commit": started["commit"], "quick": args.quick, **measured}
        result["load_average"] = {"start": result["load_average_start"], "end": result["load_average_end"]}
        target = (PARTIAL / f"compare-{key}-quick") if args.quick else (ROOT / "bench" / "results" / f"compare-{key}")
        write_results(result, target, markdown)


if __name__ == "__main__":
    main()
