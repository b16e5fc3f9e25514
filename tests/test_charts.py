"""Chart builders as pure functions: valid Vega-Lite, tooltips, axis titles with units."""

import json

import pandas as pd
import pytest

from app import style
from app.charts import candidates as candidates_charts
from app.charts import common as common_charts
from app.charts import learn as learn_charts
from app.charts import masks as masks_charts
from app.charts import ramp as ramp_charts
from app.charts import sensitivity as sensitivity_charts
from app.charts import steps as steps_charts
from app.charts import weights as weights_charts


def spec(chart) -> dict:
    return type(chart).to_dict(chart)  # validates against the Vega-Lite schema (the app's charts skip it when served)


def text_of(chart) -> str:
    return json.dumps(spec(chart), ensure_ascii=False)


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
    chart = weights_charts.weight_histogram(hist_frame(), curves, lines, log_count=True, title="layer")
    d = spec(chart)
    assert len(d["layer"]) == 3
    s = text_of(chart)
    assert "weight value" in s and "log scale" in s and "symlog" in s
    assert tooltips(chart) >= 3


def test_weight_histogram_linear_without_extras():
    s = text_of(weights_charts.weight_histogram(hist_frame()))
    assert "count (weights per bin)" in s and "symlog" not in s


def test_builders_reject_missing_columns():
    with pytest.raises(ValueError, match="needs columns"):
        weights_charts.weight_histogram(pd.DataFrame({"left": [0]}))
    with pytest.raises(ValueError):
        ramp_charts.ramp_chart(pd.DataFrame({"method": ["m"]}))


def test_histogram_panel_is_one_small_chart_with_its_title():
    d = spec(weights_charts.histogram_panel(hist_frame(), "block 0 · q", width=150))
    assert d["width"] == 150 and d["title"]["text"] == "block 0 · q"
    assert d["encoding"]["color"]["scale"]["range"] == [style.KEPT_COLOR, style.PRUNED_COLOR]


def test_served_charts_skip_validation_but_give_the_validated_spec():
    chart = weights_charts.histogram_panel(hist_frame(), "block 0 · q", width=150)
    validated = spec(chart)
    assert "autosize" not in chart.to_dict()  # a builder returns a plain Altair chart: nothing replaced at import time
    served = common_charts.served(chart).to_dict()  # what ui.chart hands to st.altair_chart
    assert served.pop("autosize") == common_charts.PLOT_AUTOSIZE  # width to the window, the height kept for the plot area
    assert served == validated  # what Streamlit converts is the spec the test validated
    assert "to_dict" not in chart._kwds  # the shortcut is not a Vega-Lite property


def test_every_served_chart_keeps_its_height_for_the_plot():
    """Streamlit's theme fits a chart's legends and titles into its height (squashing the plot); served charts,
    one per panel too, fit only their width."""
    import altair as alt

    training = pd.DataFrame({"step": [0, 1, 0, 1], "series": ["held-out accuracy"] * 2 + ["held-out loss"] * 2,
                             "value": [0.5, 0.6, 0.7, 0.6], "panel": ["accuracy"] * 2 + ["loss"] * 2})
    served = [common_charts.served(c) for c in steps_charts.training_charts(training)]
    assert len(served) == 2 and all(c.to_dict()["autosize"] == {"type": "fit-x", "contains": "padding"} for c in served)
    layered = alt.layer(common_charts.served(weights_charts.histogram_panel(hist_frame(), "x")))  # a served chart inside another: no nested autosize
    assert "autosize" not in alt.LayerChart.to_dict(layered)["layer"][0]
    own = common_charts.served(alt.Chart(hist_frame()).mark_bar().encode(x="left:Q").properties(autosize=alt.AutoSizeParams(type="pad")))
    assert own.to_dict()["autosize"] == {"type": "pad"}  # a builder's own size rule wins (the Stability view's charts set theirs)


