"""Mask stability across calibration draws and seeds, and flips (pruning/analysis/stability.py, pruning/analysis/flips.py)."""

import json
import math

import numpy as np
import pytest
import torch

from pruning.store.checkpoint import Checkpoint
from pruning.loading.data import ClassificationData
from pruning.errors import PruneScopeError
from pruning.analysis.flips import flips, fragile_items, predict
from pruning.request import PruneRequest
from pruning.analysis.stability import (
    calibration_draws,
    frequency_summary,
    keep_counts,
    keep_frequency,
    layer_summary,
    mean_interval_t,
    pack,
    pairwise_jaccard,
    rank_methods,
    stability,
)
from pruning.analysis.stats import wilson_interval

R = PruneRequest.make
TRAIN = [f"{w} film number {i}" for i, w in enumerate(["good", "bad", "great", "awful", "fun", "dull"] * 8)]  # 48 sentences
TEST = ["a very good film", "awful and boring", "great fun", "the worst plot", "i love it", "dull and bad", "best film", "it was fine"]


@pytest.fixture(scope="module")
def tiny_bert_wide():
    """One BERT block of width 256 with a feed-forward of 2048: its two FFN layers hold 2^19 weights each."""
    from transformers import BertConfig, BertForSequenceClassification

    from conftest import _loaded, _wordpiece_tokenizer

    tokenizer = _wordpiece_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=1, num_attention_heads=4, intermediate_size=2048, max_position_embeddings=64, num_labels=2, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
    return _loaded("tiny-bert-wide", model, tokenizer, "classification", 64)


@pytest.fixture()
def data():
    labels = [i % 2 for i in range(len(TRAIN))]
    return ClassificationData("tiny", {"train": (TRAIN, labels), "test": (TEST, [1, 0, 1, 0, 1, 0, 1, 1])}, ["negative", "positive"])


# ---------------------------------------------------------------- the anchors
def test_magnitude_masks_are_decided_jaccard_exactly_one(tiny_bert, data):
    res = stability(tiny_bert, R("magnitude", 0.5), draws=3, kind="calib", data=data)
    assert [layer["jaccard"] for layer in res.layers] == [1.0] * len(res.layers)
    assert all(layer["undecided"] == 0.0 and layer["jaccard_min"] == 1.0 for layer in res.layers)
    assert res.overall["jaccard"] == 1.0 and res.overall["undecided"] == 0.0
    assert res.overall["kept_by_all"] == pytest.approx(0.5, abs=0.01)  # layer granularity: half of each layer
    assert res.verdict.startswith("decided")
    assert res.between["flips_mean"] == 0.0  # the same mask, the same answers
    assert len({r["flips"] for r in res.rows}) == 1 and res.metric["sd"] == 0.0 and not res.metric["moves"]


def test_random_masks_with_independent_seeds_overlap_as_theory_says():
    """Two independent uniformly random k-subsets of N weights share k^2/N on average, so
    J = (1 - s) / (1 + s). On N = 10^6 weights the standard deviation of one pair's J is
    about 4e-4 (hypergeometric intersection); 0.003 is about 7 of them."""
    from pruning.criteria.random import random_scores

    weight = torch.zeros(1000, 1000)
    for s in (0.5, 0.7):
        k = int(round(weight.numel() * (1 - s)))
        masks = []
        for seed in range(5):
            scores = random_scores(weight, seed, salt="layer").reshape(-1)
            m = torch.zeros(weight.numel(), dtype=torch.bool)
            m[scores.topk(k).indices] = True
            masks.append(m.view_as(weight))
        row, _ = layer_summary("layer", [pack(m) for m in masks], weight.shape, with_picture=False)
        assert row["jaccard"] == pytest.approx((1 - s) / (1 + s), abs=0.003)
        assert row["undecided"] == pytest.approx(1 - (1 - s) ** 5 - s**5, abs=0.003)  # kept by all: (1-s)^5, pruned by all: s^5


def test_random_method_with_seed_draws_gives_the_expected_jaccard(tiny_bert_wide, data):
    """The registered random method through the whole run, R = 4 seeds, on layers of 2^19 weights."""
    res = stability(tiny_bert_wide, R("random", 0.5), draws=4, kind="seed", data=data)
    big = [layer for layer in res.layers if layer["params"] >= 2**19]
    assert len(big) == 2
    for layer in big:
        assert layer["jaccard"] == pytest.approx(1 / 3, abs=0.004)
    assert [r["seed"] for r in res.rows] == [0, 1, 2, 3]


