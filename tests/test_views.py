"""Plain data behind the Method steps view: schedules, histograms of snapshots, prior curves, SDS rows."""

import math

import numpy as np
import pytest

from pruning.procedures import views as V
from pruning.procedures.mgpp import ALPHA_END, schedule_curve, schedule_of

PARAMS = {"t0": 2, "t1": 8, "interval": 2, "s_i": 0.3, "steps": 12}


def _series(rows, name):
    return {r["step"]: r["value"] for r in rows if r["series"].startswith(name)}


def test_schedule_of_fixes_nm_sparsity_and_rejects_a_bad_schedule():
    assert schedule_of(PARAMS, 0.5, "layer") == {"t0": 2, "t1": 8, "interval": 2, "s_i": 0.3, "s_f": 0.5, "steps": 12}
    assert schedule_of(PARAMS, 0.9, "2:4")["s_f"] == 0.5  # N:M fixes the sparsity
    assert schedule_of(PARAMS, 0.2, "layer")["s_i"] == 0.2  # s_i never above the target
    from pruning.errors import PruneScopeError

    with pytest.raises(PruneScopeError, match="t0 <= t1 <= steps"):
        schedule_of({**PARAMS, "t1": 20}, 0.5, "layer")


def test_schedule_curve_by_hand():
    rows = schedule_curve(schedule_of(PARAMS, 0.5, "layer"), lam=0.1)
    cubic, force, lam = _series(rows, "cubic"), _series(rows, "sparsity in force"), _series(rows, "prior")
    assert sorted(cubic) == list(range(13))
    # before t0 nothing is pruned; at t0 the first pruning to s_i; from t1 on the target
    assert force[0] == force[1] == 0.0 and force[2] == pytest.approx(0.3)
    at4 = 0.5 + (0.3 - 0.5) * (1 - 2 / 6) ** 3  # s_f + (s_i - s_f)(1 - (t - t0)/(t1 - t0))^3 = 0.44074
    assert cubic[4] == pytest.approx(at4) and force[4] == pytest.approx(at4)
    assert force[5] == pytest.approx(at4)  # held between the pruning steps 4 and 6
    assert cubic[5] > at4  # while the cubic curve moves on
    assert force[8] == force[12] == pytest.approx(0.5)
    assert lam[2] == pytest.approx(1.0) and lam[8] == pytest.approx(ALPHA_END) and lam[5] == pytest.approx(1 + (ALPHA_END - 1) * 0.5)
    assert not _series(schedule_curve(schedule_of(PARAMS, 0.5, "layer")), "prior")  # GMP: no prior line


def test_sample_histogram_counts_exact_zeros_as_pruned_and_clips_to_the_edges():
    counts = V.sample_histogram([0.0, 0.0, 0.5, -0.5, 2.0, -3.0], limit=1.0, bins=4)
    assert counts["pruned"].tolist() == [0, 0, 2, 0]  # the two zeros, in the bin that starts at 0
    assert counts["kept"].tolist() == [1, 1, 0, 2]  # bins are [left, right): -3 (clipped) / -0.5 / 0.5 and 2 (clipped)
    assert counts["left"].tolist() == [-1.0, -0.5, 0.0, 0.5]


def test_common_limit_is_the_largest_quantile():
    assert V.common_limit([[0.1, -0.4], [0.2, 0.3]], quantile=1.0) == pytest.approx(0.4)
    assert V.common_limit([[], [0.0, 0.0]]) == 1.0  # nothing to scale by


def test_prior_curves_integrate_to_the_component_weights():
    x = np.linspace(-2, 2, 40001)
    rows = V.prior_curves(0.3, 1e-3, 0.1, x, scale=10.0)
    dx = x[1] - x[0]
    slab = sum(r["density"] for r in rows if r["component"].startswith("prior slab")) * dx
    spike = sum(r["density"] for r in rows if r["component"].startswith("prior spike")) * dx
    assert slab == pytest.approx(0.3 * 10.0, rel=1e-3) and spike == pytest.approx(0.7 * 10.0, rel=1e-3)
    assert 0.0 in V.curve_grid(0.1, 240)  # odd number of points: the spike at 0 is on the grid


def test_nonzero_fit_ignores_zeros_and_needs_enough_weights():
    rng = np.random.default_rng(0)
    sample = np.concatenate([np.zeros(5000), rng.normal(0, 0.05, 3000)])
    fit = V.nonzero_fit(sample, 1)
    assert fit.n_fitted == 3000 and fit.components[0].std == pytest.approx(0.05, rel=0.05)
    assert V.nonzero_fit([0.0] * 100 + [0.1] * 5, 2) is None


