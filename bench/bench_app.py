"""Slider latency of the app's Weights and Masks views on minilm-rt (figures rendered into docs/BENCHMARKS.md by bench/report.py).

What is timed: the time from a new sparsity to new masks and the new numbers and
charts of the page, i.e. one full Streamlit script run after the slider moved
(sidebar + page: re-thresholding the cached ranks of every layer, histogram
counts, mixture curves, mask picture, N:M check, overlaps between methods,
building the Altair charts). Evaluation of the model is NOT included: the
Weights and Masks views never evaluate (the Overview does, cached per setting).
The browser's own drawing is not included either (see tests/test_browser.py).

The first visit of each page (model load, scores, ranks, mixture fits) is
reported separately as the warm-up; every later slider position is a fresh
sparsity the cache has not seen.

    python bench/bench_app.py                    # minilm-rt, 8 slider positions per view
    python bench/bench_app.py --model /path/to/folder --moves 4

Writes bench/results/app.json and bench/results/app.md.
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

TARGET_S = 0.3


def slider_positions(n: int) -> list[float]:
    """Fresh sparsities 0.10, 0.15, ... (the page starts at 0.50, skipped)."""
    values = [round(0.1 + 0.05 * i, 2) for i in range(20)]
    return [v for v in values if v != 0.5][:n]


def bench_page(page: str, moves: int, model: str | None) -> dict:
    import os

    from streamlit.testing.v1 import AppTest

    if model:
        os.environ["PRUNESCOPE_TEST_MODEL"] = model
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=1800)
    t0 = time.perf_counter()
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    warm = time.perf_counter() - t0
    if at.exception or at.error:
        raise SystemExit(f"{page}: the page failed: {[e.value for e in at.exception] + [e.value for e in at.error]}")
    at.run()  # a second run at the same setting (all cached)
    timings, shown = [], []
    for sparsity in slider_positions(moves):
        at.sidebar.slider(key="ps_sparsity").set_value(sparsity)
        t = time.perf_counter()
        at.run()
        timings.append(time.perf_counter() - t)
        if at.exception or at.error:
            raise SystemExit(f"{page}: error at sparsity {sparsity}")
        shown.append({m.label: m.value for m in at.metric})
    changed = all(a != b for a, b in zip(shown, shown[1:]))
    return {
        "page": page,
        "warm_up_s": round(warm, 2),
        "moves": len(timings),
        "median_s": round(statistics.median(timings), 4),
        "max_s": round(max(timings), 4),
        "all_s": [round(t, 4) for t in timings],
        "numbers_changed_every_move": changed,
        "last_numbers": shown[-1],
    }


def markdown(results: dict) -> str:
    """The latency table of a result file (bench/report.py renders it into docs/BENCHMARKS.md)."""
    lines = [
        "| view | median (s) | max (s) | target (s) | first visit (s) |",
        "|---|---|---|---|---|",
    ]
    for p in results["pages"]:
        lines.append(f"| {p['page']} | {p['median_s']:.3f} | {p['max_s']:.3f} | {results['target_s']} | {p['warm_up_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=8, help="slider positions per view")
    parser.add_argument("--model", default=None, help="a local model folder instead of minilm-rt")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    import torch

    results = {
        "what": "one Streamlit script run after a sparsity slider move (new masks + numbers + charts), model evaluation not included",
        "model": args.model or "minilm-rt",
        "target_s": TARGET_S,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()},
        "pages": [bench_page(p, args.moves, args.model) for p in ("weights", "masks")],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "app.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (out / "app.md").write_text(text)
    print(text, end="")
    ok = all(p["median_s"] < TARGET_S for p in results["pages"])
    print("slider latency target met" if ok else "slider latency target NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