def test_keep_frequencies_of_hand_made_masks():
    a = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 1, 0], [1, 0, 1, 0]], dtype=torch.bool)
    c = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    counts = keep_counts([a, b, c])
    assert counts.tolist() == [[3, 2, 1, 0], [2, 0, 3, 1]]
    assert keep_frequency([a, b, c]).tolist() == [[1, 2 / 3, 1 / 3, 0], [2 / 3, 0, 1, 1 / 3]]
    summary = frequency_summary(counts, 3)
    assert summary["histogram"] == [2, 2, 2, 2]  # c = 0, 1, 2, 3 draws
    assert (summary["kept_by_all"], summary["pruned_by_all"], summary["undecided"]) == (2 / 8, 2 / 8, 4 / 8)
    jac = pairwise_jaccard([pack(a), pack(b), pack(c)])
    # a & b: kept by both {00, 10, 12} = 3, by either {00, 01, 02, 10, 12} = 5
    assert jac[0, 1] == 3 / 5 and jac[0, 2] == 3 / 5 and jac[1, 2] == 2 / 6
    row, _ = layer_summary("x", [pack(a), pack(b), pack(c)], (2, 4))
    assert row["jaccard"] == pytest.approx((3 / 5 + 3 / 5 + 1 / 3) / 3)
    assert np.allclose(row["picture"]["keep"], [[1, 0.6667, 0.3333, 0], [0.6667, 0, 1, 0.3333]], atol=1e-6)  # one weight per cell
    assert row["picture"]["row_undecided"].tolist() == [0.5, 0.5]


def test_mean_interval_uses_student_t():
    out = mean_interval_t([0.80, 0.82, 0.84])
    assert out["mean"] == pytest.approx(0.82) and out["sd"] == pytest.approx(0.02)
    assert out["mean_ci_high"] - out["mean"] == pytest.approx(4.303 * 0.02 / math.sqrt(3))


# ---------------------------------------------------------------- calibration draws
def test_disjoint_calibration_draws_are_disjoint(tiny_bert, tiny_llama, data, tiny_text):
    draws = calibration_draws(tiny_bert, R("wanda", 0.5, calib_samples=5), draws=6, kind="calib", source=data)
    picked = [set(d.sources) for d in draws]
    assert all(len(p) == 5 for p in picked)
    assert len(set().union(*picked)) == 30  # no sentence in two draws
    for d in draws:  # the batches hold exactly those sentences
        ids = tiny_bert.tokenizer([TRAIN[i] for i in d.sources], truncation=True, max_length=128)["input_ids"]
        got = [row[mask.bool()].tolist() for b in d.batches for row, mask in zip(b["input_ids"], b["attention_mask"])]
        assert got == ids
    lm = calibration_draws(tiny_llama, R("wanda", 0.5, calib_samples=2, calib_len=16), draws=4, kind="calib", source=tiny_text)
    spans = [range(s, s + 16) for d in lm for s in d.sources]
    covered = [t for span in spans for t in span]
    assert len(covered) == len(set(covered)) == 8 * 16  # no token in two windows
    with pytest.raises(PruneScopeError, match="disjoint calibration draws"):
        calibration_draws(tiny_bert, R("wanda", 0.5, calib_samples=10), draws=6, kind="calib", source=data)


def test_resampled_draws_follow_their_seeds(tiny_bert, data):
    from pruning.loading.data import calibration_batches

    draws = calibration_draws(tiny_bert, R("wanda", 0.5, calib_samples=4, seed=7), draws=3, kind="resample", source=data)
    assert [d.seed for d in draws] == [7, 8, 9]
    assert torch.equal(draws[2].batches[0]["input_ids"], calibration_batches(tiny_bert, data, 4, 128, seed=9)[0]["input_ids"])


def test_wanda_masks_move_with_disjoint_calibration(tiny_bert, data):
    res = stability(tiny_bert, R("wanda", 0.5, calib_samples=4), draws=3, kind="calib", data=data)
    shared = stability(tiny_bert, R("wanda", 0.5, calib_samples=4), draws=3, kind="calib", data=data, dense=predict(tiny_bert, data))
    assert [{**r, "seconds": 0} for r in shared.rows] == [{**r, "seconds": 0} for r in res.rows]  # a dense evaluation made once serves
    with pytest.raises(PruneScopeError, match="other items"):
        stability(tiny_bert, R("wanda", 0.5, calib_samples=4), draws=2, data=data, dense=predict(tiny_bert, data, max_examples=3))
    assert len(res.rows) == 3 and res.overall["jaccard"] < 1.0 and res.overall["undecided"] > 0
    for layer in res.layers:
        assert sum(layer["histogram"]) == layer["params"]
        assert layer["kept_by_all"] + layer["pruned_by_all"] + layer["undecided"] == pytest.approx(1.0)
    assert len(res.between["pairs"]) == 3
    assert res.metric["draws"] == 3 and res.metric["mean_ci_low"] <= res.metric["mean"] <= res.metric["mean_ci_high"]
    ranking = rank_methods([res, stability(tiny_bert, R("magnitude", 0.5), draws=3, data=data)])
    assert [r["method"] for r in ranking] == ["magnitude", "wanda"] and ranking[0]["jaccard"] == 1.0


