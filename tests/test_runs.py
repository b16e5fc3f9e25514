"""Run folders read back, checked against the model, compared; app downloads read by the CLI (issue 9, items 4 and 5)."""

from __future__ import annotations

import re

import pytest
import torch

from pruning.cli import main
from pruning.errors import PruneScopeError
from pruning.store.runs import check_masks, compare_masks, list_runs, open_run


def test_compare_counts_by_hand():
    a = {"x": torch.tensor([[True, True, False, False]]), "y": torch.tensor([[True, False]])}
    b = {"x": torch.tensor([[True, False, True, False]]), "y": torch.tensor([[True, False]])}
    rows = compare_masks(a, b)
    assert rows[0] == {"layer": "x", "weights": 4, "both": 1, "A only": 1, "B only": 1, "jaccard": pytest.approx(1 / 3)}
    assert rows[1]["jaccard"] == 1.0
    assert rows[-1] == {"layer": "all layers", "weights": 6, "both": 2, "A only": 1, "B only": 1, "jaccard": pytest.approx(0.5)}


def test_masks_are_checked_against_the_model(tiny_bert):
    name = "bert.encoder.layer.0.attention.self.query"
    good = torch.ones(32, 32, dtype=torch.bool)
    check_masks({name: good}, tiny_bert)
    for masks, expected in (
        ({"bert.pooler.dense": good}, "not a prunable layer"),
        ({name: torch.ones(32, 16, dtype=torch.bool)}, "has shape (32, 16)"),
        ({name: torch.ones(32, 32)}, "float32, not bool"),
    ):
        with pytest.raises(PruneScopeError, match=re.escape(expected)):
            check_masks(masks, tiny_bert)


def test_a_mask_file_that_is_not_safetensors_is_a_clear_message(tmp_path, tiny_bert, tiny_folder):
    assert main(["prune", "--model", str(tiny_folder), "--no-model", "--out", str(tmp_path / "run")]) == 0
    (tmp_path / "run" / "masks.safetensors").write_bytes(b"these are not masks")
    with pytest.raises(PruneScopeError, match="is not a safetensors mask file"):
        open_run(tmp_path / "run", tiny_bert)


def test_a_sparsegpt_run_reads_back_with_its_updated_weights(tmp_path, tiny_bert, tiny_folder, tiny_csv):
    from pruning.analysis.evaluate import evaluate
    from pruning.result import masked_overrides

    out = tmp_path / "runs" / "sgpt"
    assert main(["prune", "--model", str(tiny_folder), "--method", "sparsegpt", "--sparsity", "0.5", "--dataset", str(tiny_csv),
                 "--calib", "8", "--eval", "--eval-size", "16", "--out", str(out), "--include", "layer\\.1\\."]) == 0
    run = open_run(out, tiny_bert)
    assert len(run.untouched) == 6 and all(bool(run.masks[n].all()) for n in run.untouched)  # block 0 was left alone
    assert run.weights and set(run.weights) <= {n for n in run.masks if ".layer.1." in n}
    value = evaluate(tiny_bert, tiny_csv, masked_overrides(tiny_bert, run.masks, run.weights), max_examples=16)["value"]
    assert value == run.report["evaluation"]["pruned"]["value"]  # the saved run evaluates as it did when made
    assert [r["run"] for r in list_runs(tmp_path / "runs")] == ["sgpt"]


def test_an_app_download_is_a_run_the_cli_reads(tmp_path, tiny_bert, tiny_folder, capsys):
    from app import downloads, resources
    from pruning.prune import prune
    from pruning.request import PruneRequest

    result = prune(tiny_bert, PruneRequest.make("magnitude", 0.6, "row"))
    mask_set = resources.MaskSet("magnitude", 0.6, "row", result.masks, ident=("roundtrip",))
    folder = tmp_path / "from-the-app"
    folder.mkdir()
    for name, data in downloads.run_files(tiny_bert, mask_set).items():
        (folder / name).write_bytes(data)
    capsys.readouterr()
    assert main(["show", str(folder), "--model", str(tiny_folder), "--against", str(folder)]) == 0
    out = capsys.readouterr().out
    kept = sum(int(m.sum()) for m in result.masks.values())
    assert "magnitude row" in out and "12 layers pruned" in out and f"by both {kept:,d}, by A only 0" in out
    run = open_run(folder, tiny_bert)
    assert all(torch.equal(run.masks[n], result.masks[n]) for n in result.masks)


def test_metric_difference_is_b_minus_a_with_its_paired_interval():
    import numpy as np

    from pruning.store.runs import metric_difference

    def acc(correct):
        c = np.asarray(correct, dtype=float)
        return {"metric": "accuracy", "n": len(c), "value": float(c.mean()), "per_item": {"correct": c}}

    # B is wrong on the 4 examples A gets wrong and on 4 more that A gets right: B - A = -4/20, never above 0
    a, b = acc([1] * 16 + [0] * 4), acc([1] * 12 + [0] * 8)
    d = metric_difference(a, b)
    assert d["difference"] == pytest.approx(-0.2)
    assert d["ci_low"] <= -0.2 <= d["ci_high"] < 0 and not d["within_noise"]
    same = metric_difference(a, acc([1] * 16 + [0] * 4))
    assert (same["difference"], same["ci_low"], same["ci_high"], same["within_noise"]) == (0.0, 0.0, 0.0, True)
    plain = metric_difference({k: v for k, v in a.items() if k != "per_item"}, b)
    assert plain["ci_low"] is None and plain["ci_high"] is None
