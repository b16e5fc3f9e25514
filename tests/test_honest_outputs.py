"""Nothing lost, nothing mislabelled (issue 25): outputs never claim a write they did not make, resumes
are honest by construction, one N:M rule, parameters checked fully, one-line command-line errors."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from pruning.store.checkpoint import MARK
from pruning.cli import build_parser, main
from pruning.errors import PruneScopeError
from pruning.store.outputs import GRID_FIELDS, GRID_OPTIONS, NOT_NUMBERS, claim, run_header
from pruning.request import PruneRequest


def prune_args(model, out, *extra):
    return ["prune", "--model", str(model), "--method", "magnitude", "--sparsity", "0.5", "--out", str(out), *extra]


def sweep_args(model, data, out, *extra, methods="magnitude"):
    return ["sweep", "--model", str(model), "--methods", methods, "--sparsities", "0.3,0.6", "--dataset", str(data),
            "--eval-size", "16", "--out", str(out), *extra]


def error_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    return [line for line in captured.err.splitlines() if line.strip()], captured.out


# ---------------------------------------------------------------- 1. outputs: refused before any work, or written whole
@pytest.mark.parametrize(
    "out, words",
    [
        ("", "--out is empty"),
        (".", "names no output of its own"),
        ("..", "names no output of its own"),
        ("{cwd}", "is the working directory or holds it"),
        ("{parent}", "is the working directory or holds it"),
    ],
)
def test_an_output_that_would_replace_the_working_directory_is_refused_before_any_work(tmp_path, monkeypatch, capsys, out, words):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    target = out.format(cwd=work, parent=tmp_path)
    # the model does not exist: the output is checked first, so the one line is about the output
    for command in (prune_args("/no/such/model", target, "--overwrite"), ["sweep", "--model", "/no/such/model", "--out", target, "--overwrite"],
                    ["sensitivity", "--model", "/no/such/model", "--out", target, "--overwrite"]):
        assert main(command) == 2
        err, stdout = error_lines(capsys)
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0] and "model" not in err[0].split(":")[1], err
        assert "wrote" not in stdout
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]


def test_an_output_inside_another_output_is_refused(tmp_path):
    with pytest.raises(PruneScopeError, match="lies inside"):
        with claim(tmp_path / "run", tmp_path / "run" / "masks"):
            pass
    with pytest.raises(PruneScopeError, match="lies inside"):
        with claim(tmp_path / "a.json", tmp_path / "a.json", files=True):
            pass


def test_an_offload_folder_inside_the_run_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(prune_args("/no/such/model", out, "--offload-folder", str(out / "offload"))) == 2
    err, _ = error_lines(capsys)
    assert len(err) == 1 and "--offload-folder" in err[0] and "lies inside --out" in err[0]
    assert not out.exists()


def test_a_sweep_output_that_is_a_folder_or_a_json_name_is_refused(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x").write_text("x")
    assert main(["sweep", "--model", "/no/such/model", "--out", str(tmp_path / "folder"), "--overwrite"]) == 2
    assert "is a folder" in error_lines(capsys)[0][0]
    assert main(["sweep", "--model", "/no/such/model", "--out", str(tmp_path / "table.json")]) == 2
    assert "ending in .csv" in error_lines(capsys)[0][0]
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["x"]


def _failing_rename(*args, **kwargs):
    raise OSError(errno.EBUSY, "Device or resource busy")


def test_a_failed_final_rename_of_a_run_folder_is_an_error_never_a_success_line(tmp_path, tiny_folder, capsys, monkeypatch):
    monkeypatch.setattr("pruning.paths._put_in_place", _failing_rename)
    out = tmp_path / "run"
    assert main(prune_args(tiny_folder, out, "--no-model")) == 2
    err, stdout = error_lines(capsys)
    assert [line for line in err if line.startswith("error")] == [
        f"error: could not move the finished output into place at {out} (Device or resource busy); nothing was written there"
    ]
    assert "wrote" not in stdout and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # the temporary sibling went too


def test_a_failed_final_rename_of_a_table_is_an_error(tmp_path, tiny_folder, tiny_csv, capsys, monkeypatch):
    import os

    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(".csv"):
            _failing_rename()
        return real(src, dst)

    monkeypatch.setattr("pruning.paths.os.replace", replace)
    out = tmp_path / "sweep.csv"
    assert main(sweep_args(tiny_folder, tiny_csv, out)) == 2
    err, stdout = error_lines(capsys)
    assert any(line.startswith(f"error: could not move the finished output into place at {out}") for line in err)
    assert "wrote" not in stdout and not out.exists()


# ---------------------------------------------------------------- 2. the checkpoint header: every setting, derived
class _Loaded:
    def __init__(self, model, name="tiny-bert"):
        self.model, self.name, self.placement = model, name, None


def _namespace(command: str, tmp_path) -> argparse.Namespace:
    data = tmp_path / "data.csv"
    data.write_text("text,label\ngood,1\nbad,0\n")
    return build_parser().parse_args([command, "--dataset", str(data), "--out", str(tmp_path / "x.csv")])


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return "something"
    return f"{value}-changed"


@pytest.mark.parametrize("command", ["sweep", "sensitivity"])
def test_the_checkpoint_header_changes_with_every_option_and_request_field_that_changes_numbers(command, tmp_path, tiny_bert):
    args = _namespace(command, tmp_path)
    request = PruneRequest.make("magnitude", 0.5, dataset=args.dataset)
    loaded = _Loaded(tiny_bert.model)
    base = run_header(args, loaded, command, request)
    # every option of the command is recorded, or named with the reason it cannot change the numbers
    options = set(vars(args))
    assert set(NOT_NUMBERS) | GRID_OPTIONS >= options - set(base), options - set(base) - set(NOT_NUMBERS)
    assert set(NOT_NUMBERS) == {"command", "func", "out", "overwrite", "offload_folder", "max_memory", "trust_remote_code", "memory_mb"}
    for dest in sorted(options):
        changed = argparse.Namespace(**{**vars(args), dest: _changed(getattr(args, dest))})
        header = run_header(changed, loaded, command, request)
        if dest in NOT_NUMBERS or dest in GRID_OPTIONS:
            assert header == base, dest
        elif dest in ("device", "dtype"):  # recorded as the loaded model's placement resolved them ("auto" may mean another device)
            assert (header["device"], header["dtype"]) == ("cpu", "float32")
            moved = _Loaded(loaded.model)
            moved.placement = argparse.Namespace(device="cuda:0", dtype="bfloat16")
            assert {k for k in base if run_header(args, moved, command, request)[k] != base[k]} == {"device", "dtype"}
        else:
            assert header != base, f"--{dest} changes the numbers but not the checkpoint header"
    # every request field is recorded, or names a grid point that each row is checked against
    replacements = {"dataset": "other.csv", "calib_samples": 3, "calib_len": 7, "seed": 5, "layers": ("bert.encoder.layer.0.attention.self.query",),
                    "include": "query", "exclude": "key", "method": "random", "granularity": "row", "sparsity": 0.3, "params": None,
                    "update": "obs", "numerics": "reference"}
    fields = {f.name for f in dataclasses.fields(PruneRequest)}
    assert fields == set(replacements), fields ^ set(replacements)
    for name in sorted(fields - GRID_FIELDS):
        other = request.replace(**{name: replacements[name]})
        assert run_header(args, loaded, command, other) != base, name
    assert GRID_FIELDS == {"method", "granularity", "sparsity", "params"}  # points of the grid; params: the --param option
    # the dataset's content and the model's weights, not only their names
    Path(args.dataset).write_text("text,label\nfine,1\nbad,0\n")
    assert run_header(args, loaded, command, request)["data"] != base["data"]
    nudged = _Loaded(type(tiny_bert.model)(tiny_bert.model.config))
    nudged.model.load_state_dict(tiny_bert.model.state_dict())
    with torch.no_grad():
        nudged.model.bert.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    assert run_header(args, nudged, command, request)["weights"] != base["weights"]


@pytest.fixture()
def stopped(tmp_path, tiny_folder, tiny_csv, monkeypatch):
    """A magnitude sweep whose checkpoint survives (as when it is stopped before writing its CSV), on a copy of the data."""
    from pruning.store.checkpoint import Checkpoint

    data = tmp_path / "reviews.csv"
    shutil.copy(tiny_csv, data)
    out = tmp_path / "sweep.csv"
    with monkeypatch.context() as m:
        m.setattr(Checkpoint, "remove", lambda self: None)
        assert main(sweep_args(tiny_folder, data, out)) == 0
    finished = json.loads(out.with_suffix(".json").read_text())
    out.unlink()
    out.with_suffix(".json").unlink()
    return out, out.with_suffix(".partial.jsonl"), data, finished


def test_a_resume_says_it_resumed(stopped, tiny_folder, capsys):
    out, ckpt, data, finished = stopped
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, data, out)) == 0
    err, _ = error_lines(capsys)
    assert f"note: resumed 3 of 3 points from {ckpt}" in err
    assert json.loads(out.with_suffix(".json").read_text()) == finished


def test_rows_another_sweep_asked_for_never_reach_the_csv(stopped, tiny_folder, capsys):
    out, ckpt, data, _ = stopped
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, data, out, methods="random")) == 0
    err, _ = error_lines(capsys)
    assert any("2 finished point(s) are not part of this run" in line and "'magnitude'" in line for line in err)
    assert f"note: resumed 1 of 3 points from {ckpt}" in err  # the dense point is shared
    rows = json.loads(out.with_suffix(".json").read_text())
    assert sorted(r["method"] for r in rows) == ["dense", "random", "random"]
    assert "magnitude" not in out.read_text()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"value": 7.5}, "accuracy value 7.5 is outside [0.0, 1.0]"),
        ({"ci_high": -0.1}, "accuracy ci_high -0.1 is outside"),
        ({"metric": "perplexity", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}, "perplexity value 0.5 is outside [1.0, inf]"),
        ({"n": 0}, "n 0 is not a positive whole number"),
        ({"sparsity": 1.5}, "sparsity 1.5 is outside [0, 1)"),
        ({"metric": "vibes"}, "unknown metric 'vibes'"),
    ],
)
def test_a_row_out_of_range_for_its_metric_is_dropped_and_computed_again(stopped, tiny_folder, capsys, change, words):
    out, ckpt, data, finished = stopped
    lines = ckpt.read_text().splitlines(keepends=True)
    edited = {**json.loads(lines[2]), **change}
    lines[2] = json.dumps(edited) + "\n"
    ckpt.write_text("".join(lines))
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, data, out)) == 0
    err, _ = error_lines(capsys)
    assert any("line 3: malformed point" in line and words in line for line in err), err
    def numbers(rows):  # the point computed again has its own timing
        return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in rows)

    assert numbers(json.loads(out.with_suffix(".json").read_text())) == numbers(finished)


def test_a_dataset_changed_under_the_same_path_refuses_the_resume(stopped, tiny_folder, capsys):
    out, ckpt, data, _ = stopped
    text = data.read_text()
    data.write_text(text.replace("very good", "very bad!"))  # same size, other content
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, data, out)) == 2
    err, _ = error_lines(capsys)
    assert [line for line in err if line.startswith("error")] and "the dataset's content" in err[-1] and "--overwrite" in err[-1]
    assert not out.exists()


def test_a_failed_sensitivity_leaves_no_checkpoint(tmp_path, tiny_folder, tiny_csv, capsys):
    out = tmp_path / "sens.csv"
    args = ["sensitivity", "--model", str(tiny_folder), "--dataset", str(tiny_csv), "--text-column", "nope", "--eval-size", "8", "--out", str(out)]
    assert main(args) == 2
    assert "nope" in error_lines(capsys)[0][-1]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []


# ---------------------------------------------------------------- 3. one N:M rule
def test_an_nm_pattern_the_inputs_cannot_hold_is_refused_for_every_method_with_one_message(tiny_bert, tiny_sentiment):
    from pruning.prune import prune
    from pruning.catalog import all_methods

    from pruning.masks import supports

    supporting = [m for m in all_methods().values() if supports(m, "2:4")]
    assert {"magnitude", "random", "wanda", "sparsegpt", "sds", "randomized"} <= {m.name for m in supporting}
    messages = set()
    for m in supporting:
        request = PruneRequest.make(m.name, granularity="2:3")  # tiny BERT's layers have 32 and 64 inputs
        with pytest.raises(PruneScopeError) as info:
            prune(tiny_bert, request, data=tiny_sentiment)
        messages.add(str(info.value))
    assert messages == {"the N:M pattern 2:3 needs the input size to be a multiple of 3; bert.encoder.layer.0.attention.self.query has 32 inputs"}


def test_show_checks_an_nm_run_groups_not_only_shapes(tmp_path, tiny_folder, capsys):
    good, forged = tmp_path / "good", tmp_path / "forged"
    assert main(prune_args(tiny_folder, good, "--no-model", "--granularity", "2:4")) == 0
    assert main(prune_args(tiny_folder, forged, "--no-model")) == 0  # layer-wise at 0.5 ...
    report = json.loads((forged / "report.json").read_text())
    (forged / "report.json").write_text(json.dumps({**report, "granularity": "2:4"}))  # ... labelled 2:4
    capsys.readouterr()
    assert main(["show", str(good), "--model", str(tiny_folder)]) == 0
    assert "every group of 4 inputs keeps at most 2" in capsys.readouterr().out
    assert main(["show", str(forged), "--model", str(tiny_folder)]) == 2
    err, _ = error_lines(capsys)
    assert "labels the run 2:4, but its masks do not follow it" in err[-1] and "keep more than 2" in err[-1]


# ---------------------------------------------------------------- 5. parameters checked fully
def test_nan_and_infinities_are_refused_for_every_numeric_method_parameter():
    from pruning.catalog import all_methods

    checked = 0
    for m in all_methods().values():
        for name, p in m.params.items():
            if isinstance(p.default, bool) or not isinstance(p.default, (int, float)) or p.choices:
                continue
            for bad in ("nan", "inf", "-inf", float("nan"), float("inf")):
                with pytest.raises(PruneScopeError, match=f"parameter {name}"):
                    m.resolve_params({name: bad})
            checked += 1
    assert checked >= 30


def test_a_sparsities_list_has_a_bound(tmp_path, tiny_folder, tiny_csv, capsys):
    """41 sparsities would be 41 full runs per method: refused before the model loads, one error line, nothing written."""
    from pruning.cli import MAX_POINTS

    many = ",".join(f"{i / 100:.2f}" for i in range(MAX_POINTS + 1))
    out = tmp_path / "sweep.csv"
    args = sweep_args(tiny_folder, tiny_csv, out)
    args[args.index("--sparsities") + 1] = many
    assert main(args) == 2
    err, _ = error_lines(capsys)
    assert err == [f"error: --sparsities takes at most {MAX_POINTS} values (each is a full run), got {MAX_POINTS + 1}"]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_every_parameter_that_sets_an_amount_of_work_has_a_bound():
    from pruning.catalog import all_methods

    for m in all_methods().values():
        for name, p in m.params.items():
            counts = isinstance(p.default, int) and not isinstance(p.default, bool) and not p.choices
            if counts or p.group == "budget" or name == "randomness":
                assert p.maximum is not None and math.isfinite(p.maximum), f"{m.name} {name} has no upper bound"
    with pytest.raises(PruneScopeError, match="above its maximum"):
        all_methods()["randomized"].resolve_params({"randomness": 1e9})


def test_calibration_above_what_the_data_holds_is_capped_never_drawn_twice(tiny_bert, tiny_gpt2, tiny_text):
    from pruning.loading.data import ClassificationData, calibration_batches

    five = ClassificationData("five", {"train": ([f"sentence {i} is here" for i in range(5)], [0, 1, 0, 1, 0])}, ["a", "b"])
    batches = calibration_batches(tiny_bert, five, n_samples=50, seq_len=16)
    rows = [tuple(r.tolist()) for b in batches for r in b["input_ids"]]
    assert len(rows) == 5 and len(set(rows)) == 5
    from pruning.loading.data import token_ids

    whole = token_ids(tiny_gpt2.tokenizer, tiny_text.train_text).numel() // 32
    windows = calibration_batches(tiny_gpt2, tiny_text, n_samples=10_000, seq_len=32)
    assert sum(b["input_ids"].shape[0] for b in windows) == whole


def test_a_capped_calib_is_said_by_the_cli_and_in_the_report(tmp_path, tiny_folder, capsys):
    data = tmp_path / "ten.csv"
    data.write_text("text,label\n" + "".join(f"sentence number {i} here,{i % 2}\n" for i in range(10)))
    out = tmp_path / "run"
    assert main(prune_args(tiny_folder, out, "--no-model", "--method", "wanda", "--dataset", str(data), "--calib", "50")) == 0
    err, _ = error_lines(capsys)
    report = json.loads((out / "report.json").read_text())
    used = report["calibration_samples"]
    assert used < 50 and report["calibration_note"] == f"50 calibration samples asked for; the data holds {used} (sentences, or windows side by side), so {used} were used"
    assert f"note: --calib capped: {report['calibration_note']}" in err


# ---------------------------------------------------------------- 7. the smaller items
@pytest.mark.parametrize(
    "args, first",
    [
        (["prune", "--bogus"], "error: unrecognized arguments: --bogus"),
        (["prune", "--sparsity", "x"], "error: argument --sparsity: expected a number, got 'x'"),
        (["prune", "--eval-size", "0"], "error: argument --eval-size: must be at least 1, got 0"),
        (["sweep", "--calib", "0"], "error: argument --calib: must be at least 1, got 0"),
        (["sensitivity", "--memory-mb", "nan"], "error: argument --memory-mb: expected a finite number, got 'nan'"),
        (["prune", "--calib", "1.5"], "error: argument --calib: expected a whole number, got '1.5'"),
        (["sensitivity", "--signal", "foo"], "error: argument --signal: invalid choice: 'foo' (choose from 'kl', 'drop')"),
    ],
)
def test_a_command_line_error_is_one_line_and_a_hint(capsys, args, first):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1] == f"see python -m pruning {args[0]} --help"
    assert err[0] == first


def test_a_long_progress_message_is_written_whole(capsys):
    from pruning.cli import _progress_bar

    reason = "the cached minilm-rt classifier is rebuilt: model.safetensors does not match its recorded content hash (damaged?)"
    update = _progress_bar("loading model")
    update(0, 1, reason)
    update(1, 1, "done")
    assert f"loading model: {reason}" in capsys.readouterr().err


def test_a_column_flag_with_the_embedded_data_is_refused_before_any_work(tmp_path, capsys):
    """--text-column names a column of a file; with the embedded data it was silently ignored."""
    never = tmp_path / "never.csv"
    assert main(["sensitivity", "--text-column", "nope", "--out", str(never)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --text-column names a column of a CSV/TSV/JSONL file or a hub dataset; the embedded data has fixed columns (give --dataset)"]
    assert not never.exists() and not never.with_suffix(".json").exists()