# ---------------------------------------------------------------- flips
def test_flips_of_hand_made_answers():
    out = flips(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1]), gold=np.array([0, 1, 0, 1]))
    assert (out["flipped"], out["items"], out["flips"]) == (2, 4, 0.5)
    assert (out["to_wrong"], out["to_right"], out["wrong_to_wrong"]) == (1, 1, 0)  # item 1: right -> wrong; item 3: wrong -> right
    assert (out["flips_ci_low"], out["flips_ci_high"]) == wilson_interval(2, 4)
    three = flips(np.array([2, 0]), np.array([1, 0]), gold=np.array([0, 0]))
    assert three["wrong_to_wrong"] == 1 and three["to_wrong"] == three["to_right"] == 0


def test_flips_on_a_tiny_classifier_match_a_sentence_by_sentence_count(tiny_bert, data):
    """Each sentence run alone, dense and pruned, argmax compared by hand."""
    from pruning.loading.functional import with_overrides
    from pruning.prune import prune

    result = prune(tiny_bert, R("magnitude", 0.7))
    overrides = result.overrides(tiny_bert)
    dense, pruned = predict(tiny_bert, data), predict(tiny_bert, data, overrides)
    private = with_overrides(tiny_bert.model, overrides)
    by_hand_dense, by_hand_pruned = [], []
    with torch.inference_mode():
        for text in TEST:
            enc = tiny_bert.tokenizer(text, return_tensors="pt")
            by_hand_dense.append(int(tiny_bert.model(**enc).logits.argmax()))
            by_hand_pruned.append(int(private(**enc).logits.argmax()))
    assert dense.answers.tolist() == by_hand_dense and pruned.answers.tolist() == by_hand_pruned
    gold = [1, 0, 1, 0, 1, 0, 1, 1]
    changed = [i for i in range(len(TEST)) if by_hand_dense[i] != by_hand_pruned[i]]
    out = flips(dense.answers, pruned.answers, dense.gold)
    assert out["flipped"] == len(changed)
    assert out["to_wrong"] == sum(by_hand_dense[i] == gold[i] for i in changed)
    assert out["to_right"] == sum(by_hand_pruned[i] == gold[i] for i in changed)
    rows = fragile_items(dense, [pruned.answers, pruned.answers])
    assert [r["item"] for r in rows] == changed and all(r["flipped"] == 2 for r in rows)
    assert [r["text"] for r in rows] == [TEST[i] for i in changed]


def test_lm_flips_are_per_token(tiny_llama, tiny_text):
    from pruning.prune import prune

    dense = predict(tiny_llama, tiny_text, max_examples=2)
    pruned = predict(tiny_llama, tiny_text, prune(tiny_llama, R("magnitude", 0.6)).overrides(tiny_llama), max_examples=2)
    assert dense.answers.shape == dense.gold.shape == (dense.evaluation["n"], dense.evaluation["seq_len"] - 1)
    out = flips(dense.answers, pruned.answers, dense.gold)
    assert out["items"] == dense.evaluation["tokens"]
    assert out["flipped"] == int((dense.answers != pruned.answers).sum())


# ---------------------------------------------------------------- resuming
class Killed(Exception):
    pass


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_a_killed_stability_run_resumes_with_the_same_rows(tiny_bert, data, tmp_path):
    request = R("wanda", 0.5, calib_samples=4)
    whole = stability(tiny_bert, request, draws=4, kind="calib", data=data)
    path = tmp_path / "stab.partial.jsonl"
    header = {"kind": "stability", "method": "wanda"}

    def kill(row):
        if row["draw"] == 1:
            raise Killed

    def checkpoint():
        ckpt = Checkpoint(path, header)
        ckpt.begin()  # checks the header and writes it (what the CLI's resume_checkpoint does)
        return ckpt

    with pytest.raises(Killed):
        stability(tiny_bert, request, draws=4, kind="calib", data=data, checkpoint=checkpoint(), on_draw=kill)
    lines = path.read_text().splitlines()
    assert len(lines) == 3  # the header and draws 0 and 1
    seen = []
    resumed = stability(tiny_bert, request, draws=4, kind="calib", data=data, checkpoint=checkpoint(), on_draw=seen.append)
    assert [r["draw"] for r in seen] == [0, 1, 2, 3]
    assert resumed.info["draws_resumed"] == 2
    assert _without_time(resumed.rows) == _without_time(whole.rows)
    assert [layer["jaccard"] for layer in resumed.layers] == [layer["jaccard"] for layer in whole.layers]
    assert resumed.fragile == whole.fragile and resumed.between == whole.between
    assert json.loads(json.dumps(resumed.to_json()))["verdict"] == whole.verdict


