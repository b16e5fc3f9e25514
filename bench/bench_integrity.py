"""Cost of the cache integrity check next to the load it guards (figures rendered into docs/BENCHMARKS.md by bench/report.py).

For each embedded default already in the cache, medians of ``--repeats`` runs of:
the full check alone (hash every file of the cached folder and compare with the
recorded hashes, ``pruning.store.integrity.problem(full=True)``); the identity check
alone (files unchanged since their last full check); the plain load of the folder
with no check (``from_pretrained``); the whole ``load_model`` when the files are
unchanged (the usual case); and the whole ``load_model`` with every file hashed in a
second thread beside the load (the first load after a build or any change). The
check's cost is what a whole load adds to the plain one. Run it on a quiet machine
after ``python -m pruning prepare``.

    python bench/bench_integrity.py                      # both defaults
    python bench/bench_integrity.py --folder /some/cached/folder --repeats 1   # the check alone

Writes bench/results/integrity.json and bench/results/integrity.md.
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


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, folder: Path, repeats: int) -> dict:
    from pruning.store.integrity import forget_verified, problem

    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    row = {"model": name, "folder": str(folder), "megabytes": round(size / 1e6, 1)}
    row["check_s"] = round(median_seconds(lambda: problem(folder, full=True), repeats), 3)
    problem(folder)  # remembers the files' identities (they are older than SETTLE_S)
    row["identity_check_s"] = round(median_seconds(lambda: problem(folder), repeats), 4)
    if name != "folder":
        from pruning.loading.models import _from_pretrained
        from pruning.embedded import load_model

        task = "classification" if name == "minilm-rt" else "causal-lm"
        row["plain_load_s"] = round(median_seconds(lambda: _from_pretrained(str(folder), task), repeats), 3)
        row["load_s"] = round(median_seconds(lambda: load_model(name), repeats), 3)  # files trusted by identity

        def load_full():
            forget_verified(folder)
            load_model(name)

        row["load_full_s"] = round(median_seconds(load_full, repeats), 3)  # every file hashed beside the load
        for key, whole in (("added", "load_s"), ("added_full", "load_full_s")):
            row[f"{key}_s"] = round(row[whole] - row["plain_load_s"], 3)
            row[f"{key}_share"] = round(row[f"{key}_s"] / row["plain_load_s"], 3)
    return row


def markdown(result: dict) -> str:
    """The cache-check table of a result file (bench/report.py renders it into docs/BENCHMARKS.md)."""
    rows = result["rows"]
    lines = [
        "| model | cached MB | hash of every file (s) | identity check (s) | plain load, no check (s) | load, files unchanged since their last check (s) | load, every file hashed beside it (s) |",
        "|---|---|---|---|---|---|---|",
    ]

    def added(r, key):
        return f"{r[f'{key}_s']:+.3f} s ({100 * r[f'{key}_share']:+.0f}%)"

    lines += [
        f"| {r['model']} | {r['megabytes']} | {r['check_s']} | {r['identity_check_s']} | {r.get('plain_load_s', '-')} | "
        + (f"{r['load_s']} ({added(r, 'added')}) | {r['load_full_s']} ({added(r, 'added_full')})" if "load_s" in r else "- | -")
        + " |"
        for r in rows
    ]
    lines.append(f"\nMachine: {result['machine']}, Python {result['python']}, load average {result['load_average']} at the end; medians of {result['repeats']}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="time the check of this folder only (no load)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "integrity"))
    args = parser.parse_args()
    from pruning.embedded.minilm_rt import minilm_rt_dir
    from pruning.embedded.smollm2 import SMOLLM2_CACHE_NAME
    from pruning.paths import cache_dir

    if args.folder:
        targets = [("folder", Path(args.folder))]
    else:
        targets = [("minilm-rt", minilm_rt_dir()), ("smollm2-135m", cache_dir() / SMOLLM2_CACHE_NAME)]
    rows = [measure(name, folder, args.repeats) for name, folder in targets if folder.is_dir()]
    result = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
