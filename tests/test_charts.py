"""Chart builders as pure functions: valid Vega-Lite, tooltips, axis titles with units."""

import json

import pandas as pd
import pytest

from app import charts


def spec(chart) -> dict:
    return chart.to_dict()  # validates against the Vega-Lite schema


def text_of(chart) -> str:
    return json.dumps(spec(chart))


def tooltips(chart) -> int:
    return text_of(chart).count('"tooltip"')


def hist_frame():
    return pd.DataFrame(
        {
            "left": [-1.0, 0.0, -1.0, 0.0],
            "right": [0.0, 1.0, 0.0, 1.0],
            "count": [3, 4, 2, 0],
            "status": ["kept", "kept", "pruned", "pruned"],
        }
    )


def test_weight_histogram_layers_bars_curves_and_lines():
    curves = pd.DataFrame({"x": [-1, 0, 1], "component": ["mixture"] * 3, "density": [1.0, 5.0, 1.0]})
    lines = pd.DataFrame({"x": [-0.2, 0.2], "label": ["pruning threshold ±t"] * 2})
    chart = charts.weight_histogram(hist_frame(), curves, lines, log_count=True, title="layer")
    d = spec(chart)
    assert len(d["layer"]) == 3
    s = text_of(chart)
    assert "weight value" in s and "log scale" in s and "symlog" in s
    assert tooltips(chart) >= 3


def test_weight_histogram_linear_without_extras():
    s = text_of(charts.weight_histogram(hist_frame()))
    assert "count (weights per bin)" in s and "symlog" not in s


def test_builders_reject_missing_columns():
    with pytest.raises(ValueError, match="needs columns"):
        charts.weight_histogram(pd.DataFrame({"left": [0]}))
    with pytest.raises(ValueError):
        charts.ramp_chart(pd.DataFrame({"method": ["m"]}))


def test_histogram_grid_facets_by_layer():
    df = pd.concat([hist_frame().assign(layer="a"), hist_frame().assign(layer="b")])
    d = spec(charts.histogram_grid(df, columns=2))
    assert d["facet"]["field"] == "layer" and d["columns"] == 2
    assert d["resolve"]["scale"]["x"] == "independent"


def test_histogram_grid_in_step_order_on_one_axis():
    df = pd.concat([hist_frame().assign(layer=f"step {n}") for n in (0, 20, 100)])
    d = spec(charts.histogram_grid(df, order=["step 0", "step 20", "step 100"], shared_x=True))
    assert d["facet"]["sort"] == ["step 0", "step 20", "step 100"]  # not "step 100" before "step 20"
    assert d["resolve"]["scale"]["x"] == "shared"


def test_weight_histogram_with_a_fixed_count_axis_clips_tall_curves():
    curves = pd.DataFrame({"x": [-0.1, 0.0, 0.1], "component": ["prior spike"] * 3, "density": [0.0, 1e6, 0.0]})
    d = spec(charts.weight_histogram(hist_frame(), curves, y_max=6.0))
    assert d["layer"][0]["encoding"]["y"]["scale"] == {"domain": [0, 6.0], "clamp": True}
    assert d["layer"][1]["mark"]["clip"] is True