# ---------------------------------------------------------------- the command line
def test_cli_stability_writes_three_tables_and_refuses_to_overwrite(tmp_path, tiny_folder, tiny_csv, capsys):
    from pruning.cli import main

    out = tmp_path / "stab.csv"
    argv = ["stability", "--model", str(tiny_folder), "--method", "magnitude,wanda", "--draws", "3", "--calib", "4",
            "--dataset", str(tiny_csv), "--eval-size", "16", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [r["method"] for r in summary["ranking"]] == ["magnitude", "wanda"]
    assert summary["methods"]["magnitude"]["overall"]["jaccard"] == 1.0
    import csv

    draws = list(csv.DictReader(open(out.with_suffix(".draws.csv"))))
    assert [(r["method"], r["draw"]) for r in draws] == [("magnitude", "0"), ("magnitude", "1"), ("magnitude", "2"), ("wanda", "0"), ("wanda", "1"), ("wanda", "2")]
    layers = list(csv.DictReader(open(out)))
    assert {r["method"] for r in layers} == {"magnitude", "wanda"} and "picture" not in layers[0]
    assert not out.with_suffix(".partial.jsonl").exists() and not out.with_suffix(".partial.draws").exists()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and "\n" not in err
    assert main(argv[:-2] + ["--draws", "1", "--out", str(tmp_path / "x.csv")]) == 2


def test_cli_prune_eval_reports_flips_that_add_up_to_the_accuracy_change(tmp_path, tiny_folder, tiny_csv, capsys):
    from pruning.cli import main

    out = tmp_path / "run"
    argv = ["prune", "--model", str(tiny_folder), "--method", "magnitude", "--sparsity", "0.8", "--dataset", str(tiny_csv),
            "--eval", "--eval-size", "16", "--no-model", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    ev = report["evaluation"]
    f = ev["flips"]
    assert f["items"] == ev["dense"]["n"] == 16
    assert f["flipped"] == f["to_wrong"] + f["to_right"] + f["wrong_to_wrong"]
    # accuracy changes only through flips: dense - pruned = (right -> wrong - wrong -> right) / n
    assert ev["dense"]["value"] - ev["pruned"]["value"] == pytest.approx((f["to_wrong"] - f["to_right"]) / 16)
    assert f"flips: {f['flips']:.2%}" in printed


def test_the_layer_picture_is_block_means():
    from pruning.analysis.stability import picture

    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(100, 70)).astype(np.uint8)  # 4 draws
    pic = picture(counts, 4, grid=48)
    assert pic["block"] == [3, 2] and pic["keep"].shape == (34, 35)
    assert pic["keep"][5, 7] == pytest.approx(counts[15:18, 14:16].mean() / 4, abs=1e-4)
    assert pic["keep"][33, 0] == pytest.approx(counts[99:100, 0:2].mean() / 4, abs=1e-4)  # the last, partial block
    undecided = (counts > 0) & (counts < 4)
    assert pic["undecided"][0, 0] == pytest.approx(undecided[0:3, 0:2].mean(), abs=1e-4)
    assert pic["row_undecided"] == pytest.approx(undecided.mean(axis=1), abs=1e-4)


def test_cli_stability_resumes_a_killed_run_only_with_the_same_settings(tmp_path, tiny_folder, tiny_csv, capsys, monkeypatch):
    import csv

    import pruning.analysis.stability as stab
    from pruning.cli import main

    def argv(out, draws="3"):
        return ["stability", "--model", str(tiny_folder), "--method", "wanda", "--draws", draws, "--calib", "4",
                "--dataset", str(tiny_csv), "--eval-size", "16", "--out", str(out)]

    assert main(argv(tmp_path / "whole.csv")) == 0
    out = tmp_path / "stab.csv"
    original = stab.stability

    def killed_after_the_first_draw(*args, **kwargs):
        def die(row):
            raise KeyboardInterrupt

        return original(*args, **{**kwargs, "on_draw": die})

    monkeypatch.setattr(stab, "stability", killed_after_the_first_draw)
    assert main(argv(out)) == 130
    monkeypatch.setattr(stab, "stability", original)
    lines = out.with_suffix(".partial.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["draw"] == 0 and not out.exists()
    capsys.readouterr()
    assert main(argv(out, draws="4")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the loading bar
    assert last.startswith("error: cannot resume") and "--draws = 3, this run has 4" in last
    assert main(argv(out)) == 0
    assert not out.with_suffix(".partial.jsonl").exists() and not out.with_suffix(".partial.draws").exists()

    def rows(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(path))]

    assert rows(out.with_suffix(".draws.csv")) == rows(tmp_path / "whole.draws.csv")
    assert list(csv.DictReader(open(out))) == list(csv.DictReader(open(tmp_path / "whole.csv")))
