"""The Stability view's frames and chart builders (app/charts/stability.py): pure, no Streamlit."""

import json
from types import SimpleNamespace

import numpy as np
import torch

from app.charts import stability as SC
from pruning.analysis.stability import layer_summary, pack


def _result():
    a = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 1, 0], [1, 0, 1, 0]], dtype=torch.bool)
    c = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    row, _ = layer_summary("bert.encoder.layer.0.attention.self.query", [pack(m) for m in (a, b, c)], (2, 4))
    rows = [{"method": "wanda", "draw": i, "metric": "accuracy", "value": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "flips": 0.1, "flips_ci_low": 0.0, "flips_ci_high": 0.3} for i, v in enumerate([0.8, 0.7, 0.75])]
    return SimpleNamespace(request=SimpleNamespace(method="wanda"), layers=[row], rows=rows)


def test_frames_carry_the_numbers_of_the_result():
    res = _result()
    jac = SC.jaccard_frame([res]).iloc[0]
    layer = res.layers[0]
    assert jac["layer"] == "0.attention.self.query" and jac["jaccard"] == layer["jaccard"]
    assert jac["low"] == max(0.0, layer["jaccard"] - layer["jaccard_sd"]) and jac["high"] == min(1.0, layer["jaccard"] + layer["jaccard_sd"])
    hist = SC.histogram_frame(layer)
    assert list(hist["weights"]) == [2, 2, 2, 2] and list(hist["status"]) == ["pruned by all", "undecided", "undecided", "kept by all"]
    cells = SC.picture_frame(layer, "undecided")
    assert len(cells) == 8 and cells["value"].sum() == 4  # one weight per cell; 4 of 8 undecided
    assert list(SC.row_frame(layer)["undecided"]) == [0.5, 0.5]


def test_builders_give_charts_with_their_fields():
    res = _result()
    layer = res.layers[0]
    specs = [
        SC.jaccard_bars(SC.jaccard_frame([res])).to_dict(),
        SC.keep_heatmap(SC.picture_frame(layer), (1, 1)).to_dict(),
        SC.keep_histogram(SC.histogram_frame(layer)).to_dict(),
        SC.row_lines(SC.row_frame(layer)).to_dict(),
        SC.draw_points(SC.draws_frame([res]), "accuracy").to_dict(),
    ]
    text = [json.dumps(s) for s in specs]
    assert "mean pairwise Jaccard" in text[0] and "keep frequency" in text[1] and "draws that keep the weight" in text[2]
    shown = [d["value"] for d in next(iter(specs[4]["datasets"].values()))]
    assert np.allclose(shown, [80.0, 70.0, 75.0])  # accuracy in points, as every view shows it
