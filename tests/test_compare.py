"""The comparison engine (pruning/compare.py) and `python -m pruning compare` on tiny random models:
exact sparsity in every cell, the reference paired with itself is exactly 0, a cell is what prune +
evaluate give, skipped cells say why, a killed run resumes only the missing cells, a changed option is
refused by name, a toy criterion shows up with its own label, bad input is one error line."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from pruning.analysis.compare import UNIFORM, Cell, compare, fixed_allocation, matrix, plan, rule_allocation
from pruning.loading.data import calibration_batches
from pruning.errors import PruneScopeError
from pruning.analysis.evaluate import evaluate, paired_difference
from pruning.masks import keep_count
from pruning.loading.models import prunable_layers
from pruning.prune import prune
from pruning.request import PruneRequest as R


@pytest.fixture(scope="module")
def calib(tiny_llama, tiny_text):
    return calibration_batches(tiny_llama, tiny_text, n_samples=4, seq_len=16, seed=0)


def _base():
    return R.make("magnitude", 0.5, "layer", calib_samples=4, calib_len=16, update="none")


def _expected_sparsity(loaded, per_layer: dict[str, float]) -> float:
    sizes = {i.name: i.params for i in prunable_layers(loaded.model)}
    kept = sum(keep_count(sizes[n], s) for n, s in per_layer.items())
    return 1.0 - kept / sum(sizes[n] for n in per_layer)


def test_every_cell_is_exact_and_the_reference_differs_from_itself_by_zero(tiny_llama, tiny_text, calib):
    from pruning.allocations.owl import owl_allocation

    owl = rule_allocation("owl")
    cells = matrix(["magnitude", "wanda", "sparsegpt"], ["none", "obs", "dsnot"]) + [Cell("wanda", "none", owl)]
    seen = []
    res = compare(tiny_llama, _base(), cells, tiny_text, "wanda+none", calibration=calib, max_examples=4, on_cell=seen.append)
    assert [r["cell"] for r in res.rows] == [c.label for c in cells]
    assert seen[0]["cell"] == "wanda+none"  # the reference runs first, so every later cell is paired as it finishes
    assert all(r["status"] == "done" and r["drop"] is not None for r in seen)
    names = [i.name for i in prunable_layers(tiny_llama.model)]
    uniform = _expected_sparsity(tiny_llama, {n: 0.5 for n in names})
    alloc, _ = owl_allocation(tiny_llama, names, calib, 0.5, dict(owl.params))
    for row in res.rows:
        want = _expected_sparsity(tiny_llama, alloc) if row["allocation"] == "owl" else uniform
        assert row["sparsity"] == pytest.approx(want, abs=1e-12), row["cell"]
        assert row["n"] == res.dense["n"] >= 2 and row["metric"] == "perplexity" and row["reconstruction_error"] > 0
    ref = next(r for r in res.rows if r["cell"] == "wanda+none")
    assert (ref["drop"], ref["drop_ci_low"], ref["drop_ci_high"], ref["within_noise"]) == (0.0, 0.0, 0.0, True)
    assert ref["verdict"] == "the reference"
    assert next(r for r in res.rows if r["cell"] == "wanda+none@owl")["granularity"] == "allocated"
    assert not res.stopped


def test_a_cell_is_what_prune_and_evaluate_give(tiny_llama, tiny_text, calib):
    cells = [Cell("wanda", "none"), Cell("magnitude", "obs"), Cell("sparsegpt", "none")]
    res = compare(tiny_llama, _base(), cells, tiny_text, "wanda+none", calibration=calib, max_examples=4, dense=False)
    evals = {}
    for cell in cells:
        request = _base().replace(method=cell.criterion, update=cell.update)
        result = prune(tiny_llama, request, calibration=calib)
        evals[cell.label] = evaluate(tiny_llama, tiny_text, result.overrides(tiny_llama), max_examples=4)
        row = next(r for r in res.rows if r["cell"] == cell.label)
        assert [row[k] for k in ("value", "ci_low", "ci_high", "n")] == [evals[cell.label][k] for k in ("value", "ci_low", "ci_high", "n")]
        errors = result.info["reconstruction_error"]
        assert row["reconstruction_error"] == pytest.approx(sum(errors.values()) / len(errors), rel=1e-12)
    diff = paired_difference(evals["wanda+none"], evals["magnitude+obs"])
    row = next(r for r in res.rows if r["cell"] == "magnitude+obs")
    assert (row["drop"], row["drop_ci_low"], row["drop_ci_high"]) == (diff["drop"], diff["drop_ci_low"], diff["drop_ci_high"])
    assert res.dense is None


def test_cells_that_cannot_run_are_skipped_with_a_reason_and_a_bad_reference_is_refused():
    planned = plan(_base(), [Cell("wanda", "none"), Cell("mgpp", "obs"), Cell("sparsegpt", "none"), Cell("wanda", "none", rule_allocation("owl"))])
    reasons = {p.cell.label: p.reason for p in planned if p.request is None}
    assert list(reasons) == ["mgpp+obs"] and "does not take an update choice" in reasons["mgpp+obs"]
    nm = plan(R.make("magnitude", granularity="2:4", update="none"), [Cell("wanda", "none"), Cell("wanda", "none", rule_allocation("owl"))])
    assert nm[1].request is None and "N:M" in nm[1].reason
    with pytest.raises(PruneScopeError, match="cannot run"):
        plan(_base(), [Cell("wanda", "none"), Cell("mgpp", "obs")], "mgpp+obs")
    with pytest.raises(PruneScopeError, match="not one of the cells"):
        plan(_base(), [Cell("wanda", "none")], "ria+none")
    with pytest.raises(PruneScopeError, match="unknown method"):
        plan(_base(), [Cell("nosuch", "none")])
    with pytest.raises(PruneScopeError, match="unknown update"):
        plan(_base(), [Cell("wanda", "nosuch")])


def test_a_fixed_allocation_prunes_each_layer_at_its_own_sparsity(tiny_llama, tiny_text, calib):
    names = [i.name for i in prunable_layers(tiny_llama.model)]
    alloc = {n: (0.3 if i % 2 else 0.7) for i, n in enumerate(names)}
    cells = [Cell("wanda", "none"), Cell("wanda", "none", fixed_allocation("kl.json", alloc))]
    res = compare(tiny_llama, _base(), cells, tiny_text, calibration=calib, max_examples=2, dense=False)
    row = res.rows[1]
    assert row["cell"] == "wanda+none@kl.json" and row["sparsity"] == pytest.approx(_expected_sparsity(tiny_llama, alloc), abs=1e-12)


def test_another_threshold_rule_is_an_allocation_column_with_its_own_exact_counts(tiny_llama, tiny_text, calib):
    cells = [Cell("wanda", "none"), Cell("wanda", "none", rule_allocation("row")), Cell("wanda", "none", rule_allocation("2:4"))]
    res = compare(tiny_llama, _base(), cells, tiny_text, calibration=calib, max_examples=2, dense=False)
    rows = {r["cell"]: r for r in res.rows}
    assert set(rows) == {"wanda+none", "wanda+none@row", "wanda+none@2:4"}
    assert rows["wanda+none@row"]["granularity"] == "row" and rows["wanda+none@row"]["sparsity"] == 0.5
    assert rows["wanda+none@2:4"]["granularity"] == "2:4" and rows["wanda+none@2:4"]["sparsity"] == 0.5
    row = prune(tiny_llama, R.make("wanda", 0.5, "row", calib_samples=4, calib_len=16), calibration=calib)
    assert all(int(m.sum(dim=1).min()) == int(m.sum(dim=1).max()) == keep_count(m.shape[1], 0.5) for m in row.masks.values())
    with pytest.raises(PruneScopeError, match="takes no parameters"):
        rule_allocation("global:k=1")


def test_a_stop_between_cells_keeps_the_finished_rows(tiny_llama, tiny_text, calib):
    done = []
    res = compare(tiny_llama, _base(), matrix(["magnitude", "wanda"], ["none"]), tiny_text, calibration=calib, max_examples=2,
                  dense=False, on_cell=done.append, should_stop=lambda: len(done) >= 1)
    assert res.stopped and [r["cell"] for r in res.rows] == ["magnitude+none"]


# ---------------------------------------------------------------- the command line
def _cli(tiny_folder, tiny_csv, out, *extra):
    return ["compare", "--model", str(tiny_folder), "--dataset", str(tiny_csv), "--calib", "8", "--eval-size", "16",
            "--criteria", "magnitude,wanda", "--updates", "none,obs", "--reference", "wanda+none", "--out", str(out), *extra]


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


NUMBERS = ("cell", "value", "ci_low", "ci_high", "n", "drop", "drop_ci_low", "drop_ci_high", "sparsity", "reconstruction_error")


def test_compare_writes_csv_and_json_and_resumes_only_the_missing_cells(tmp_path, tiny_folder, tiny_csv, monkeypatch, capsys):
    from pruning.analysis import compare as engine
    from pruning.cli import main

    whole = tmp_path / "whole.csv"
    assert main(_cli(tiny_folder, tiny_csv, whole)) == 0
    summary = json.loads(whole.with_suffix(".json").read_text())
    assert summary["reference"] == "wanda+none" and [r["cell"] for r in summary["rows"]] == ["magnitude+none", "magnitude+obs", "wanda+none", "wanda+obs"]
    capsys.readouterr()

    real, calls = engine._run_cell, []

    def killed_on_the_third(*args, **kwargs):
        calls.append(args[2].cell.label)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what a kill between two cells leaves: two finished cells in the checkpoint
        return real(*args, **kwargs)

    out = tmp_path / "cmp.csv"
    monkeypatch.setattr(engine, "_run_cell", killed_on_the_third)
    assert main(_cli(tiny_folder, tiny_csv, out)) == 130
    assert not out.exists() and out.with_suffix(".partial.jsonl").exists()
    first = calls[:2]

    calls.clear()
    monkeypatch.setattr(engine, "_run_cell", lambda *a, **k: calls.append(a[2].cell.label) or real(*a, **k))
    assert main(_cli(tiny_folder, tiny_csv, out)) == 0
    assert sorted(calls) == sorted(set(summary_cells(summary)) - set(first))  # only the missing cells ran
    assert "resumed 2 of 4" in capsys.readouterr().err
    assert [{k: r[k] for k in NUMBERS} for r in _rows(out)] == [{k: r[k] for k in NUMBERS} for r in _rows(whole)]
    assert not out.with_suffix(".partial.jsonl").exists()


def summary_cells(summary) -> list[str]:
    return [r["cell"] for r in summary["rows"]]


def test_a_resume_with_a_changed_option_is_refused_by_name(tmp_path, tiny_folder, tiny_csv, monkeypatch, capsys):
    from pruning.analysis import compare as engine
    from pruning.cli import main

    real, calls = engine._run_cell, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "cmp.csv"
    monkeypatch.setattr(engine, "_run_cell", killed)
    assert main(_cli(tiny_folder, tiny_csv, out)) == 130
    capsys.readouterr()
    for flag, value, name in (("--sparsity", "0.6", "--sparsity"), ("--calib", "4", "--calib")):
        args = _cli(tiny_folder, tiny_csv, out)
        if flag == "--calib":
            args[args.index("--calib") + 1] = value
        else:
            args += [flag, value]
        assert main(args) == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # after the loading bar
        assert err.count("error:") == 1 and last.startswith("error: cannot resume") and name in last


def test_a_toy_criterion_appears_in_compare_with_its_own_label(tmp_path, tiny_folder, tiny_csv, monkeypatch, capsys):
    """docs/ARCHITECTURE.md's "add a data-free criterion" recipe: one score function, one register call."""
    from pruning import catalog, registry
    from pruning.cli import build_parser, main
    from pruning.walk import score_method as _score_method, layer_weights as _weights

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))

    def rows_first(ctx):  # keep the first rows: score = minus the row index
        return {n: -torch.arange(w.shape[0], dtype=torch.float32).unsqueeze(1).expand_as(w).clone() for n, w in _weights(ctx).items()}

    registry.register(registry.Method(name="toyrows", label="Toy rows", summary="Keep the first rows.", run=_score_method("toyrows", rows_first),
                                      scores=rows_first, granularity="layer", needs_calibration=False))
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "toyrows" in sub.choices["compare"].format_help()
    out = tmp_path / "toy.csv"
    args = _cli(tiny_folder, tiny_csv, out)
    args[args.index("--criteria") + 1] = "toyrows,wanda"
    assert main(args) == 0
    rows = {r["cell"]: r for r in _rows(out)}
    assert rows["toyrows+none"]["criterion_label"] == "Toy rows" and rows["toyrows+none"]["status"] == "done"
    assert rows["toyrows+obs"]["status"] == "skipped" and "does not take an update choice" in rows["toyrows+obs"]["reason"]
    assert "toyrows+none" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change,message",
    [
        (("--criteria", "nosuch"), "error: unknown method 'nosuch'"),
        (("--updates", "bogus"), "error: unknown update 'bogus'"),
        (("--reference", "ria+none"), "error: the reference cell 'ria+none' is not one of the cells"),
        (("--allocations", "missing.json"), "error: --allocation"),
        (("--allocations", "owl:m=x"), "error: parameter m"),
        (("--sparsity", "1.5"), "error: sparsity"),
        (("--granularity", "3:2"), "error:"),
        (("--criteria", ""), "error: --criteria and --updates"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, tiny_folder, tiny_csv, capsys, change, message):
    from pruning.cli import main

    out = tmp_path / "bad.csv"
    args = _cli(tiny_folder, tiny_csv, out)
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_an_out_that_is_not_csv_is_refused(tmp_path, tiny_folder, tiny_csv, capsys):
    from pruning.cli import main

    assert main(_cli(tiny_folder, tiny_csv, tmp_path / "x.json")) == 2
    assert capsys.readouterr().err.startswith("error: --out")


def test_allocation_items_keep_a_rules_parameters_together():
    from pruning.compare_cli import allocation_items

    assert allocation_items("uniform,owl:m=5,lambda=0.08,kl.json") == ["uniform", "owl:m=5,lambda=0.08", "kl.json"]
    assert UNIFORM.uniform and not rule_allocation("owl:m=7").uniform and rule_allocation("owl:m=7").label == "owl:m=7"
