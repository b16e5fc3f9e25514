"""Cost of the cache integrity check next to the load it guards (figure quoted in the README).

For each embedded default already in the cache: the time to hash every file of
its cached folder and compare with the recorded hashes (``pruning.integrity.problem``),
and the time of a whole ``load_model`` (which includes that check), median of
``--repeats`` runs. Run it on a quiet machine after ``python -m pruning prepare``.

    python bench/bench_integrity.py                      # both defaults
    python bench/bench_integrity.py --folder /some/cached/folder --repeats 1   # the check alone

Writes bench/results/integrity.json and bench/results/integrity.md.
"""

from __future__ import annotations

import argparse
import json
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
    from pruning.integrity import problem

    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    row = {"model": name, "folder": str(folder), "megabytes": round(size / 1e6, 1)}
    row["check_s"] = round(median_seconds(lambda: problem(folder), repeats), 3)
    if name != "folder":
        from pruning.models import load_model

        row["load_s"] = round(median_seconds(lambda: load_model(name), repeats), 3)
        row["check_share"] = round(row["check_s"] / row["load_s"], 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="time the check of this folder only (no load)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "integrity"))
    args = parser.parse_args()
    from pruning.finetune import minilm_rt_dir
    from pruning.models import SMOLLM2_CACHE_NAME
    from pruning.paths import cache_dir

    if args.folder:
        targets = [("folder", Path(args.folder))]
    else:
        targets = [("minilm-rt", minilm_rt_dir()), ("smollm2-135m", cache_dir() / SMOLLM2_CACHE_NAME)]
    rows = [measure(name, folder, args.repeats) for name, folder in targets if folder.is_dir()]
    result = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = ["| model | cached MB | hash check (s) | whole load (s) | check share |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['megabytes']} | {r['check_s']} | {r.get('load_s', '-')} | {r.get('check_share', '-')} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
