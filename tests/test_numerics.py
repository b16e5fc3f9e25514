"""The ``numerics`` choice: "fast" (one batch per block pass, exact counts) and "reference" (the
published Wanda and SparseGPT code's arithmetic: one sample per pass, running averages, SparseGPT's
per-block quantile rule)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pruning.calibration import InputStats, ReferenceStats, sequential_prune
from pruning.store.checkpoint import recorded_value
from pruning.cli import main
from pruning.errors import PruneScopeError
from pruning.loading.models import prunable_layers
from pruning.prune import prune
from pruning.request import PruneRequest
from pruning.store.resume import training_header
from pruning.updates.sparsegpt_solver import hessian_inverse_factor, reference_block_pruned, sparsegpt_solve

R = PruneRequest.make


def _samples(n=5, tokens=7, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(tokens, d, generator=g) * (1 + i) for i in range(n)]


def _hand_running_average(xs):
    """Wanda's and SparseGPT's running averages written out per sample, in float32, ``n`` counting samples."""
    d = xs[0].shape[1]
    row, H, n = torch.zeros(d), torch.zeros(d, d), 0
    for x in xs:
        row = row * (n / (n + 1))
        H = H * (n / (n + 1))
        n += 1
        row = row + torch.norm(x.t().float(), p=2, dim=1) ** 2 / n
        scaled = math.sqrt(2 / n) * x.t().float()
        H = H + scaled @ scaled.t()
    return row, H


def test_reference_statistics_equal_a_hand_written_running_average_bit_for_bit():
    xs = _samples()
    ref, fast = ReferenceStats(6, want_gram=True), InputStats(6, want_gram=True)
    for x in xs:
        ref.add(x, 1)
        fast.add(x, 1)
    row, H = _hand_running_average(xs)
    assert ref.n_samples == 5 and ref.n_tokens == fast.n_tokens == 35
    assert torch.equal(ref.sq_norms(), row)  # to the last bit
    assert torch.equal(ref.hessian(), H)
    # "fast" holds plain sums over tokens: the same quantities up to the scale 1/n and rounding
    assert torch.allclose(fast.sq_norms().float() / 5, row, rtol=1e-5)
    assert torch.allclose(fast.hessian() * 35 / 5, H, rtol=1e-4, atol=1e-5)


def test_the_reference_walk_feeds_one_sample_per_pass(tiny_llama):
    """Through the block walk the first layer's reference statistics are the hand running average over
    the samples' own inputs (each sample run alone through the dense model), to rounding; the walk
    adds one sample per call."""
    ids = torch.randint(5, tiny_llama.model.config.vocab_size, (4, 10), generator=torch.Generator().manual_seed(1))
    calib = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    name = next(i.name for i in prunable_layers(tiny_llama.model))
    seen = {}

    def record(names, weights, stats):
        seen.update((n, stats) for n in names)
        return [(None, torch.ones_like(w, dtype=torch.bool)) for w in weights]

    sequential_prune(tiny_llama, [name], calib, record, want_gram=True, numerics="reference")
    stats = seen[name]
    assert isinstance(stats, ReferenceStats) and stats.n_samples == 4 and stats.n_tokens == 40
    inputs = []
    handle = tiny_llama.model.get_submodule(name).register_forward_pre_hook(lambda m, a: inputs.append(a[0][0].clone()))
    try:
        with torch.inference_mode():
            for i in range(4):
                tiny_llama.model(input_ids=ids[i : i + 1], use_cache=False)
    finally:
        handle.remove()
    row, H = _hand_running_average(inputs)
    assert torch.allclose(stats.sq_norms(), row, rtol=1e-5, atol=1e-7)
    assert torch.allclose(stats.hessian(), H, rtol=1e-4, atol=1e-6)


def _brute_pruned(values: list[float], sparsity: float) -> list[bool]:
    """Pruned iff at most int(n s) entries are strictly smaller (the reference's ``<= sorted[int(n s)]``)."""
    k = int(len(values) * sparsity)
    return [sum(1 for u in values if u < v) <= k for v in values]


def test_reference_block_rule_by_brute_force():
    g = torch.Generator().manual_seed(3)
    sal = torch.rand(5, 7, generator=g)
    sal[1, 2] = sal[3, 4] = sal[0, 0]  # ties at some value
    for s in (0.3, 0.5, 0.7):
        got = reference_block_pruned(sal, s)
        want = torch.tensor(_brute_pruned(sal.flatten().tolist(), s)).view(5, 7)
        assert torch.equal(got, want), s


def _solve(numerics, granularity="layer", blocksize=8, sparsity=0.5):
    g = torch.Generator().manual_seed(4)
    X = torch.randn(60, 28, generator=g)
    W = torch.randn(6, 28, generator=g)
    U, dead = hessian_inverse_factor(X.T @ X, X.shape[0])
    return sparsegpt_solve(W, U, sparsity, granularity, dead=dead, blocksize=blocksize, numerics=numerics)


def test_reference_sparsegpt_prunes_the_rules_count_in_every_block():
    """Blocks of 8 columns (the last has 4) of a 6-row layer at 50%: the rule prunes int(48 * 0.5) + 1 = 25 of
    each full block and int(24 * 0.5) + 1 = 13 of the last (no ties in random data), 88 in all, where
    "fast" prunes exactly half (84)."""
    _, keep = _solve("reference")
    pruned = ~keep
    for a in range(0, 28, 8):
        block = pruned[:, a : a + 8]
        assert int(block.sum()) == int(block.numel() * 0.5) + 1, a
    _, fast_keep = _solve("fast")
    assert int((~fast_keep).sum()) == 84 and int(pruned.sum()) == 3 * 25 + 13


def test_reference_sparsegpt_nm_keeps_the_pattern():
    _, keep = _solve("reference", "2:4", blocksize=8)
    assert torch.equal(keep.view(6, 7, 4).sum(-1), torch.full((6, 7), 2))


def _calibration(loaded, n=3, length=10):
    ids = torch.randint(5, loaded.model.config.vocab_size, (n, length), generator=torch.Generator().manual_seed(2))
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]


