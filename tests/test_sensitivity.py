"""Layer sensitivity: the KL signal by hand, prefix-cached passes equal to full ones, rows, allocation."""

import math

import numpy as np
import pytest
import torch

from pruning.loading.data import ClassificationData, LMText
from pruning.errors import PruneScopeError
from pruning.analysis.evaluate import evaluation_plan
from pruning.loading.models import prunable_layers
from pruning.result import masked_overrides
from pruning.criteria.magnitude import magnitude_scores
from pruning.masks import compute_masks
from pruning.request import PruneRequest
from pruning.analysis.sensitivity import (
    SensitivityProbe,
    distinguishable_layers,
    kl_divergence,
    kl_items,
    layer_sensitivity,
    suggest_allocation,
)

TEXTS = ["a very good film", "awful and boring", "great fun", "the worst plot", "not a good story at all , very dull"] * 4
LABELS = [1, 0, 1, 0, 0] * 4


@pytest.fixture()
def data():
    return ClassificationData("tiny", {"train": (TEXTS, LABELS), "validation": (TEXTS, LABELS), "test": (TEXTS, LABELS)}, ["negative", "positive"])


@pytest.fixture()
def text():
    return LMText("toy", " ".join(TEXTS) * 3, "unused")


def test_kl_is_zero_for_identical_outputs_and_positive_otherwise():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(kl_divergence(logits, logits.clone()), torch.zeros(5, dtype=torch.float64))
    assert float(kl_divergence(logits, logits + 3.0).max()) < 1e-12  # same distribution, up to rounding
    other = logits.clone()
    other[:, 0] += 1.0
    assert bool((kl_divergence(logits, other) > 0).all())


def test_kl_matches_a_hand_computation():
    # dense p = (1/2, 1/2); pruned q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    dense = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    pruned = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    assert float(kl_divergence(dense, pruned)[0]) == pytest.approx(0.5 * math.log(4 / 3), abs=1e-12)
    # causal LM: one window of 3 positions, the last predicts nothing evaluated; the first two average
    d = torch.zeros(1, 3, 2, dtype=torch.float64)
    p = torch.stack([pruned[0], dense[0], pruned[0]]).unsqueeze(0)
    assert kl_items("perplexity", d, p)[0] == pytest.approx(0.25 * math.log(4 / 3), abs=1e-12)


def _logits(probe, name, overrides):
    out = []
    ev, kl = probe.evaluate(name, overrides, on_logits=lambda i, logits: out.append(logits.clone()))
    return ev, kl, out


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_prefix_cached_sensitivity_equals_full_passes(request, fixture, data, text):
    loaded = request.getfixturevalue(fixture)
    plan = evaluation_plan(loaded, data if fixture == "tiny_bert" else text, None, "test")
    cached = SensitivityProbe(loaded, plan)
    full = SensitivityProbe(loaded, plan, cache=False)
    assert (cached.mode, full.mode) == ("cached", "full")
    for info in prunable_layers(loaded.model):
        from pruning.loading.models import layer_weight

        w = layer_weight(loaded.model, info.name)
        mask = compute_masks({info.name: magnitude_scores(w)}, 0.5, "layer", {info.name: w})
        overrides = masked_overrides(loaded, mask)
        ev_c, kl_c, logits_c = _logits(cached, info.name, overrides)
        ev_f, kl_f, logits_f = _logits(full, info.name, overrides)
        assert max(float((a - b).abs().max()) for a, b in zip(logits_c, logits_f)) <= 1e-4
        assert ev_c["value"] == pytest.approx(ev_f["value"], rel=1e-6)
        assert np.allclose(kl_c, kl_f, atol=1e-7) and float(kl_f.mean()) > 0


def _magnitude_overrides(loaded, name, sparsity):
    from pruning.loading.models import layer_weight

    w = layer_weight(loaded.model, name)
    return masked_overrides(loaded, compute_masks({name: magnitude_scores(w)}, sparsity, "layer", {name: w}))


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_one_copy_serves_every_layer_in_any_order(request, fixture, data, text):
    """The probe's one private copy swaps its replaying modules per layer: a layer evaluated
    again after others, or first in a fresh probe, gives the very same logits."""
    loaded = request.getfixturevalue(fixture)
    plan = evaluation_plan(loaded, data if fixture == "tiny_bert" else text, None, "test")
    names = [i.name for i in prunable_layers(loaded.model)]
    a, b = names[1], names[-2]
    probe = SensitivityProbe(loaded, plan)
    first = _logits(probe, a, _magnitude_overrides(loaded, a, 0.5))[2]
    between = _logits(probe, b, _magnitude_overrides(loaded, b, 0.5))[2]
    again = _logits(probe, a, _magnitude_overrides(loaded, a, 0.5))[2]
    fresh = _logits(SensitivityProbe(loaded, plan), b, _magnitude_overrides(loaded, b, 0.5))[2]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert all(torch.equal(x, y) for x, y in zip(between, fresh))
    assert not all(torch.equal(x, y) for x, y in zip(first, between))