def test_histogram_panel_spec_is_the_panel_chart_from_a_template():
    bins = hist_frame()
    fast = weights_charts.histogram_panel_spec(bins, "block 1 · v", width=150)
    full = spec(weights_charts.histogram_panel(bins, "block 1 · v", width=150))
    stacked = pd.DataFrame(full.pop("datasets")[full.pop("data")["name"]])
    values = pd.DataFrame(fast.pop("data")["values"])
    assert fast.pop("autosize") == {"type": "pad"}  # its width and height are the plot's: a small panel stays readable
    assert fast.pop("description") == "small multiple: block 1 · v"
    assert fast["encoding"]["y"]["axis"].pop("values") == [0, int(stacked["y1"].max())]  # two y ticks: 0 and the top
    assert fast["encoding"]["y"]["axis"]["format"] == ",d"  # counts written whole ("914", "0"), never "0.9k" over "0k"
    assert fast == full  # the same encoding, scales, title and size
    pd.testing.assert_frame_equal(values[list(stacked.columns)], stacked, check_dtype=False)  # the same stacked bars


def test_ridgeline_stacks_snapshots_in_order_each_scaled_to_its_kept_peak():
    rows = pd.concat([hist_frame().assign(step="step 0"), hist_frame().assign(step="step 10", count=[4, 2, 9, 0])])
    chart = steps_charts.ridgeline(rows, ["step 0", "step 10"], spike=0.25)
    d = spec(chart)
    bars = next(layer for layer in d["layer"] if layer["mark"]["type"] == "rect" and "y2" in layer["encoding"])
    data = pd.DataFrame(d["datasets"][bars["data"]["name"]])
    first = data[data.step == "step 0"].set_index(["left", "status"])
    # step 0: tallest kept bin is 4, so 3 kept -> 0.75 of a ridge (x 0.9 spacing), baseline y = 0
    assert first.loc[(-1.0, "kept"), "y0"] == 0 and first.loc[(-1.0, "kept"), "y1"] == pytest.approx(0.9 * 3 / 4)
    second = data[data.step == "step 10"].set_index(["left", "status"])
    # step 10 is the second ridge (baseline -1); its 9 zeros are cut at 1.6 ridge heights
    assert second.loc[(-1.0, "pruned"), "y0"] == -1 and second.loc[(-1.0, "pruned"), "y1"] == pytest.approx(-1 + 0.9 * 1.6)
    assert "prior threshold ±w*" in text_of(chart)
    assert "[-round(datum.value)]" in bars["encoding"]["y"]["axis"]["labelExpr"]


def test_weight_histogram_with_a_fixed_count_axis_clips_tall_curves():
    curves = pd.DataFrame({"x": [-0.1, 0.0, 0.1], "component": ["prior spike"] * 3, "density": [0.0, 1e6, 0.0]})
    d = spec(weights_charts.weight_histogram(hist_frame(), curves, y_max=6.0))
    assert d["layer"][0]["encoding"]["y"]["scale"] == {"domain": [0, 6.0], "clamp": True}
    assert d["layer"][1]["mark"]["clip"] is True