def test_steps_view_charts():
    curve = pd.DataFrame({"step": [0, 1, 0, 1], "series": ["cubic target s_t"] * 2 + ["prior slab weight lam_t / lam"] * 2, "value": [0, 0.3, 1, 0.5]})
    reached = pd.DataFrame({"step": [1], "series": ["sparsity reached (exact zeros)"], "value": [0.28]})
    marks = pd.DataFrame({"step": [0, 1], "label": ["t0: first pruning", "t1: last pruning, mask frozen"]})
    d = spec(charts.schedule_chart(curve, reached, marks))
    assert len(d["layer"]) == 3 and "training step" in text_of(charts.schedule_chart(curve))
    training = pd.DataFrame(
        {"step": [0, 5, 0, 5], "series": ["held-out accuracy"] * 2 + ["held-out loss"] * 2, "value": [0.8, 0.7, 0.5, 0.6], "panel": ["accuracy"] * 2 + ["loss"] * 2}
    )
    d = spec(charts.training_chart(training))
    assert len(d["hconcat"]) == 2 and "accuracy (fraction correct" in text_of(charts.training_chart(training))
    stages = pd.DataFrame({"stage": ["dense", "sparse", "dense step", "sparse again"], "value": [30.0, 90.0, 40.0, 60.0]})
    bars = spec(charts.stage_bars(stages, "perplexity"))["layer"][0]
    assert bars["encoding"]["x"]["sort"] == ["dense", "sparse", "dense step", "sparse again"]
    assert bars["encoding"]["y"]["scale"] == {"zero": True}  # bars start at zero
    acc = spec(charts.stage_bars(stages.assign(value=0.6), "accuracy"))["layer"][0]
    assert acc["encoding"]["y"]["scale"] == {"domain": [0, 1]}  # equal values still draw visible bars
    errors = pd.DataFrame({"layer": ["q", "q", "k", "k"], "stage": ["first sparse", "final"] * 2, "error": [0.2, 0.0, 0.3, 0.1]})
    d = spec(charts.layer_error_chart(errors))
    assert d["encoding"]["y"]["scale"]["type"] == "log" and d["encoding"]["x"]["sort"] == ["q", "k"]
    with pytest.raises(ValueError):
        charts.layer_error_chart(errors.drop(columns=["error"]))
    curves = pd.DataFrame({"candidate": ["c1", "c1", "c2", "c2"], "step": [2, 4, 2, 4], "value": [0.6, 0.7, 0.75, 0.8], "chosen": [False, False, True, True]})
    d = spec(charts.early_curves_chart(curves, "accuracy", n_last=2))
    assert d["encoding"]["detail"]["field"] == "candidate" and "mean of the last 2" in d["encoding"]["x"]["title"]


def test_mask_heatmap_block_size_in_tooltip():
    cells = pd.DataFrame({"out_from": [0, 0, 4, 4], "in_from": [0, 8, 0, 8], "kept": [1.0, 0.5, 0.0, 0.25]})
    s = text_of(charts.mask_heatmap(cells, 4, 8))
    assert "block of 4x8 weights" in s and "input column (d_in index)" in s and "output row (d_out index)" in s
    one = text_of(charts.mask_heatmap(cells.assign(kept=[1.0, 0.0, 1.0, 0.0]), 1, 1))
    assert "kept (weight)" in one


def test_sparsity_bars_with_target_rule():
    df = pd.DataFrame({"layer": ["a", "b"], "method": ["magnitude"] * 2, "sparsity": [0.4, 0.6]})
    d = spec(charts.sparsity_bars(df, target=0.5))
    assert len(d["layer"]) == 2
    assert "% of the layer's weights removed" in text_of(charts.sparsity_bars(df))


def test_overlap_matrix_writes_values():
    df = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["x", "y", "x", "y"], "value": [1, 0.3, 0.3, 1]})
    s = text_of(charts.overlap_matrix(df, title="t"))
    assert "Jaccard" in s and '"text"' in s


def test_layer_overlap_and_candidate_bars():
    df = pd.DataFrame({"layer": ["a", "b"], "pair": ["m / r"] * 2, "jaccard": [0.4, 0.5]})
    assert "Jaccard overlap of kept weights (0-1)" in text_of(charts.layer_overlap_lines(df))
    cand = pd.DataFrame({"candidate": ["c1", "c2"], "score": [0.8, 0.9], "chosen": [False, True]})
    s = text_of(charts.candidate_bars(cand, "score", "held-out accuracy"))
    assert "chosen" in s and "held-out accuracy" in s
    # equal scores (a tiny model) still get a visible axis around them
    same = spec(charts.candidate_bars(cand.assign(score=0.5625), "score", "held-out accuracy"))
    lo, hi = same["encoding"]["y"]["scale"]["domain"]
    assert lo < 0.5625 < hi and same["mark"]["type"] == "point"


