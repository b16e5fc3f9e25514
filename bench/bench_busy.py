"""PruneScope on a busy machine: each workload quiet and beside four busy processes, the old settings
against the new (``pruning/threads.py``) in one run, alternating; and two app jobs at once against one.

Every (settings, quiet or loaded) pair is a fresh child process, started with the load already
running for the loaded ones (libgomp reads its wait settings once, when torch loads, and the new
settings choose the thread count from the load at the start):

* ``old``: torch's defaults, as before ``pruning/threads.py`` (no OpenMP variables, every CPU);
* ``new``: what the entry points now choose (``threads.prepare()`` before torch, ``threads.apply()``);
* ``--candidates``: other wait settings, to show why the new one was picked.

The load is four ``while True: pass`` processes that this script starts and kills. The child
loads the models untimed, then times each workload once (wall and CPU seconds). The load average
(1 minute) and the runnable-thread count are recorded before and after each run.

Workloads (stand-ins smaller than the full runs, so that the old settings under load finish in
minutes; the stand-in is said in the results):

* ``sensitivity``: ``layer_sensitivity`` on minilm-rt, Wanda at 0.5, 0.7, 0.9 (the page's and the
  CLI's default run) on the six linears of block 0, 256 examples (the default run: all 36 linears);
* ``wanda``: one Wanda prune of SmolLM2-135M at 50% from 16 calibration samples of 128 tokens (the CLI default);
* ``eval``: one SmolLM2-135M perplexity evaluation on 32 windows.

And ``app``: the sensitivity stand-in as app jobs through ``app.jobs`` (its process-wide queue),
one job alone, then two started together, in one new-settings process: through the app's
one-slot queue, and with two slots (both at once, as ``PRUNESCOPE_JOBS=2`` would run them).

    python bench/bench_busy.py                  # everything (about 15 minutes on 2 busy cores)
    python bench/bench_busy.py --only eval --reps 1 --quick

Writes bench/results/busy.json and bench/results/busy.md (each through a temporary sibling).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import commit  # noqa: E402  (this folder is on sys.path when run as a script)

SPIN = "while True: pass"
OURS = ("OMP_", "GOMP_", "MKL_", "KMP_", "PRUNESCOPE_THREADS", "PRUNESCOPE_JOBS")
WORKLOADS = ("eval", "wanda", "sensitivity")  # cheapest first: a run cut short keeps the most
CANDIDATES = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin100k": {"GOMP_SPINCOUNT": "100000"},
    "spin10k-1thread": {"GOMP_SPINCOUNT": "10000", "OMP_NUM_THREADS": "1"},
}


# ---------------------------------------------------------------- the child process
def worker(names: list, settings: str, size: dict) -> dict:
    """Load what ``names`` need (untimed), then time each workload once; ``app`` times app jobs."""
    if settings != "old":  # an entry point: the wait settings before torch loads, then the thread counts
        from pruning import threads

        threads.prepare()
        threads.apply()
    import torch

    from pruning import threads
    from pruning.loading.data import calibration_batches, load_classification, load_lm_text
    from pruning.embedded import load_model
    from pruning.loading.models import prunable_layers
    from pruning.request import PruneRequest

    work = {}
    if {"sensitivity", "app"} & set(names):
        from pruning.analysis.sensitivity import layer_sensitivity

        mini, rt = load_model("minilm-rt"), load_classification("rotten-tomatoes")
        layers = [i.name for i in prunable_layers(mini.model) if i.block == 0]
        mcalib = calibration_batches(mini, rt, n_samples=16)
        srequest = PruneRequest.make("wanda", granularity="layer", layers=layers[: size["layers"]])

        def sensitivity(progress=None):
            return layer_sensitivity(mini, rt, srequest, (0.5, 0.7, 0.9), calibration=mcalib, max_examples=size["examples"], progress=progress)

        work["sensitivity"] = sensitivity
    if {"wanda", "eval"} & set(names):
        from pruning.analysis.evaluate import evaluate
        from pruning.prune import prune

        smol, text = load_model("smollm2-135m"), load_lm_text("rt-plots")
        scalib = calibration_batches(smol, text, n_samples=size["calib"], seq_len=128)
        wrequest = PruneRequest.make("wanda", sparsity=0.5)
        work["wanda"] = lambda progress=None: prune(smol, wrequest, calibration=scalib)
        work["eval"] = lambda progress=None: evaluate(smol, text, max_examples=size["windows"])
    out = {"settings": settings, "threads": threads.record(), "torch_threads": torch.get_num_threads(), "times": {}}
    for name in names:
        if name == "app":
            continue
        before = load_now()
        w, c = time.perf_counter(), time.process_time()
        work[name]()
        out["times"][name] = {"seconds": round(time.perf_counter() - w, 2), "cpu_seconds": round(time.process_time() - c, 2),
                              "load_before": before, "load_after": load_now()}
        print(json.dumps({"partial": name, **out["times"][name]}), flush=True)  # kept if a later workload runs past the timeout
    if "app" in names:
        out["app"] = app_jobs(work["sensitivity"])
    return out


def app_jobs(sensitivity) -> list:
    """The sensitivity stand-in as app jobs: one alone, then two started together (queued: one slot; side by side: two)."""
    from app import jobs

    def run_jobs(n: int, slots: int) -> float:
        store, gate = jobs.Store(), jobs.Gate(slots)
        start = time.perf_counter()
        started = [store.get_or_start("sensitivity", i, f"job {i}", lambda job: sensitivity(job.progress), f"session {i}", gate) for i in range(n)]
        for job in started:
            job.done.wait()
            if job.error is not None:
                raise job.error
        return time.perf_counter() - start

    rows = []
    for slots in (1, 2):
        before = load_now()
        one = run_jobs(1, slots)
        two = run_jobs(2, slots)
        rows.append({"slots": slots, "one_job_seconds": round(one, 2), "two_jobs_seconds": round(two, 2), "ratio": round(two / one, 2),
                     "load_before": before, "load_after": load_now()})
    return rows


# ---------------------------------------------------------------- the parent
def runnable() -> int:
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[0])


def load_now() -> dict:
    return {"loadavg1": round(os.getloadavg()[0], 2), "runnable": runnable()}


def child(names: list, settings: str, size: dict, timeout: float, extra_env=None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    env.update(extra_env or {})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", ",".join(names), "--settings", settings, "--size", json.dumps(size)]
    before = load_now()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        times = {}
        for line in text.splitlines():
            if line.startswith("{") and '"partial"' in line:
                row = json.loads(line)
                times[row.pop("partial")] = row
        return {"settings": settings, "timed_out_after": timeout, "times": times, "load_before": before, "load_after": load_now()}
    if done.returncode != 0:
        raise RuntimeError(f"{names}/{settings} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out.update(load_before=before, load_after=load_now(), env=extra_env or {})
    return out


class Load:
    """``n`` processes spinning on the CPU while the block runs (killed however it ends)."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(self.n)]
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        time.sleep(2.0)  # let the cores settle before the next quiet run


