"""The Stability view under streamlit.testing.v1.AppTest (a tiny random BERT, as in test_app_pages.py)."""

from __future__ import annotations

import pytest

from test_app_pages import assert_clean, chart_rows, open_page

pytestmark = pytest.mark.usefixtures("tiny_model_folder")  # tests/conftest.py: the app on the tiny BERT


def test_stability_runs_from_its_button_and_shows_decided_magnitude():
    at = open_page("stability")
    assert_clean(at)
    assert any("Press the button" in i.value for i in at.info)  # nothing runs before the button
    at.multiselect(key="ps_stab_methods").set_value(["magnitude", "wanda"])
    at.number_input(key="ps_stab_draws").set_value(3)
    at.selectbox(key="ps_stab_kind").set_value("resample").run()
    at.button(key="btn_stab_run").click().run()
    assert_clean(at)
    values = [m.value for m in at.metric if m.label == "Mean Jaccard between draws"]
    assert values[0] == "1.000"  # magnitude: no calibration, no seed, the same mask every draw
    assert float(values[1]) < 1.0  # wanda on 3 resampled calibration sets of 8 samples
    assert [m.value for m in at.metric if m.label == "Undecided weights"][0] == "0.0%"
    assert any("decided: every draw gives the same mask" in md.value for md in at.markdown)
    ranking = at.dataframe[0].value
    assert list(ranking["method"]) == ["magnitude", "wanda"] and list(ranking["rank"]) == [1, 2]
    draws = next(d.value for d in at.dataframe if "draw" in d.value.columns and "flips" in d.value.columns)
    assert len(draws) == 6 and (draws[draws["method"] == "magnitude"]["flips"] == 0).all()
    # tables in the unit of the charts: accuracy in points (the draws' chart draws value x 100)
    drawn = sorted(r["value"] for r in chart_rows(at, "accuracy (points)") if "draw" in r and "value" in r)
    assert sorted(draws["value"]) == pytest.approx(drawn) and max(drawn) > 1
    assert list(ranking["metric_mean"]) == pytest.approx([draws[draws["method"] == m]["value"].mean() for m in ranking["method"]])
    at.selectbox(key="ps_stab_method").set_value("wanda").run()
    assert_clean(at)
    layer = at.selectbox(key="ps_stab_layer").value
    assert layer.startswith("bert.encoder.layer.")
    at.radio(key="ps_stab_value").set_value("undecided").run()
    assert_clean(at)
    assert any("undecided" in spec for spec in (e.proto.spec for e in at.get("vega_lite_chart")))


def test_overview_reports_flips_beside_the_paired_difference():
    import re

    at = open_page()
    assert_clean(at)
    text = next(c.value for c in at.caption if c.value.startswith("**Flips:**"))
    share, items, flipped, to_wrong, to_right, other = re.search(
        r"on \*\*([\d.]+)%\*\* of the (\d+) examples \((\d+);.*: (\d+) from right to wrong, (\d+) from wrong to right, (\d+) from one", text
    ).groups()
    assert int(items) == 32  # PRUNESCOPE_EVAL_SIZE
    assert int(flipped) == int(to_wrong) + int(to_right) + int(other) and int(other) == 0  # two labels: a wrong answer has no other wrong to flip to
    assert float(share) == pytest.approx(100 * int(flipped) / 32, abs=0.05)