def test_onednn_and_mkl_probes_agree(tiny_bert, data):
    """The probe's oneDNN linears change the arithmetic's order, not its result."""
    plan = evaluation_plan(tiny_bert, data, None, "test")
    name = [i.name for i in prunable_layers(tiny_bert.model)][2]
    overrides = _magnitude_overrides(tiny_bert, name, 0.6)
    ev_d, kl_d, logits_d = _logits(SensitivityProbe(tiny_bert, plan, onednn=True), name, overrides)
    ev_m, kl_m, logits_m = _logits(SensitivityProbe(tiny_bert, plan, onednn=False), name, overrides)
    assert max(float((x - y).abs().max()) for x, y in zip(logits_d, logits_m)) <= 1e-4
    assert ev_d["value"] == ev_m["value"] and np.allclose(kl_d, kl_m, rtol=1e-3, atol=1e-9)


def test_the_cache_skips_earlier_blocks_and_layers(tiny_llama, text):
    plan = evaluation_plan(tiny_llama, text, None, "test")
    probe = SensitivityProbe(tiny_llama, plan)
    replayed = set(probe._replays("model.layers.1.mlp.up_proj"))
    assert replayed == {
        "model.embed_tokens",  # what enters the first block
        "model.layers.0",  # the block before
        *(f"model.layers.1.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")),  # ran before it
        "model.layers.1.mlp.gate_proj",  # reads the same input
    }
    first = {"model.embed_tokens", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj"}
    assert set(probe._replays("model.layers.0.self_attn.q_proj")) == first


def test_memory_budget_decides_what_is_cached(tiny_bert, data):
    plan = evaluation_plan(tiny_bert, data, None, "test")
    tokens = sum(int(b["input_ids"].numel()) for b in plan.batches)
    hidden_mb = 4 * tokens * 32 / 2**20
    assert SensitivityProbe(tiny_bert, plan, memory_mb=1.9 * hidden_mb).mode == "full"
    assert SensitivityProbe(tiny_bert, plan, memory_mb=2.5 * hidden_mb).mode == "blocks"
    probe = SensitivityProbe(tiny_bert, plan, memory_mb=2.5 * hidden_mb)
    assert set(probe._replays("bert.encoder.layer.1.output.dense")) == {"bert.encoder.layer.0"}


def test_sensitivity_rows_carry_drop_kl_and_their_intervals(tiny_bert, data):
    rows = layer_sensitivity(tiny_bert, data, PruneRequest.make("magnitude", granularity="layer"), [0.0, 0.6], max_examples=16, split="test")
    dense, points = rows[0], rows[1:]
    assert dense["layer"] == "-" and dense["kl"] == 0.0 and dense["n"] == 16
    names = [i.name for i in prunable_layers(tiny_bert.model)]
    assert len(points) == 2 * len(names)
    for r in points:
        assert r["kl_ci_low"] <= r["kl"] <= r["kl_ci_high"] and r["drop_ci_low"] <= r["drop"] <= r["drop_ci_high"]
        if r["sparsity"] == 0.0:  # nothing pruned: exactly the dense outputs
            assert (r["drop"], r["kl"], r["distinguishable"]) == (0.0, 0.0, False)
        else:
            assert r["kl"] > 0 and r["distinguishable"] == (r["kl_ci_low"] > 0)
    assert distinguishable_layers(rows) == [r["layer"] for r in points if r["sparsity"] == 0.6 and r["kl_ci_low"] > 0]


def test_unknown_signal_is_a_clear_error(tiny_bert, data):
    with pytest.raises(PruneScopeError, match="signal"):
        layer_sensitivity(tiny_bert, data, PruneRequest.make("magnitude"), signal="accuracy")


def test_allocation_meets_the_target_and_spares_sensitive_layers():
    rows = [
        {"layer": "a", "drop": 0.30, "kl": 1e-4},
        {"layer": "b", "drop": 0.01, "kl": 1e-1},
        {"layer": "c", "drop": 0.02, "kl": 1e-3},
    ]
    params = {"a": 100, "b": 100, "c": 200}
    for signal, most, least in (("drop", "a", "b"), ("kl", "b", "a")):
        alloc = suggest_allocation(rows, 0.5, params, signal=signal)
        mean = sum(params[n] * s for n, s in alloc.items()) / sum(params.values())
        assert mean == pytest.approx(0.5, abs=1e-4)
        assert alloc[most] < alloc["c"] < alloc[least]


def test_the_last_block_at_the_first_position_equals_the_whole_block(tiny_bert, data):
    """With padding in the batch, the shortcut's output is the block's own output at position 0."""
    from pruning.analysis.first_position import first_position_forward, supports_first_position

    block = tiny_bert.model.bert.encoder.layer[1]
    assert supports_first_position(tiny_bert.model, block)
    inputs = tiny_bert.tokenizer(["great fun", "not a good story at all , very dull"], padding=True, return_tensors="pt")
    assert int((inputs["attention_mask"] == 0).sum()) > 0  # padding present
    seen = {}
    handle = block.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    try:
        with torch.inference_mode():
            tiny_bert.model(**inputs)
            hidden, mask = seen["args"][0], seen["args"][1]
            first = first_position_forward(block, hidden, mask)
    finally:
        handle.remove()
    out = seen["out"][0] if isinstance(seen["out"], tuple) else seen["out"]
    assert first.shape == (hidden.shape[0], 1, hidden.shape[2])
    assert float((first[:, 0] - out[:, 0]).abs().max()) <= 1e-5


@pytest.mark.parametrize("boolean", [False, True])
def test_folded_attention_equals_attention_over_projected_keys_and_values(boolean):
    """One query over every position, keys and values folded into it, against projecting them."""
    from pruning.analysis.first_position import _attend_folded

    g = torch.Generator().manual_seed(0)
    batch, length, heads, size = 3, 7, 4, 5
    hidden = heads * size
    key, value = torch.nn.Linear(hidden, hidden), torch.nn.Linear(hidden, hidden)
    x = torch.randn(batch, length, hidden, generator=g)
    q = torch.randn(batch, heads, size, generator=g)
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[0, ..., 5:] = False  # padding in the first sequence
    mask = keep if boolean else torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)

    def split(t):
        return t.view(batch, length, heads, size).transpose(1, 2)

    with torch.no_grad():
        expect = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, None], split(key(x)), split(value(x)), attn_mask=mask, scale=1.0
        )[:, :, 0]
        got = _attend_folded(q, key, value, x, mask, heads, size)
    assert got.shape == (batch, heads, size)
    assert float((got - expect).abs().max()) <= 1e-5