def test_ramp_chart_with_dense_reference_and_log_perplexity():
    df = pd.DataFrame({"method": ["magnitude"] * 2, "granularity": ["layer"] * 2, "sparsity": [0.3, 0.5], "value": [0.8, 0.7]})
    d = spec(charts.ramp_chart(df, dense=0.85, metric="accuracy"))
    assert len(d["layer"]) == 2
    s = text_of(charts.ramp_chart(df.assign(value=[20.0, 40.0]), dense=15.0, metric="perplexity"))
    assert '"log"' in s and "perplexity (lower is better)" in s and "% of targeted weights removed" in s


def test_sensitivity_charts():
    df = pd.DataFrame({"layer": ["a", "b", "a", "b"], "sparsity": [0.5, 0.5, 0.9, 0.9], "drop": [0.01, 0.05, 0.1, 0.3]})
    bars = spec(charts.sensitivity_bars(df[df.sparsity == 0.5]))
    assert bars["encoding"]["y"]["sort"] == ["b", "a"]  # most sensitive first
    assert "accuracy points lost" in text_of(charts.sensitivity_heatmap(df))
    assert "perplexity added" in text_of(charts.sensitivity_heatmap(df, "perplexity"))
    alloc = pd.DataFrame({"layer": ["a", "b"], "sparsity": [0.6, 0.4]})
    assert tooltips(charts.allocation_bars(alloc, 0.5)) >= 2


def test_learn_charts():
    df = pd.DataFrame({"row": [0, 0, 1, 1], "col": [0, 1, 0, 1], "value": [0.5, -1.2, 0.1, 2.0], "kept": [True, False, True, True]})
    s = text_of(charts.matrix_heatmap(df, "W", "weight"))
    assert "input j" in s and "output i" in s
    curve = pd.DataFrame({"criterion": ["magnitude"] * 2, "sparsity": [0.1, 0.5], "error": [0.01, 0.2]})
    assert "relative output error" in text_of(charts.error_curve(curve, current=0.5))


def test_stacked_puts_pruned_below_kept_per_bin_and_layer():
    df = pd.concat([hist_frame().assign(layer="a"), hist_frame().assign(layer="b", count=[1, 1, 1, 1])])
    out = charts._stacked(df, ["layer"])
    a_first = out[(out.layer == "a") & (out.left == -1.0)].set_index("status")
    assert (a_first.loc["pruned", "y0"], a_first.loc["pruned", "y1"]) == (0, 2)
    assert (a_first.loc["kept", "y0"], a_first.loc["kept", "y1"]) == (2, 5)
    b_second = out[(out.layer == "b") & (out.left == 0.0)].set_index("status")
    assert b_second.loc["kept", "y1"] == 2


# ---------------------------------------------------------------- intervals (issue 8)
def rows_of(d: dict, layer: dict) -> list:
    """The data rows a layer of a chart spec draws (its own data, or the chart's shared data)."""
    return d["datasets"][(layer.get("data") or d["data"])["name"]]


def ramp_points():
    return pd.DataFrame(
        {
            "method": ["magnitude", "magnitude", "wanda"],
            "granularity": ["layer"] * 3,
            "sparsity": [0.3, 0.6, 0.6],
            "value": [0.80, 0.70, 0.78],
            "ci_low": [0.75, 0.64, 0.73],
            "ci_high": [0.84, 0.75, 0.82],
            "n": [256] * 3,
        }
    )