def test_history_and_sds_rows():
    history = [
        {"step": 0, "target_sparsity": 0.0, "sparsity": 0.0, "loss": None, "metric": "accuracy", "value": 0.8, "held_out_loss": 0.5, "sample": [1.0]},
        {"step": 5, "target_sparsity": 0.3, "sparsity": 0.25, "loss": 0.6, "metric": "accuracy", "value": 0.7, "held_out_loss": 0.55, "sample": [0.0]},
    ]
    assert "sample" not in V.history_rows(history)[0]
    curves = V.training_curves(history)
    assert {(r["step"], r["series"]) for r in curves} == {
        (0, "held-out accuracy"), (0, "held-out loss"), (5, "held-out accuracy"), (5, "held-out loss"), (5, "training loss (mean since last snapshot)")}
    assert V.reached_sparsity(history)[1] == {"step": 5, "series": "exact zeros at the snapshot", "value": 0.25}
    assert V.spike_share(history) == []  # GMP-like snapshots: no crossing point
    mgpp = [{"step": 3, "prior_threshold": 0.01, "sample": [0.0, 0.005, -0.009, 0.02, -0.5]}]
    assert V.spike_share(mgpp) == [{"step": 3, "series": "inside the prior's spike |w| < w* (sampled weights)", "value": 0.6}]
    layers = {"a": {"relative_error_first_sparse": 0.3, "relative_error_sparse_again": 0.2, "relative_error_final": 0.1, "adjusted": True}}
    errors = V.sds_layer_errors(layers)
    assert [(r["stage"], r["error"]) for r in errors] == [("first sparse", 0.3), ("sparse again (before adjustment)", 0.2), ("final", 0.1)]
    stages = V.sds_stage_rows([{"stage": "dense", "zero_fraction": 0.0, "sample": []}])
    assert stages[0]["stage"] == "dense" and stages[0]["value"] is None and math.isfinite(stages[0]["zero_fraction"])


def test_candidate_and_early_curve_rows():
    stage = {
        "selection_scores": [0.7, 0.8], "overlap_with_deterministic": [0.9, 0.95], "chosen": 1,
        "early_curves": [[{"step": 2, "value": 0.6}, {"step": 4, "value": 0.7}], [{"step": 2, "value": 0.75}, {"step": 4, "value": 0.8}]],
    }
    assert V.candidate_rows(stage) == [
        {"candidate": "c1", "score": 0.7, "overlap": 0.9, "chosen": False},
        {"candidate": "c2", "score": 0.8, "overlap": 0.95, "chosen": True},
    ]
    rows = V.early_curve_rows(stage)
    assert [(r["candidate"], r["step"], r["chosen"]) for r in rows] == [("c1", 2, False), ("c1", 4, False), ("c2", 2, True), ("c2", 4, True)]
    assert V.early_curve_rows({"candidate_scores": [0.5], "chosen": 0}) == []  # cheap selection: no fine-tune
    assert V.candidate_rows({"candidate_scores": [0.5], "chosen": 0})[0]["chosen"] is True


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10, 200])
def test_default_schedule_scales_with_any_budget(steps):
    """The defaults (t0, t1, interval as fractions) give a valid schedule for every budget the sidebar allows."""
    from pruning.catalog import get_method

    params = get_method("mgpp").resolve_params({"steps": steps})
    s = schedule_of(params, 0.5, "layer")
    assert 0 <= s["t0"] <= s["t1"] <= s["steps"] == steps and s["interval"] >= 1
    assert s["t0"] == round(0.15 * steps) and s["t1"] == round(0.7 * steps)
    rows = schedule_curve(s, lam=0.1)
    assert _series(rows, "sparsity in force")[steps] == pytest.approx(0.5 if s["t1"] <= steps else 0.0)


def test_schedule_points_are_fractions_below_one_and_steps_from_one():
    from pruning.procedures.mgpp import schedule_step

    assert schedule_step(0.15, 200) == 30 and schedule_step(0.7, 200) == 140 and schedule_step(0.05, 200) == 10
    assert schedule_step(30, 200) == 30 and schedule_step(1, 200) == 1 and schedule_step(0, 200) == 0
    assert schedule_of({**PARAMS, "t0": 0.25, "t1": 0.5, "interval": 0.25}, 0.5, "layer")[("t0")] == 3  # 0.25 of 12
    assert schedule_of({**PARAMS, "t0": 0.25, "t1": 0.5, "interval": 0.25}, 0.5, "layer")["interval"] == 3


def test_ridge_rows_one_histogram_per_snapshot_in_order():
    rows = V.ridge_rows([("step 0", [0.5, -0.5, 0.25]), ("step 5", [0.0, 0.0, 0.5])], limit=1.0, bins=4)
    assert [r["step"] for r in rows[::8]] == ["step 0", "step 5"]
    first = {(r["left"], r["status"]): r["count"] for r in rows if r["step"] == "step 0"}
    assert first[(-0.5, "kept")] == 1 and first[(0.0, "kept")] == 1 and first[(0.5, "kept")] == 1  # 0.5 falls in [0.5, 1]; 0.25 in [0, 0.5]
    later = {(r["left"], r["status"]): r["count"] for r in rows if r["step"] == "step 5"}
    assert later[(0.0, "pruned")] == 2 and later[(0.5, "kept")] == 1 and sum(later.values()) == 3
