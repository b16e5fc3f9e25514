"""``python -m pruning``: list, prune, sweep and probe sensitivity from the command line.

Bad input ends with one line ``error: ...`` on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .errors import PruneScopeError

EXIT_USAGE = 2
_OPEN_BARS: list = []  # closed before an error is printed, so the message gets a line of its own
POSTFIX_ROOM = 60  # characters of a progress message shown beside the bar; a longer one is also written whole


def _say(line: str) -> None:
    """A line on stderr above any open progress bar (never cut off or overdrawn by it)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)  # clears a bar drawn on the line, writes, draws the bar again


def _progress_bar(desc: str):
    """A progress callback drawing a tqdm bar (silent when stderr is not a terminal and CI is set)."""
    from tqdm import tqdm

    bar = None
    said = set()

    def update(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)
            _OPEN_BARS.append(bar)
        if len(message) > POSTFIX_ROOM and message not in said:  # e.g. why a cache is rebuilt: whole, on its own line
            said.add(message)
            _say(f"{desc}: {message}")
        bar.n = done
        bar.set_postfix_str(message[:POSTFIX_ROOM], refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()
            bar = None

    return update


MAX_POINTS = 40  # sparsities in one --sparsities list: each is a full prune (and evaluation) per method or layer


def _floats(text: str, flag: str = "--sparsities", most: int = MAX_POINTS) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(v != v for v in values):
        raise PruneScopeError(f"{flag} expects comma-separated numbers such as 0.3,0.5,0.7, got {text!r}")
    if len(values) > most:
        raise PruneScopeError(f"{flag} takes at most {most} values (each is a full run), got {len(values)}")
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _placement(args):
    """The --device/--dtype/--max-memory/--offload-folder choice, checked before anything loads."""
    from .loading.devices import Placement

    return Placement.make(args.device, args.dtype, args.max_memory, args.offload_folder)


def _load(args):
    from .embedded import load_model

    loaded = load_model(
        args.model,
        gguf_file=getattr(args, "gguf_file", None),
        trust_remote_code=getattr(args, "trust_remote_code", False),
        progress=_progress_bar("loading model"),
        placement=_placement(args),
    )
    if loaded.info.get("rebuilt"):
        _note(f"built the cached {loaded.name} now: {loaded.info['rebuilt']}")
    return loaded


def _warn(message: str) -> None:
    _say(f"warning: {message}")


def _task_data(loaded, args):
    """The evaluation data matching the model's task."""
    from .loading.data import load_classification, load_lm_text

    source = getattr(args, "dataset", None)
    if loaded.task == "causal-lm":
        return load_lm_text(source or "rt-plots")
    return load_classification(
        source or "rotten-tomatoes",
        text_column=getattr(args, "text_column", None),
        label_column=getattr(args, "label_column", None),
    )


def _calibration(loaded, request):
    from .prune import calibration_for, calibration_note

    if not request.needs_calibration:
        return None
    batches = calibration_for(loaded, request)
    used = sum(int(b["input_ids"].shape[0]) for b in batches)
    if used < request.calib_samples:
        _note(f"--calib capped: {calibration_note(request.calib_samples, used)}")
    return batches


def _method_params(pairs: list[str] | None) -> dict:
    params = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise PruneScopeError(f"--param takes NAME=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def _threshold_rule(text: str | None) -> str | None:
    """``--allocation`` naming a threshold rule (``layer``, ``row``, ``global``, ``2:4``): its word, which
    means the same as ``--granularity`` with it; else ``None`` (a measured allocation or a file)."""
    if text is None or Path(text).exists():
        return None
    from .allocations.registry import parse_rule

    return text.strip().lower() if parse_rule(text) is not None else None


def _allocation_rule(text: str | None):
    """``--allocation NAME[:k=v,...]`` naming a measured allocation (OWL): ``(allocation, params)``, else ``None``."""
    if text is None or Path(text).exists() or _threshold_rule(text) is not None:
        return None
    from .allocations.registry import all_allocations, measured, parse_spec

    name, params = parse_spec(text)
    rules = measured()
    if name not in rules:
        if text.lower().endswith(".json") or "/" in text:
            return None  # a file path (its absence is reported when it is read)
        raise PruneScopeError(f"--allocation {text!r} is neither a file nor an allocation; allocations: "
                              f"{', '.join(n for n, a in all_allocations().items() if a.measured or n != 'allocated')}, or FILE.json")
    rule = rules[name]
    return rule, rule.resolve_params(params)


def _allocation(path: str | None) -> dict | None:
    """``{layer: sparsity}`` from a JSON file (checked further by :meth:`PruneRequest.make`)."""
    if path is None or _threshold_rule(path) is not None or _allocation_rule(path) is not None:
        return None
    try:
        value = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise PruneScopeError(f"allocation file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        raise PruneScopeError(f"allocation file {path} must hold one JSON object {{layer name: sparsity}} with numbers as values")
    return value


def _request(args, method: str, **changes):
    """The validated request the command line describes (before any model is loaded)."""
    from .loading.data import RT_ALIASES
    from .request import PruneRequest

    dataset = getattr(args, "dataset", None)
    named = [f for f in ("text_column", "label_column") if getattr(args, f, None)]
    if named and (dataset is None or str(dataset).strip().lower() in RT_ALIASES or str(dataset).strip().lower() == "rt-plots"):
        flags = " and ".join("--" + f.replace("_", "-") for f in named)
        verb = "names" if len(named) == 1 else "name"
        raise PruneScopeError(f"{flags} {verb} a column of a CSV/TSV/JSONL file or a hub dataset; the embedded data has fixed columns (give --dataset)")

    granularity = getattr(args, "granularity", None)
    rule = _threshold_rule(getattr(args, "allocation", None))
    if rule is not None:  # --allocation row is --granularity row
        if granularity is not None and str(granularity).strip().lower() != rule:
            raise PruneScopeError(f"--allocation {rule} and --granularity {granularity} name two different rules; give one")
        granularity = rule
    settings = dict(
        sparsity=getattr(args, "sparsity", None),
        granularity=granularity,
        params=_method_params(getattr(args, "param", None)),
        dataset=getattr(args, "dataset", None),
        calib_samples=args.calib,
        calib_len=args.calib_len,
        seed=args.seed,
        include=getattr(args, "include", None),
        exclude=getattr(args, "exclude", None),
        update=getattr(args, "update", None),
        numerics=getattr(args, "numerics", None),
    )
    settings.update(changes)
    return PruneRequest.make(method, **settings)


# ---------------------------------------------------------------- commands
def cmd_models(args) -> int:
    from .loading.models import EMBEDDED_MODELS

    print("Embedded defaults (work offline, from installed packages):")
    for name, text in EMBEDDED_MODELS.items():
        print(f"  {name:14s} {text}")
    print("Also: any Hugging Face hub name (online), a local model folder, or a .gguf file.")
    return 0


def _line_progress(what: str):
    """A progress callback printing a plain line per 10% (readable in CI logs, unlike a tqdm bar)."""
    shown = {"last": -1}

    def update(done: int, total: int, message: str) -> None:
        tenth = int(10 * done / max(total, 1))
        if tenth != shown["last"]:
            shown["last"] = tenth
            print(f"  {what}: {100 * done // max(total, 1):3d}%  {message}", flush=True)

    return update


def cmd_prepare(args) -> int:
    """Build the embedded defaults now (minilm-rt's fine-tune, SmolLM2's float32 copy)."""
    import time

    from .loading.models import EMBEDDED_MODELS
    from .embedded import load_model

    names = args.models or list(EMBEDDED_MODELS)
    if args.verify:
        from .embedded.minilm_rt import minilm_rt_dir
        from .store.integrity import forget_verified
        from .embedded.smollm2 import SMOLLM2_CACHE_NAME
        from .paths import cache_dir

        for folder in (minilm_rt_dir(), cache_dir() / SMOLLM2_CACHE_NAME):
            forget_verified(folder)  # the load below hashes every file again
    for name in names:
        start = time.perf_counter()
        print(f"prepare: {name}", flush=True)
        load_model(name, progress=_line_progress(name))
        print(f"prepare: {name} ready in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


def cmd_methods(args) -> int:
    """The three choices: criteria (and the procedures built on them), allocations, updates."""
    from .allocations.registry import all_allocations
    from .catalog import all_methods
    from .masks import supported_rules
    from .updates.registry import all_updates

    print("Criteria and methods (--method): which weights are kept")
    for m in all_methods().values():
        flags = []
        if m.needs_calibration:
            flags.append("calibration")
        if m.updates_weights:
            flags.append("updates weights")
        if m.needs_training_data:
            flags.append("trains")
        print(f"  {m.name:10s} [{m.family}] {m.summary}" + (f" ({', '.join(flags)})" if flags else ""))
        if m.aliases:
            for alias in m.aliases:  # the criterion's name in the three choices; lookups accept it, lists show the method once
                print(f"  {'':10s} criterion name: --method {alias} ({m.label} = criterion {alias} + update {m.own_update})")
        print(f"  {'':10s} allocations: {', '.join(supported_rules(m))} (default {m.default_granularity})")
        updates = "any --update" if m.takes_update else "no --update choice"
        if callable(m.default_update):  # SDS: its base's own
            print(f"  {'':10s} update: by default the one its parameters give ({m.own_update} with the defaults); {updates}")
        else:
            print(f"  {'':10s} update: {m.own_update} by default; {updates}")
        for key, p in m.params.items():
            choices = f" (one of: {', '.join(map(str, p.options))})" if p.options else ""
            print(f"  {'':10s} --param {key}={p.default}  {p.help}{choices}")
    print()
    print("Allocations (--allocation, or --granularity for a rule): how many weights each layer keeps")
    for a in all_allocations().values():
        if a.shape is not None:  # a threshold rule, named by its words
            words = [w for w, _ in a.shape.words]
            name = words[0] if len(words) == 1 else a.label
            print(f"  {name:10s} --allocation {' | '.join(words)}: {a.summary}")
            continue
        spec = ",".join(f"{k}={p.default:g}" if isinstance(p.default, float) else f"{k}={p.default}" for k, p in a.params.items())
        print(f"  {a.name:10s} --allocation {a.name}" + (f"[:{spec}]" if spec else "") + f": {a.summary}")
        for key, p in a.params.items():
            print(f"  {'':10s} {key}={p.default}  {p.help}")
    print()
    print("Updates (--update): what happens to the weights the mask keeps")
    for u in all_updates().values():
        flags = ", ".join(f for f, on in (("calibration", u.needs_calibration), ("changes weights", u.changes_weights)) if on)
        print(f"  {u.name:10s} {u.summary}" + (f" ({flags})" if flags else ""))
    return 0


def cmd_layers(args) -> int:
    from .loading.models import prunable_layers

    loaded = _load(args)
    layers = prunable_layers(loaded.model, include=args.include, exclude=args.exclude)
    total = 0
    for info in layers:
        print(f"{info.name:60s} {info.kind:7s} {str(tuple(info.shape)):>14s} {info.params:>10,d}")
        total += info.params
    print(f"{len(layers)} prunable layers, {total:,d} parameters")
    return 0


def cmd_prune(args) -> int:
    from .store.outputs import claim, output_path

    request = _request(args, args.method, allocation=_allocation(args.allocation))  # every check before loading
    from .masks import supports

    if _allocation_rule(args.allocation) is not None and not supports(request.method_info, "allocated"):
        raise PruneScopeError(f"method {request.method} cannot prune each layer at its own sparsity (no 'allocated' granularity)")
    if _allocation_rule(args.allocation) is not None and args.granularity is not None:
        raise PruneScopeError(f"--allocation {args.allocation} gives each layer its own sparsity; it cannot be combined with --granularity")
    out = output_path(args.out)
    if out.exists() and not out.is_dir():
        raise PruneScopeError(f"--out {out} is a file; give a folder for the run")
    offload = Path(args.offload_folder).expanduser().resolve() if args.offload_folder else None
    if offload is not None and (offload == out.resolve() or out.resolve() in offload.parents):
        raise PruneScopeError(f"--offload-folder {args.offload_folder} lies inside --out {out}, which is replaced whole; choose a folder outside it")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise PruneScopeError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    with claim(out, overwrite=args.overwrite) as held:  # before any work: writable, not taken, not occupied
        return _prune(args, request, held)


def _eta_lines(what: str, every: float = 30.0):
    """A progress callback printing ``what: message (done/total, time so far, about T left)`` lines to stderr,
    at most every ``every`` seconds; the time left is from this process's own rate (a resumed run
    starts at its checkpoint's step)."""
    import time

    from .store.resume import duration_text as _duration

    state = {"first": None, "last": -1e9, "start": time.monotonic()}

    def update(done: int, total: int, message: str) -> None:
        now = time.monotonic()
        first = state["first"]
        if first is None or first[0] != total or done < first[1]:
            state["first"] = first = (total, done, now)
        if now - state["last"] < every and done < total:
            return
        state["last"] = now
        rate = (done - first[1]) / (now - first[2]) if done > first[1] and now > first[2] else 0.0
        left = f", about {_duration((total - done) / rate)} left" if rate > 0 and done < total else ""
        print(f"  {what}: {message} ({done}/{total}, {_duration(now - state['start'])} so far{left})", file=sys.stderr, flush=True)

    return update


def _training_checkpoint(args, held, stop):
    """The training checkpoint beside the output folder (``<out>.ckpt``): resumed by the same command, replaced by --overwrite."""
    from .paths import clear_orphans
    from .store.resume import TrainingCheckpoint

    out = held.targets[0]
    path = out.with_name(out.name + ".ckpt")
    clear_orphans(path)  # the output's claim is held: no other run writes this checkpoint
    minutes = args.checkpoint_minutes
    return TrainingCheckpoint(
        path,
        every_steps=args.checkpoint_every,
        interval_s=60.0 * minutes if minutes else None,
        stop=stop,
        warn=_warn,
        note=lambda message: print(f"note: {message}", file=sys.stderr, flush=True),
        overwrite=args.overwrite,
    )


def _stop_on_signals(stop):
    """SIGTERM and a first Ctrl-C ask the training to save a checkpoint and stop; a second Ctrl-C stops at once.
    Returns the handlers to put back."""
    import signal

    def handler(signum, frame):
        if stop.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = signum
        stop.request(signal.Signals(signum).name)
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the next step, then stopping", file=sys.stderr, flush=True)

    return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}


def _run_resumable(args, held, loaded, request, calibration, data):
    """A method that trains: ETA lines, a training checkpoint, signals that stop it at a checkpoint."""
    import signal

    from .prune import prune
    from .store.resume import StopRequest

    stop = StopRequest()
    checkpoint = _training_checkpoint(args, held, stop)
    previous = _stop_on_signals(stop)
    try:
        result = prune(loaded, request, calibration=calibration, data=data, progress=_eta_lines(args.method), checkpoint=checkpoint)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    return result, checkpoint


def _prune(args, request, held) -> int:
    from .prune import prune
    from .store.resume import TrainingStopped
    from .store.runs import write_run

    loaded = _load(args)
    method = request.method_info
    rule = _allocation_rule(args.allocation)
    data = _task_data(loaded, args) if (args.eval or method.needs_training_data or request.needs_calibration or rule) else None
    calibration = _calibration(loaded, request)
    rule_info = None
    if rule is not None:  # a measured allocation (OWL): one dense pass, then each layer at its own sparsity
        request, rule_info = _measure_allocation(args, loaded, request, calibration, rule)
    from .loading.devices import reset_device_peak

    reset_device_peak(loaded.placement)  # the entry point may: report.json gets this run's own peak
    checkpoint = None
    if method.resumable:
        try:
            result, checkpoint = _run_resumable(args, held, loaded, request, calibration, data)
        except TrainingStopped as stopped:
            print(
                f"stopped at step {stopped.done} of {stopped.total} ({stopped.reason}); checkpoint {stopped.path}; "
                "run the same command again to resume there",
                file=sys.stderr,
            )
            return 128 + _signal_number(stopped.reason)  # only a signal stops a CLI run: 130 for Ctrl-C, 143 for SIGTERM
    else:
        result = prune(loaded, request, calibration=calibration, data=data, progress=_progress_bar(args.method))
    if rule_info is not None:
        result.info["allocation_rule"] = rule_info
    if "reconstruction_error" not in result.info:  # no calibration walk: one dense pass measures it
        _dense_errors(loaded, request, result, calibration)
    evaluation = _evaluate(args, loaded, data, result) if args.eval else None
    if data is not None:
        from .loading.data import data_parts

        result.info["data"] = {"name": data.name, "parts": data_parts(data)}
    out = held.targets[0]
    with held.folder() as tmp:  # the whole run appears in one rename
        report = write_run(tmp, loaded, result, evaluation, request, with_model=not args.no_model)
    print(
        f"{request.method} {result.granularity} update {request.update} numerics {request.numerics}: {report['overall_sparsity']:.4f} sparsity "
        f"({report['total'] - report['kept']:,d} of {report['total']:,d} weights) in {result.seconds:.1f} s"
    )
    if evaluation:
        _print_evaluation(evaluation)
    if checkpoint is not None:
        checkpoint.remove()  # the run is written: its training state is not needed any more
    print(f"wrote {out}/report.json, {out}/masks.safetensors" + ("" if args.no_model else f", {out}/model/"))
    return 0


def _measure_allocation(args, loaded, request, calibration, rule):
    """A measured allocation rule (OWL) run on the dense model: the request at its per-layer sparsities, and what the
    rule measured (for report.json)."""
    from .prune import calibration_for, layer_names

    rule_calibration = calibration if calibration is not None else calibration_for(loaded, request)
    allocator, params = rule
    names = layer_names(loaded, request.layers, request.include, request.exclude)
    alloc, info = allocator.compute(loaded, names, rule_calibration, request.sparsity, params, progress=_progress_bar(allocator.name))
    return _request(args, args.method, allocation=alloc, sparsity=request.sparsity), {"name": allocator.name, "params": params, **info}


def _dense_errors(loaded, request, result, calibration) -> None:
    """Each layer's reconstruction error on the dense model's inputs, into ``result.info`` (methods without a walk)."""
    from .prune import calibration_for
    from .walk import DENSE_INPUTS, dense_reconstruction_errors

    calib = calibration if calibration is not None else calibration_for(loaded, request)
    result.info["reconstruction_error"] = dense_reconstruction_errors(loaded, result.masks, result.weights, calib)
    result.info["reconstruction_inputs"] = DENSE_INPUTS


def _evaluate(args, loaded, data, result) -> dict:
    """Dense and pruned on the same examples (--eval-size): both evaluations, the paired difference and the flips."""
    from .analysis.evaluate import paired_difference
    from .analysis.flips import evaluation_flips, predict

    dense = predict(loaded, data, None, max_examples=args.eval_size).evaluation  # evaluate()'s result, with every answer
    pruned = predict(loaded, data, result.overrides(loaded), max_examples=args.eval_size).evaluation
    evaluation = {"dense": dense, "pruned": pruned, "difference": paired_difference(dense, pruned)}
    evaluation["flips"] = evaluation_flips(dense, pruned)
    if pruned["n"] < args.eval_size:  # evaluation runs in batches: a larger request is capped, never held at once
        print(f"note: --eval-size {args.eval_size} capped at the {pruned['n']} examples the evaluation data has", file=sys.stderr)
    return evaluation


def _print_evaluation(evaluation: dict) -> None:
    from .stability_cli import flips_line

    d, p, diff = evaluation["dense"], evaluation["pruned"], evaluation["difference"]
    noise = " (within noise)" if diff["within_noise"] else ""
    print(
        f"{d['metric']}: dense {d['value']:.4f} [{d['ci_low']:.4f}, {d['ci_high']:.4f}] -> pruned {p['value']:.4f} "
        f"[{p['ci_low']:.4f}, {p['ci_high']:.4f}] (n={p['n']}); drop {diff['drop']:+.4f} "
        f"[{diff['drop_ci_low']:+.4f}, {diff['drop_ci_high']:+.4f}]{noise}"
    )
    print(flips_line(evaluation["flips"], d["metric"]))


def _signal_number(name: str) -> int:
    import signal

    try:
        return int(signal.Signals[name])
    except KeyError:
        return 0


def _write_rows(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(rows, indent=2))
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _table_outputs(args):
    """Claim a sweep's or sensitivity run's CSV and JSON (before any work)."""
    from .store.outputs import claim, output_path

    out = output_path(args.out)
    if out.suffix.lower() == ".json":
        raise PruneScopeError(f"--out {out}: the table is written as CSV beside a JSON of the same name; give a name ending in .csv")
    return claim(out, out.with_suffix(".json"), overwrite=args.overwrite, files=True)


def _note(message: str) -> None:
    _say(f"note: {message}")


def _checkpoint(args, loaded, kind: str, required: tuple, request):
    from .store.outputs import resume_checkpoint, run_header

    path = Path(args.out).with_suffix(".partial.jsonl")
    return resume_checkpoint(path, run_header(args, loaded, kind, request), required, args.overwrite, _warn, _note)


def cmd_sweep(args) -> int:
    from .analysis.sweep import ramp_points

    methods = _names(args.methods)
    if not methods:
        raise PruneScopeError("--methods is empty: name at least one method (see `python -m pruning methods`)")
    requests = [_request(args, m) for m in methods]
    granularities = _names(args.granularities) if args.granularities else None
    ramp_points(requests, granularities, _floats(args.sparsities))  # every point checked before loading
    with _table_outputs(args) as held:
        return _sweep(args, requests, granularities, held)


def _sweep(args, requests, granularities, held) -> int:
    from .analysis.sweep import sparsity_ramp

    loaded = _load(args)
    checkpoint = _checkpoint(args, loaded, "sweep", ("method", "granularity", "metric"), requests[0])
    data = _task_data(loaded, args)
    calibration = next((_calibration(loaded, r) for r in requests if r.needs_calibration), None)
    out = Path(args.out)
    rows = sparsity_ramp(
        loaded,
        data,
        requests,
        granularities,
        _floats(args.sparsities),
        calibration=calibration,
        max_examples=args.eval_size,
        progress=_progress_bar("sweep"),
        checkpoint=checkpoint,
    )
    for target in (out.with_suffix(".json"), out):  # each file whole, in one rename
        with held.file(target) as tmp:
            _write_rows(rows, tmp)
    checkpoint.remove()
    for r in rows:
        print(f"{r['method']:10s} {r['granularity']:7s} {r['sparsity']:.2f}  {r['metric']} {r['value']:.4f}")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def cmd_sensitivity(args) -> int:
    sparsities = _floats(args.sparsities)
    request = _request(args, args.method, sparsity=sparsities[-1] if sparsities else None)
    for s in sparsities:
        request.replace(sparsity=s)  # every sparsity checked before loading
    with _table_outputs(args) as held:
        return _sensitivity(args, request, sparsities, held)


def _sensitivity(args, request, sparsities, held) -> int:
    from .loading.models import prunable_layers
    from .analysis.sensitivity import distinguishable_layers, layer_sensitivity, suggest_allocation

    loaded = _load(args)
    checkpoint = _checkpoint(args, loaded, "sensitivity", ("layer", "drop", "metric"), request)
    data = _task_data(loaded, args)
    out = Path(args.out)
    rows = layer_sensitivity(
        loaded,
        data,
        request,
        sparsities,
        calibration=_calibration(loaded, request),
        max_examples=args.eval_size,
        progress=_progress_bar("sensitivity"),
        checkpoint=checkpoint,
        signal=args.signal,
        memory_mb=args.memory_mb,
    )
    params = {i.name: i.params for i in prunable_layers(loaded.model)}
    allocation = suggest_allocation(rows, request.sparsity, params, signal=args.signal)
    told = distinguishable_layers(rows, args.signal)
    summary = {"rows": rows, "signal": args.signal, "distinguishable_layers": told, "suggested_allocation": allocation}
    with held.file(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    with held.file(out) as tmp:
        _write_rows(rows, tmp)
    checkpoint.remove()
    worst = sorted((r for r in rows if r["layer"] != "-"), key=lambda r: -r[args.signal])[:10]
    for r in worst:
        print(
            f"{r['layer']:60s} {r['sparsity']:.2f}  kl {r['kl']:.2e} [{r['kl_ci_low']:.2e}, {r['kl_ci_high']:.2e}]  "
            f"drop {r['drop']:+.4f} [{r['drop_ci_low']:+.4f}, {r['drop_ci_high']:+.4f}]"
        )
    print(f"{len(told)} of {len(allocation)} layers have a {args.signal} interval that excludes 0")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def cmd_show(args) -> int:
    """Read a run folder back (from ``prune`` or the app's downloads), check it against the model, compare two."""
    from .store.runs import compare_masks, open_run

    loaded = _load(args)
    run = open_run(args.run, loaded)
    r = run.report
    print(
        f"{run.folder}: {r.get('method')} {r.get('granularity')} on {r.get('model')}, {r.get('overall_sparsity', 0):.4f} sparsity "
        f"({r.get('total', 0) - r.get('kept', 0):,d} of {r.get('total', 0):,d} weights pruned)"
    )
    pruned = len(run.masks) - len(run.untouched)
    from .masks import parse_granularity

    try:
        g = parse_granularity(str(r.get("granularity")))
    except PruneScopeError:
        g = None
    groups = f"; every group of {g.m} inputs keeps at most {g.m - g.n}" if g is not None and g.is_nm else ""  # checked by open_run
    print(f"masks match {loaded.name}: {pruned} layers pruned, {len(run.untouched)} untouched, {len(run.weights or {})} with updated weights{groups}")
    if args.against:
        total = compare_masks(run.masks, open_run(args.against, loaded).masks)[-1]
        print(f"kept by both {total['both']:,d}, by A only {total['A only']:,d}, by B only {total['B only']:,d}; Jaccard {total['jaccard']:.4f}")
    return 0


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """Bad command-line input: one ``error:`` line and where to look, exit 2 (no screenful of usage)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message}\nsee {self.prog} --help\n")


def _at_least(low: int):
    """An argparse type: a whole number of at least ``low`` (the error then names the flag)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return check


def _finite(text: str) -> float:
    """An argparse type: a finite number (NaN and infinities are refused with the flag's name)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="minilm-rt", help="minilm-rt, smollm2-135m, a hub name, a folder or a .gguf file")
    p.add_argument("--gguf-file", help="GGUF file name inside a hub repo or folder")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    from .loading.devices import DEVICE_HELP, DTYPES

    p.add_argument("--device", default="auto", help=f"where pruning and evaluation run: {DEVICE_HELP}")
    p.add_argument("--dtype", default="float32", help=f"storage dtype: {', '.join(DTYPES)} (statistics stay float32)")
    p.add_argument("--max-memory", help="memory limits for accelerate, e.g. cpu=64GiB,cuda:0=20GiB; what does not fit is offloaded to disk")
    p.add_argument("--offload-folder", help="folder for weights offloaded to disk (default: a temporary folder)")


def _layer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include", help="regex: prune only layers whose name matches")
    p.add_argument("--exclude", help="regex: skip layers whose name matches")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="rotten-tomatoes, rt-plots, a CSV/TSV/JSONL/text file, or a hub name")
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--calib", type=_at_least(1), default=16, help="calibration samples (default 16)")
    p.add_argument("--calib-len", type=_at_least(2), default=128, help="tokens per calibration sample for causal LMs")
    p.add_argument("--eval-size", type=_at_least(1), default=512, help="evaluation sentences / perplexity windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--numerics", default="fast", metavar="fast|reference",
        help="calibration arithmetic: fast (default: all samples through a block at once, exact counts) or reference "
        "(the published Wanda/SparseGPT code's: one sample per pass, its running averages, SparseGPT's per-block rule)",
    )


def _overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing output whole (and start a checkpointed run afresh)"
    )


def _granularity_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--granularity", help="layer, global, row, or N:M such as 2:4 (default: the method's own, see `methods`)")


def _update_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--update", help="what happens to the kept weights: none, obs (SparseGPT's reconstruction on the mask) or dsnot "
        "(prune-and-grow); default: the method's own, as `methods` lists it (SDS: its base's)",
    )


DOCS_HINT = "Every command, option, output and exit code: docs/CLI.md"


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help opens with what it is for, in one line, and points at docs/CLI.md."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=DOCS_HINT)


def _add_prune(sub) -> None:
    """The `prune` command and its options."""
    p = _command(sub, "prune", help="prune once; write the model, the masks and a JSON report")
    _model_args(p)
    _layer_args(p)
    _data_args(p)
    p.add_argument("--method", default="magnitude", help="a method or criterion from `methods` (or a criterion name it lists beside one)")
    p.add_argument("--sparsity", type=_finite, help="fraction of weights removed (default 0.5; N/M for N:M)")
    _granularity_arg(p)
    p.add_argument(
        "--allocation", metavar="FILE.json|NAME[:k=v,...]",
        help="prune each listed layer at its own sparsity: a file {layer: sparsity}, or a measured allocation such as "
        "owl (owl:m=5,lambda=0.08; see `methods`)",
    )
    _update_arg(p)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a method parameter (see `methods`)")
    p.add_argument("--eval", action="store_true", help="also evaluate dense and pruned")
    p.add_argument("--no-model", action="store_true", help="write masks and report only")
    p.add_argument("--out", default="out/prune")
    p.add_argument(
        "--checkpoint-every", type=int, metavar="STEPS",
        help="methods that train: also save the training checkpoint (<out>.ckpt) every this many steps",
    )
    p.add_argument(
        "--checkpoint-minutes", type=float, default=10.0,
        help="methods that train: save the training checkpoint this often (default 10; 0: only at the end and on a stop)",
    )
    _overwrite_arg(p)
    p.set_defaults(func=cmd_prune)


def _add_sweep_and_sensitivity(sub) -> None:
    """The `sweep` and `sensitivity` commands and their options."""
    p = _command(sub, "sweep", help="metric vs sparsity for methods and granularities (CSV and JSON)")
    _model_args(p)
    _data_args(p)
    p.add_argument("--methods", default="magnitude,wanda")
    _update_arg(p)
    p.add_argument("--granularities", help="comma-separated; default: each method's own (see `methods`)")
    p.add_argument("--sparsities", default="0.3,0.5,0.7")
    p.add_argument("--out", default="out/sweep.csv")
    _overwrite_arg(p)
    p.set_defaults(func=cmd_sweep)

    p = _command(sub, "sensitivity", help="prune one layer at a time; KL and metric drop per layer (CSV and JSON)")
    _model_args(p)
    _layer_args(p)
    _data_args(p)
    p.add_argument("--method", default="magnitude")
    _granularity_arg(p)
    p.add_argument("--sparsities", default="0.5")
    p.add_argument("--signal", choices=["kl", "drop"], default="kl", help="what ranks layers and builds the allocation")
    p.add_argument("--memory-mb", type=_finite, default=1024, help="memory for the cached dense activations (else full passes)")
    p.add_argument("--out", default="out/sensitivity.csv")
    _overwrite_arg(p)
    p.set_defaults(func=cmd_sensitivity)


def build_parser() -> argparse.ArgumentParser:
    from . import threads

    parser = _Parser(
        prog="python -m pruning",
        description="PruneScope: prune a transformer and see what it costs.",
        epilog=f"{threads.describe()} {DOCS_HINT}",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _command(sub, "models", help="list the embedded default models").set_defaults(func=cmd_models)
    _command(sub, "methods", help="list the pruning methods and their parameters").set_defaults(func=cmd_methods)
    p = _command(sub, "prepare", help="build the embedded default models into the user cache now, with progress")
    p.add_argument("models", nargs="*", help="which defaults (all when none is named)")
    p.add_argument("--verify", action="store_true", help="hash every cached file again, even those unchanged since their last check")
    p.set_defaults(func=cmd_prepare)

    p = _command(sub, "layers", help="list a model's prunable layers")
    _model_args(p)
    _layer_args(p)
    p.set_defaults(func=cmd_layers)

    _add_prune(sub)

    p = _command(sub, "show", help="read a run folder back, check its masks against the model, and compare it with another")
    p.add_argument("run", help="a folder written by prune (or the app's masks.safetensors + report.json)")
    p.add_argument("--against", help="a second run folder: weights kept by both, by one only")
    _model_args(p)
    p.set_defaults(func=cmd_show)

    _add_sweep_and_sensitivity(sub)

    from .stability_cli import register as add_stability

    add_stability(sub, sys.modules[__name__])  # `stability`: its own module, reusing this one's helpers
    from .compare_cli import register as add_compare

    add_compare(sub, sys.modules[__name__])  # `compare`: criteria x updates x allocations (pruning/compare_cli.py)
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import threads

    try:  # the wait policy and thread counts, once, before any command imports torch (``__main__`` prepared them already)
        threads.prepare()
    except PruneScopeError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the subcommand's parser, so the hint points to its own --help
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        threads.apply()
        return args.func(args)
    except PruneScopeError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)


def _fail(message: str, code: int) -> int:
    while _OPEN_BARS:
        _OPEN_BARS.pop().close()
    print(message, file=sys.stderr)
    return code
