"""One validated request: defaults, seeds, allocations, and the sweeps that carry it to ``prune``."""

import pytest
import torch

from pruning.loading.data import ClassificationData
from pruning.errors import PruneScopeError
from pruning.masks import keep_count
from pruning.loading.models import prunable_layers
from pruning.prune import mask_ranker, prune
from pruning.catalog import get_method
from pruning.request import PruneRequest

R = PruneRequest.make


def _data():
    texts = ["a very good film", "awful and boring", "great fun", "the worst plot"] * 4
    labels = [1, 0, 1, 0] * 4
    return ClassificationData("tiny", {"train": (texts, labels), "validation": (texts, labels), "test": (texts, labels)}, ["neg", "pos"])


@pytest.mark.parametrize(
    "method,params,expected",
    [
        ("wanda", None, "row"),
        ("sparsegpt", None, "layer"),
        ("magnitude", None, "layer"),
        ("random", None, "layer"),
        ("mgpp", None, "global"),
        ("gmp", None, "global"),
        ("randomized", None, "layer"),
        ("sds", None, "layer"),  # its base, SparseGPT, prunes per layer
        ("sds", {"base": "wanda"}, "row"),  # its base, Wanda, prunes per row
    ],
)
def test_no_granularity_means_the_method_papers_own(method, params, expected):
    assert str(R(method, 0.5, params=params).granularity) == expected


def test_request_is_frozen_hashable_and_checked_once():
    a = R("sparsegpt", 0.5, "layer", params={"damp": "0.02"})
    b = R("sparsegpt", 0.5, "layer", params={"damp": 0.02})
    assert a == b and a.key == b.key and hash(a.key) == hash(b.key)
    assert a.param_dict["damp"] == 0.02 and a.param_dict["blocksize"] == 128  # resolved, defaults filled in
    assert R("sparsegpt", 0.5, "layer", seed=1).key != a.key
    with pytest.raises(Exception):
        a.sparsity = 0.7  # frozen
    with pytest.raises(TypeError):
        a.param_dict["damp"] = 1.0  # a read-only view
    assert R("wanda", 0.9, "1:4").sparsity == 0.25  # N:M fixes the sparsity at N/M
    assert a.replace(sparsity=0.7).sparsity == 0.7 and a.replace(method="wanda").params == R("wanda").params


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"sparsity": 1.0}, "sparsity must be"),
        ({"granularity": "3:2"}, "impossible"),
        ({"params": {"nosuch": 1}}, "has no parameter"),
        ({"seed": -1}, "seed must be"),
        ({"seed": 2**63}, "seed must be"),
        ({"seed": 0.5}, "seed must be"),
        ({"allocation": {"a": 1.0}}, "allocation for layer a"),
        ({"allocation": {}}, "allocation is empty"),
        ({"allocation": {"a": 0.5}, "granularity": "row"}, "cannot be combined"),
    ],
)
def test_bad_requests_are_refused_with_a_message(kwargs, words):
    with pytest.raises(PruneScopeError, match=words):
        R("magnitude", **kwargs)


def test_seeds_zero_and_two_to_the_forty_give_distinct_masks(tiny_bert):
    zero = prune(tiny_bert, R("random", 0.5, "layer", seed=0)).masks
    big = prune(tiny_bert, R("random", 0.5, "layer", seed=2**40)).masks
    top = prune(tiny_bert, R("random", 0.5, "layer", seed=2**63 - 1)).masks
    assert any(not torch.equal(zero[n], big[n]) for n in zero)
    assert any(not torch.equal(big[n], top[n]) for n in zero)
    again = prune(tiny_bert, R("random", 0.5, "layer", seed=2**40)).masks
    assert all(torch.equal(big[n], again[n]) for n in big)


@pytest.mark.parametrize("method", ["magnitude", "random", "wanda", "sparsegpt"])
def test_allocation_prunes_each_listed_layer_at_exactly_its_sparsity(tiny_bert, method):
    names = [i.name for i in prunable_layers(tiny_bert.model)]
    allocation = {names[0]: 0.1, names[1]: 0.5, names[2]: 0.9, names[5]: 0.0}
    result = prune(tiny_bert, R(method, allocation=allocation))
    assert set(result.masks) == set(allocation)
    for name, s in allocation.items():
        mask = result.masks[name]
        assert int(mask.sum()) == keep_count(mask.numel(), s), name
    sizes = {n: result.masks[n].numel() for n in allocation}
    assert result.sparsity == pytest.approx(sum(sizes[n] * s for n, s in allocation.items()) / sum(sizes.values()))
    assert result.info["allocation"] == allocation