def test_the_first_position_shortcut_is_used_only_where_checked(tiny_bert, tiny_llama, data, text, monkeypatch):
    bert_plan = evaluation_plan(tiny_bert, data, None, "test")
    probe = SensitivityProbe(tiny_bert, bert_plan)
    assert probe.first_position  # BERT classifier: checked on every batch
    # the last block runs at the first position for its own layers too: nothing of it is replayed
    assert set(probe._replays("bert.encoder.layer.1.attention.self.key")) == {"bert.embeddings", "bert.encoder.layer.0"}
    assert not SensitivityProbe(tiny_bert, bert_plan, cache=False).first_position  # full passes stay full
    assert not SensitivityProbe(tiny_llama, evaluation_plan(tiny_llama, text, None, "test")).first_position  # an LM reads every position
    import pruning.analysis.first_position as fp

    monkeypatch.setattr(fp, "first_position_forward", lambda block, hidden, *a, **k: hidden[:, :1] * 2.0)
    assert not SensitivityProbe(tiny_bert, bert_plan).first_position  # a shortcut that disagrees is not used


def test_an_lm_probe_keeps_the_dense_log_probs_only_within_its_budget(tiny_llama, text):
    """Kept, every point skips the dense head and the dense half of the KL; the KL is the same."""
    from pruning.loading.models import layer_weight

    plan = evaluation_plan(tiny_llama, text, None, "test")
    kept = SensitivityProbe(tiny_llama, plan)
    assert kept.mode == "cached" and kept._dense_logp is not None
    vocab = int(tiny_llama.model.get_output_embeddings().weight.shape[0])
    tokens = sum(int(b["input_ids"].numel()) for b in plan.batches)
    tight = SensitivityProbe(tiny_llama, plan, memory_mb=(kept._held + 4 * tokens * vocab) / 2**20)  # half of what they need
    assert tight.mode == "cached" and tight._dense_logp is None
    name = "model.layers.1.mlp.down_proj"
    w = layer_weight(tiny_llama.model, name)
    overrides = masked_overrides(tiny_llama, compute_masks({name: magnitude_scores(w)}, 0.7, "layer", {name: w}))
    kl_kept, kl_tight = kept.evaluate(name, overrides)[1], tight.evaluate(name, overrides)[1]
    assert float(kl_kept.min()) > 0 and np.allclose(kl_kept, kl_tight, rtol=1e-6, atol=1e-12)