def test_steps_view_charts():
    curve = pd.DataFrame({"step": [0, 1, 0, 1], "series": ["cubic target s_t"] * 2 + ["prior slab weight lam_t / lam"] * 2, "value": [0, 0.3, 1, 0.5]})
    reached = pd.DataFrame({"step": [1], "series": ["sparsity reached (exact zeros)"], "value": [0.28]})
    marks = pd.DataFrame({"step": [0, 1], "label": ["t0: first pruning", "t1: last pruning, mask frozen"]})
    d = spec(steps_charts.schedule_chart(curve, reached, marks))
    assert len(d["layer"]) == 3 and "training step" in text_of(steps_charts.schedule_chart(curve))
    training = pd.DataFrame(
        {"step": [0, 5, 0, 5], "series": ["held-out accuracy"] * 2 + ["held-out loss"] * 2, "value": [0.8, 0.7, 0.5, 0.6], "panel": ["accuracy"] * 2 + ["loss"] * 2}
    )
    panels = steps_charts.training_charts(training)
    assert len(panels) == 2 and "accuracy (points" in text_of(panels[0])
    assert pd.DataFrame(spec(panels[0])["datasets"].popitem()[1])["value"].tolist() == [80.0, 70.0]  # fractions drawn as points
    stages = pd.DataFrame({"stage": ["dense", "sparse", "dense step", "sparse again"], "value": [30.0, 90.0, 40.0, 60.0]})
    bars = spec(steps_charts.stage_bars(stages, "perplexity"))["layer"][0]
    assert bars["encoding"]["x"]["sort"] == ["dense", "sparse", "dense step", "sparse again"]
    assert bars["encoding"]["y"]["scale"] == {"zero": True}  # bars start at zero
    acc = spec(steps_charts.stage_bars(stages.assign(value=0.6), "accuracy"))["layer"][0]
    assert acc["encoding"]["y"]["scale"] == {"domain": [0, 100]}  # accuracy in points; equal values still draw visible bars
    errors = pd.DataFrame({"layer": ["q", "q", "k", "k"], "stage": ["first sparse", "final"] * 2, "error": [0.2, 0.0, 0.3, 0.1]})
    d = spec(steps_charts.layer_error_chart(errors))
    last, rest = d["layer"]  # the result (red) underneath, the earlier stages dashed over it: equal values show both
    assert last["encoding"]["y"]["scale"]["type"] == "log" and last["encoding"]["x"]["sort"] == ["q", "k"]
    assert last["encoding"]["color"]["scale"]["range"][-1] == style.ACCENT_COLOR and style.ACCENT_COLOR not in rest["encoding"]["color"]["scale"]["range"][:-1]
    assert style.ACCENT_COLOR not in style.SERIES_RANGE  # red marks the thing to look at, never a loss or lam_t line
    assert rest["encoding"]["strokeDash"]["scale"]["domain"] == ["first sparse", "final"]
    with pytest.raises(ValueError):
        steps_charts.layer_error_chart(errors.drop(columns=["error"]))
    curves = pd.DataFrame({"candidate": ["c1", "c1", "c2", "c2"], "step": [2, 4, 2, 4], "value": [0.6, 0.7, 0.75, 0.8], "chosen": [False, False, True, True]})
    d = spec(steps_charts.early_curves_chart(curves, "accuracy", n_last=2))
    assert d["encoding"]["detail"]["field"] == "candidate" and "mean of the last 2" in d["encoding"]["x"]["title"]


def test_mask_heatmap_block_size_in_tooltip():
    cells = pd.DataFrame({"out_from": [0, 0, 4, 4], "in_from": [0, 8, 0, 8], "kept": [1.0, 0.5, 0.0, 0.25]})
    s = text_of(masks_charts.mask_heatmap(cells, 4, 8))
    assert "block of 4x8 weights" in s and "input column (d_in index)" in s and "output row (d_out index)" in s
    one = text_of(masks_charts.mask_heatmap(cells.assign(kept=[1.0, 0.0, 1.0, 0.0]), 1, 1))
    assert "kept (weight)" in one


def test_sparsity_bars_with_target_rule():
    df = pd.DataFrame({"layer": ["a", "b"], "method": ["magnitude"] * 2, "sparsity": [0.4, 0.6]})
    d = spec(masks_charts.sparsity_bars(df, target=0.5))
    assert len(d["layer"]) == 2
    assert "% of the layer's weights removed" in text_of(masks_charts.sparsity_bars(df))


def test_overlap_matrix_writes_values():
    df = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["x", "y", "x", "y"], "value": [1, 0.3, 0.3, 1]})
    s = text_of(masks_charts.overlap_matrix(df, title="t"))
    assert "Jaccard" in s and '"text"' in s


def test_layer_overlap_and_candidate_bars():
    df = pd.DataFrame({"layer": ["a", "b"], "pair": ["m / r"] * 2, "jaccard": [0.4, 0.5]})
    assert "Jaccard overlap of kept weights (0-1)" in text_of(masks_charts.layer_overlap_lines(df))
    cand = pd.DataFrame({"candidate": ["c1", "c2"], "score": [0.8, 0.9], "chosen": [False, True]})
    s = text_of(candidates_charts.candidate_bars(cand, "score", "held-out accuracy"))
    assert "chosen" in s and "held-out accuracy" in s
    # equal scores (a tiny model) still get a visible axis around them
    same = spec(candidates_charts.candidate_bars(cand.assign(score=0.5625), "score", "held-out accuracy"))
    lo, hi = same["encoding"]["y"]["scale"]["domain"]
    assert lo < 0.5625 < hi and same["mark"]["type"] == "point"


