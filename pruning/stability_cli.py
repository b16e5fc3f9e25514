"""``python -m pruning stability``: one request pruned R times (calibration draws or seeds), per method.

:func:`register` adds the subcommand to the CLI's parser. The CLI hands itself over (its
argument groups and helpers: loading, requests, progress bars, claimed outputs), so this
module reuses them without importing :mod:`pruning.cli` (no import circle).

Outputs, each whole in one rename, claimed before any work like ``sweep``'s: ``--out`` (CSV, one
row per method and layer), the same name with ``.json`` (everything: per method the draws, the
layers with their keep-frequency histograms and pictures, the metric, flips between draws, the
items that flip most often; and the ranking by stability), and ``.draws.csv`` (one row per method
and draw). A killed run resumes from ``.partial.jsonl`` (and the draws' masks in ``.partial.draws/``).
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub, cli) -> None:
    """Add ``stability`` to the subparsers ``sub``; ``cli`` is :mod:`pruning.cli` (its helpers)."""
    from .analysis.stability import DEFAULT_DRAWS, DRAW_KINDS

    p = cli._command(sub, "stability", help="prune R times (calibration draws or seeds): mask Jaccard, keep frequencies, flips")
    cli._model_args(p)
    cli._layer_args(p)
    cli._data_args(p)
    p.add_argument("--method", default="wanda", help="a method, or several separated by commas (ranked by stability)")
    p.add_argument("--sparsity", type=float, help="fraction of weights removed (default 0.5)")
    cli._granularity_arg(p)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a method parameter (see `methods`)")
    p.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help=f"R, the number of draws (default {DEFAULT_DRAWS})")
    p.add_argument("--draw-kind", default="calib", choices=list(DRAW_KINDS), help="; ".join(f"{k}: {v}" for k, v in DRAW_KINDS.items()))
    p.add_argument("--top", type=int, default=20, help="how many of the most often flipped items to list")
    p.add_argument("--out", default="out/stability.csv")
    cli._overwrite_arg(p)
    p.set_defaults(func=lambda args: command(args, cli))


def outputs(out: Path) -> tuple[Path, Path, Path]:
    """The per-layer CSV, the JSON, the per-draw CSV."""
    return out, out.with_suffix(".json"), out.with_suffix(".draws.csv")


def command(args, cli) -> int:
    from .errors import PruneScopeError
    from .store.outputs import claim, output_path
    from .analysis.stability import check_draws

    methods = cli._names(args.method)
    if not methods:
        raise PruneScopeError("--method is empty: name at least one method (see `python -m pruning methods`)")
    check_draws(args.draws)
    if args.top < 0:
        raise PruneScopeError(f"--top must be 0 or more, got {args.top}")
    requests = [cli._request(args, m) for m in methods]  # every check before loading
    out = output_path(args.out)
    if out.suffix.lower() == ".json":
        raise PruneScopeError("--out names the CSV of the layers (the JSON is written beside it); give a .csv name")
    with claim(*outputs(out), overwrite=args.overwrite, files=True) as held:
        return _run(args, cli, requests, held)


def _run(args, cli, requests, held) -> int:
    from .analysis.flips import predict
    from .analysis.stability import DrawStore, draw_rows, layer_table, report, stability

    loaded = cli._load(args)
    # the header: every option of the command (--method, --draws, --draw-kind, ...) and the request's fields
    ckpt = cli._checkpoint(args, loaded, "stability", ("method", "draw", "kind", "metric"), requests[0])
    data = cli._task_data(loaded, args)
    stores = Path(args.out).with_suffix(".partial.draws")
    results = []
    dense = predict(loaded, data, None, max_examples=args.eval_size, progress=cli._progress_bar("dense model"))  # once for every method
    for request in requests:
        res = stability(
            loaded, request, draws=args.draws, kind=args.draw_kind, data=data, max_examples=args.eval_size, dense=dense,
            progress=cli._progress_bar(f"stability {request.method}"), checkpoint=ckpt,
            store=DrawStore(stores / request.method), fragile_top=args.top,
        )
        results.append(res)
    summary = report(loaded.name, results)
    ranking = summary["ranking"]
    layers_csv, json_path, draws_csv = outputs(held.targets[0])
    with held.file(json_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    with held.file(draws_csv) as tmp:
        cli._write_rows(draw_rows(results), tmp)
    with held.file(layers_csv) as tmp:
        cli._write_rows(layer_table(results), tmp)
    ckpt.remove()
    for request in requests:
        DrawStore(stores / request.method).remove()
    try:
        stores.rmdir()
    except OSError:
        pass
    for res in results:
        print(describe(res))
    if len(results) > 1:
        print("ranked by mean Jaccard across draws: " + ", ".join(f"{r['rank']}. {r['method']} {r['jaccard']:.4f}" for r in ranking))
    print(f"wrote {layers_csv}, {json_path} and {draws_csv}")
    return 0


def describe(res) -> str:
    """A few lines on one method's stability run."""
    o, m, b = res.overall, res.metric, res.between
    metric = res.rows[0]["metric"]
    flips = [r["flips"] for r in res.rows]
    lines = [
        f"{res.request.method} {res.request.granularity} at {res.request.sparsity:.0%}, {len(res.rows)} draws ({res.kind}): {res.verdict}",
        f"  masks: mean pairwise Jaccard {o['jaccard']:.4f} (sd {o['jaccard_sd']:.4f}, min {o['jaccard_min']:.4f}); "
        f"kept by all {o['kept_by_all']:.2%}, pruned by all {o['pruned_by_all']:.2%}, undecided {o['undecided']:.2%}",
        f"  {metric}: mean {m['mean']:.4f} [{m['mean_ci_low']:.4f}, {m['mean_ci_high']:.4f}], sd {m['sd']:.4f}, "
        f"range {m['min']:.4f}-{m['max']:.4f}; {m['pairs_beyond_noise']} of {m['pairs']} pairs of draws differ beyond noise",
        f"  flips vs dense: {min(flips):.2%}-{max(flips):.2%} of {res.rows[0]['items']:,d} items; "
        f"between draws: mean {b['flips_mean']:.2%} (range {b['flips_min']:.2%}-{b['flips_max']:.2%})",
    ]
    worst = sorted(res.layers, key=lambda r: (r["jaccard"], r["layer"]))[:3]
    lines.append("  least decided layers: " + ", ".join(f"{r['layer']} {r['jaccard']:.3f}" for r in worst))
    return "\n".join(lines)


def flips_line(f: dict, metric: str) -> str:
    """One line on the answers that changed between two evaluations (``prune --eval``)."""
    unit = "examples" if metric == "accuracy" else "predicted tokens"
    line = f"flips: {f['flips']:.2%} [{f['flips_ci_low']:.2%}, {f['flips_ci_high']:.2%}] of {f['items']:,} {unit} changed answer"
    if "to_wrong" in f:
        line += f" ({f['to_wrong']:,} right to wrong, {f['to_right']:,} wrong to right, {f['wrong_to_wrong']:,} wrong to another wrong)"
    return line