@pytest.mark.parametrize("method,granularity", [("wanda", "row"), ("wanda", "2:4"), ("sparsegpt", "layer"), ("sparsegpt", "2:4")])
def test_reference_runs_end_to_end_close_to_fast(tiny_llama, method, granularity):
    """Both numerics give valid masks at the request's pattern; they differ only in near-ties, so they
    agree on most entries, and the reference SparseGPT at 50% prunes a little more than half."""
    calib = _calibration(tiny_llama)
    fast = prune(tiny_llama, R(method, 0.5, granularity), calibration=calib)
    ref = prune(tiny_llama, R(method, 0.5, granularity, numerics="reference"), calibration=calib)
    assert fast.masks.keys() == ref.masks.keys()
    agree = sum(int((fast.masks[n] == ref.masks[n]).sum()) for n in fast.masks) / sum(m.numel() for m in fast.masks.values())
    assert agree > 0.9
    for n, m in ref.masks.items():
        if granularity == "2:4":
            assert torch.equal(m.view(m.shape[0], -1, 4).sum(-1), torch.full((m.shape[0], m.shape[1] // 4), 2)), n
        elif method == "wanda":
            assert torch.equal(m.sum(1), fast.masks[n].sum(1)), n  # the same count per row
        else:
            assert int((~m).sum()) > m.numel() // 2, n  # the per-block rule prunes about one extra per block


def test_default_numerics_is_fast_and_keys_differ():
    fast, ref = R("wanda", 0.5), R("wanda", 0.5, numerics="reference")
    assert fast.numerics == "fast" and R("wanda", 0.5, numerics="fast") == fast
    assert ref.numerics == "reference" and ref.key != fast.key
    assert ref.describe()["numerics"] == "reference" and fast.describe()["numerics"] == "fast"
    assert ref.replace(sparsity=0.6).numerics == "reference"
    with pytest.raises(PruneScopeError, match="numerics must be fast or reference"):
        R("wanda", 0.5, numerics="bogus")
    with pytest.raises(PruneScopeError, match="block order"):
        R("wanda", 0.5, params={"order": "sequential"}, numerics="reference")


def test_fast_factor_is_the_old_expression(tiny_llama):
    """The fast Hessian is ``2 G / n`` computed as before (so SparseGPT's factor, masks and weights are
    unchanged; the full comparison with the branch point is in bench/bench_numerics.py's notes)."""
    stats = InputStats(6, want_gram=True)
    for x in _samples():
        stats.add(x)
    assert torch.equal(stats.hessian(), stats.gram.to(torch.float32) * (2.0 / stats.n_tokens))
    assert stats.sq_norms() is stats.sq_sum


def test_headers_record_numerics_and_old_headers_read_as_fast(tiny_llama):
    header = training_header(tiny_llama, R("wanda", 0.5, numerics="reference"), ["x"])
    assert header["numerics"] == "reference"
    assert training_header(tiny_llama, R("wanda", 0.5), ["x"])["numerics"] == "fast"
    assert recorded_value({}, "numerics") == "fast" and recorded_value({}, "request.numerics") == "fast"
    assert recorded_value({"numerics": "reference"}, "numerics") == "reference"


def test_report_records_numerics(tmp_path, tiny_folder, tiny_csv):
    """Through the CLI on a BERT folder (padded sentences: each sample's own tokens only)."""
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_folder), "--method", "wanda", "--numerics", "reference", "--calib", "3",
                 "--dataset", str(tiny_csv), "--no-model", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["request"]["numerics"] == "reference"


def test_cli_refuses_bogus_numerics(tmp_path, capsys):
    code = main(["prune", "--model", "minilm-rt", "--method", "wanda", "--numerics", "bogus", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and "numerics" in err[0] and "bogus" in err[0]
    assert not (tmp_path / "x").exists()


@pytest.fixture()
def app_env(tiny_bert, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    tiny_bert.model.save_pretrained(folder)
    tiny_bert.tokenizer.save_pretrained(folder)
    for k, v in {"PRUNESCOPE_TEST_MODEL": str(folder), "PRUNESCOPE_EVAL_SIZE": "32", "PRUNESCOPE_CALIBRATION": "4",
                 "PRUNESCOPE_RUNS_DIR": str(tmp_path / "runs")}.items():
        monkeypatch.setenv(k, v)


def test_the_sidebar_numerics_select_reaches_the_request_and_the_address(app_env):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "main.py"), default_timeout=180)
    at.run()
    assert not [s for s in at.sidebar.selectbox if s.key == "ps_numerics"]  # magnitude needs no calibration
    at.sidebar.selectbox(key="ps_method").set_value("wanda").run()
    select = at.sidebar.selectbox(key="ps_numerics")
    assert select.value == "fast" and "numerics" not in at.query_params
    select.set_value("reference").run()
    assert not at.exception and not at.error, [e.value for e in list(at.exception) + list(at.error)]
    assert at.query_params.get("numerics") in ("reference", ["reference"])
    assert at.session_state["ps_numerics"] == "reference"
    at.switch_page("../pages/weights.py").run()  # the method's own masks: no one-pass approximation to label
    assert not at.exception and not at.error, [e.value for e in list(at.exception) + list(at.error)]
    assert not [c for c in at.caption if c.value.startswith("**Approximation:**")]
    at.sidebar.selectbox(key="ps_numerics").set_value("fast").run()
    assert [c for c in at.caption if c.value.startswith("**Approximation:**")]  # fast: the slider's one-pass scores again
