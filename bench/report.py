"""Render the benchmark figures in README.md and docs/ from bench/results/, so no figure is copied by hand.

A generated part of a document sits between two markers:

    <!-- bench:engine-minilm -->
    ...everything here is rewritten from bench/results/engine-minilm.json...
    <!-- /bench:engine-minilm -->

Everything outside the markers is hand-written prose and is left as it is. Each part starts
with where its figures come from (machine, load average, date and commit, as recorded in the
result file, or "not recorded" where an older file lacks them), followed by the table the
benchmark script itself renders from that file, the same function that wrote the
`bench/results/<name>.md` beside it.

The same run writes bench/results/claims-summary.json, the claims' measured lines that the app's
Method steps view shows beside each seed method.

    python bench/report.py            # rewrite the generated parts of README.md and docs/*.md in place
    python bench/report.py --check    # exit 1 and name the parts that differ (the docs test)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
sys.path.insert(0, str(BENCH))

MARKER = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->", re.S)


def _renderer(module: str, function: str) -> Callable[[dict], str]:
    """A bench script's own renderer, imported on first use (the scripts import torch)."""

    def render(result: dict) -> str:
        mod = __import__(module)
        return getattr(mod, function)(result)

    return render


def _claims(_: dict) -> str:
    import bench_claims

    return bench_claims.report_markdown(RESULTS / "claims")


def _headline(_: dict) -> str:
    """The README's one short table: 50% on both defaults, from the two engine result files."""
    from bench_engine import cell, drop_cell

    rows = ["| model, metric | method at 50% | pattern | result [95%] | harm vs dense, paired [95%] | machine, date |", "|---|---|---|---|---|---|"]
    settings = []
    for file, key, digits, want in (
        ("engine-minilm.json", "minilm", 4, {("magnitude", "layer"), ("wanda", "row"), ("wanda", "layer"), ("sparsegpt", "layer"), ("sparsegpt", "2:4")}),
        ("engine-smollm.json", "smollm", 2, {("magnitude", "layer"), ("wanda", "row"), ("sparsegpt", "layer"), ("sparsegpt", "2:4")}),
    ):
        res = json.loads((RESULTS / file).read_text())
        r, m = res[key], res["machine"]
        model = "minilm-rt, accuracy" if key == "minilm" else "SmolLM2-135M, perplexity"
        where = f"{m['cpu']}, {res.get('date') or m.get('date') or 'date not recorded'}"
        settings.append(f"{file}: {_thread_settings(res)}")
        rows.append(f"| {model} | dense | - | {cell(r['dense'], digits)} | - | {where} |")
        for x in r["methods"]:
            if (x["method"], x["granularity"]) in want and x["sparsity"] == 0.5:
                rows.append(f"| {model} | {x['method']} | {x['granularity']} | {cell(x, digits)} | {drop_cell(x, digits)} | {where} |")
    said = {x.split(": ", 1)[1] for x in settings}
    said = f"both files, {said.pop()}" if len(said) == 1 else "; ".join(settings)
    return "\n".join(rows) + f"\n\n*Thread settings: {said}.*\n"


# name -> (result file under bench/results/, renderer of its parsed JSON)
PARTS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "engine-minilm": ("engine-minilm.json", _renderer("bench_engine", "to_markdown")),
    "engine-smollm": ("engine-smollm.json", _renderer("bench_engine", "to_markdown")),
    "cpu-path": ("cpu-path.json", _renderer("bench_cpu_path", "markdown")),
    "sensitivity-minilm": ("sensitivity-minilm.json", _renderer("bench_sensitivity", "markdown")),
    "sensitivity-smollm": ("sensitivity-smollm.json", _renderer("bench_sensitivity", "markdown")),
    "choices-minilm": ("choices-minilm.json", _renderer("bench_choices", "markdown")),
    "choices-smollm": ("choices-smollm.json", _renderer("bench_choices", "markdown")),
    "compare-smollm": ("compare-smollm.json", _renderer("bench_compare", "markdown")),
    "compare-minilm": ("compare-minilm.json", _renderer("bench_compare", "markdown")),
    "app": ("app.json", _renderer("bench_app", "markdown")),
    "integrity": ("integrity.json", _renderer("bench_integrity", "markdown")),
    "seeds-minilm": ("seeds-minilm.json", _renderer("bench_seeds", "markdown")),
    "seeds-sds-lm": ("seeds-sds-lm.json", _renderer("bench_seeds", "markdown")),
    "stability-minilm": ("stability-minilm.json", _renderer("bench_stability", "markdown")),
    "stability-smollm": ("stability-smollm.json", _renderer("bench_stability", "markdown")),
    "numerics": ("numerics.json", _renderer("bench_numerics", "markdown")),
    "busy": ("busy.json", _renderer("bench_busy", "markdown")),
    "busy-threads": ("busy-threads.json", _renderer("bench_busy", "markdown")),
    "busy-passive": ("busy-passive.json", _renderer("bench_busy", "markdown")),
    "gpu": ("gpu.json", _renderer("bench_gpu", "render")),
    "claims": ("claims", _claims),
    "headline": ("engine-minilm.json, engine-smollm.json", _headline),
}


def _first(d: dict, *keys):
    for k in keys:
        if d.get(k) not in (None, "", [], {}):
            return d[k]
    return None


def _machine(result: dict) -> str:
    m = result.get("machine")
    if isinstance(m, dict):
        threads = f", {m['threads']} torch threads" if "threads" in m else ""
        return f"{m.get('cpu', 'unknown CPU')}{threads}, torch {m.get('torch', '?')}, Python {m.get('python', '?')}"
    return str(m) if m else "not recorded"