def test_ramp_chart_with_dense_reference_and_log_perplexity():
    df = pd.DataFrame({"method": ["magnitude"] * 2, "granularity": ["layer"] * 2, "sparsity": [0.3, 0.5], "value": [0.8, 0.7]})
    d = spec(ramp_charts.ramp_chart(df, dense=0.85, metric="accuracy"))
    assert len(d["layer"]) == 2
    s = text_of(ramp_charts.ramp_chart(df.assign(value=[20.0, 40.0]), dense=15.0, metric="perplexity"))
    assert '"log"' in s and "perplexity (lower is better)" in s and "% of targeted weights removed" in s


def test_sensitivity_charts():
    df = pd.DataFrame({"layer": ["a", "b", "a", "b"], "sparsity": [0.5, 0.5, 0.9, 0.9], "drop": [0.01, 0.05, 0.1, 0.3]})
    bars = spec(sensitivity_charts.sensitivity_bars(df[df.sparsity == 0.5]))
    assert bars["encoding"]["y"]["sort"] == ["b", "a"]  # most sensitive first
    assert pd.DataFrame(bars["datasets"].popitem()[1])["harm"].tolist() == pytest.approx([1.0, 5.0])  # fractions -> points
    heat = spec(sensitivity_charts.sensitivity_heatmap(df))
    assert "accuracy points lost" in json.dumps(heat)
    assert heat["encoding"]["color"]["scale"]["domain"] == style.HARM_DOMAIN["accuracy"]  # fixed before any point arrives
    ppl = spec(sensitivity_charts.sensitivity_heatmap(df.assign(drop=[5.0, 10.0, 20.0, 40.0]), "perplexity", dense=20.0))
    assert pd.DataFrame(ppl["datasets"].popitem()[1])["harm"].tolist() == pytest.approx([1.25, 1.5, 2.0, 3.0])  # ratio to dense
    assert "perplexity ratio to dense" in json.dumps(ppl) and ppl["encoding"]["color"]["scale"]["type"] == "log"
    kl = spec(sensitivity_charts.sensitivity_heatmap(df.rename(columns={"drop": "kl"}), "accuracy", "kl"))
    assert "KL divergence" in json.dumps(kl) and kl["encoding"]["color"]["scale"]["scheme"] == "reds"  # the KL as is, from 0 up
    first_point = spec(sensitivity_charts.sensitivity_heatmap(df.rename(columns={"drop": "kl"}).head(1), "accuracy", "kl"))
    for d in (kl, first_point):  # the same colours whatever has arrived: a domain fixed before any point
        assert d["encoding"]["color"]["scale"]["domain"] == sensitivity_charts.KL_DOMAIN and d["encoding"]["color"]["scale"]["clamp"] is True
        assert d["encoding"]["color"]["legend"]["values"] == [0, 0.001, 0.01, 0.1, 1]  # one label per decade, not bunched
    alloc = pd.DataFrame({"layer": ["a", "b"], "sparsity": [0.6, 0.4]})
    assert tooltips(sensitivity_charts.allocation_bars(alloc, 0.5)) >= 2


def test_learn_charts():
    df = pd.DataFrame({"row": [0, 0, 1, 1], "col": [0, 1, 0, 1], "value": [0.5, -1.2, 0.1, 2.0], "kept": [True, False, True, True]})
    s = text_of(learn_charts.matrix_heatmap(df, "W", "weight"))
    assert "input j" in s and "output i" in s
    curve = pd.DataFrame({"criterion": ["magnitude"] * 2, "sparsity": [0.1, 0.5], "error": [0.01, 0.2]})
    assert "relative output error" in text_of(learn_charts.error_curve(curve, current=0.5))


def test_stacked_puts_pruned_below_kept_per_bin_and_layer():
    df = pd.concat([hist_frame().assign(layer="a"), hist_frame().assign(layer="b", count=[1, 1, 1, 1])])
    out = common_charts.stacked_bins(df, ["layer"])
    a_first = out[(out.layer == "a") & (out.left == -1.0)].set_index("status")
    assert (a_first.loc["pruned", "y0"], a_first.loc["pruned", "y1"]) == (0, 2)
    assert (a_first.loc["kept", "y0"], a_first.loc["kept", "y1"]) == (2, 5)
    b_second = out[(out.layer == "b") & (out.left == 0.0)].set_index("status")
    assert b_second.loc["kept", "y1"] == 2


