"""Long-run bench: the seed papers' claims at their own budgets, scaled to the embedded defaults.

Every row of the comparison is a *point*: one model trained or pruned once and evaluated
once, with its exact settings. A point's figures are written the moment it ends, to
bench/results/claims/<point>.json (a temporary sibling renamed into place), with the RAW
per-item results (per-example correctness on the minilm-rt test split, per-window
negative log-likelihoods and token counts on WikiText-2), so intervals are computed,
and recomputed, at report time. A run skips the points whose file exists: stop it at
any moment and start it again, it resumes point by point.

  mgpp        MGPP vs GMP on minilm-rt, global 80% and 90%, 6 epochs of the training
              split at batch 32 (the paper: 6 epochs of SST-2, t0 = 1000 of ~12,600
              steps, interval 10, AdamW 5e-5, betas 0.9/0.98, eps 1e-6), 3 seeds.
  randomized  randomized selection (K = 8, early evaluation) vs magnitude, the paper's
              stages 0.54, 0.83, 0.92, 0.9375, logits distillation from the dense model,
              about one epoch of fine-tuning per stage; the magnitude baseline follows
              the same stages with the same number of steps; 3 seeds.
  sds         SDS from SparseGPT and from Wanda on SmolLM2 at 2:4 and 50%, calibrated on
              128 x 512 tokens, the paper's 200 dense-step iterations, against the
              one-shot start; WikiText-2 test (../shared/data), 128 windows of 512.

    python bench/bench_claims.py --list                 # the points, done or not, with time estimates
    python bench/bench_claims.py --measure              # measure the per-step costs the estimates use
    python bench/bench_claims.py --only sds             # run every SDS point not yet done
    python bench/bench_claims.py --point sds.sparsegpt.2-4.sds.s0
    python bench/bench_claims.py                        # every point not yet done
    python bench/bench_claims.py --tiny --out /tmp/c    # smoke test at toy budgets (never in results/)
    python bench/bench_claims.py --only mgpp --stop-at 07:30   # checkpoint and exit (status 0) before 07:30

A point that trains saves a training checkpoint (<point>.ckpt, and the one before it as
<point>.prev.ckpt, in the PruneScope cache's claims-checkpoints/ or --checkpoint-dir) every 10 minutes of wall time (--checkpoint-minutes) and, with
--checkpoint-every N, every N steps; run the same command again and it resumes mid-way, with the
same final figures as an uninterrupted run. --stop-at HH:MM saves one and exits (status 0) shortly
before that time (a point already in its final evaluation finishes first, then no other starts).
SIGTERM or Ctrl-C saves a checkpoint at the next step and exits (status 128 + the signal); a second
Ctrl-C stops at once. The checkpoint is deleted when the point's file is
written. Changed settings are refused naming the setting: delete the .ckpt files to start again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import machine  # noqa: E402
from bench_seeds import _commit  # noqa: E402
from pruning.loading.data import calibration_batches, load_classification, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import evaluate  # noqa: E402
from pruning.masks import compute_masks  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.prune import layer_names, prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402
from pruning.procedures import training as T  # noqa: E402
from pruning.store.resume import StopRequest, TrainingCheckpoint, TrainingStopped, checkpoint_progress  # noqa: E402
from pruning.store.resume import duration_text as _duration  # noqa: E402
from pruning.analysis.stats import paired_interval, perplexity_interval, safe_exp, wilson_interval  # noqa: E402

WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
OUT = ROOT / "bench" / "results" / "claims"
SEEDS = (0, 1, 2)
# two-sided 95% Student-t quantiles by degrees of freedom (the interval over seeds)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}

# minilm-rt: 10,246 training snippets, 256 held out for monitoring/selection -> 9,990 to train on
RT_TRAIN = 10246 - 256
EPOCH_32 = round(RT_TRAIN / 32)  # 312 steps of 32
MGPP_STEPS = 6 * EPOCH_32  # 1,872: the paper's 6 epochs
PAPER_MGPP_STEPS = round(6 * 67349 / 32)  # 12,628: 6 epochs of SST-2 at batch 32
RANDOMIZED_SCHEDULE = "0.54,0.83,0.92,0.9375"


# ---------------------------------------------------------------- settings of every point
def mgpp_settings(tiny: bool) -> dict:
    """The paper's schedule shape at 6 epochs of minilm-rt's training split: t0 at the same
    fraction of training as the paper's 1000 of 12,628 steps; t1 at the app default's fraction
    (0.7: our sources give no t1); the paper's interval, s_i, AdamW and prior settings."""
    steps = 12 if tiny else MGPP_STEPS
    return {
        "steps": steps,
        "t0": round(steps * 1000 / PAPER_MGPP_STEPS),
        "t1": round(steps * 0.7),
        "interval": 2 if tiny else 10,
        "s_i": 0.3,
        "lr": 5e-5,
        "batch_size": 8 if tiny else 32,
        "history_points": 3 if tiny else 8,
        "holdout": 256,
    }