def _load(result: dict) -> str:
    def fmt(v):
        if isinstance(v, dict):
            return ", ".join(f"{k} {fmt(x)}" for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return "/".join(f"{x:.2f}" for x in v)
        return f"{v:.2f}" if isinstance(v, (int, float)) else str(v)

    m = result.get("machine") if isinstance(result.get("machine"), dict) else {}
    before = _first(result, "load_average", "load_avg_before", "load_before", "load_average_start") or m.get("load_average")
    after = _first(result, "load_avg_after", "load_after", "load_average_end")
    if before is None:
        return "not recorded"
    return fmt(before) + (f" before, {fmt(after)} after" if after is not None else "")


def _thread_settings(result: dict) -> str:
    """The OpenMP wait and thread count the figures ran under (pruning/threads.py records them)."""
    m = result.get("machine") if isinstance(result.get("machine"), dict) else {}
    t = m.get("thread_settings")
    if isinstance(t, dict):
        wait = t.get("wait")
        wait = ", ".join(f"{k}={v}" for k, v in wait.items()) if isinstance(wait, dict) else str(wait or "not recorded")
        user = f", the user's {', '.join(f'{k}={v}' for k, v in t['user'].items())}" if t.get("user") else ""
        return f"{wait}, {t.get('intra_op', '?')} intra-op thread(s){user}"
    if any(isinstance(r, dict) and "threads" in r for r in result.get("runs", []) or []):
        return "per run, in the table"
    return "not recorded (measured before pruning/threads.py chose them)"


def provenance(name: str, result: dict) -> str:
    """One line: where the figures of this part come from, as the result file records it."""
    file, _ = PARTS[name]
    m = result.get("machine") if isinstance(result.get("machine"), dict) else {}
    date = _first(result, "date", "started") or m.get("date")
    commit = _first(result, "commit") or m.get("commit")
    return (
        f"*Generated by `bench/report.py` from `bench/results/{file}`. Machine: {_machine(result)}; "
        f"thread settings: {_thread_settings(result)}; "
        f"load average (1/5/15 min): {_load(result)}; date: {date or 'not recorded'}; "
        f"commit: {commit or 'not recorded'}"
        + (" (date, commit and load added later from the measuring session's notes)" if "provenance_note" in result else "")
        + ".*"
    )


def _claims_provenance() -> str:
    points = sorted((RESULTS / "claims").glob("*.json"))
    recs = [json.loads(p.read_text()) for p in points if p.name != "rates.json"]
    machines = sorted({_machine(r) for r in recs})
    return (
        f"*Generated by `bench/report.py` from the {len(recs)} point files in `bench/results/claims/`; "
        f"each row's machine, load average, date and commit are in its file (machines: {'; '.join(machines) or 'none'}).*"
    )


def render_part(name: str) -> str:
    file, render = PARTS[name]
    if name == "claims":
        return _claims_provenance() + "\n\n" + _demote(render({}))
    if name == "headline":
        return render({})
    result = json.loads((RESULTS / file).read_text())
    return provenance(name, result) + "\n\n" + _demote(render(result))


def _demote(text: str) -> str:
    """A renderer's own title becomes bold text and its sections sub-sub-headings, so a generated
    part never adds a top-level heading to the page it sits in."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("# "):
            lines[i] = f"**{line[2:]}**"
        elif line.startswith("## "):
            lines[i] = "#### " + line[3:]
    return "\n".join(lines)


def render_document(text: str, cache: dict[str, str] | None = None) -> str:
    """``text`` with every generated part rendered anew; an unknown part name is an error."""
    cache = {} if cache is None else cache

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in PARTS:
            raise SystemExit(f"error: unknown generated part '{name}' (known: {', '.join(PARTS)})")
        if name not in cache:
            cache[name] = render_part(name).rstrip("\n") + "\n"
        return f"<!-- bench:{name} -->\n{cache[name]}<!-- /bench:{name} -->"

    return MARKER.sub(sub, text)


def claims_summary() -> str:
    """bench/results/claims-summary.json: each claim's measured lines, read by the app's Method steps view."""
    import bench_claims

    return json.dumps(bench_claims.claim_summaries(RESULTS / "claims"), indent=1) + "\n"


# files rendered whole (not parts of a document): path -> renderer
FILES: dict[Path, Callable[[], str]] = {RESULTS / "claims-summary.json": claims_summary}


def documents() -> list[Path]:
    """The README and every page of docs/ that holds a generated part."""
    return [p for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))] if MARKER.search(p.read_text())]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Render the docs' benchmark tables from bench/results/.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document differs")
    args = parser.parse_args(argv)
    cache: dict[str, str] = {}
    stale = []
    for path in documents():
        old = path.read_text()
        new = render_document(old, cache)
        if new != old:
            stale.append(path)
            if not args.check:
                _write_atomic(path, new)
    for path, render in FILES.items():
        new = render()
        if not path.exists() or path.read_text() != new:
            stale.append(path)
            if not args.check:
                _write_atomic(path, new)
    rel = [str(p.relative_to(ROOT)) for p in stale]
    if args.check:
        if stale:
            print("differs from bench/results (run python bench/report.py): " + ", ".join(rel))
            return 1
        print("docs match bench/results")
        return 0
    print("rewrote " + ", ".join(rel) if rel else "nothing to rewrite")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