def test_one_colour_per_method_in_every_chart():
    ramp = pd.DataFrame({"method": ["wanda", "magnitude"], "granularity": ["layer"] * 2, "sparsity": [0.5, 0.5], "value": [0.8, 0.7]})
    bars = pd.DataFrame({"layer": ["a", "a"], "method": ["magnitude", "wanda"], "sparsity": [0.5, 0.5]})
    curve = pd.DataFrame({"criterion": ["random", "wanda"], "sparsity": [0.5, 0.5], "error": [0.3, 0.1]})
    for chart in (ramp_charts.ramp_chart(ramp), masks_charts.sparsity_bars(bars), learn_charts.error_curve(curve)):
        scale = json.dumps(spec(chart))
        for name in ("wanda", "magnitude", "random"):
            if f'"{name}"' in scale:
                assert style.method_colors()[name] in scale
    used = list(style.method_colors().values())
    assert len(set(used)) == len(used)  # no two methods share a colour
    assert not {style.KEPT_COLOR, style.PRUNED_COLOR, style.ACCENT_COLOR} & set(used)  # nor the kept/pruned pair or the accent


def test_log_count_axis_has_readable_ticks():
    assert style.log_ticks(8000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    axis = style.count_axis(8000, True, "count")
    assert axis["axis"].values == [0, 1, 10, 100, 1000]  # too many with 2 and 5: decades only
    assert style.count_axis(40, True, "count")["axis"].values == [0, 1, 2, 5, 10, 20]


def test_score_plane_and_histogram():
    cells = pd.DataFrame({"x0": [0.0], "x1": [0.5], "y0": [-2.0], "y1": [-1.5], "count": [10], "kept": [4], "kept_fraction": [0.4]})
    plane = weights_charts.score_plane(cells, pd.DataFrame({"x": [0.0, 0.5], "y": [-1.0, -1.5]}), "wanda")
    d = spec(plane)
    assert len(d["layer"]) == 2 and "pow(10, datum.value)" in json.dumps(d)
    assert len(spec(weights_charts.score_plane(cells))["layer"]) == 1  # no boundary: nothing drawn for it
    hist = pd.DataFrame({"left": [0.1, 1.0, 0.1, 1.0], "right": [1.0, 10.0, 1.0, 10.0], "count": [1, 5, 7, 0], "status": ["kept", "kept", "pruned", "pruned"]})
    h = spec(weights_charts.score_histogram(hist, 1.0, "wanda"))
    assert h["layer"][0]["encoding"]["x"]["scale"]["type"] == "log" and "wanda score (log)" in json.dumps(h)


def test_agreement_picture_colours_each_method_only_in_its_own_colour():
    cells = pd.DataFrame({"row": [0, 0, 1, 1], "col": [0, 1, 0, 1], "agreement": ["kept by both", "kept by A only", "kept by B only", "pruned by both"]})
    d = spec(masks_charts.agreement_picture(cells, "magnitude", "wanda"))
    scale = d["encoding"]["color"]["scale"]
    assert scale["domain"] == ["kept by both", "kept by magnitude only", "kept by wanda only", "pruned by both"]
    assert scale["range"] == [style.KEPT_COLOR, style.method_colors()["magnitude"], style.method_colors()["wanda"], style.PRUNED_COLOR]


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
    d = spec(ramp_charts.ramp_chart_ci(ramp_points(), {"value": 0.82, "ci_low": 0.77, "ci_high": 0.86}))
    band, base, bars = d["layer"]
    assert band["mark"]["type"] == "rect" and band["encoding"]["y"]["field"] == "ci_low" and band["encoding"]["y2"]["field"] == "ci_high"
    # accuracy is drawn in points, the interval with it (the band and bars sit on the line they belong to)
    assert rows_of(d, band) == [{"label": "dense model", "value": pytest.approx(82.0), "ci_low": pytest.approx(77.0), "ci_high": pytest.approx(86.0)}]
    assert bars["mark"]["type"] == "rule" and (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")
    rows = rows_of(d, bars)
    assert [(r["sparsity"], r["ci_low"], r["ci_high"]) for r in rows] == [
        (0.3, pytest.approx(75.0), pytest.approx(84.0)), (0.6, pytest.approx(64.0), pytest.approx(75.0)), (0.6, pytest.approx(73.0), pytest.approx(82.0))
    ]
    assert len(base["layer"]) == 2  # the plain ramp: lines and the dashed dense value
    assert len(spec(ramp_charts.ramp_chart_ci(ramp_points()))["layer"]) == 2  # no dense row yet: no band
    with pytest.raises(ValueError, match="ci_low"):
        ramp_charts.ramp_chart_ci(ramp_points().drop(columns=["ci_low"]))


def test_sensitivity_bars_mark_the_layers_within_noise():
    df = pd.DataFrame(
        {"layer": ["q", "k", "v"], "kl": [0.02, 0.30, 0.001], "kl_ci_low": [-0.01, 0.20, 0.0005], "kl_ci_high": [0.05, 0.40, 0.002]}
    )
    assert list(sensitivity_charts.noise_labels(df, "kl")) == ["within noise", "distinguishable from 0", "distinguishable from 0"]
    d = spec(sensitivity_charts.sensitivity_bars_ci(df, "accuracy", "kl"))
    bars, rules = d["layer"]
    assert bars["encoding"]["x"]["field"] == "harm" and "KL divergence" in bars["encoding"]["x"]["title"]
    assert [r["harm"] for r in rows_of(d, bars)] == [0.02, 0.30, 0.001]  # the KL as is: no unit change
    assert bars["encoding"]["y"]["sort"] == ["k", "q", "v"]  # ranked by KL, most sensitive first
    assert (rules["encoding"]["x"]["field"], rules["encoding"]["x2"]["field"]) == ("harm_ci_low", "harm_ci_high")
    assert [(r["harm_ci_low"], r["harm_ci_high"]) for r in rows_of(d, rules)] == [(-0.01, 0.05), (0.20, 0.40), (0.0005, 0.002)]
    signal = {r["layer"]: r["signal"] for r in rows_of(d, rules)}
    assert signal == {"q": "within noise", "k": "distinguishable from 0", "v": "distinguishable from 0"}
    drop = df.rename(columns={"kl": "drop", "kl_ci_low": "drop_ci_low", "kl_ci_high": "drop_ci_high"})
    assert "accuracy points lost" in text_of(sensitivity_charts.sensitivity_bars_ci(drop, "accuracy", "drop"))
    d = spec(sensitivity_charts.sensitivity_bars_ci(drop, "accuracy", "drop"))  # a drop's interval is in points, like its bar
    assert [(r["harm_ci_low"], r["harm_ci_high"]) for r in rows_of(d, d["layer"][1])] == [
        (pytest.approx(-1.0), pytest.approx(5.0)), (pytest.approx(20.0), pytest.approx(40.0)), (pytest.approx(0.05), pytest.approx(0.2))
    ]


def test_candidate_scores_with_intervals_and_the_deterministic_band():
    df = pd.DataFrame(
        {"candidate": ["c1", "c2"], "score": [0.70, 0.74], "ci_low": [0.62, 0.66], "ci_high": [0.77, 0.81], "chosen": [False, True]}
    )
    d = spec(candidates_charts.candidate_bars_ci(df, "held-out accuracy", {"value": 0.72, "ci_low": 0.60, "ci_high": 0.79}))
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
    # a sentence signs the difference as the metric moved, as the headline's delta beside it does
    assert I.comparison_sentence("accuracy", "dense", "pruned", noisy) == (
        "pruned against dense: accuracy change -1.2 points (95% CI -2.7 to +0.4), within noise.")
    assert I.change_delta("accuracy", noisy["drop"], True)["delta"].startswith("-1.2 points")
    assert I.change_text("perplexity", real) == "perplexity change +12.50 (95% CI +9.00 to +16.25)"
    # perplexity's harm as a ratio to dense (docs/VIEWS.md), the difference beside it
    assert I.change_delta("perplexity", 12.5, False, ratio=37.5 / 25.0)["delta"] == "1.50x (+12.50)"
    assert I.change_delta("perplexity", 12.5, False)["delta"] == "+12.50"


def test_a_perplexity_table_carries_its_harm_as_a_ratio_to_the_compared_model():
    import pandas as pd

    from app import ui

    df = pd.DataFrame({"method": ["wanda", "magnitude"], "value": [150.0, 40.0], "drop": [50.0, -10.0], "drop_ci_low": [40.0, -12.0]})
    table, config = ui.shown_table(df, "perplexity")
    assert list(table.columns) == ["method", "value", "drop", ui.RATIO_COLUMN, "drop_ci_low"]
    assert table[ui.RATIO_COLUMN].tolist() == [1.5, 0.8]  # 150 / 100 and 40 / 50
    assert ui.RATIO_COLUMN in config and "drop" in df.columns and ui.RATIO_COLUMN not in df.columns  # the caller's frame untouched
    acc, _ = ui.shown_table(df.assign(value=[0.8, 0.7], drop=[0.1, 0.0]), "accuracy")
    assert ui.RATIO_COLUMN not in acc.columns


def test_a_line_style_legend_draws_the_line_style():
    """Solid and dashed granularities on the ramp: the legend shows strokes (dashes), not the point overlay's dots."""
    df = pd.DataFrame({"method": ["magnitude"] * 4, "granularity": ["layer", "layer", "allocated", "allocated"],
                       "sparsity": [0.3, 0.7] * 2, "value": [0.8, 0.6, 0.8, 0.7]})
    d = spec(ramp_charts.ramp_chart(df))
    legend = d["encoding"]["strokeDash"]["legend"]
    assert legend["symbolType"] == "M-1,0L1,0" and legend["symbolStrokeWidth"] >= 2  # a line (seen in a browser)
    assert legend["symbolStrokeColor"] and legend["symbolFillColor"] == "transparent"


def test_the_ramp_draws_the_majority_class_floor_in_points():
    points = pd.DataFrame({"method": ["magnitude"] * 2, "granularity": ["layer"] * 2, "sparsity": [0.3, 0.9],
                           "value": [0.8, 0.64], "ci_low": [0.75, 0.6], "ci_high": [0.85, 0.68], "n": [256, 256]})
    d = spec(ramp_charts.ramp_chart_ci(points, None, "accuracy", chance=0.637))
    text = json.dumps(d)
    assert ramp_charts.CHANCE_LABEL in text
    floors = [v for name, rows in d["datasets"].items() for v in rows if v.get("label") == ramp_charts.CHANCE_LABEL]
    assert floors and floors[0]["value"] == pytest.approx(63.7)  # in points, as the axis
    assert ramp_charts.CHANCE_LABEL not in json.dumps(spec(ramp_charts.ramp_chart_ci(points, None, "accuracy")))


def test_per_step_metrics_carry_their_intervals():
    """MGPP/GMP snapshots and SDS stages are measured on n held-out examples: each point gets its 95% interval."""
    training = pd.DataFrame({"step": [0, 10, 0, 10], "series": ["held-out accuracy"] * 2 + ["held-out loss"] * 2,
                             "value": [0.5, 0.6, 0.7, 0.6], "panel": ["accuracy"] * 2 + ["loss"] * 2,
                             "ci_low": [0.4, 0.5, None, None], "ci_high": [0.6, 0.7, None, None]})
    acc, loss = steps_charts.training_charts(training)
    rules = [layer for layer in spec(acc)["layer"] if layer["mark"]["type"] == "rule"]
    assert rules and rules[0]["encoding"]["y"]["field"] == "ci_low"
    data = pd.DataFrame(spec(acc)["datasets"][rules[0]["data"]["name"]])
    assert data["ci_low"].tolist() == pytest.approx([40.0, 50.0])  # in points, as the line
    assert "layer" not in spec(loss)  # losses have no interval: no rules
    stages = pd.DataFrame({"stage": ["dense", "sparse"], "value": [0.8, 0.7], "ci_low": [0.75, 0.64], "ci_high": [0.85, 0.76]})
    d = spec(steps_charts.stage_bars(stages, "accuracy"))
    assert any(layer["mark"]["type"] == "rule" for layer in d["layer"])