def test_progress_counts_blocks_run_and_reports_the_dense_pass(tiny_bert, data):
    """A layer of block 0 re-runs both blocks of the tiny BERT, one of block 1 only one: the progress share is time's
    share, not the points'. The dense pass reports its batches before any point (a Stop can land there too)."""
    from pruning.analysis.sensitivity import point_cost

    assert [point_cost(b, 2) for b in (0, 1)] == [2, 1] and point_cost(None, 30) == 30
    calls = []
    request = PruneRequest.make("magnitude", granularity="layer", layers=("bert.encoder.layer.0.attention.self.query",
                                                                         "bert.encoder.layer.1.attention.self.query"))
    layer_sensitivity(tiny_bert, data, request, [0.5], max_examples=16, split="test", progress=lambda *a: calls.append(a))
    dense = [c for c in calls if c[2].startswith("dense pass, ")]
    assert dense and calls.index(dense[-1]) < next(i for i, c in enumerate(calls) if "point 1 of 2" in c[2])
    points = [c for c in calls if "point" in c[2]]
    assert sorted({(c[0], c[1]) for c in points}) == [(0, 3), (2, 3)]  # block 0's point costs 2 of the 3 blocks run
    batches = len(evaluation_plan(tiny_bert, data, 16, "test").batches)
    assert [c[2] for c in points].count(points[0][2]) == 1 + batches  # and each batch reports again: a Stop lands there
    assert calls[-1][:2] == (3, 3)


def test_a_points_cost_adds_what_every_point_pays_for_the_head_and_the_metric():
    """SmolLM2 has 30 blocks; a causal LM's point pays 0.4 of a dense pass for the output head and the KL over its
    vocabulary (0.4 x 30 = 12 blocks) on top of the blocks it re-runs. The page's default run (blocks 0, 10, 19 and 29,
    7 roles, 3 sparsities) then costs 21 x ((30 + 20 + 11 + 1) + 4 x 12) = 21 x 110 = 2310 blocks, where the blocks
    alone were 21 x 62 = 1302. A classifier's few labels cost nothing on top."""
    from pruning.analysis.sensitivity import point_cost, point_fixed_blocks

    fixed = point_fixed_blocks("causal-lm", 30)
    assert fixed == pytest.approx(12.0)
    assert point_cost(29, 30, fixed) == pytest.approx(13.0) and point_cost(0, 30, fixed) == pytest.approx(42.0)
    assert sum(21 * point_cost(b, 30, fixed) for b in (0, 10, 19, 29)) == pytest.approx(2310.0)
    assert sum(21 * point_cost(b, 30) for b in (0, 10, 19, 29)) == 1302
    assert point_fixed_blocks("classification", 2) == 0.0 and point_cost(1, 2, point_fixed_blocks("classification", 2)) == 1


def test_progress_weighs_a_language_models_points_by_their_fixed_cost_too(tiny_llama, text):
    """The tiny Llama has 2 blocks: a point pays 0.4 x 2 = 0.8 blocks on top, so block 0's point is 2.8 of the 4.6 run."""
    from pruning.analysis.sensitivity import point_fixed_blocks

    names = [i.name for i in prunable_layers(tiny_llama.model)]
    first, last = next(n for n in names if ".0." in n), next(n for n in names if ".1." in n)
    calls = []
    request = PruneRequest.make("magnitude", granularity="layer", layers=(first, last))
    layer_sensitivity(tiny_llama, text, request, [0.5], max_examples=4, progress=lambda *a: calls.append(a))
    assert point_fixed_blocks("causal-lm", 2) == pytest.approx(0.8)
    points = sorted({(round(c[0], 6), round(c[1], 6)) for c in calls if "point" in c[2]})
    assert points == [(0.0, 4.6), (2.8, 4.6)]
