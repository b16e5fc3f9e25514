"""The command line as a user runs it: prune a saved tiny model, reload the result with
transformers, read the report back; bad input gives one line and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pruning.cli import main
from pruning.store.io import load_masks, read_report
from pruning.masks import keep_count

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method,granularity", [("magnitude", "layer"), ("wanda", "row"), ("sparsegpt", "2:4")])
def test_prune_writes_a_model_that_reloads_with_the_reported_zeros(tmp_path, tiny_folder, tiny_csv, method, granularity):
    out = tmp_path / "run"
    code = main(
        ["prune", "--model", str(tiny_folder), "--method", method, "--sparsity", "0.6", "--granularity", granularity,
         "--dataset", str(tiny_csv), "--calib", "8", "--eval", "--eval-size", "16", "--out", str(out)]
    )
    assert code == 0
    report = read_report(out / "report.json")
    masks = load_masks(out / "masks.safetensors")
    assert report["kept"] == sum(int(m.sum()) for m in masks.values())
    for layer in report["layers"]:
        d_out, d_in = layer["shape"]
        if granularity == "layer":
            assert layer["kept"] == keep_count(d_out * d_in, 0.6)
        elif granularity == "row":
            assert layer["kept"] == d_out * keep_count(d_in, 0.6)
            assert (masks[layer["layer"]].sum(dim=1) == keep_count(d_in, 0.6)).all()
        else:
            assert layer["kept"] == d_out * d_in // 2
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "model")
    for layer in report["layers"]:
        weight = reloaded.get_submodule(layer["layer"]).weight
        assert int((weight != 0).sum()) <= layer["kept"]
        assert torch.all(weight[~masks[layer["layer"]]] == 0)
    assert report["evaluation"]["dense"]["metric"] == "accuracy"


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pruning", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_trained_method_records_its_steps_in_the_report(tmp_path, tiny_folder, tiny_csv):
    single = ["prune", "--model", str(tiny_folder), "--method", "magnitude", "--dataset", str(tiny_csv), "--eval", "--no-model",
              "--out", str(tmp_path / "x")]
    assert main(single) == 0  # one file: halved into rows to train and calibrate on and rows to evaluate, said in the report
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert set(report["data"]["parts"]) == {"train", "test"}
    assert report["evaluation"]["pruned"]["n"] == len(tiny_csv.read_text().splitlines()[1:]) // 2
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.csv", "test.csv"):
        (data / name).write_text(tiny_csv.read_text())
    out = tmp_path / "gmp"
    params = ["steps=4", "t0=1", "t1=3", "interval=1", "history_points=2", "holdout=8", "batch_size=4"]
    args = ["prune", "--model", str(tiny_folder), "--method", "gmp", "--sparsity", "0.5", "--dataset", str(data),
            "--out", str(out), "--no-model"]
    for p in params:
        args += ["--param", p]
    assert main(args) == 0
    report = read_report(out / "report.json")
    # 2 evenly spaced snapshots (0 and 4) plus t0 = 1 and t1 = 3; no weight samples in the report
    assert [h["step"] for h in report["history"]] == [0, 1, 3, 4]
    assert "sample" not in report["history"][0]
    assert report["history"][-1]["sparsity"] == pytest.approx(report["overall_sparsity"])
    assert report["schedule"]["t1"] == 3


@pytest.mark.parametrize(
    "args,expected",
    [
        (["prune", "--sparsity", "1.5"], "sparsity must be"),
        (["prune", "--granularity", "3:2"], "impossible"),
        (["prune", "--method", "nosuch"], "unknown method"),
        (["layers", "--model", "/no/such/folder"], "could not load"),
        (["layers", "--model", "someone/not-a-model"], "could not load"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected):
    proc = _run_cli(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_folder_that_is_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    proc = _run_cli("layers", "--model", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_csv_without_label_column_and_empty_dataset(tmp_path, tiny_folder):
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("text,score\nnice,3\nbad,1\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for path, words in ((no_label, "label"), (empty, "empty")):
        code = main(["sweep", "--model", str(tiny_folder), "--methods", "magnitude", "--dataset", str(path),
                     "--out", str(tmp_path / "s.csv")])
        assert code == 2


def test_sweep_and_sensitivity_write_csv_and_json(tmp_path, tiny_folder, tiny_csv):
    out = tmp_path / "sweep.csv"
    assert main(["sweep", "--model", str(tiny_folder), "--methods", "magnitude,random", "--granularities", "layer,2:4",
                 "--sparsities", "0.25,0.5", "--dataset", str(tiny_csv), "--eval-size", "16", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    # dense + 2 methods x (2 sparsities per-layer + one 2:4 point)
    assert len(rows) == 1 + 2 * 3
    assert {r["method"] for r in rows} == {"dense", "magnitude", "random"}
    sens = tmp_path / "sens.csv"
    assert main(["sensitivity", "--model", str(tiny_folder), "--method", "magnitude", "--sparsities", "0.9",
                 "--dataset", str(tiny_csv), "--eval-size", "16", "--out", str(sens)]) == 0
    result = json.loads(sens.with_suffix(".json").read_text())
    layers = [r for r in result["rows"] if r["layer"] != "-"]
    assert len(layers) == 12  # 2 blocks x 6 linear layers of the tiny BERT
    assert set(result["suggested_allocation"]) == {r["layer"] for r in layers}
    assert result["signal"] == "kl" and result["distinguishable_layers"] == [r["layer"] for r in layers if r["kl_ci_low"] > 0]


def test_report_summarises_randomized_selection_without_weight_samples():
    from pruning.store.io import steps_summary

    stage = {"sparsity": 0.5, "selection": "early", "selection_scores": [0.6, 0.7], "overlap_with_deterministic": [0.9, 0.8],
             "chosen": 1, "early_curves": [[{"step": 2, "value": 0.6}], [{"step": 2, "value": 0.7}]], "weight_sample": [0.1] * 3000}
    out = steps_summary({"stages": [stage], "selection": "early"})
    assert [c["chosen"] for c in out["selection"][0]["candidates"]] == [False, True]
    assert "weight_sample" not in json.dumps(out)
    assert steps_summary({}) == {}


def test_prune_with_an_allocation_file_keeps_exact_counts_and_records_it(tmp_path, tiny_folder, tiny_bert):
    from pruning.loading.models import prunable_layers

    names = [i.name for i in prunable_layers(tiny_bert.model)]
    allocation = {names[0]: 0.25, names[4]: 0.75}
    path = tmp_path / "alloc.json"
    path.write_text(json.dumps(allocation))
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_folder), "--method", "wanda", "--allocation", str(path), "--calib", "4",
                 "--no-model", "--out", str(out)]) == 0
    report = read_report(out / "report.json")
    assert report["granularity"] == "allocated" and report["allocation"] == allocation
    assert {row["layer"]: row["kept"] for row in report["layers"]} == {
        n: keep_count(row["params"], allocation[n]) for n, row in ((r["layer"], r) for r in report["layers"])
    }
    assert {row["layer"] for row in report["layers"]} == set(allocation)


@pytest.mark.parametrize(
    "content,words",
    [
        ('{"no.such.layer": 0.5}', "not a prunable layer"),
        ('{"LAYER": 1.0}', "below 1"),
        ('{"LAYER": -0.1}', "at least 0"),
        ('{"LAYER": "half"}', "numbers as values"),
        ('[0.5]', "one JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_allocation_files_are_one_line_and_exit_2(tmp_path, tiny_folder, tiny_bert, content, words):
    from pruning.loading.models import prunable_layers

    path = tmp_path / "alloc.json"
    path.write_text(content.replace("LAYER", prunable_layers(tiny_bert.model)[0].name))
    proc = _run_cli("prune", "--model", str(tiny_folder), "--allocation", str(path), "--no-model", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and words in lines[-1]  # one error line (a progress bar may precede it)


def test_seed_out_of_range_and_default_granularity(tmp_path, tiny_folder):
    proc = _run_cli("prune", "--model", str(tiny_folder), "--seed", str(2**63), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "seed must be" in proc.stderr
    out = tmp_path / "wanda"
    assert main(["prune", "--model", str(tiny_folder), "--method", "wanda", "--calib", "4", "--no-model", "--out", str(out)]) == 0
    assert read_report(out / "report.json")["granularity"] == "row"  # Wanda's paper compares within each output row
