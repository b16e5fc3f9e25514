"""The CPU path before and after a change, timed in one run (figures rendered into docs/BENCHMARKS.md by bench/report.py).

Issue 12 moved pruning onto a block-by-block walk that can place each block on a device.
On the CPU in float32 that walk must cost what the old one did. This bench checks it
the only fair way on a shared machine: it checks out ``--base`` (default: the last
commit before the device work) into a temporary git worktree and times the same
prunings in that tree and in this one, alternating A, B, A, B (``--rounds``), each
figure the minimum over its repeats and rounds. The statistics order of the old walk
was per layer, so this tree runs Wanda and SparseGPT with ``order=sequential`` for the
comparison (its default, one pass per block, is timed too). For SmolLM2 (whose cached
copy both trees share) it also compares a digest of the masks: the same masks mean the
same algorithm ran.

    python bench/bench_cpu_path.py                   # minilm-rt and SmolLM2, 2 rounds
    python bench/bench_cpu_path.py --models minilm --rounds 3

Writes bench/results/cpu-path.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "b1a11d7"  # the last commit before the device work (issue 12)

# Runs inside one tree (the tree's folder first on sys.path); prints one JSON line.
SNIPPET = r"""
import hashlib, json, sys, time
import torch
from pruning.loading.data import calibration_batches
from pruning.loading.models import load_model
from pruning.prune import prune
try:
    from pruning.request import PruneRequest
    NEW = True
except ImportError:
    NEW = False

def run(loaded, calib, method, sparsity, gran, order):
    if NEW:
        params = {"order": order} if method in ("wanda", "sparsegpt") else None
        return prune(loaded, PruneRequest.make(method, sparsity, gran, params, seed=0), calibration=calib)
    if order == "block":
        return None
    return prune(loaded, method, sparsity, gran, calibration=calib, seed=0)

def digest(result):
    masks = result.masks if hasattr(result, "masks") else result["masks"]
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update(name.encode()); h.update(masks[name].to(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]

jobs, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for model, points in jobs.items():
    loaded = load_model(model)
    calib = calibration_batches(loaded, None if model == "minilm-rt" else "rt-plots", n_samples=16,
                                **({} if model == "minilm-rt" else {"seq_len": 256}), seed=0)
    for method, sparsity, gran, order in points:
        times, d = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            result = run(loaded, calib, method, sparsity, gran, order)
            if result is None:
                break
            times.append(time.perf_counter() - start)
            d = digest(result)
        if times:
            out[f"{model} {method} {gran} {sparsity:.0%} {order}"] = {"seconds": min(times), "digest": d}
print("RESULT " + json.dumps(out))
"""

POINTS = {
    "minilm-rt": [
        ["magnitude", 0.5, "layer", "-"],
        ["wanda", 0.5, "layer", "sequential"],
        ["wanda", 0.5, "layer", "block"],
        ["sparsegpt", 0.5, "layer", "sequential"],
        ["sparsegpt", 0.5, "2:4", "sequential"],
        ["sparsegpt", 0.5, "layer", "block"],
    ],
    "smollm2-135m": [
        ["magnitude", 0.5, "layer", "-"],
        ["wanda", 0.5, "layer", "sequential"],
        ["wanda", 0.5, "layer", "block"],
        ["sparsegpt", 0.5, "layer", "sequential"],
        ["sparsegpt", 0.5, "layer", "block"],
    ],
}


def run_tree(tree: Path, jobs: dict, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPET, json.dumps(jobs), str(repeats)], cwd=tree, env=env, capture_output=True, text=True
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"error: the timing run in {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[len("RESULT ") :])


def merge(best: dict, new: dict) -> None:
    for key, value in new.items():
        if key not in best or value["seconds"] < best[key]["seconds"]:
            best[key] = value


def markdown(res: dict) -> str:
    lines = [
        f"Base {res['base']} (before the device work) against {res['head']}; the same prunings in each tree, alternating "
        f"{res['rounds']} rounds, minimum of {res['repeats']} repeats a round. Load average before/after: "
        f"{res['load_before']} / {res['load_after']}.",
        "",
        "| model | method | granularity | sparsity | statistics order | base (s) | now (s) | now / base | same masks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, now in res["head_times"].items():
        model, method, gran, sparsity, order = key.split(" ")
        base = res["base_times"].get(key)
        if base is None:
            lines.append(f"| {model} | {method} | {gran} | {sparsity} | {order} | - | {now['seconds']:.2f} | - | - |")
            continue
        same = "-" if model == "minilm-rt" else ("yes" if base["digest"] == now["digest"] else "no")
        ratio = now["seconds"] / base["seconds"]
        lines.append(
            f"| {model} | {method} | {gran} | {sparsity} | {order} | {base['seconds']:.2f} | {now['seconds']:.2f} | {ratio:.2f}x | {same} |"
        )
    lines += ["", "minilm-rt's masks are not compared: the base tree loads the classifier of its own cache version."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--models", default="minilm,smollm")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cpu-path"))
    args = parser.parse_args()
    names = {"minilm": "minilm-rt", "smollm": "smollm2-135m"}
    jobs = {names[k.strip()]: POINTS[names[k.strip()]] for k in args.models.split(",") if k.strip()}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="prunescope-base-") as tmp:
        base_tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(base_tree), args.base], cwd=ROOT, check=True, capture_output=True)
        try:
            base_times, head_times = {}, {}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}: base", flush=True)
                merge(base_times, run_tree(base_tree, jobs, args.repeats))
                print(f"round {r + 1}/{args.rounds}: now", flush=True)
                merge(head_times, run_tree(ROOT, jobs, args.repeats))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    res = {
        "base": args.base, "head": head, "rounds": args.rounds, "repeats": args.repeats, "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()], "base_times": base_times, "head_times": head_times,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(res, indent=2)), (".md", markdown(res))):
        tmp = out.with_name(out.name + suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out.with_suffix(suffix))
    print(markdown(res))


if __name__ == "__main__":
    main()
