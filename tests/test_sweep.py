"""Ramps and sensitivity: the points computed, resuming from a checkpoint, the allocation."""

import pytest

from pruning.data import ClassificationData
from pruning.sweep import layer_sensitivity, ramp_points, sparsity_ramp, suggest_allocation

TEXTS = ["a very good film", "awful and boring", "great fun", "the worst plot"] * 4
LABELS = [1, 0, 1, 0] * 4


@pytest.fixture()
def data():
    return ClassificationData("tiny", {"train": (TEXTS, LABELS), "validation": (TEXTS, LABELS), "test": (TEXTS, LABELS)}, ["neg", "pos"])


def test_ramp_points_give_nm_one_fixed_point():
    points = ramp_points(["magnitude"], ["layer", "2:4", "4:8"], [0.3, 0.6])
    assert points == [("magnitude", "layer", 0.3), ("magnitude", "layer", 0.6), ("magnitude", "2:4", 0.5), ("magnitude", "4:8", 0.5)]


def test_ramp_resumes_from_its_checkpoint(tiny_bert, data, tmp_path):
    ckpt = tmp_path / "ramp.jsonl"
    seen = []
    first = sparsity_ramp(tiny_bert, data, ["magnitude"], ["layer"], [0.5], checkpoint=ckpt, on_point=seen.append)
    assert len(first) == 2 and len(seen) == 2
    dense, point = first
    assert dense["drop"] == dense["drop_ci_low"] == dense["drop_ci_high"] == 0.0
    assert point["ci_low"] <= point["value"] <= point["ci_high"] and point["n"] == 16
    assert point["drop"] == pytest.approx(dense["value"] - point["value"])
    seen.clear()
    second = sparsity_ramp(tiny_bert, data, ["magnitude"], ["layer"], [0.5, 0.8], checkpoint=ckpt, on_point=seen.append)
    assert [r["sparsity"] for r in seen] == [0.8]  # only the new point was computed
    assert len(second) == 3
    assert second[0]["method"] == "dense" and second[0]["value"] == first[0]["value"]


def test_sensitivity_drop_is_zero_at_zero_sparsity(tiny_bert, data):
    rows = layer_sensitivity(tiny_bert, data, "magnitude", [0.0], max_examples=16, split="test")
    assert all(r["drop"] == 0.0 for r in rows)


def test_allocation_meets_the_target_and_spares_sensitive_layers():
    rows = [{"layer": "a", "drop": 0.30}, {"layer": "b", "drop": 0.01}, {"layer": "c", "drop": 0.02}]
    params = {"a": 100, "b": 100, "c": 200}
    alloc = suggest_allocation(rows, 0.5, params)
    mean = sum(params[n] * s for n, s in alloc.items()) / sum(params.values())
    assert mean == pytest.approx(0.5, abs=1e-4)
    assert alloc["a"] < alloc["c"] and alloc["a"] < alloc["b"]
