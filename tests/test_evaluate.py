"""Evaluation through overrides: correctness, the shared model untouched, threads, perplexity by hand."""

import copy
import math
import threading

import pytest
import torch

from pruning.loading.data import ClassificationData, LMText
from pruning.errors import PruneScopeError
from pruning.analysis.evaluate import (
    accuracy,
    encode_sorted,
    evaluate,
    label_mapping,
    lm_windows,
    model_runner,
    perplexity,
)
from pruning.core import LoadedModel
from pruning.loading.models import layer_weight, param_key, prunable_layers, to_module_layout

SENTENCES = [
    "a good film",
    "the worst movie i have seen , dull and boring",
    "great acting",
    "not fun",
    "it was fine , some of the story is funny but the plot is very bad",
    "best",
    "i love this film , the actor is great",
    "awful",
    "more boring than the first one",
    "one of the best",
    "the plot was dull",
    "we all love it",
]


def _checksum(model):
    return sum(float(p.double().abs().sum()) for p in model.parameters())


def _half_mask_overrides(loaded, seed=0):
    """Zero a random half of every prunable weight: overrides and the same weights for a manual copy."""
    g = torch.Generator().manual_seed(seed)
    overrides, weights = {}, {}
    for info in prunable_layers(loaded.model):
        w = layer_weight(loaded.model, info.name)
        pruned = w * (torch.rand(w.shape, generator=g) > 0.5)
        weights[info.name] = pruned
        overrides[param_key(loaded.model, info.name)] = to_module_layout(loaded.model, info.name, pruned)
    return overrides, weights


def _manual_copy(loaded, weights):
    model = copy.deepcopy(loaded.model)
    for name, w in weights.items():
        module = model.get_submodule(name)
        module.weight.data = to_module_layout(model, name, w).clone()
    return model


def _predictions(model, tokenizer, texts):
    preds = []
    with torch.no_grad():
        for t in texts:
            preds.append(int(model(**tokenizer([t], return_tensors="pt")).logits.argmax(-1)))
    return preds


def test_accuracy_with_overrides_equals_a_manually_pruned_copy(tiny_bert):
    overrides, weights = _half_mask_overrides(tiny_bert)
    manual = _manual_copy(tiny_bert, weights)
    # flip the classifier too, so pruned and dense predictions surely differ
    overrides["classifier.weight"] = -tiny_bert.model.classifier.weight
    overrides["classifier.bias"] = -tiny_bert.model.classifier.bias
    manual.classifier.weight.data = -manual.classifier.weight.data
    manual.classifier.bias.data = -manual.classifier.bias.data
    expected = _predictions(manual, tiny_bert.tokenizer, SENTENCES)  # one sentence at a time: no padding
    dense = _predictions(tiny_bert.model, tiny_bert.tokenizer, SENTENCES)
    assert expected != dense
    labels = [p if i % 3 else 1 - p for i, p in enumerate(expected)]  # 8 of 12 right under the overrides
    want = sum(a == b for a, b in zip(expected, labels)) / len(labels)
    assert accuracy(tiny_bert, SENTENCES, labels, overrides, batch_size=4) == pytest.approx(want)
    assert accuracy(manual_loaded(tiny_bert, manual), SENTENCES, labels, batch_size=5) == pytest.approx(want)
    dense_want = sum(a == b for a, b in zip(dense, labels)) / len(labels)
    assert accuracy(tiny_bert, SENTENCES, labels, batch_size=3) == pytest.approx(dense_want)
    # logits agree with the manual copy, batched and padded
    batch = tiny_bert.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model_runner(tiny_bert.model, overrides)(**batch).logits, manual(**batch).logits, atol=1e-5)


def manual_loaded(loaded, model):
    return LoadedModel("manual", model, loaded.tokenizer, loaded.task, loaded.max_length, "copy", {})


def test_evaluation_leaves_the_model_untouched(tiny_bert, tiny_gpt2):
    for loaded in (tiny_bert, tiny_gpt2):
        before = _checksum(loaded.model)
        state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
        overrides, _ = _half_mask_overrides(loaded)
        if loaded.task == "classification":
            accuracy(loaded, SENTENCES, [0] * len(SENTENCES), overrides)
        else:
            perplexity(loaded, " ".join(SENTENCES), overrides, seq_len=16)
        assert _checksum(loaded.model) == before
        assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in state.items())
        assert all(not p.requires_grad for p in loaded.model.parameters())


def test_encode_sorted_pads_each_batch_to_its_own_longest(tiny_bert):
    batches = encode_sorted(tiny_bert.tokenizer, SENTENCES, batch_size=5, max_length=64)
    order = torch.cat([b["order"] for b in batches])
    assert sorted(order.tolist()) == list(range(len(SENTENCES)))
    lengths = [int(n) for b in batches for n in b["attention_mask"].sum(dim=1)]
    assert lengths == sorted(lengths, reverse=True)
    for b in batches:
        assert b["input_ids"].shape[1] == int(b["attention_mask"].sum(dim=1).max())
    for b in batches:  # each row holds its own sentence
        for row, i in zip(b["input_ids"], b["order"].tolist()):
            expect = tiny_bert.tokenizer(SENTENCES[i])["input_ids"]
            assert row[: len(expect)].tolist() == expect
    labels = [i % 2 for i in range(len(SENTENCES))]
    assert accuracy(tiny_bert, batches, labels) == accuracy(tiny_bert, SENTENCES, labels)
    assert accuracy(tiny_bert, batches, labels, max_examples=5) == accuracy(tiny_bert, SENTENCES[:5], labels[:5])