def randomized_settings(tiny: bool) -> dict:
    """K = 8 candidates early-evaluated for 1/8 epoch each, the winner fine-tuned for one epoch,
    at each of the paper's 4 stages, with logits distillation (weight 0.5, T = 2)."""
    return {
        "k": 2 if tiny else 8,
        "selection": "early",
        "randomness": 1e-4,
        "steps": 2 if tiny else EPOCH_32 // 8,
        "eval_every": 1 if tiny else 13,
        "n_last": 2,
        "final_steps": 2 if tiny else EPOCH_32,
        "schedule": RANDOMIZED_SCHEDULE,
        "lr": 5e-5,
        "batch_size": 8 if tiny else 32,
        "distill": 0.5,
        "temperature": 2.0,
        "holdout": 64 if tiny else 256,
    }


def sds_settings(tiny: bool) -> dict:
    return {
        "calib_samples": 4 if tiny else 128,
        "calib_len": 128 if tiny else 512,
        "calib_text": "rt-plots train text",
        "iters": 3 if tiny else 200,
        "adjust_iters": 2 if tiny else 30,
        "eval_windows": 2 if tiny else 128,
        "eval_len": 512,
    }


@dataclass(frozen=True)
class Point:
    name: str
    claim: str  # mgpp | randomized | sds
    method: str
    sparsity: float
    granularity: str
    seed: int = 0
    base: str = ""  # sds: sparsegpt or wanda

    def settings(self, tiny: bool) -> dict:
        if self.claim == "mgpp":
            return mgpp_settings(tiny) if self.method != "dense" else {}
        if self.claim == "randomized":
            return randomized_settings(tiny) if self.method != "dense" else {}
        return sds_settings(tiny)


def all_points() -> list[Point]:
    pts = []
    for gran in ("2:4", "layer"):  # 2:4 first: the pattern the paper's headline figures are for
        for base in ("sparsegpt", "wanda"):
            tag = f"sds.{base}.{gran.replace(':', '-')}"
            pts.append(Point(f"{tag}.oneshot.s0", "sds", "oneshot", 0.5, gran, 0, base))
            pts.append(Point(f"{tag}.sds.s0", "sds", "sds", 0.5, gran, 0, base))
    pts.insert(4, Point("sds.dense", "sds", "dense", 0.0, "-"))  # the reference, after the two 2:4 comparisons
    pts.append(Point("minilm.dense", "mgpp", "dense", 0.0, "-"))
    for seed in SEEDS:
        for s in (0.8, 0.9):
            for method in ("gmp", "mgpp"):
                pts.append(Point(f"mgpp.{method}.{round(s * 100)}.s{seed}", "mgpp", method, s, "global", seed))
    for seed in SEEDS:
        for method in ("magnitude", "randomized"):
            pts.append(Point(f"randomized.{method}.s{seed}", "randomized", method, 0.9375, "layer", seed))
    return pts


# ---------------------------------------------------------------- progress with time left
class Progress:
    """Prints ``point: message (elapsed, about N min left)`` at most every ``every`` seconds.

    The time left is from this process's own rate: a resumed run starts at its checkpoint's step."""

    def __init__(self, point: str, every: float = 30.0):
        self.point, self.every, self.start, self.last = point, every, time.perf_counter(), -1e9
        self.first: tuple[int, int, float] | None = None  # (total, done, time) when this phase was first seen

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if self.first is None or self.first[0] != total or done < self.first[1]:
            self.first = (total, done, now)
        if now - self.last < self.every and done < total:
            return
        self.last = now
        elapsed = now - self.start
        frac = done / max(1, total)
        _, done0, t0 = self.first
        rate = (done - done0) / (now - t0) if done > done0 and now > t0 else 0.0
        left = f", about {_duration((total - done) / rate)} left" if rate > 0 and frac < 1 else ""
        print(f"  {self.point}: {message} ({frac:.0%}, {_duration(elapsed)} so far{left})", flush=True)


# ---------------------------------------------------------------- per-item evaluation
def evaluation_record(ev: dict) -> dict:
    """The figures of one ``evaluate()`` call with its RAW per-item values (intervals are
    recomputed from them at report time): per-example correctness, or per-window mean NLL
    and predicted-token counts."""
    out = {k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}
    items = ev["per_item"]
    if ev["metric"] == "accuracy":
        out["correct"] = [int(x) for x in items["correct"]]
    else:
        out.update({"seq_len": ev["seq_len"], "window_mean_nll": items["nll"].tolist(), "window_tokens": items["tokens"].tolist()})
    return out


# ---------------------------------------------------------------- running one point
class Models:
    """Models and data loaded once per process."""

    def __init__(self, wikitext: Path = WIKITEXT):
        self._cache = {}
        self.wikitext_path = Path(wikitext)

    def get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def classifier(self):
        return self.get("minilm", lambda: (load_model("minilm-rt"), load_classification("rotten-tomatoes")))

    def lm(self):
        return self.get("smollm", lambda: load_model("smollm2-135m"))

    def wikitext(self):
        if not self.wikitext_path.exists():
            raise SystemExit(f"error: the WikiText-2 test text is missing ({self.wikitext_path}); give --wikitext")
        return self.get("wikitext", lambda: load_lm_text(str(self.wikitext_path)))