def seconds(r: dict) -> float | None:
    return r.get("seconds", r.get("timed_out_after"))


def summarize(runs: list[dict]) -> dict:
    """Per workload and settings: median quiet and loaded seconds, loaded / quiet, new quiet / old quiet."""
    import statistics

    out = {}
    for name in sorted({r["workload"] for r in runs}):
        row = {}
        for settings in sorted({r["settings"] for r in runs if r["workload"] == name}):
            got = {}
            for phase in ("quiet", "loaded"):
                xs = [seconds(r) for r in runs if r["workload"] == name and r["settings"] == settings and r["phase"] == phase]
                if xs:
                    got[phase] = round(statistics.median(xs), 2)
                    got[f"{phase}_timed_out"] = any("timed_out_after" in r for r in runs if r["workload"] == name and r["settings"] == settings and r["phase"] == phase)
            if "quiet" in got and "loaded" in got:
                got["loaded_over_quiet"] = round(got["loaded"] / got["quiet"], 2)
            row[settings] = got
        if "old" in row and "new" in row and "quiet" in row["old"] and "quiet" in row["new"]:
            row["new_quiet_over_old_quiet"] = round(row["new"]["quiet"] / row["old"]["quiet"], 3)
        out[name] = row
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# PruneScope on a busy machine",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs; torch {m['torch']}. Load: {result['load']} spinning processes started by the bench. "
        f"Load average (1 min) {result['load_avg_before']} before the run, {result['load_avg_after']} after; runs alternate old and new.",
        "",
        "Settings: **old** = torch's defaults (libgomp's 300 000-spin wait, every CPU); **new** = `pruning/threads.py` "
        f"({result.get('wait_rule') or 'GOMP_SPINCOUNT=' + str(result['spin_count'])}, "
        "1 inter-op thread; the wait and intra-op threads of each run are listed below).",
        "",
        *[f"- Note: {n}" for n in result.get("notes", [])],
        *([""] if result.get("notes") else []),
        "Stand-ins: " + result["stand_ins"],
        "",
        "| workload | settings | quiet s | loaded s | loaded / quiet | new quiet / old quiet |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in result["summary"].items():
        for settings, got in row.items():
            if not isinstance(got, dict):
                continue
            loaded = f"> {got['loaded']} (the child's limit, all three workloads)" if got.get("loaded_timed_out") else got.get("loaded", "-")
            ratio = got.get("loaded_over_quiet", "-")
            ratio = "-" if got.get("loaded_timed_out") else ratio
            rel = row.get("new_quiet_over_old_quiet", "-") if settings == "new" else ""
            lines.append(f"| {name} | {settings} | {got.get('quiet', '-')} | {loaded} | {ratio} | {rel} |")
    lines += ["", "Every run (seconds wall / CPU, threads, load average and runnable threads before -> after):", ""]
    for r in result["runs"]:
        t = r.get("threads", {})
        cpu = f" / {r['cpu_seconds']} cpu" if "cpu_seconds" in r else ""
        what = f"{r.get('seconds', 'timed out after ' + str(r.get('timed_out_after')))} s{cpu}"
        lines.append(
            f"- {r['workload']} {r['settings']} {r['phase']}: {what}; intra-op {t.get('intra_op', '?')}, wait {t.get('wait', '?')}; "
            f"load {r['load_before']['loadavg1']} -> {r['load_after']['loadavg1']}, runnable {r['load_before']['runnable']} -> {r['load_after']['runnable']}"
        )
    if result.get("app"):
        lines += ["", "## Two app jobs at once against one (through `app.jobs`, no browser; new settings, sensitivity stand-in)", "",
                  "Slots 1 is the app's default (the second job waits in the queue); slots 2 runs both side by side.", "",
                  "| slots (PRUNESCOPE_JOBS) | one job s | two jobs s | two / one | load before -> after |", "|---:|---:|---:|---:|---|"]
        for r in result["app"]:
            lines.append(f"| {r['slots']} | {r['one_job_seconds']} | {r['two_jobs_seconds']} | {r['ratio']} | {r['load_before']['loadavg1']} -> {r['load_after']['loadavg1']} |")
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(args, size, runs, app, start_load) -> dict:
    """Write what has been measured so far (after every child, so that a run cut short keeps its figures)."""
    from importlib.metadata import version

    from pruning import threads

    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": threads.available_cpus(), "torch": version("torch"),
                    "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit(),
        "load": args.load,
        "load_avg_before": start_load,
        "load_avg_after": round(os.getloadavg()[0], 2),
        "spin_count": threads.SPIN_COUNT,
        "wait_rule": f"the wait chosen from the load at the start: GOMP_SPINCOUNT={threads.SPIN_COUNT} when fewer other threads "
        "want a CPU than the process may use, OMP_WAIT_POLICY=PASSIVE when at least as many (threads.wait_for)",
        "quick": args.quick,
        "size": size,
        "stand_ins": (
            f"sensitivity = Wanda at 0.5/0.7/0.9 on {size['layers']} linears of minilm-rt's block 0, {size['examples']} examples "
            "(the CLI default run: all 36 linears, 512 examples); "
            f"wanda = one SmolLM2-135M prune at 50% from {size['calib']} calibration samples of 128 tokens (the CLI default: 16); "
            f"eval = SmolLM2-135M perplexity on {size['windows']} windows (the CLI default: 512)."
        ),
        "runs": runs,
        "summary": summarize(runs),
        "app": app,
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                result["machine"]["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out.with_suffix(".json"), json.dumps(result, indent=2, default=str))
    write(out.with_suffix(".md"), markdown(result))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--settings", default="new", help=argparse.SUPPRESS)
    ap.add_argument("--only", help="comma-separated: " + ",".join(WORKLOADS) + ",app")
    ap.add_argument("--reps", type=int, default=1, help="alternating repetitions of each (old, new) pair")
    ap.add_argument("--load", type=int, default=4, help="spinning processes")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a child may run (a run past it counts as '>')")
    ap.add_argument("--candidates", action="store_true", help="also other wait settings (every workload)")
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--layers", type=int, default=6, help="sensitivity: linears of minilm-rt's block 0 (of 6)")
    ap.add_argument("--examples", type=int, default=256, help="sensitivity: examples")
    ap.add_argument("--calib", type=int, default=16, help="wanda: calibration samples of 128 tokens")
    ap.add_argument("--windows", type=int, default=32, help="eval: perplexity windows")
    ap.add_argument("--variants", help="comma-separated settings to run instead of old,new (old, new, " + ", ".join(CANDIDATES) + ")")
    ap.add_argument("--quick", action="store_true", help="tiny workloads (2 layers, 32 examples, 4 samples, 4 windows)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "busy"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout ends the run through the finally blocks: no spinner left behind
    if args.worker:
        print(json.dumps(worker(args.worker.split(","), args.settings, json.loads(args.size))))
        return 0
    size = {"layers": args.layers, "examples": args.examples, "calib": args.calib, "windows": args.windows}
    if args.quick:
        size = {"layers": 2, "examples": 32, "calib": 4, "windows": 4}

    from pruning import threads

    names = args.only.split(",") if args.only else list(WORKLOADS) + ["app"]
    timed = [n for n in names if n != "app"]
    runs, app = [], []
    start_load = round(os.getloadavg()[0], 2)

    def flatten(r: dict, settings: str, phase: str) -> None:
        for name in timed:
            t = r["times"].get(name) or {"timed_out_after": r.get("timed_out_after"), "load_before": r["load_before"], "load_after": r["load_after"]}
            runs.append({"workload": name, "settings": settings, "phase": phase, "threads": r.get("threads", {}), "env": r.get("env", {}), **t})
            print(f"{name} {settings} {phase}: {seconds(runs[-1])} s", flush=True)
        save(args, size, runs, app, start_load)

    variants = [("old", None), ("new", None)] + ([(k, v) for k, v in CANDIDATES.items()] if args.candidates else [])
    if args.variants:
        variants = [(k, CANDIDATES.get(k)) for k in args.variants.split(",")]
    for rep in range(args.reps):
        order = variants if rep % 2 == 0 else variants[::-1]
        if timed:
            for settings, env in order:
                flatten(child(timed, "old" if env else settings, size, args.timeout, env), settings, "quiet")
            with Load(args.load):
                for settings, env in order[::-1]:
                    flatten(child(timed, "old" if env else settings, size, args.timeout, env), settings, "loaded")
    if "app" in names:
        r = child(["app"], "new", size, args.timeout)
        app = r.get("app", [])
        for row in app:
            print(f"app slots {row['slots']}: one {row['one_job_seconds']} s, two {row['two_jobs_seconds']} s", flush=True)
        save(args, size, runs, app, start_load)
    print(markdown(save(args, size, runs, app, start_load)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
