"""Ramps: the points computed, their intervals, resuming from a checkpoint (sensitivity: test_sensitivity.py)."""

import pytest

from pruning.loading.data import ClassificationData
from pruning.request import PruneRequest
from pruning.analysis.sweep import ramp_points, sparsity_ramp

R = PruneRequest.make

TEXTS = ["a very good film", "awful and boring", "great fun", "the worst plot"] * 4
LABELS = [1, 0, 1, 0] * 4


@pytest.fixture()
def data():
    return ClassificationData("tiny", {"train": (TEXTS, LABELS), "validation": (TEXTS, LABELS), "test": (TEXTS, LABELS)}, ["neg", "pos"])


def test_ramp_points_give_nm_one_fixed_point():
    points = [(r.method, str(r.granularity), r.sparsity) for r in ramp_points([R("magnitude")], ["layer", "2:4", "4:8"], [0.3, 0.6])]
    assert points == [("magnitude", "layer", 0.3), ("magnitude", "layer", 0.6), ("magnitude", "2:4", 0.5), ("magnitude", "4:8", 0.5)]


def test_ramp_resumes_from_its_checkpoint(tiny_bert, data, tmp_path):
    ckpt = tmp_path / "ramp.jsonl"
    seen = []
    first = sparsity_ramp(tiny_bert, data, [R("magnitude")], ["layer"], [0.5], checkpoint=ckpt, on_point=seen.append)
    assert len(first) == 2 and len(seen) == 2
    dense, point = first
    assert dense["drop"] == dense["drop_ci_low"] == dense["drop_ci_high"] == 0.0
    assert point["ci_low"] <= point["value"] <= point["ci_high"] and point["n"] == 16
    assert point["drop"] == pytest.approx(dense["value"] - point["value"])
    seen.clear()
    second = sparsity_ramp(tiny_bert, data, [R("magnitude")], ["layer"], [0.5, 0.8], checkpoint=ckpt, on_point=seen.append)
    assert [r["sparsity"] for r in seen] == [0.8]  # only the new point was computed
    assert len(second) == 3
    assert second[0]["method"] == "dense" and second[0]["value"] == first[0]["value"]
