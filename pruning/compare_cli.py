"""``python -m pruning compare``: criteria x updates (x allocations) at one sparsity, each cell with its
interval and its paired difference against a reference cell (:mod:`pruning.analysis.compare`).

:func:`register` adds the subcommand to the CLI's parser; the CLI hands itself over (its argument
groups and helpers), so this module reuses them without importing :mod:`pruning.cli` (no import
circle). Outputs, claimed before any work and each written whole in one rename: ``--out`` (CSV, one
row per cell) and the same name with ``.json`` (the base request, the dense model, every row). A
killed run resumes its finished cells from ``<out>.partial.jsonl``; a changed option is refused by
name (the cells, the allocations and the reference may change: the matrix is extended or cut).
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_CRITERIA = "magnitude,wanda,ria,sparsegpt"
DEFAULT_UPDATES = "none,obs,dsnot"
# Options that choose which cells run (checked per row, like a sweep's grid), not how a cell's numbers come out.
CELL_OPTIONS = ("criteria", "updates", "allocations", "reference")


def register(sub, cli) -> None:
    """Add ``compare`` to the subparsers ``sub``; ``cli`` is :mod:`pruning.cli` (its helpers)."""
    from .catalog import all_methods

    p = cli._command(sub, "compare", help="criteria x updates (and allocations) at one sparsity, each against a reference cell (CSV and JSON)")
    cli._model_args(p)
    cli._layer_args(p)
    cli._data_args(p)
    p.add_argument("--criteria", default=DEFAULT_CRITERIA, help=f"comma-separated criteria (--method names: {', '.join(all_methods())})")
    p.add_argument("--updates", default=DEFAULT_UPDATES, help="comma-separated updates: none, obs, dsnot (see `methods`)")
    p.add_argument(
        "--allocations", default="uniform", metavar="uniform,owl[:k=v,...],FILE.json",
        help="comma-separated allocations: uniform (--granularity for every layer), another rule (row, global, 2:4, ...), "
        "a measured one such as owl, a {layer: sparsity} file (see `methods`)",
    )
    p.add_argument("--sparsity", type=cli._finite, default=0.5, help="fraction of weights removed in every cell (default 0.5)")
    p.add_argument("--granularity", default="layer", help="the uniform cells' granularity: layer, row, global or N:M (default layer)")
    p.add_argument("--reference", help="the cell the others are paired against, e.g. wanda+none or wanda+none@owl (default: the first)")
    p.add_argument("--out", default="out/compare.csv")
    cli._overwrite_arg(p)
    p.set_defaults(func=lambda args: command(args, cli))


def allocation_items(text: str) -> list[str]:
    """``"uniform,owl:m=5,lambda=0.08,kl.json"`` -> ``["uniform", "owl:m=5,lambda=0.08", "kl.json"]``: a
    ``k=v`` piece without a name of its own continues the allocation before it."""
    items: list[str] = []
    for piece in (x.strip() for x in str(text).split(",")):
        if not piece:
            continue
        if "=" in piece and ":" not in piece and items:
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


def allocation_choices(text: str, cli) -> tuple[list, dict]:
    """The allocations named by ``--allocations`` and ``{file: sha256}`` of the files among them."""
    from .analysis.compare import UNIFORM, fixed_allocation, rule_allocation
    from .errors import PruneScopeError
    from .store.integrity import file_digest

    choices, files = [], {}
    for item in allocation_items(text):
        if item.lower() == "uniform":
            choices.append(UNIFORM)
        elif cli._threshold_rule(item) is not None or cli._allocation_rule(item) is not None:
            choices.append(rule_allocation(item))
        else:
            path = Path(item)
            if not path.is_file():
                raise PruneScopeError(f"--allocations {item!r} is neither uniform, an allocation (a rule such as row or 2:4, or owl), "
                                      "nor an existing JSON file")
            choices.append(fixed_allocation(path.name, cli._allocation(item)))
            files[str(path)] = file_digest(path)
    if not choices:
        raise PruneScopeError("--allocations is empty: name at least one (uniform, owl, or a FILE.json)")
    labels = [c.label for c in choices]
    if len(set(labels)) != len(labels):
        raise PruneScopeError(f"--allocations names one allocation twice ({', '.join(labels)})")
    return choices, files


def command(args, cli) -> int:
    from .analysis.compare import matrix, plan
    from .errors import PruneScopeError
    from .store.outputs import claim, output_path

    criteria, updates = cli._names(args.criteria), cli._names(args.updates)
    if not criteria or not updates:
        raise PruneScopeError("--criteria and --updates each need at least one name (see `python -m pruning methods`)")
    choices, files = allocation_choices(args.allocations, cli)
    base = cli._request(args, "magnitude", update="none")  # the shared settings; each cell sets its criterion and update
    cells = matrix(criteria, updates, choices)
    planned = plan(base, cells, args.reference)  # every check before loading
    if all(p.request is None for p in planned):
        raise PruneScopeError(f"none of the cells can run: {planned[0].cell.label}: {planned[0].reason}")
    out = output_path(args.out)
    if out.suffix.lower() != ".csv":
        raise PruneScopeError(f"--out {out}: the table is written as CSV beside a JSON of the same name; give a name ending in .csv")
    with claim(out, out.with_suffix(".json"), overwrite=args.overwrite, files=True) as held:
        return _run(args, cli, base, cells, files, held)


def _header(args, loaded, base, files) -> dict:
    from .store.outputs import run_header

    header = run_header(args, loaded, "compare", base)
    for key in CELL_OPTIONS:
        header.pop(key, None)
    header["allocation_files"] = files  # a file's name labels its cells; its content is what the numbers depend on
    return header


def _run(args, cli, base, cells, files, held) -> int:
    from .analysis.compare import compare
    from .store.outputs import resume_checkpoint
    from .prune import calibration_for, calibration_note

    loaded = cli._load(args)
    out = Path(args.out)
    path = out.with_suffix(".partial.jsonl")
    checkpoint = resume_checkpoint(path, _header(args, loaded, base, files), ("cell", "metric", "per_item"), args.overwrite, cli._warn, cli._note)
    data = cli._task_data(loaded, args)
    calibration = calibration_for(loaded, base)  # every cell reports its reconstruction error on these inputs
    used = sum(int(b["input_ids"].shape[0]) for b in calibration)
    if used < base.calib_samples:
        cli._note(f"--calib capped: {calibration_note(base.calib_samples, used)}")
    result = compare(
        loaded, base, cells, data, args.reference, calibration=calibration, max_examples=args.eval_size,
        progress=cli._progress_bar("compare"), checkpoint=checkpoint,
    )
    summary = {
        "model": loaded.name,
        "base": base.describe(),
        "reference": result.reference,
        "dense": result.dense,
        "resumed": result.resumed,
        "rows": result.rows,
    }
    with held.file(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    with held.file(out) as tmp:
        cli._write_rows(result.rows, tmp)
    checkpoint.remove()
    for line in table_lines(result):
        print(line)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def table_lines(result) -> list[str]:
    """The rows as aligned text lines: each cell's metric with its interval, its paired difference, sparsity, time."""
    width = max([len(r["cell"]) for r in result.rows] + [4])
    lines = []
    if result.dense is not None:
        d = result.dense
        lines.append(f"{'dense':{width}s}  {d['metric']} {d['value']:.4f} [{d['ci_low']:.4f}, {d['ci_high']:.4f}] (n={d['n']})")
    for r in result.rows:
        if r["status"] == "skipped":
            lines.append(f"{r['cell']:{width}s}  skipped: {r['reason']}")
            continue
        lines.append(
            f"{r['cell']:{width}s}  {r['metric']} {r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] (n={r['n']})  "
            f"vs {r['reference']} {r['drop']:+.4f} [{r['drop_ci_low']:+.4f}, {r['drop_ci_high']:+.4f}] {r['verdict']}; "
            f"sparsity {r['sparsity']:.4f}; {r['seconds']:.1f} s"
        )
    return lines