def test_ranker_masks_an_allocation_like_prune(tiny_bert):
    names = [i.name for i in prunable_layers(tiny_bert.model)]
    request = R("magnitude", allocation={names[0]: 0.3, names[3]: 0.8})
    direct = prune(tiny_bert, request).masks
    ranked = mask_ranker(tiny_bert, R("magnitude")).masks(0.0, request.granularity)
    assert all(torch.equal(direct[n], ranked[n]) for n in direct)
    assert int(ranked[names[1]].sum()) == ranked[names[1]].numel()  # an unlisted layer stays whole


def test_allocation_naming_a_layer_the_model_lacks_is_refused(tiny_bert):
    with pytest.raises(PruneScopeError, match="not a prunable layer"):
        prune(tiny_bert, R("magnitude", allocation={"no.such.layer": 0.5}))


def test_ramp_passes_each_requests_parameters_and_data_to_prune(tiny_bert, monkeypatch):
    """The bug: ramps pruned with the method's default parameters and no task data."""
    import pruning.analysis.sweep as sweep

    seen = []
    real = sweep.prune

    def spy(loaded, request, calibration=None, data=None, **kw):
        seen.append((request, data))
        return real(loaded, request, calibration=calibration, data=data, **kw)

    monkeypatch.setattr(sweep, "prune", spy)
    data = _data()
    request = R("sparsegpt", 0.5, "layer", params={"damp": 0.05, "blocksize": 4}, seed=7)
    rows = sweep.sparsity_ramp(tiny_bert, data, [request], ["layer", "2:4"], [0.3], max_examples=8)
    assert [(r.param_dict["damp"], r.param_dict["blocksize"], r.seed) for r, _ in seen] == [(0.05, 4, 7)] * 2
    assert all(d is data for _, d in seen)
    assert [(r["granularity"], r["sparsity"]) for r in rows[1:]] == [("layer", 0.3), ("2:4", 0.5)]


def test_ramp_keeps_an_allocation_as_one_point_beside_uniform_ones():
    from pruning.analysis.sweep import ramp_points

    allocated = R("magnitude", 0.4, allocation={"a": 0.2, "b": 0.6})
    points = ramp_points([allocated, R("wanda")], None, [0.3, 0.5])
    assert [(r.method, str(r.granularity), r.sparsity) for r in points] == [
        ("magnitude", "allocated", 0.4), ("wanda", "row", 0.3), ("wanda", "row", 0.5)
    ]
    assert points[0].granularity.allocation_dict == {"a": 0.2, "b": 0.6}


def test_sensitivity_of_an_nm_pattern_uses_its_own_sparsity(tiny_bert):
    from pruning.analysis.sweep import layer_sensitivity

    names = [i.name for i in prunable_layers(tiny_bert.model)][:2]
    request = R("magnitude", granularity="1:4", layers=names)
    rows = layer_sensitivity(tiny_bert, _data(), request, [0.5, 0.9], max_examples=8, split="test")
    assert sorted(r["sparsity"] for r in rows if r["layer"] != "-") == [0.25, 0.25]


def test_a_toy_criterion_is_one_function_and_one_register_call(tiny_bert, monkeypatch, capsys):
    """The "add a criterion" recipe of docs/ARCHITECTURE.md, end to end."""
    from pruning import catalog, registry
    from pruning.cli import main
    from pruning.walk import layer_weights, score_method

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))

    def rows_first(ctx):  # keep the weights of the first rows: score = minus the row index
        return {n: -torch.arange(w.shape[0], dtype=torch.float32).unsqueeze(1).expand_as(w).clone() for n, w in layer_weights(ctx).items()}

    registry.register(registry.Method("toyrows", "Toy rows", "Keep the first rows.", score_method("toyrows", rows_first), scores=rows_first))
    assert main(["methods"]) == 0
    assert "toyrows" in capsys.readouterr().out
    result = prune(tiny_bert, R("toyrows", 0.5))
    mask = next(iter(result.masks.values()))
    assert mask[: mask.shape[0] // 2].all() and not mask[mask.shape[0] // 2 :].any()
    assert get_method("toyrows").default_granularity == "layer"


def test_each_method_says_how_its_steps_are_shown():
    from pruning.catalog import all_methods

    views = {n: m.steps_view for n, m in all_methods().items()}
    assert {n: v for n, v in views.items() if n in ("mgpp", "gmp", "sds", "randomized", "magnitude", "wanda")} == {
        "mgpp": "schedule", "gmp": "schedule", "sds": "stages", "randomized": "candidates", "magnitude": None, "wanda": None
    }