def run_sds_point(pt: Point, st: dict, models: Models, progress, ckpt: TrainingCheckpoint | None = None) -> dict:
    loaded = models.lm()
    out = {"eval": f"WikiText-2 test (shared copy), first {st['eval_windows']} windows of {st['eval_len']} tokens"}
    overrides = None
    if pt.method != "dense":
        calib = calibration_batches(loaded, "rt-plots", n_samples=st["calib_samples"], seq_len=st["calib_len"], seed=pt.seed)
        if pt.method == "oneshot":
            request = PruneRequest.make(pt.base, pt.sparsity, pt.granularity, seed=pt.seed)
            result = prune(loaded, request, calibration=calib, progress=progress)
        else:
            params = {"base": pt.base, "iters": st["iters"], "adjust_iters": st["adjust_iters"], "track_metric": False}
            request = PruneRequest.make("sds", pt.sparsity, pt.granularity, params=params, seed=pt.seed)
            result = prune(loaded, request, calibration=calib, progress=progress, checkpoint=ckpt)
            out["layers_where_final_error_below_first"] = sum(
                1 for v in result.info["layers"].values() if v["relative_error_final"] < v["relative_error_first_sparse"]
            )
        out["prune_s"] = result.seconds
        overrides = result.overrides(loaded)
    ev = evaluate(loaded, models.wikitext(), overrides, max_examples=st["eval_windows"], progress=progress)
    if ev["seq_len"] != st["eval_len"]:
        raise SystemExit(f"error: evaluated on windows of {ev['seq_len']} tokens, not {st['eval_len']}")
    out.update(evaluation_record(ev))
    return out


def staged_magnitude(loaded, data, pt: Point, st: dict, progress, ckpt: TrainingCheckpoint | None = None):
    """The randomized rows' baseline: magnitude masks (per layer) at the same stages, each stage
    fine-tuned (with the same distillation) for as many steps as randomized selection spends on it.
    With ``ckpt`` it saves its state as it goes and resumes from it (the header: the point, its
    settings, the model's weights and the data)."""
    from pruning.store.integrity import weights_fingerprint
    from pruning.store.resume import data_fingerprint
    from pruning.procedures.randomized import stage_sparsities

    schedule = stage_sparsities(pt.sparsity, 1, st["schedule"])
    per_stage = st["k"] * st["steps"] + st["final_steps"]
    task = T.task_data(loaded, data, holdout=st["holdout"], batch_size=st["batch_size"], seed=pt.seed)
    model = T.trainable_copy(loaded, seed=pt.seed)
    layers = layer_names(loaded)
    done, total, masks, first = 0, per_stage * len(schedule), None, 0
    saved = None
    if ckpt is not None:
        ckpt.bind({"point": pt.name, "sparsity": pt.sparsity, "seed": pt.seed, **{f"params.{k}": v for k, v in st.items()},
                   "model": loaded.name, "weights": weights_fingerprint(loaded.model), "data": data_fingerprint(data)})
        saved = ckpt.resume()
    if saved is not None:
        done, first, masks = int(saved["done"]), int(saved["stage"]), saved["masks"]
    for si in range(first, len(schedule)):
        sparsity = schedule[si]
        if saved is None or si != first:
            weights = T.layer_weights(model, layers)
            masks = compute_masks({k: w.abs() for k, w in weights.items()}, sparsity, "layer", weights)
        bound = T.ModuleMasks(model, masks)
        bound.apply_()
        task.restart(pt.seed + 1000 * si + 1)
        tuner = T.FineTuner(model, task, st["lr"], teacher=loaded.model, distill=st["distill"], temperature=st["temperature"])
        if saved is not None and si == first:
            tuner.load_state_dict(saved["tuner"])
        for _ in range(tuner.steps, per_stage):
            tuner.step()
            bound.apply_()
            done += 1
            progress(done, total, f"stage {si + 1}/{len(schedule)} at {sparsity:.1%}")
            if ckpt is not None:
                ckpt.step(done, total, lambda: {"done": done, "stage": si, "masks": masks, "tuner": tuner.state_dict()})
    info = {"schedule": schedule, "steps_per_stage": per_stage, "held_out_metric": T.held_out_metric(model, task)}
    if ckpt is not None:
        info["elapsed_s"], info["resumed_at_step"] = ckpt.elapsed(), ckpt.resumed_at
    return T.trained_result("magnitude (staged)", loaded, model, masks, pt.sparsity, "layer", info)


