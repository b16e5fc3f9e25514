"""Allocations as one file each: the rules (layer, global, row, N:M, allocated) that say where the threshold
applies, and the measured ones (OWL). A toy rule registered here is one file's worth of code and then works
in the mask math, the slider's ranker, a prune request, the CLI and `methods`, as the recipe in
docs/ARCHITECTURE.md says."""

import json

import pytest
import torch

from pruning import masks as M
from pruning.allocations import registry as A
from pruning.cli import main
from pruning.errors import PruneScopeError
from pruning.maskmath import Granularity, keep_count, prepare_scores
from pruning.prune import prune
from pruning.request import PruneRequest
from pruning.store.io import load_masks


def test_every_rule_lives_in_its_own_file_and_the_registry_lists_them():
    rules = A.rules()
    assert {"layer", "global", "row", "nm", "allocated"} <= set(rules)
    for name, a in rules.items():
        assert a.shape.masks.__module__ == f"pruning.allocations.{'global_threshold' if name == 'global' else name}"
    assert "owl" in A.measured() and A.measured()["owl"].shape is None
    assert list(M.granularity_labels())[:5] == ["layer", "global", "row", "2:4", "4:8"]  # the sidebar's order


@pytest.mark.parametrize("word", ["layer", "global", "row", "2:4", "4:8", "3:8"])
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9])
def test_the_ranker_gives_exactly_the_rule_s_masks(word, sparsity):
    gen = torch.Generator().manual_seed(3)
    scores = {"a": torch.randint(0, 5, (6, 16), generator=gen).float(), "b": torch.randn(4, 8, generator=gen)}  # many ties in a
    exact = M.compute_masks(scores, sparsity, word)
    fast = M.MaskRanker(scores).masks(sparsity, word)
    assert all(torch.equal(exact[n], fast[n]) for n in scores)


def test_the_rules_keep_the_counts_their_words_promise():
    scores = {"a": torch.arange(24.0).view(3, 8), "b": -torch.arange(8.0).view(1, 8)}
    layer = M.compute_masks(scores, 0.5, "layer")
    assert int(layer["a"].sum()) == 12 and int(layer["b"].sum()) == 4
    row = M.compute_masks(scores, 0.25, "row")
    assert row["a"].sum(dim=1).tolist() == [6, 6, 6] and row["a"][:, :2].sum() == 0  # each row drops its 2 smallest
    glob = M.compute_masks(scores, 0.5, "global")
    assert int(glob["a"].sum()) == 16 and int(glob["b"].sum()) == 0  # b's scores are all below a's: b goes whole
    nm = M.compute_masks(scores, 0.0, "2:4")
    assert nm["a"].view(3, 2, 4).sum(dim=2).eq(2).all()
    alloc = M.compute_masks(scores, 0.0, M.allocated({"a": 0.75}))
    assert int(alloc["a"].sum()) == 6 and bool(alloc["b"].all())  # an unlisted layer stays whole


def test_a_word_no_rule_answers_to_is_refused_with_the_rules_listed():
    with pytest.raises(PruneScopeError, match=r"use layer, global, row, or an N:M pattern such as 2:4"):
        M.parse_granularity("column")
    with pytest.raises(PruneScopeError, match="needs an allocation"):
        M.parse_granularity("allocated")


def _column_rule(monkeypatch):
    """A toy rule, written as a file of pruning/allocations/ would be: every input column keeps the top
    floor(d_out (1 - s)) of its scores."""
    def parse(word):
        return Granularity("column") if word == "column" else None

    def column_mask(s, sparsity, weight=None):
        prepared = prepare_scores(s, weight)
        k = keep_count(prepared.shape[0], sparsity)
        order = torch.sort(prepared, dim=0, descending=True, stable=True).indices[:k]
        return torch.zeros_like(prepared, dtype=torch.bool).scatter_(0, order, True)

    def masks(scores, sparsity, g, weights=None):
        return {n: column_mask(s, sparsity, None if weights is None else weights[n]) for n, s in scores.items()}

    def ranked(ranker, sparsity, g, names):
        return {n: column_mask(ranker.scores[n], sparsity) for n in names}

    monkeypatch.setattr(A, "_ALLOCATIONS", dict(A.all_allocations()))  # the registration ends with the test
    A.register_allocation(A.Allocation(
        name="column", label="per column", summary="every input column keeps the same share of its weights",
        needs_calibration=False, order=5,
        shape=A.Shape(parse, masks, ranked, lambda names, s, g, dense: {n: s for n in names},
                      words=(("column", "per-input-column (each column keeps its top scores)"),)),
    ))


def test_a_toy_rule_is_one_registration_and_works_in_requests_the_ranker_and_the_cli(monkeypatch, tmp_path, tiny_folder, tiny_bert, capsys):
    _column_rule(monkeypatch)
    assert M.granularity_labels()["column"].startswith("per-input-column")
    result = prune(tiny_bert, PruneRequest.make("magnitude", 0.5, "column"))
    for name, mask in result.masks.items():
        assert mask.sum(dim=0).eq(keep_count(mask.shape[0], 0.5)).all(), name  # every column keeps exactly half
        assert str(result.granularity) == "column"
    with pytest.raises(PruneScopeError, match="sparsegpt does not support granularity column"):
        PruneRequest.make("sparsegpt", 0.5, "column")  # its solve chooses inside and knows only its own rules
    assert main(["methods"]) == 0
    assert "--allocation column: every input column keeps" in capsys.readouterr().out
    out = tmp_path / "col"
    assert main(["prune", "--model", str(tiny_folder), "--method", "magnitude", "--allocation", "column", "--no-model", "--out", str(out)]) == 0
    saved = load_masks(out / "masks.safetensors")
    assert all(m.sum(dim=0).eq(keep_count(m.shape[0], 0.5)).all() for m in saved.values())


def test_allocation_with_a_rule_s_word_is_the_same_as_granularity(tmp_path, tiny_folder, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["prune", "--model", str(tiny_folder), "--method", "magnitude", "--allocation", "row", "--no-model", "--out", str(a)]) == 0
    assert main(["prune", "--model", str(tiny_folder), "--method", "magnitude", "--granularity", "row", "--no-model", "--out", str(b)]) == 0
    ma, mb = load_masks(a / "masks.safetensors"), load_masks(b / "masks.safetensors")
    assert ma.keys() == mb.keys() and all(torch.equal(ma[n], mb[n]) for n in ma)
    assert json.loads((a / "report.json").read_text())["granularity"] == "row"
    capsys.readouterr()
    assert main(["prune", "--model", str(tiny_folder), "--allocation", "row", "--granularity", "layer", "--no-model",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --allocation row and --granularity layer name two different rules")
    assert not (tmp_path / "c").exists()
