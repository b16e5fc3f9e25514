"""Outputs that are exclusive and atomic, and checkpoints that resume honestly (issue 9, items 1 and 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pruning.store.checkpoint import MARK
from pruning.cli import main
from pruning.store.io import load_masks, read_report
from pruning.store.outputs import claim

ROOT = Path(__file__).resolve().parents[1]


def prune_args(model, out, *extra):
    return ["prune", "--model", str(model), "--method", "magnitude", "--sparsity", "0.5", "--out", str(out), *extra]


def cli(*args):
    return subprocess.Popen([sys.executable, "-m", "pruning", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_whole_run(out: Path) -> dict:
    """The report and the masks of ``out`` belong to one run: the report's counts are the masks' counts."""
    report = read_report(out / "report.json")
    masks = load_masks(out / "masks.safetensors")
    assert report["kept"] == sum(int(m.sum()) for m in masks.values())
    assert report["total"] == sum(m.numel() for m in masks.values())
    return report


def test_an_output_that_cannot_be_created_fails_before_the_model_is_loaded(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    # the model does not exist either: the output is checked first, so the message is about the output
    assert main(prune_args("/no/such/model", blocker / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write the output to") and "model" not in err[0]


def test_an_existing_output_is_refused_unless_overwrite_replaces_it_whole(tmp_path, tiny_folder, capsys):
    out = tmp_path / "run"
    assert main(prune_args(tiny_folder, out, "--no-model")) == 0
    (out / "stray.txt").write_text("from an older run")
    capsys.readouterr()
    assert main(prune_args(tiny_folder, out, "--no-model", "--sparsity", "0.8")) == 2
    assert "already exists" in capsys.readouterr().err and assert_whole_run(out)["requested_sparsity"] == 0.5
    assert main(prune_args(tiny_folder, out, "--no-model", "--sparsity", "0.8", "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["masks.safetensors", "report.json"]  # the stray file went with the old run
    assert assert_whole_run(out)["requested_sparsity"] == 0.8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.") and not p.name.endswith(".lock")] == []


def test_a_second_run_on_a_held_output_fails_at_once_with_one_line(tmp_path, tiny_folder):
    out = tmp_path / "run"
    with claim(out):  # this test process holds the output, as a running prune would
        proc = subprocess.run([sys.executable, "-m", "pruning", *prune_args(tiny_folder, out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another run" in lines[0] and "is writing" in lines[0]
    assert not out.exists()


def test_two_concurrent_runs_on_one_output_one_fails_cleanly_the_other_is_whole(tmp_path, tiny_folder):
    out = tmp_path / "run"
    procs = [cli(*prune_args(tiny_folder, out, "--sparsity", s)) for s in ("0.3", "0.7")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    failed = next(err for code, err in results if code == 2)
    assert len(failed.strip().splitlines()) == 1 and "Traceback" not in failed
    report = assert_whole_run(out)
    winner = 0.3 if results[0][0] == 0 else 0.7
    assert report["requested_sparsity"] == winner
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out / "model")  # the winner's model, not a mix
    masks = load_masks(out / "masks.safetensors")
    for name, mask in masks.items():
        assert int((model.get_submodule(name).weight != 0).sum()) <= int(mask.sum())


def test_leftovers_of_a_killed_run_are_named_with_their_pid_and_cleaned(tmp_path, tiny_folder):
    out = tmp_path / "run"
    half = tmp_path / ".run.tmp-99999-abcd"  # what a run killed while writing leaves: pid 99999
    half.mkdir()
    (half / "report.json").write_text("{}")
    assert main(prune_args(tiny_folder, out, "--no-model")) == 0
    assert not half.exists()
    assert_whole_run(out)


# ---------------------------------------------------------------- honest resume
def sweep_args(model, data, out, *extra):
    return ["sweep", "--model", str(model), "--methods", "magnitude", "--sparsities", "0.3,0.6", "--dataset", str(data),
            "--eval-size", "16", "--out", str(out), *extra]


@pytest.fixture()
def stopped_sweep(tmp_path, tiny_folder, tiny_csv, monkeypatch):
    """A sweep whose checkpoint survives, as when a run is stopped before writing its CSV."""
    from pruning.store.checkpoint import Checkpoint

    out = tmp_path / "sweep.csv"
    with monkeypatch.context() as m:
        m.setattr(Checkpoint, "remove", lambda self: None)
        assert main(sweep_args(tiny_folder, tiny_csv, out)) == 0
    finished = json.loads(out.with_suffix(".json").read_text())
    out.unlink()
    out.with_suffix(".json").unlink()
    return out, out.with_suffix(".partial.jsonl"), finished


def test_resuming_with_another_evaluation_size_is_refused(stopped_sweep, tiny_folder, tiny_csv, capsys):
    out, ckpt, _ = stopped_sweep
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, tiny_csv, out, "--eval-size", "8")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]  # (besides the progress bars)
    assert len(err) == 1 and "--eval-size = 16" in err[0] and "8" in err[0] and "--overwrite" in err[0]
    assert not out.exists()
    assert main(sweep_args(tiny_folder, tiny_csv, out, "--eval-size", "8", "--overwrite")) == 0
    assert {r["n"] for r in json.loads(out.with_suffix(".json").read_text())} == {8}


def test_a_cut_off_last_line_is_dropped_with_a_warning_and_computed_again(stopped_sweep, tiny_folder, tiny_csv, capsys):
    out, ckpt, finished = stopped_sweep
    lines = ckpt.read_text().splitlines(keepends=True)
    assert json.loads(lines[0])[MARK]["eval_size"] == 16 and len(lines) == 1 + 3  # header + dense + 2 points
    ckpt.write_text("".join(lines[:-1]) + lines[-1][:15])  # the last point was being written when the run died
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, tiny_csv, out)) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "cut off" in err
    rows = json.loads(out.with_suffix(".json").read_text())
    assert sorted((r["method"], r["sparsity"], r["value"]) for r in rows) == sorted((r["method"], r["sparsity"], r["value"]) for r in finished)


def test_a_malformed_row_is_reported_and_never_reaches_the_csv(stopped_sweep, tiny_folder, tiny_csv, capsys):
    out, ckpt, finished = stopped_sweep
    lines = ckpt.read_text().splitlines(keepends=True)
    lines[2] = json.dumps({"method": "magnitude", "granularity": "layer", "sparsity": "oops", "metric": "accuracy", "value": 2}) + "\n"
    ckpt.write_text("".join(lines))
    capsys.readouterr()
    assert main(sweep_args(tiny_folder, tiny_csv, out)) == 0
    err = capsys.readouterr().err
    assert "line 3" in err and "sparsity is not a number" in err
    text = out.read_text()
    assert "oops" not in text and len(text.strip().splitlines()) == 1 + len(finished)