def run_minilm_point(pt: Point, st: dict, models: Models, progress, ckpt: TrainingCheckpoint | None = None) -> dict:
    loaded, data = models.classifier()
    out = {"eval": f"minilm-rt test split, n={len(data.split('test')[0])}"}
    result, start = None, time.perf_counter()
    if pt.claim == "mgpp" and pt.method != "dense":
        request = PruneRequest.make(pt.method, pt.sparsity, pt.granularity, params=st, seed=pt.seed)
        result = prune(loaded, request, data=data, progress=progress, checkpoint=ckpt)
        out["schedule"] = result.info["schedule"]
    elif pt.method == "randomized":
        request = PruneRequest.make("randomized", pt.sparsity, pt.granularity, params=st, seed=pt.seed)
        result = prune(loaded, request, data=data, progress=progress, checkpoint=ckpt)
        out["chosen"] = [s["chosen"] for s in result.info["stages"]]
        out["selection_scores"] = [s["selection_scores"] for s in result.info["stages"]]
    elif pt.method == "magnitude":
        result = staged_magnitude(loaded, data, pt, st, progress, ckpt)
    if result is not None:
        out["prune_s"] = time.perf_counter() - start
        out["held_out_metric"] = result.info.get("held_out_metric")
        if result.info.get("resumed_at_step") is not None:
            out["resumed_at_step"] = result.info["resumed_at_step"]
            out["prune_s_all_pieces"] = result.info.get("elapsed_s")
    ev = evaluate(loaded, data, None if result is None else result.overrides(loaded), split="test", progress=progress)
    out.update(evaluation_record(ev))
    return out


def checkpoint_dir(args) -> Path:
    """Where the points' training checkpoints live: ``--checkpoint-dir``, by default a folder of the
    PruneScope cache (outside the checkout, so a fresh checkout of the same machine still finds
    them); for ``--tiny`` or another ``--out``, beside the results."""
    if getattr(args, "checkpoint_dir", None):
        return Path(args.checkpoint_dir)
    if Path(args.out).resolve() != OUT.resolve():
        return Path(args.out)
    from pruning.paths import cache_dir

    return cache_dir() / "claims-checkpoints"


def point_checkpoint(pt: Point, args) -> TrainingCheckpoint:
    """The training checkpoint of a point, beside its file (resumed when the same point runs again)."""
    minutes = getattr(args, "checkpoint_minutes", 10.0)
    return TrainingCheckpoint(
        checkpoint_dir(args) / f"{pt.name}.ckpt",
        every_steps=getattr(args, "checkpoint_every", None),
        interval_s=None if not minutes else 60.0 * minutes,
        stop=getattr(args, "stop", None),
        warn=lambda m: print(f"  {pt.name}: warning: {m}", flush=True),
        note=lambda m: print(f"  {pt.name}: {m}", flush=True),
    )


def run_point(pt: Point, args, models: Models) -> Path:
    path = Path(args.out) / f"{pt.name}.json"
    st = pt.settings(args.tiny)
    progress = Progress(pt.name, every=1.0 if args.tiny else 30.0)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    start = time.perf_counter()
    load_before = os.getloadavg()
    runner = run_sds_point if pt.claim == "sds" else run_minilm_point
    ckpt = point_checkpoint(pt, args)
    figures = runner(pt, st, models, progress, ckpt)
    record = {
        "point": pt.name,
        "claim": pt.claim,
        "method": pt.method,
        "base": pt.base or None,
        "sparsity": pt.sparsity,
        "granularity": pt.granularity,
        "seed": pt.seed,
        "settings": st,
        "tiny": bool(args.tiny),
        "started": started_at,
        "wall_s": time.perf_counter() - start,
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "machine": machine(),
        "cores": os.cpu_count(),
        "commit": args.commit,
        **figures,
    }
    write_json_atomic(path, record)
    ckpt.remove()  # the point's file is in place: its training state is not needed any more
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Written to a temporary sibling, then renamed: never seen half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, default=float))


# ---------------------------------------------------------------- time estimates
def measure_minilm(models: Models) -> dict:
    """Seconds per training step (batch 32, without and with distillation) and per test-set evaluation."""
    loaded, data = models.classifier()
    rates = {}
    for key, distill in (("minilm_step_b32", 0.0), ("minilm_step_b32_distill", 0.5)):
        task = T.task_data(loaded, data, batch_size=32, seed=0)
        model = T.trainable_copy(loaded)
        tuner = T.FineTuner(model, task, 5e-5, teacher=loaded.model if distill else None, distill=distill)
        tuner.step()
        rates[key] = _timed(lambda: [tuner.step() for _ in range(3)]) / 3
    rates["minilm_eval"] = _timed(lambda: evaluate(loaded, data, None, split="test"))
    return rates