def _expected_logits(loaded, overrides, batch):
    with torch.inference_mode():
        return model_runner(loaded.model, overrides)(**batch).logits.clone()


def test_two_threads_on_one_model_get_their_own_answers(tiny_bert, tiny_llama):
    a, _ = _half_mask_overrides(tiny_bert, seed=1)
    b, _ = _half_mask_overrides(tiny_bert, seed=2)
    b["classifier.weight"] = -tiny_bert.model.classifier.weight
    labels = [i % 2 for i in range(len(SENTENCES))]
    batch = tiny_bert.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    text = " ".join(SENTENCES) * 3
    la, _ = _half_mask_overrides(tiny_llama, seed=3)
    lb = {}  # dense
    expected = {
        "a": (accuracy(tiny_bert, SENTENCES, labels, a, batch_size=4), _expected_logits(tiny_bert, a, batch), perplexity(tiny_llama, text, la, seq_len=32)),
        "b": (accuracy(tiny_bert, SENTENCES, labels, b, batch_size=4), _expected_logits(tiny_bert, b, batch), perplexity(tiny_llama, text, lb, seq_len=32)),
    }
    assert not torch.equal(expected["a"][1], expected["b"][1]) and expected["a"][2] != expected["b"][2]
    results, errors = {"a": [], "b": []}, []
    start = threading.Barrier(2)

    def work(key, bert_overrides, llama_overrides):
        try:
            start.wait()
            for _ in range(4):
                results[key].append(
                    (
                        accuracy(tiny_bert, SENTENCES, labels, bert_overrides, batch_size=4),
                        _expected_logits(tiny_bert, bert_overrides, batch),
                        perplexity(tiny_llama, text, llama_overrides, seq_len=32),
                    )
                )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=("a", a, la)), threading.Thread(target=work, args=("b", b, lb))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for key in ("a", "b"):
        assert len(results[key]) == 4
        for acc, logits, ppl in results[key]:
            assert acc == expected[key][0]
            assert torch.equal(logits, expected[key][1])
            assert ppl == expected[key][2]


def test_perplexity_equals_a_hand_computation(tiny_llama):
    text = "the story of a film about a film. " * 6
    windows = lm_windows(tiny_llama.tokenizer, text, 16)
    assert windows.shape[1] == 16 and windows.shape[0] == len(tiny_llama.tokenizer(text)["input_ids"]) // 16
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            logp = torch.log_softmax(tiny_llama.model(w.unsqueeze(0)).logits[0].double(), dim=-1)
            for t in range(15):
                nll -= float(logp[t, w[t + 1]])
                count += 1
    want = math.exp(nll / count)
    assert perplexity(tiny_llama, text, seq_len=16) == pytest.approx(want, rel=1e-5)
    assert perplexity(tiny_llama, text, seq_len=16, batch_size=3) == pytest.approx(want, rel=1e-5)
    assert perplexity(tiny_llama, windows) == pytest.approx(want, rel=1e-5)
    first = perplexity(tiny_llama, text, seq_len=16, max_windows=1)
    assert first != pytest.approx(want) and first > 1


def test_perplexity_of_a_random_model_is_near_the_vocabulary_size(tiny_gpt2):
    ppl = perplexity(tiny_gpt2, "some plain text about a film and its plot. " * 8, seq_len=64)
    assert 0.5 * len(tiny_gpt2.tokenizer) < ppl < 2 * len(tiny_gpt2.tokenizer)


def test_evaluate_dispatches_on_the_task(tiny_bert, tiny_llama):
    data = ClassificationData("toy", {"test": (SENTENCES, [i % 2 for i in range(12)])}, ["negative", "positive"])
    out = evaluate(tiny_bert, data, max_examples=5)
    assert out["metric"] == "accuracy" and out["n"] == 5 and out["higher_is_better"] is True
    assert out["value"] == accuracy(tiny_bert, SENTENCES[:5], [0, 1, 0, 1, 0])
    text = LMText("toy", " ".join(SENTENCES) * 4, "unused")
    out = evaluate(tiny_llama, text, max_examples=2)
    assert out["metric"] == "perplexity" and out["higher_is_better"] is False and out["n"] == 2
    with pytest.raises(PruneScopeError, match="plain text"):
        evaluate(tiny_llama, data)
    encoder = LoadedModel("enc", tiny_bert.model.bert, tiny_bert.tokenizer, "encoder", 64, "", {})
    with pytest.raises(PruneScopeError, match="bare encoder"):
        evaluate(encoder, data)