def test_ramp_with_error_bars_and_the_dense_band():
    from app import interval_charts as IC

    d = spec(IC.ramp_chart_ci(ramp_points(), {"value": 0.82, "ci_low": 0.77, "ci_high": 0.86}))
    band, base, bars = d["layer"]
    assert band["mark"]["type"] == "rect" and band["encoding"]["y"]["field"] == "ci_low" and band["encoding"]["y2"]["field"] == "ci_high"
    assert rows_of(d, band) == [{"label": "dense model", "value": 0.82, "ci_low": 0.77, "ci_high": 0.86}]
    assert bars["mark"]["type"] == "rule" and (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")
    rows = rows_of(d, bars)
    assert [(r["sparsity"], r["ci_low"], r["ci_high"]) for r in rows] == [(0.3, 0.75, 0.84), (0.6, 0.64, 0.75), (0.6, 0.73, 0.82)]
    assert len(base["layer"]) == 2  # the plain ramp: lines and the dashed dense value
    assert len(spec(IC.ramp_chart_ci(ramp_points()))["layer"]) == 2  # no dense row yet: no band
    with pytest.raises(ValueError, match="ci_low"):
        IC.ramp_chart_ci(ramp_points().drop(columns=["ci_low"]))


def test_sensitivity_bars_mark_the_layers_within_noise():
    from app import interval_charts as IC

    df = pd.DataFrame(
        {"layer": ["q", "k", "v"], "kl": [0.02, 0.30, 0.001], "kl_ci_low": [-0.01, 0.20, 0.0005], "kl_ci_high": [0.05, 0.40, 0.002]}
    )
    assert list(IC.noise_labels(df, "kl")) == ["within noise", "distinguishable from 0", "distinguishable from 0"]
    d = spec(IC.sensitivity_bars_ci(df, "accuracy", "kl"))
    bars, rules = d["layer"]
    assert bars["encoding"]["x"]["field"] == "kl" and "KL divergence" in bars["encoding"]["x"]["title"]
    assert bars["encoding"]["y"]["sort"] == ["k", "q", "v"]  # ranked by KL, most sensitive first
    assert (rules["encoding"]["x"]["field"], rules["encoding"]["x2"]["field"]) == ("kl_ci_low", "kl_ci_high")
    signal = {r["layer"]: r["signal"] for r in rows_of(d, rules)}
    assert signal == {"q": "within noise", "k": "distinguishable from 0", "v": "distinguishable from 0"}
    drop = df.rename(columns={"kl": "drop", "kl_ci_low": "drop_ci_low", "kl_ci_high": "drop_ci_high"})
    assert "accuracy points lost" in text_of(IC.sensitivity_bars_ci(drop, "accuracy", "drop"))


def test_candidate_scores_with_intervals_and_the_deterministic_band():
    from app import interval_charts as IC

    df = pd.DataFrame(
        {"candidate": ["c1", "c2"], "score": [0.70, 0.74], "ci_low": [0.62, 0.66], "ci_high": [0.77, 0.81], "chosen": [False, True]}
    )
    d = spec(IC.candidate_bars_ci(df, "held-out accuracy", {"value": 0.72, "ci_low": 0.60, "ci_high": 0.79}))
    band, rules, dots = d["layer"]
    assert rows_of(d, band)[0]["ci_low"] == 0.60
    assert (rules["encoding"]["y"]["field"], rules["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")
    # the zoomed axis holds every interval and the band: 0.60 .. 0.81, padded by 15% of 0.21
    assert dots["encoding"]["y"]["scale"]["domain"] == pytest.approx([0.60 - 0.0315, 0.81 + 0.0315])


def test_interval_sentences():
    from app import intervals as I

    acc = {"metric": "accuracy", "value": 0.8125, "ci_low": 0.7562, "ci_high": 0.8584, "n": 256}
    assert I.metric_text(acc) == "81.2% (95% CI 75.6% to 85.8%, n = 256)"
    ppl = {"metric": "perplexity", "value": 29.917, "ci_low": 27.5, "ci_high": 32.04, "n": 4}
    assert I.metric_text(ppl) == "29.92 (95% CI 27.50 to 32.04, 4 windows)"
    assert I.metric_text({**ppl, "n": 2000}, held_out=True) == "29.92 (95% CI 27.50 to 32.04, 2,000 predicted tokens)"
    noisy = {"drop": 0.0117, "drop_ci_low": -0.0039, "drop_ci_high": 0.0273}
    assert I.drop_text("accuracy", noisy) == "+1.2 points (95% CI -0.4 to +2.7), within noise"
    real = {"drop": 12.5, "drop_ci_low": 9.0, "drop_ci_high": 16.25}
    assert I.drop_text("perplexity", real) == "+12.50 (95% CI +9.00 to +16.25)"
    assert I.comparison_sentence("accuracy", "dense", "pruned", noisy).startswith("pruned against dense: accuracy lost +1.2 points")