def measure_lm(models: Models) -> dict:
    """Seconds per evaluation window, per 1,000 calibration tokens of a one-shot pruning, and per
    SDS iteration over all 210 layers (a dense step on every layer's real weight shape)."""
    from pruning.procedures.sds import sds_dense_step

    lm = models.lm()
    rates = {"lm_window": _timed(lambda: evaluate(lm, models.wikitext(), None, max_examples=2)) / 2}
    calib = calibration_batches(lm, "rt-plots", n_samples=8, seq_len=512, seed=0)
    for base in ("sparsegpt", "wanda"):
        rates[f"lm_{base}_per_1k_tokens"] = _timed(lambda: prune(lm, PruneRequest.make(base, 0.5, "2:4"), calibration=calib)) / (8 * 512 / 1000)
    weights = T.layer_weights(lm.model, layer_names(lm))
    eyes = {}

    def dense_steps():
        for w in weights.values():
            g = eyes.setdefault(w.shape[1], torch.eye(w.shape[1]))
            sds_dense_step(w, w, g, 1e-6, 1e-6, lr=0.1, iters=2)

    rates["lm_sds_iter_all_layers"] = _timed(dense_steps) / 2
    return rates


def measure_rates(models: Models, part: str, previous: dict) -> dict:
    """Seconds per unit of work on this machine now (a few steps of each kind; no point is run),
    merged into the earlier measurement of the other part, each part with its time and load."""
    rates = measure_minilm(models) if part == "minilm" else measure_lm(models)
    out = {"rates": {**previous.get("rates", {}), **rates}, "parts": dict(previous.get("parts", {})), "machine": machine()}
    out["parts"][part] = {"measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_average": os.getloadavg(), "commit": _commit()}
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def estimate(pt: Point, rates: dict) -> float | None:
    """Seconds the point should take at the measured rates (None until ``--measure`` measured its part)."""
    try:
        return _estimate(pt, rates.get("rates", {}), pt.settings(False))
    except KeyError:
        return None


def _estimate(pt: Point, r: dict, st: dict) -> float:
    if pt.claim == "sds":
        ev = st["eval_windows"] * r["lm_window"]
        if pt.method == "dense":
            return ev
        k_tokens = st["calib_samples"] * st["calib_len"] / 1000
        one = k_tokens * r[f"lm_{pt.base}_per_1k_tokens"]
        if pt.method == "oneshot":
            return one + ev
        grams = 2 * k_tokens * r["lm_wanda_per_1k_tokens"]  # a forward pass collecting statistics, like Wanda's
        return 2 * one + grams + (st["iters"] + st["adjust_iters"]) * r["lm_sds_iter_all_layers"] + ev
    if pt.method == "dense":
        return r["minilm_eval"]
    if pt.claim == "mgpp":
        return st["steps"] * r["minilm_step_b32"] + (st["history_points"] + 1) * r["minilm_eval"] * 0.2
    stages = len(st["schedule"].split(","))
    steps = stages * (st["k"] * st["steps"] + st["final_steps"])
    return steps * r["minilm_step_b32_distill"] + r["minilm_eval"] * (1 + 0.2 * stages * st["k"])


def list_points(points, out: Path, rates: dict, ckpt_dir: Path) -> None:
    left = 0.0
    for pt in points:
        path = out / f"{pt.name}.json"
        est = estimate(pt, rates)
        saved = checkpoint_progress(ckpt_dir / f"{pt.name}.ckpt")
        if path.exists():
            rec = json.loads(path.read_text())
            status = f"done  {_duration(rec['wall_s'])} wall, {rec['metric']} {rec['value']:.4f}"
        elif saved is not None:
            status = f"stopped at step {saved[0]} of {saved[1]} (resumes there)"
            left += (est or 0.0) * (1 - saved[0] / max(1, saved[1]))
        else:
            status = "to do"
            left += est or 0.0
        est_s = "?" if est is None else _duration(est)
        print(f"{pt.name:34s} {status:44s} estimate {est_s}")
    note = "" if rates.get("rates") else " (run --measure for estimates)"
    print(f"left to run: about {_duration(left)} at the measured rates{note}")


def point_states(points, out: Path, ckpt_dir: Path) -> dict[str, dict]:
    """Where every point stands: done (its file), stopped at step k of N (its training checkpoint), or to do."""
    states = {}
    for pt in points:
        saved = checkpoint_progress(ckpt_dir / f"{pt.name}.ckpt")
        if (out / f"{pt.name}.json").exists():
            states[pt.name] = {"state": "done"}
        elif saved is not None:
            states[pt.name] = {"state": "stopped", "step": saved[0], "of": saved[1]}
        else:
            states[pt.name] = {"state": "to do"}
    return states


def write_status(points, out: Path, ckpt_dir: Path) -> Path:
    """bench/results/claims/status.json: every point's state as of now (the report renders it, so the docs
    say which rows are still running and how far each has come, from a file the checkout holds)."""
    path = out / "status.json"
    write_json_atomic(path, {"as_of": time.strftime("%Y-%m-%d %H:%M %Z"), "points": point_states(points, out, ckpt_dir)})
    return path