def test_evaluation_carries_its_interval_and_per_item_values(tiny_bert, tiny_llama):
    from pruning.analysis.stats import wilson_interval

    labels = [i % 2 for i in range(12)]
    data = ClassificationData("toy", {"test": (SENTENCES, labels)}, ["negative", "positive"])
    out = evaluate(tiny_bert, data)
    correct = out["per_item"]["correct"]
    preds = _predictions(tiny_bert.model, tiny_bert.tokenizer, SENTENCES)
    assert correct.tolist() == [p == y for p, y in zip(preds, labels)]  # in the sentences' own order
    assert (out["ci_low"], out["ci_high"]) == wilson_interval(sum(correct), 12)
    text = LMText("toy", " ".join(SENTENCES) * 4, "unused")
    out = evaluate(tiny_llama, text)
    nll, tokens = out["per_item"]["nll"], out["per_item"]["tokens"]
    assert len(nll) == out["n"] and int(tokens.sum()) == out["tokens"]
    assert math.exp(float((nll * tokens).sum() / tokens.sum())) == pytest.approx(out["value"], rel=1e-9)
    assert out["ci_low"] <= out["value"] <= out["ci_high"]


def test_paired_difference_is_harm_positive_and_zero_for_the_same_model(tiny_bert, tiny_llama):
    from pruning.analysis.evaluate import paired_difference, summary

    labels = [i % 2 for i in range(12)]
    data = ClassificationData("toy", {"test": (SENTENCES, labels)}, ["negative", "positive"])
    dense = evaluate(tiny_bert, data)
    same = paired_difference(dense, evaluate(tiny_bert, data))
    assert (same["drop"], same["drop_ci_low"], same["drop_ci_high"], same["within_noise"]) == (0.0, 0.0, 0.0, True)
    overrides, _ = _half_mask_overrides(tiny_bert)
    pruned = evaluate(tiny_bert, data, overrides)
    diff = paired_difference(dense, pruned)
    assert diff["drop"] == pytest.approx(dense["value"] - pruned["value"])
    assert diff["drop_ci_low"] <= diff["drop"] <= diff["drop_ci_high"]
    text = LMText("toy", " ".join(SENTENCES) * 4, "unused")
    dense, pruned = evaluate(tiny_llama, text), evaluate(tiny_llama, text, _half_mask_overrides(tiny_llama)[0])
    diff = paired_difference(dense, pruned)
    assert diff["drop"] == pytest.approx(pruned["value"] - dense["value"], rel=1e-9)
    assert "per_item" not in summary(dense) and summary(dense)["ci_low"] == dense["ci_low"]
    with pytest.raises(PruneScopeError, match="same items"):
        paired_difference(dense, evaluate(tiny_llama, text, max_examples=1))


def test_labels_are_matched_to_the_model_by_name(tiny_bert):
    assert label_mapping(["positive", "negative"], tiny_bert.model) == [1, 0]
    assert label_mapping(["0", "1"], tiny_bert.model) is None
    labels = [i % 2 for i in range(12)]
    flipped = ClassificationData("flipped", {"test": (SENTENCES, [1 - y for y in labels])}, ["positive", "negative"])
    straight = ClassificationData("straight", {"test": (SENTENCES, labels)}, ["negative", "positive"])
    assert evaluate(tiny_bert, flipped)["value"] == evaluate(tiny_bert, straight)["value"]
    with pytest.raises(PruneScopeError, match="3 labels"):
        label_mapping(["a", "b", "c"], tiny_bert.model)


def test_bad_overrides_are_clear_errors(tiny_bert):
    with pytest.raises(PruneScopeError, match="not a parameter"):
        accuracy(tiny_bert, SENTENCES, [0] * 12, {"nope.weight": torch.zeros(1)})
    key = "bert.encoder.layer.0.output.dense.weight"
    with pytest.raises(PruneScopeError, match="shape"):
        accuracy(tiny_bert, SENTENCES, [0] * 12, {key: torch.zeros(3, 3)})


# ---------------------------------------------------------------- the real embedded models (bounded)
@pytest.mark.integration
def test_minilm_rt_is_a_sensible_classifier():
    """Uses the default cache: the first run fine-tunes (a few minutes on 2 cores), later runs load."""
    from pruning.loading.data import rotten_tomatoes_splits
    from pruning.embedded import load_model

    loaded = load_model("minilm-rt")
    assert loaded.task == "classification" and loaded.info["label_names"] == ["rotten", "fresh"]
    assert loaded.info["accuracy"] > 0.7
    out = evaluate(loaded, rotten_tomatoes_splits(), split="test")
    assert out["n"] == 1281 and out["value"] == pytest.approx(loaded.info["accuracy"], abs=1e-3)


@pytest.mark.integration
def test_smollm2_loads_and_has_a_sane_perplexity():
    """4 windows of 512 tokens of the rt-plots evaluation text (measured 48.5; WikiText-2 gives about 30)."""
    from pruning.loading.data import load_lm_text
    from pruning.embedded import load_model

    loaded = load_model("smollm2-135m")
    assert loaded.task == "causal-lm" and len(prunable_layers(loaded.model)) == 30 * 7
    out = evaluate(loaded, load_lm_text("rt-plots"), max_examples=4)
    assert out["n"] == 4 and out["seq_len"] == 512
    assert 5 < out["value"] < 200
