"""The three choices end to end through :func:`pruning.prune.prune` and the CLI on tiny models:
RIA through the block walk, the OBS and DSnoT updates after any criterion's mask, OWL's per-block
sparsities, the reconstruction error every run reports, and SparseGPT unchanged by all of it."""

from __future__ import annotations

import hashlib

import pytest
import torch

from pruning.loading.data import calibration_batches
from pruning.loading.functional import with_overrides
from pruning.masks import keep_count
from pruning.loading.models import layer_weight, transformer_blocks
from pruning.prune import prune
from pruning.result import weight_overrides
from pruning.request import PruneRequest as R


@pytest.fixture(scope="module")
def llama_calib(tiny_llama, tiny_text):
    return calibration_batches(tiny_llama, tiny_text, n_samples=4, seq_len=16, seed=0)


def _inputs(loaded, model, names, calib) -> dict[str, torch.Tensor]:
    """Every named layer's inputs (tokens, d_in) when ``model`` runs the calibration batches (no padding here)."""
    seen, handles = {}, []
    for n in names:
        handles.append(model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: seen.setdefault(n, []).append(a[0].reshape(-1, a[0].shape[-1]).double())))
    try:
        with torch.no_grad():
            for b in calib:
                model(**b, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


def _walk_inputs(loaded, result, calib) -> dict[str, torch.Tensor]:
    """Each layer's inputs in the block walk's order: block b's layers read the model whose earlier
    blocks are pruned (with the run's masks and weights) and whose block b is still dense."""
    blocks = [b for b, _ in transformer_blocks(loaded.model)]
    pruned = result.pruned_weights(loaded)
    out = {}
    for i, b in enumerate(blocks):
        earlier = {n: w for n, w in pruned.items() if any(n.startswith(p + ".") for p in blocks[:i])}
        model = with_overrides(loaded.model, weight_overrides(loaded.model, earlier))
        out.update(_inputs(loaded, model, [n for n in result.masks if n.startswith(b + ".")], calib))
    return out


def _relative_error(w, new, x) -> float:
    w, new = w.double(), new.double()
    return float(((x @ (w - new).T) ** 2).sum() / ((x @ w.T) ** 2).sum())


# ------------------------------------------------------------------ RIA
def test_ria_through_the_walk_is_the_brute_force_top_half_of_each_layer(tiny_llama, llama_calib):
    result = prune(tiny_llama, R.make("ria", 0.5), calibration=llama_calib)
    assert result.granularity == "layer"  # the paper's
    xs = _walk_inputs(tiny_llama, result, llama_calib)
    for name, mask in result.masks.items():
        w = layer_weight(tiny_llama.model, name).double().abs()
        rms = (xs[name] ** 2).mean(dim=0).sqrt()
        score = (w / w.sum(dim=0, keepdim=True) + w / w.sum(dim=1, keepdim=True)) * rms.unsqueeze(0) ** 0.5
        k = keep_count(w.numel(), 0.5)
        want = torch.zeros(w.numel(), dtype=torch.bool)
        want[torch.argsort(score.flatten(), descending=True)[:k]] = True
        assert torch.equal(mask.flatten(), want), name


def test_ria_is_listed_with_its_parameter_and_exact_masks_are_its_own():
    from pruning.catalog import get_method

    m = get_method("ria")
    assert m.params["a"].default == 0.5 and m.needs_calibration and m.walks_blocks and m.takes_update
    assert R.make("ria", 0.5, params={"a": 0}).param_dict["a"] == 0.0


# ------------------------------------------------------------------ updates
def _block0_layers(loaded):
    from pruning.loading.models import prunable_layers

    b0 = transformer_blocks(loaded.model)[0][0]
    return tuple(i.name for i in prunable_layers(loaded.model) if i.name.startswith(b0 + "."))


def test_obs_on_a_wanda_mask_keeps_it_and_lowers_every_layers_error(tiny_llama, llama_calib):
    layers = _block0_layers(tiny_llama)  # one block: both runs see the same inputs
    plain = prune(tiny_llama, R.make("wanda", 0.5, layers=layers), calibration=llama_calib)
    obs = prune(tiny_llama, R.make("wanda", 0.5, layers=layers, update="obs"), calibration=llama_calib)
    assert plain.weights is None and obs.weights is not None
    xs = _inputs(tiny_llama, tiny_llama.model, layers, llama_calib)
    for name in layers:
        assert torch.equal(plain.masks[name], obs.masks[name]), name
        w = layer_weight(tiny_llama.model, name)
        e_plain = _relative_error(w, w * plain.masks[name], xs[name])
        e_obs = _relative_error(w, obs.weights[name] * obs.masks[name], xs[name])
        assert plain.info["reconstruction_error"][name] == pytest.approx(e_plain, rel=1e-4)
        assert obs.info["reconstruction_error"][name] == pytest.approx(e_obs, rel=1e-4)
        assert e_obs < e_plain, name


def test_magnitude_with_obs_runs_the_walk_and_keeps_magnitudes_mask(tiny_llama, llama_calib):
    plain = prune(tiny_llama, R.make("magnitude", 0.5))
    obs = prune(tiny_llama, R.make("magnitude", 0.5, update="obs"), calibration=llama_calib)
    assert R.make("magnitude", 0.5, update="obs").needs_calibration and not R.make("magnitude", 0.5).needs_calibration
    xs = _walk_inputs(tiny_llama, obs, llama_calib)
    for name, mask in plain.masks.items():
        assert torch.equal(mask, obs.masks[name]), name
        w = layer_weight(tiny_llama.model, name)
        assert obs.info["reconstruction_error"][name] == pytest.approx(_relative_error(w, obs.weights[name] * mask, xs[name]), rel=1e-4)
        assert obs.info["reconstruction_error"][name] < _relative_error(w, w * mask, xs[name]), name


def test_dsnot_keeps_each_rows_count_and_the_weights_and_leaves_the_mlp_alone(tiny_llama, llama_calib):
    """The authors' default (``--skip_layer mlp``): only q, k, v and o are walked; gate, up and
    down keep Wanda's mask exactly (walking them too collapsed minilm-rt at 70%)."""
    layers = _block0_layers(tiny_llama)
    plain = prune(tiny_llama, R.make("wanda", 0.5, "layer", layers=layers), calibration=llama_calib)
    swapped = prune(tiny_llama, R.make("wanda", 0.5, "layer", layers=layers, update="dsnot"), calibration=llama_calib)
    assert swapped.weights is None
    mlp = [n for n in layers if n.rsplit(".", 1)[-1] in ("gate_proj", "up_proj", "down_proj")]
    attention = [n for n in layers if n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")]
    assert len(mlp) == 3 and len(attention) == 4 and len(layers) == 7
    changed = 0
    for name in layers:
        assert torch.equal(plain.masks[name].sum(dim=1), swapped.masks[name].sum(dim=1)), name
    for name in mlp:
        assert torch.equal(plain.masks[name], swapped.masks[name]), name
    for name in attention:
        changed += int((plain.masks[name] != swapped.masks[name]).sum())
    assert changed > 0  # DSnoT swapped some attention weights


def test_dsnot_on_2_4_keeps_the_pattern(tiny_llama, llama_calib):
    from pruning.masks import is_nm_valid

    result = prune(tiny_llama, R.make("wanda", granularity="2:4", update="dsnot"), calibration=llama_calib)
    assert all(is_nm_valid(m, 2, 4) for m in result.masks.values())


def test_sparsegpt_update_none_is_its_mask_with_the_original_weights(tiny_llama, llama_calib):
    layers = _block0_layers(tiny_llama)
    own = prune(tiny_llama, R.make("sparsegpt", 0.5, layers=layers), calibration=llama_calib)
    bare = prune(tiny_llama, R.make("sparsegpt", 0.5, layers=layers, update="none"), calibration=llama_calib)
    assert R.make("sparsegpt").update == "obs" and bare.weights is None
    for name in layers:
        assert torch.equal(own.masks[name], bare.masks[name])
        assert bare.info["reconstruction_error"][name] > own.info["reconstruction_error"][name]


# SparseGPT's masks (sha256 of the bool bytes) and weights (sha256 of the float32 bytes, plus two
# sums) on the tiny models, computed with the code before the three choices (main at 3cfe0b8).
SPARSEGPT_BEFORE = {
    "llama": {
        "layer": ("a445e373e14f51a8", -3.785923504, 7.874722524, "940fd0d1c29fcbb9"),
        "row": ("18656a7395d35495", -8.619550059, 8.026404759, "569743a3b49939e8"),
        "2:4": ("47a9cdd167ddb8cd", 4.392928584, 7.451721047, "8cc61ba26ca6328c"),
    },
    "bert": {
        "layer": ("fae289c741ab4892", -2.156169152, 6.895759854, "764d2c8f7106a5b4"),
        "row": ("82afb8f9db9682ad", -3.414692869, 6.890304917, "e1f13e57b488c781"),
        "2:4": ("da46b2ca3a2501f9", -1.675231394, 6.610025, "904304e9515a6bbe"),
    },
}


def _fingerprint(loaded, data):
    calib = calibration_batches(loaded, data, n_samples=4, seq_len=16, seed=0)
    out = {}
    for g in ("layer", "row", "2:4"):
        r = prune(loaded, R.make("sparsegpt", 0.5, g), calibration=calib)
        h, hw = hashlib.sha256(), hashlib.sha256()
        for n in sorted(r.masks):
            h.update(n.encode())
            h.update(r.masks[n].to(torch.uint8).numpy().tobytes())
            hw.update(r.weights[n].float().numpy().tobytes())
        index_weighted = sum(
            float((r.weights[n].double() * torch.arange(r.weights[n].numel()).reshape(r.weights[n].shape).double().remainder(7)).sum())
            for n in sorted(r.weights)
        )
        squares = sum(float((r.weights[n].double() ** 2).sum()) for n in r.weights)
        out[g] = (h.hexdigest()[:16], round(index_weighted, 9), round(squares, 9), hw.hexdigest()[:16])
    return out


def test_sparsegpt_masks_and_weights_are_unchanged(tiny_llama, tiny_text, tiny_bert, tiny_sentiment):
    for key, loaded, data in (("llama", tiny_llama, tiny_text), ("bert", tiny_bert, tiny_sentiment)):
        got = _fingerprint(loaded, data)
        for g, (mask_hash, weighted, squares, weight_hash) in SPARSEGPT_BEFORE[key].items():
            assert got[g][0] == mask_hash, (key, g)  # masks: bit for bit
            assert got[g][1] == pytest.approx(weighted, abs=1e-6) and got[g][2] == pytest.approx(squares, abs=1e-6), (key, g)
            assert got[g][3] == weight_hash, (key, g)  # weights: bit for bit on this platform's BLAS


# ------------------------------------------------------------------ obs: SparseGPT's criterion name
def _same_result(a, b) -> None:
    assert sorted(a.masks) == sorted(b.masks)
    for name in a.masks:
        assert torch.equal(a.masks[name], b.masks[name]), name
    assert (a.weights is None) == (b.weights is None)
    for name in a.weights or {}:
        assert torch.equal(a.weights[name], b.weights[name]), name


def test_criterion_obs_with_update_obs_is_sparsegpt_bit_for_bit(tiny_llama, llama_calib):
    from pruning.catalog import get_method

    assert get_method("obs") is get_method("sparsegpt") and get_method(" OBS ") is get_method("sparsegpt")
    assert R.make("obs", 0.5, update="obs").method == "sparsegpt"
    assert R.make("obs", 0.5, update="obs").key == R.make("sparsegpt", 0.5).key  # the paper's SparseGPT: criterion obs + update obs
    own = prune(tiny_llama, R.make("sparsegpt", 0.5), calibration=llama_calib)
    named = prune(tiny_llama, R.make("obs", 0.5, update="obs"), calibration=llama_calib)
    assert own.weights is not None and named.method == "sparsegpt"
    _same_result(own, named)
    # update none: the walk's own mask on the original weights, whichever name chose it
    bare = prune(tiny_llama, R.make("sparsegpt", 0.5, update="none"), calibration=llama_calib)
    named_bare = prune(tiny_llama, R.make("obs", 0.5, update="none"), calibration=llama_calib)
    assert bare.weights is None
    _same_result(bare, named_bare)


def test_obs_is_looked_up_but_never_listed_as_a_second_method(capsys):
    from pruning import catalog, registry
    from pruning.cli import main
    from pruning.errors import PruneScopeError

    assert "obs" not in catalog.all_methods() and "obs" not in registry.registered()
    assert registry.registered_method("obs").name == "sparsegpt"
    with pytest.raises(PruneScopeError, match=r"unknown method 'obz'; available: .*sparsegpt") as err:
        R.make("obz", 0.5)
    assert "obs" not in str(err.value).split("available:")[1].split(", ")  # the list names methods, not aliases
    with pytest.raises(PruneScopeError, match="unknown method 'obz'"):
        registry.registered_method("obz")
    # a method-valued parameter takes the alias too (SDS's base)
    assert R.make("sds", 0.5, params={"base": "obs"}).param_dict["base"] == "sparsegpt"
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    methods = out.split("\nAllocations")[0]  # the update obs has its row further down, under Updates
    assert not any(line.startswith("  obs ") for line in methods.splitlines())  # no method row of its own
    sparsegpt = methods.split("  sparsegpt ")[1].split("\n  wanda ")[0]
    assert "criterion name: --method obs (SparseGPT = criterion obs + update obs)" in sparsegpt


def test_cli_prune_with_method_obs_and_update_obs_writes_sparsegpts_run(tmp_path, tiny_folder, tiny_csv):
    from safetensors.torch import load_file

    from pruning.cli import main
    from pruning.store.io import load_masks, read_report

    common = ["--model", str(tiny_folder), "--sparsity", "0.5", "--dataset", str(tiny_csv), "--calib", "4"]
    assert main(["prune", "--method", "obs", "--update", "obs", *common, "--out", str(tmp_path / "obs")]) == 0
    assert main(["prune", "--method", "sparsegpt", *common, "--out", str(tmp_path / "sparsegpt")]) == 0
    a, b = read_report(tmp_path / "obs" / "report.json"), read_report(tmp_path / "sparsegpt" / "report.json")
    assert (a["method"], a["update"]) == (b["method"], b["update"]) == ("sparsegpt", "obs")
    masks_a, masks_b = load_masks(tmp_path / "obs" / "masks.safetensors"), load_masks(tmp_path / "sparsegpt" / "masks.safetensors")
    assert sorted(masks_a) == sorted(masks_b) and all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)
    weights_a = load_file(next((tmp_path / "obs" / "model").glob("*.safetensors")))
    weights_b = load_file(next((tmp_path / "sparsegpt" / "model").glob("*.safetensors")))
    assert sorted(weights_a) == sorted(weights_b) and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


# ------------------------------------------------------------------ SDS over any criterion and update
SDS_PARAMS = {"iters": 4, "adjust_iters": 3, "track_metric": False}

# SDS's masks and weights (sha256 of the bool bytes, of the float32 bytes) on the tiny llama with SDS_PARAMS at
# 50%, computed with the code before SDS took an update (main at a3ab0b5): its base ran with its own update.
SDS_BEFORE = {
    "sparsegpt": ("1904c1341acc13ed", "86e4c4419f22b749"),
    "wanda": ("13904e28ab49e322", "a4b29f0667689235"),
}


def _hashes(result) -> tuple[str, str]:
    h, hw = hashlib.sha256(), hashlib.sha256()
    for n in sorted(result.masks):
        h.update(n.encode())
        h.update(result.masks[n].to(torch.uint8).numpy().tobytes())
        hw.update(result.weights[n].float().numpy().tobytes())
    return h.hexdigest()[:16], hw.hexdigest()[:16]


def _sds_recording(monkeypatch) -> list:
    """The one-shot ``(request, result)`` pairs SDS's two sparse steps make (the real prune, recorded)."""
    from pruning.procedures import sds

    seen, real = [], sds.prune

    def recording(loaded, request, **kw):
        out = real(loaded, request, **kw)
        seen.append((request, out))
        return out

    monkeypatch.setattr(sds, "prune", recording)
    return seen


@pytest.mark.parametrize("base,own", [("sparsegpt", "obs"), ("wanda", "none")])
def test_sds_without_an_update_runs_its_base_with_the_bases_own_as_before(tiny_llama, llama_calib, monkeypatch, base, own):
    request = R.make("sds", 0.5, params={**SDS_PARAMS, "base": base})
    assert request.update == own
    seen = _sds_recording(monkeypatch)
    result = prune(tiny_llama, request, calibration=llama_calib)
    assert [(r.method, r.update) for r, _ in seen] == [(base, own), (base, own)]
    assert result.info["update"] == own
    assert _hashes(result) == SDS_BEFORE[base]  # bit for bit on this platform's BLAS


@pytest.mark.parametrize("update", ["obs", "dsnot"])
def test_sds_runs_its_base_with_the_chosen_update(tiny_llama, llama_calib, monkeypatch, update):
    seen = _sds_recording(monkeypatch)
    request = R.make("sds", 0.5, params={**SDS_PARAMS, "base": "wanda"}, update=update)
    result = prune(tiny_llama, request, calibration=llama_calib)
    assert result.info["update"] == update and [(r.method, r.update) for r, _ in seen] == [("wanda", update)] * 2
    # the first sparse step is exactly a plain Wanda run with that update on the same layers
    first_request, first = seen[0]
    plain = prune(tiny_llama, R.make("wanda", 0.5, layers=first_request.layers, update=update), calibration=llama_calib)
    _same_result(first, plain)
    wanda = prune(tiny_llama, R.make("wanda", 0.5, layers=first_request.layers), calibration=llama_calib)
    if update == "obs":  # Wanda's mask (in the first block: later blocks read the reconstructed ones), its kept weights reconstructed
        assert all(torch.equal(first.masks[n], wanda.masks[n]) for n in _block0_layers(tiny_llama))
        assert first.weights is not None and any(not torch.equal(first.weights[n], layer_weight(tiny_llama.model, n)) for n in first.weights)
    else:  # DSnoT swapped some of Wanda's attention weights, same count per row
        assert first.weights is None and any(not torch.equal(first.masks[n], wanda.masks[n]) for n in wanda.masks)
        assert all(torch.equal(first.masks[n].sum(dim=1), wanda.masks[n].sum(dim=1)) for n in wanda.masks)
    assert {n: int(m.sum()) for n, m in result.masks.items()} == {n: int(m.sum()) for n, m in wanda.masks.items()}  # the base's count per layer


def test_sds_report_names_the_update_and_the_cli_takes_one(tmp_path, tiny_folder, tiny_csv):
    from pruning.cli import main
    from pruning.store.io import read_report

    common = ["--model", str(tiny_folder), "--sparsity", "0.5", "--dataset", str(tiny_csv), "--calib", "4", "--no-model",
              "--param", "iters=2", "--param", "adjust_iters=2", "--param", "track_metric=false"]
    for update in ("obs", "dsnot"):
        out = tmp_path / update
        assert main(["prune", "--method", "sds", "--param", "base=wanda", "--update", update, *common, "--out", str(out)]) == 0
        report = read_report(out / "report.json")
        assert (report["method"], report["params"]["base"], report["update"]) == ("sds", "wanda", update)
    assert main(["prune", "--method", "sds", *common, "--out", str(tmp_path / "own")]) == 0
    assert read_report(tmp_path / "own" / "report.json")["update"] == "obs"  # SparseGPT's own, the paper's


# ------------------------------------------------------------------ OWL
def test_owl_gives_each_layer_its_blocks_sparsity_with_the_target_as_mean(tiny_llama, llama_calib):
    from pruning.allocations.owl import block_sparsities, outlier_ratio, owl_allocation
    from pruning.calibration import collect_input_stats
    from pruning.loading.models import prunable_layers
    from pruning.criteria.wanda import wanda_scores

    names = [i.name for i in prunable_layers(tiny_llama.model)]
    params = {"m": 2.0, "lambda": 0.08}  # M = 2: the tiny random model has outliers at 2x the mean, not 5x
    alloc, info = owl_allocation(tiny_llama, names, llama_calib, 0.5, params)
    stats = collect_input_stats(tiny_llama, names, llama_calib)
    blocks = [b for b, _ in transformer_blocks(tiny_llama.model)]
    ratios = [
        outlier_ratio([wanda_scores(layer_weight(tiny_llama.model, n), stats[n].sq_sum) for n in names if n.startswith(b + ".")], 2.0)
        for b in blocks
    ]
    assert ratios[0] != ratios[1]  # the test means something: the blocks differ
    want = block_sparsities(ratios, 0.5, 0.08)
    assert [r["sparsity"] for r in info["blocks"]] == want
    for n in names:
        assert alloc[n] == want[0 if n.startswith(blocks[0] + ".") else 1]
    result = prune(tiny_llama, R.make("wanda", allocation=alloc), calibration=llama_calib)
    for n, m in result.masks.items():
        assert int(m.sum()) == keep_count(m.numel(), alloc[n])
    total = sum(m.numel() for m in result.masks.values())  # the two blocks are the same size
    assert abs(result.overall_sparsity - 0.5) <= len(names) / total


# ------------------------------------------------------------------ reconstruction error
def test_reconstruction_error_is_zero_without_pruning(tiny_llama, llama_calib):
    from pruning.walk import dense_reconstruction_errors

    walked = prune(tiny_llama, R.make("wanda", 0.0, "layer", update="obs"), calibration=llama_calib)
    assert all(e == pytest.approx(0.0, abs=1e-12) for e in walked.info["reconstruction_error"].values())
    plain = prune(tiny_llama, R.make("magnitude", 0.0))
    errors = dense_reconstruction_errors(tiny_llama, plain.masks, plain.weights, llama_calib)
    assert set(errors) == set(plain.masks) and all(e == 0.0 for e in errors.values())


# ------------------------------------------------------------------ registry and CLI
def test_a_toy_calibrated_criterion_is_one_score_function_and_runs_with_any_update(tiny_llama, llama_calib, monkeypatch, capsys):
    from pruning import catalog, registry
    from pruning.cli import main
    from pruning.walk import score_walk_run

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))

    def loud_inputs(ctx, name, weight, stats):  # keep the columns of the loudest inputs
        return stats.sq_sum.float().unsqueeze(0).expand_as(weight).clone()

    registry.register(registry.Method("toyloud", "Toy loud", "Keep the loudest inputs' columns.", score_walk_run("toyloud", loud_inputs),
                                      needs_calibration=True, takes_update=True, walks_blocks=True))
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "toyloud" in out and "Updates (--update)" in out and "--allocation owl" in out
    layers = _block0_layers(tiny_llama)
    result = prune(tiny_llama, R.make("toyloud", 0.5, layers=layers, update="obs"), calibration=llama_calib)
    stats_x = _inputs(tiny_llama, tiny_llama.model, layers, llama_calib)
    for name in layers:
        loud = (stats_x[name] ** 2).sum(dim=0)
        kept_cols = result.masks[name].all(dim=0)
        assert int(kept_cols.sum()) == loud.numel() // 2 and bool((loud[kept_cols].min() > loud[~kept_cols].max()))


def test_cli_rejects_a_bad_update_with_one_error_line(tmp_path, capsys):
    from pruning.cli import main

    assert main(["prune", "--update", "bogus", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown update 'bogus'")
    assert main(["prune", "--method", "mgpp", "--update", "obs", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["prune", "--allocation", "owl:m=x", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: parameter m")
    assert not (tmp_path / "run").exists()


def test_a_sweep_row_says_which_update_it_ran(tiny_bert, tiny_sentiment):
    from pruning.analysis.sweep import sparsity_ramp

    calib = calibration_batches(tiny_bert, tiny_sentiment, n_samples=4, seq_len=16, seed=0)
    rows = sparsity_ramp(tiny_bert, tiny_sentiment, [R.make("magnitude", update="dsnot")], sparsities=[0.5], calibration=calib, max_examples=16, split="train")
    assert [(r["method"], r["update"]) for r in rows] == [("dense", "-"), ("magnitude", "dsnot")]