def status_report(out: Path) -> list[str]:
    """The points not yet done, from status.json, with how far each has come."""
    path = out / "status.json"
    if not path.exists():
        return []
    status = json.loads(path.read_text())
    open_points = {k: v for k, v in status["points"].items() if v["state"] != "done" and not (out / f"{k}.json").exists()}
    lines = ["## Points not yet measured", "", f"As of {status['as_of']} (`bench/results/claims/status.json`, written by `--status`):", ""]
    if not open_points:
        return lines + ["every point is measured."]
    lines += ["| point | state |", "|---|---|"]
    for name, v in open_points.items():
        state = f"stopped at step {v['step']} of {v['of']} ({v['step'] / max(1, v['of']):.0%}); resumes there" if v["state"] == "stopped" else v["state"]
        lines.append(f"| {name} | {state} |")
    return lines


# ---------------------------------------------------------------- report (intervals from the raw per-item values)
def _load(out: Path, name: str) -> dict | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _figure(rec: dict | None) -> str:
    """``0.8251 [0.8034, 0.8449]`` (Wilson for accuracy, seeded bootstrap over windows for perplexity)."""
    if rec is None:
        return "not measured"
    if rec["metric"] == "accuracy":
        low, high = wilson_interval(sum(rec["correct"]), len(rec["correct"]))
        return f"{rec['value']:.4f} [{low:.4f}, {high:.4f}]"
    low, high = perplexity_interval(rec["window_mean_nll"], rec["window_tokens"], seed=0)
    return f"{rec['value']:.2f} [{low:.2f}, {high:.2f}]"


def _paired(new: dict | None, old: dict | None) -> tuple[str, float | None]:
    """``new - old`` on the same items with its paired bootstrap interval (seed 0)."""
    if new is None or old is None:
        return "-", None
    if new["metric"] == "accuracy":
        d, low, high = paired_interval(new["correct"], old["correct"], seed=0)
        return f"{d:+.4f} [{low:+.4f}, {high:+.4f}]", d
    d, low, high = paired_interval(
        new["window_mean_nll"], old["window_mean_nll"], weights=new["window_tokens"], transform=safe_exp, seed=0
    )
    return f"{d:+.2f} [{low:+.2f}, {high:+.2f}]", d


def _wall(*recs) -> str:
    return " / ".join("-" if r is None else _duration(r["wall_s"]) for r in recs)


def sds_report(out: Path) -> list[str]:
    dense = _load(out, "sds.dense")
    lines = [
        "## SDS vs its one-shot start (SmolLM2-135M, WikiText-2 test)",
        "",
        f"Dense: {_figure(dense)}." + ("" if dense is None else f" {dense['eval']}."),
        "",
        "| start | pattern | one-shot | SDS | SDS - one-shot (paired) | calibration, iterations | wall one-shot / SDS |",
        "|---|---|---|---|---|---|---|",
    ]
    for gran in ("2:4", "layer"):
        for base in ("sparsegpt", "wanda"):
            tag = f"sds.{base}.{gran.replace(':', '-')}"
            one, sds = _load(out, f"{tag}.oneshot.s0"), _load(out, f"{tag}.sds.s0")
            st = (sds or one or {}).get("settings") or sds_settings(False)
            budget = f"{st['calib_samples']} x {st['calib_len']} tokens, {st['iters']} + {st['adjust_iters']}"
            pattern = "2:4" if gran == "2:4" else "50%"
            lines.append(f"| {base} | {pattern} | {_figure(one)} | {_figure(sds)} | {_paired(sds, one)[0]} | {budget} | {_wall(one, sds)} |")
    return lines


def _seed_interval(ds: list[float]) -> str:
    """Mean of the per-seed paired differences with a Student-t 95% interval over the seeds."""
    mean = sum(ds) / len(ds)
    if len(ds) < 2:
        return f"{mean:+.4f} (one seed: no interval over seeds)"
    sd = (sum((d - mean) ** 2 for d in ds) / (len(ds) - 1)) ** 0.5
    half = T975.get(len(ds) - 1, 1.96) * sd / len(ds) ** 0.5
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}] over {len(ds)} seeds"


def _conditions(*recs) -> str:
    """Machine and load average at the start of each point, as its file records them."""
    parts = []
    for r in recs:
        if r is None:
            continue
        load = (r.get("load_average") or {}).get("start")
        cpu = (r.get("machine") or {}).get("cpu", "?")
        parts.append(f"{cpu}, load {load[0]:.1f}" if load else cpu)
    return " / ".join(parts) or "-"


def pair_report(out: Path, title: str, rows: list[tuple[str, str, str]], names: tuple[str, str]) -> list[str]:
    """One table of (label, baseline point, method point) rows, per seed (the paired interval within the
    seed), and per label the mean difference over the seeds measured with its interval over seeds."""
    lines = [
        f"## {title}",
        "",
        f"| setting | seed | {names[0]} | {names[1]} | {names[1]} - {names[0]} (paired, within the seed) | wall | machine, load at start |",
        "|---|---|---|---|---|---|---|",
    ]
    by_label: dict[str, list[float]] = {}
    for label, base_name, new_name in rows:
        base, new = _load(out, base_name), _load(out, new_name)
        text, d = _paired(new, base)
        seed = (new or base or {}).get("seed", base_name.rsplit(".s", 1)[-1])
        lines.append(f"| {label} | {seed} | {_figure(base)} | {_figure(new)} | {text} | {_wall(base, new)} | {_conditions(base, new)} |")
        if d is not None:
            by_label.setdefault(label, []).append(d)
    for label, ds in by_label.items():
        lines.append(f"| {label} | mean of {len(ds)} | | | {_seed_interval(ds)} | | |")
    return lines


def _pair_summary(out: Path, label: str, pairs: list[tuple[str, str]], names: tuple[str, str]) -> str:
    """One line: the paired difference per seed measured, and their mean over seeds with its interval."""
    done = [(seed, *_paired(_load(out, new), _load(out, base))) for seed, (base, new) in enumerate(pairs)]
    done = [(seed, text, d) for seed, text, d in done if d is not None]
    head = f"{label}: {names[1]} - {names[0]}"
    if not done:
        return f"{label}: not measured yet (0 of {len(pairs)} seeds)"
    if len(done) == 1:
        seed, text, _ = done[0]
        return f"{head} {text} (paired, seed {seed} only: 1 of {len(pairs)} seeds measured)"
    per_seed = ", ".join(f"seed {seed} {d:+.4f}" for seed, _, d in done)
    return f"{head} {_seed_interval([d for _, _, d in done])} ({per_seed})"


def claim_summaries(out: Path) -> dict[str, list[str]]:
    """Per claim (the anchor of its section in docs/CLAIMS.md), one line per setting with the measured
    difference: what the app's Method steps view shows beside the method."""
    mgpp = [
        _pair_summary(out, f"{s}% global", [(f"mgpp.gmp.{s}.s{seed}", f"mgpp.mgpp.{s}.s{seed}") for seed in SEEDS], ("GMP", "MGPP"))
        for s in (80, 90)
    ]
    randomized = [
        _pair_summary(
            out, "93.75% in 4 stages", [(f"randomized.magnitude.s{seed}", f"randomized.randomized.s{seed}") for seed in SEEDS], ("magnitude", "randomized")
        )
    ]
    sds = []
    for gran, pattern in (("2-4", "2:4"), ("layer", "50%")):
        for base in ("sparsegpt", "wanda"):
            tag = f"sds.{base}.{gran}"
            text, d = _paired(_load(out, f"{tag}.sds.s0"), _load(out, f"{tag}.oneshot.s0"))
            sds.append(f"from {base} at {pattern}: " + ("not measured yet" if d is None else f"perplexity SDS - one-shot {text}"))
    return {"claim-mgpp": mgpp, "claim-randomized": randomized, "claim-sds": sds}


def report_markdown(out: Path) -> str:
    """The claims report of the finished points under ``out`` (bench/report.py puts it in docs/CLAIMS.md)."""
    dense = _load(out, "minilm.dense")
    mgpp_rows = [(f"{s}%", f"mgpp.gmp.{s}.s{seed}", f"mgpp.mgpp.{s}.s{seed}") for s in (80, 90) for seed in SEEDS]
    rand_rows = [("93.75%, 4 stages", f"randomized.magnitude.s{seed}", f"randomized.randomized.s{seed}") for seed in SEEDS]
    lines = [
        "Every figure with its 95% interval: accuracy Wilson, perplexity a bootstrap over windows, differences a paired "
        "bootstrap over the same test items (2,000 resamples, seed 0) within a seed, and a Student-t interval over the "
        "seeds' differences for their mean. Settings, wall time, machine, load and commit of each point are in its file "
        "under `bench/results/claims/`; \"not measured\" marks a point that has not finished.",
        "",
        *sds_report(out),
        "",
        f"minilm-rt dense accuracy on the test split: {_figure(dense)}.",
        "",
        *pair_report(out, "MGPP vs GMP (minilm-rt, global)", mgpp_rows, ("GMP", "MGPP")),
        "",
        *pair_report(out, "Randomized selection vs magnitude (minilm-rt, per layer)", rand_rows, ("magnitude", "randomized")),
        "",
        *status_report(out),
    ]
    return "\n".join(lines) + "\n"


def write_report(out: Path) -> Path:
    path = out.parent / "claims.md"
    text = "# The seed papers' claims at their own budgets (`bench/bench_claims.py`)\n\n" + report_markdown(out)
    write_text_atomic(path, text)
    return path


# ---------------------------------------------------------------- main
def select(points, args) -> list[Point]:
    if args.point:
        names = {p.name for p in points}
        unknown = [n for n in args.point if n not in names]
        if unknown:
            raise SystemExit(f"error: unknown point {unknown[0]!r}; see --list")
        return [p for p in points if p.name in args.point]
    return [p for p in points if args.only is None or p.claim == args.only]


def run_all(todo, args, rates) -> int:
    """Run the points not yet done; the exit status (0, or 128 + the signal that stopped a point)."""
    models = Models(args.wikitext)
    out = Path(args.out)
    pending = [p for p in todo if not (out / f"{p.name}.json").exists()]
    print(f"{len(todo) - len(pending)} of {len(todo)} points already done; {len(pending)} to run", flush=True)
    stop: StopRequest = getattr(args, "stop", None) or StopRequest()
    for i, pt in enumerate(pending):
        if args.no_start_after and time.strftime("%H:%M") >= args.no_start_after:
            print(f"it is past {args.no_start_after}: not starting {pt.name} or the {len(pending) - i - 1} after it", flush=True)
            return 0
        why = stop.due()
        if why is not None:
            print(f"stopping ({why}): not starting {pt.name} or the {len(pending) - i - 1} after it", flush=True)
            return _stop_status(stop)
        est = estimate(pt, rates)
        print(f"[{i + 1}/{len(pending)}] {pt.name} (estimate {'?' if est is None else _duration(est)})", flush=True)
        try:
            rec = json.loads(run_point(pt, args, models).read_text())
        except TrainingStopped as stopped:
            print(
                f"[{i + 1}/{len(pending)}] {pt.name}: stopped at step {stopped.done} of {stopped.total} ({stopped.reason}); "
                f"checkpoint {stopped.path}; run the same command again to resume there",
                flush=True,
            )
            return _stop_status(stop)
        rest = [estimate(p, rates) for p in pending[i + 1 :]]
        left = "?" if None in rest else _duration(sum(rest))
        print(
            f"[{i + 1}/{len(pending)}] {pt.name}: {rec['metric']} {rec['value']:.4f} in {_duration(rec['wall_s'])}; "
            f"{len(rest)} points left, about {left} at the measured rates",
            flush=True,
        )
    return 0


def _stop_status(stop: StopRequest) -> int:
    """0 for a deadline; 128 + the signal number when a signal stopped the run."""
    signum = getattr(stop, "signum", None)
    return 0 if signum is None else 128 + signum


def next_clock_time(hhmm: str, now: datetime.datetime | None = None) -> float:
    """The next time the clock reads ``HH:MM`` (today, or tomorrow when it has passed), as time.time() seconds."""
    try:
        hour, minute = (int(x) for x in hhmm.split(":"))
        now = now or datetime.datetime.now()
        at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        raise SystemExit(f"error: --stop-at takes a clock time HH:MM, got {hhmm!r}") from None
    if at <= now:
        at += datetime.timedelta(days=1)
    return at.timestamp()


def install_stop_handlers(stop: StopRequest) -> None:
    """SIGTERM and the first Ctrl-C ask the running point to save a checkpoint and stop; a second Ctrl-C stops at once."""

    def handler(signum, frame):
        if stop.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = signum
        stop.request(signal.Signals(signum).name)
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the next step, then stopping", flush=True)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the points with their state and time estimate")
    parser.add_argument("--measure", choices=["lm", "minilm"], help="measure per-step costs for the estimates (a few minutes)")
    parser.add_argument("--report", action="store_true", help="write bench/results/claims.md from the finished points")
    parser.add_argument("--status", action="store_true", help="write claims/status.json: every point done, stopped at step k of N, or to do")
    parser.add_argument("--only", choices=["mgpp", "randomized", "sds"])
    parser.add_argument("--point", action="append", help="run this point only (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="toy budgets, for a smoke test (use another --out)")
    parser.add_argument("--no-start-after", metavar="HH:MM", help="start no new point after this clock time")
    parser.add_argument(
        "--stop-at", metavar="HH:MM", help="save a checkpoint and exit (status 0) shortly before this clock time (the next time it comes)"
    )
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="also save the training checkpoint every this many steps")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0, help="save the training checkpoint this often (default 10; 0: never by time)")
    parser.add_argument("--wikitext", default=str(WIKITEXT), help="the WikiText-2 raw test file (default ../shared/data/...)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--checkpoint-dir", help="where training checkpoints go (default: the PruneScope cache's claims-checkpoints)")
    args = parser.parse_args()
    args.commit = _commit()  # the code this process runs, whatever the checkout holds by the time a point ends
    out = Path(args.out)
    if args.tiny and out.resolve() == OUT.resolve():
        raise SystemExit("error: --tiny results must not land in bench/results/claims; give --out")
    rates_path = OUT / "rates.json"
    rates = json.loads(rates_path.read_text()) if rates_path.exists() else {}
    if args.measure:
        rates = measure_rates(Models(args.wikitext), args.measure, rates)
        write_json_atomic(rates_path, rates)
        print(json.dumps(rates, indent=1))
        return
    if args.report:
        print(write_report(out).read_text())
        return
    points = select(all_points(), args)
    if args.list:
        list_points(points, out, rates, checkpoint_dir(args))
        return
    if args.status:
        print(f"wrote {write_status(points, out, checkpoint_dir(args))}")
        return
    args.stop = StopRequest(None if args.stop_at is None else next_clock_time(args.stop_at))
    if args.stop.deadline is not None:
        print(f"stopping before {time.strftime('%Y-%m-%d %H:%M', time.localtime(args.stop.deadline))}", flush=True)
    install_stop_handlers(args.stop)
    sys.exit(run_all(points, args, rates))


if __name__ == "__main__":
    main()
