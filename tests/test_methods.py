"""The registered one-shot methods on tiny random models: exact sparsity, Wanda by
brute force, SparseGPT against magnitude, determinism, and the shared model untouched."""

import copy
import threading

import pytest
import torch

from pruning.masks import is_nm_valid, keep_count, overall_sparsity
from pruning.loading.models import layer_weight, prunable_layers, transformer_blocks
from pruning.prune import compute_scores, mask_ranker, prune
from pruning.catalog import all_methods, get_method
from pruning.request import PruneRequest

R = PruneRequest.make

ONE_SHOT = ["magnitude", "random", "wanda", "sparsegpt"]


def _calibration(loaded, n=4, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    vocab = loaded.model.config.vocab_size
    ids = torch.randint(5, vocab, (n, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # one padded sample: padding must not count as calibration tokens
    return [{"input_ids": ids, "attention_mask": mask}]


def _checksum(model):
    return sum(float(p.double().abs().sum()) for p in model.parameters())


def test_registry_lists_the_baselines():
    names = set(all_methods())
    assert set(ONE_SHOT) <= names
    assert get_method("sparsegpt").updates_weights and not get_method("wanda").updates_weights
    assert get_method("wanda").score_based and not get_method("sparsegpt").score_based


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("method", ONE_SHOT)
@pytest.mark.parametrize("granularity", ["layer", "row", "global", "2:4"])
def test_exact_sparsity_every_method_and_granularity(request, fixture, method, granularity):
    loaded = request.getfixturevalue(fixture)
    before = _checksum(loaded.model)
    result = prune(loaded, R(method, 0.6, granularity, seed=0), calibration=_calibration(loaded))
    shapes = {i.name: i.shape for i in prunable_layers(loaded.model)}
    assert set(result.masks) == set(shapes)
    if granularity == "layer":
        for name, m in result.masks.items():
            assert int(m.sum()) == keep_count(m.numel(), 0.6), name
    elif granularity == "row":
        for name, m in result.masks.items():
            assert (m.sum(dim=1) == keep_count(m.shape[1], 0.6)).all(), name
    elif granularity == "global":
        total = sum(m.numel() for m in result.masks.values())
        assert sum(int(m.sum()) for m in result.masks.values()) == keep_count(total, 0.6)
    else:
        assert all(is_nm_valid(m, 2, 4) for m in result.masks.values())
        assert overall_sparsity(result.masks) == pytest.approx(0.5)
    # the pruned weights really have the reported zeros
    for name, w in result.pruned_weights(loaded).items():
        assert int((w != 0).sum()) <= int(result.masks[name].sum())
    assert _checksum(loaded.model) == before  # the shared model is never modified


def test_same_seed_same_masks_other_seed_other_masks(tiny_bert):
    a = prune(tiny_bert, R("random", 0.5, seed=1))
    b = prune(tiny_bert, R("random", 0.5, seed=1))
    c = prune(tiny_bert, R("random", 0.5, seed=2))
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert not all(torch.equal(a.masks[n], c.masks[n]) for n in a.masks)
    calib = _calibration(tiny_bert)
    w1 = prune(tiny_bert, R("wanda", 0.5, "row"), calibration=calib)
    w2 = prune(tiny_bert, R("wanda", 0.5, "row"), calibration=calib)
    assert all(torch.equal(w1.masks[n], w2.masks[n]) for n in w1.masks)


def _inputs_of(model, layer_name, batch, loaded):
    """Brute force: run the whole (copied) model and record the valid tokens entering one layer."""
    seen = {}

    def hook(module, args):
        seen["x"] = args[0].detach().clone()

    handle = model.get_submodule(layer_name).register_forward_pre_hook(hook)
    with torch.no_grad():
        model(**batch, **({"use_cache": False} if loaded.task == "causal-lm" else {}))
    handle.remove()
    x = seen["x"]
    return x[batch["attention_mask"].bool()]


def _brute_force_row_mask(weight, x, sparsity):
    """Wanda by loops: score each weight, then in every row keep the k best (ties: lower index)."""
    d_out, d_in = weight.shape
    norms = [float(torch.sqrt((x[:, j].double() ** 2).sum())) for j in range(d_in)]
    k = keep_count(d_in, sparsity)
    mask = torch.zeros(d_out, d_in, dtype=torch.bool)
    for i in range(d_out):
        scored = sorted(range(d_in), key=lambda j: (-abs(float(weight[i, j])) * norms[j], j))
        for j in scored[:k]:
            mask[i, j] = True
    return mask


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_wanda_equals_brute_force_including_the_sequential_walk(request, fixture):
    loaded = request.getfixturevalue(fixture)
    calib = _calibration(loaded)
    result = prune(loaded, R("wanda", 0.5, "row"), calibration=calib)
    blocks = transformer_blocks(loaded.model)
    first, second = blocks[0][0], blocks[1][0]
    names = [i.name for i in prunable_layers(loaded.model)]
    # block 0, first layer: its input is the dense embedding output
    layer0 = [n for n in names if n.startswith(first + ".")][0]
    x0 = _inputs_of(copy.deepcopy(loaded.model), layer0, calib[0], loaded)
    assert torch.equal(result.masks[layer0], _brute_force_row_mask(layer_weight(loaded.model, layer0), x0, 0.5))
    # block 1, first layer: its input comes from block 0 with block 0 already pruned
    pruned_copy = copy.deepcopy(loaded.model)
    for name in names:
        if name.startswith(first + "."):
            module = pruned_copy.get_submodule(name)
            module.weight.data = (layer_weight(loaded.model, name) * result.masks[name]).reshape(module.weight.shape)
    layer1 = [n for n in names if n.startswith(second + ".")][0]
    x1 = _inputs_of(pruned_copy, layer1, calib[0], loaded)
    assert torch.equal(result.masks[layer1], _brute_force_row_mask(layer_weight(loaded.model, layer1), x1, 0.5))
    dense_x1 = _inputs_of(copy.deepcopy(loaded.model), layer1, calib[0], loaded)
    assert not torch.allclose(x1, dense_x1)  # the walk really fed pruned outputs forward


def _brute_force_walk(loaded, calib, order):
    """Wanda per row by brute force: every layer's inputs from a whole-model pass over a copy holding the
    masks chosen so far; with order 'block' a block's masks are applied only once all of them are chosen."""
    names = [i.name for i in prunable_layers(loaded.model)]
    pruned = copy.deepcopy(loaded.model)
    masks = {}
    for prefix, _ in transformer_blocks(loaded.model):
        block_names = [n for n in names if n.startswith(prefix + ".")]
        for name in block_names:
            x = _inputs_of(pruned, name, calib[0], loaded)
            masks[name] = _brute_force_row_mask(layer_weight(loaded.model, name), x, 0.5)
            if order == "sequential":
                _apply(pruned, loaded, {name: masks[name]})
        if order == "block":
            _apply(pruned, loaded, {n: masks[n] for n in block_names})
    return masks


def _apply(model, loaded, masks):
    for name, mask in masks.items():
        module = model.get_submodule(name)
        module.weight.data = (layer_weight(loaded.model, name) * mask).reshape(module.weight.shape)


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_statistics_orders_equal_their_brute_force(request, fixture):
    loaded = request.getfixturevalue(fixture)
    calib = _calibration(loaded)
    default = prune(loaded, R("wanda", 0.5, "row"), calibration=calib)
    assert default.info["params"]["order"] == "block" and get_method("sparsegpt").params["order"].default == "block"
    per_block = _brute_force_walk(loaded, calib, "block")
    per_layer = _brute_force_walk(loaded, calib, "sequential")
    sequential = prune(loaded, R("wanda", 0.5, "row", params={"order": "sequential"}), calibration=calib)
    assert all(torch.equal(default.masks[n], per_block[n]) for n in per_block)
    assert all(torch.equal(sequential.masks[n], per_layer[n]) for n in per_layer)
    assert any(not torch.equal(per_block[n], per_layer[n]) for n in per_block)  # the two orders really differ


def test_one_pass_agreement_counts_identical_mask_entries(tiny_llama):
    from pruning.prune import one_pass_agreement

    calib = _calibration(tiny_llama)
    result = one_pass_agreement(tiny_llama, R("wanda", 0.5, "row"), calibration=calib)
    fast = mask_ranker(tiny_llama, R("wanda"), calibration=calib).masks(0.5, "row")
    exact = prune(tiny_llama, R("wanda", 0.5, "row"), calibration=calib).masks
    same = {n: sum(int(a == b) for a, b in zip(fast[n].flatten().tolist(), exact[n].flatten().tolist())) for n in exact}
    for name, row in result["per_layer"].items():
        assert row["agreement"] == same[name] / exact[name].numel()
        if name.startswith(transformer_blocks(tiny_llama.model)[0][0] + "."):
            assert row["agreement"] == 1.0  # the first block sees dense inputs either way
    assert result["overall"]["agreement"] == sum(same.values()) / sum(m.numel() for m in exact.values())
    assert result["overall"]["agreement"] < 1.0  # later blocks see pruned inputs in the exact walk


@pytest.mark.parametrize("granularity", ["layer", "2:4"])
def test_sparsegpt_reconstructs_a_real_layer_better_than_magnitude(tiny_llama, granularity):
    calib = _calibration(tiny_llama, n=8, length=32)
    name = [i.name for i in prunable_layers(tiny_llama.model)][0]  # first layer: dense inputs in both runs
    sgpt = prune(tiny_llama, R("sparsegpt", 0.5, granularity, layers=[name]), calibration=calib)
    mag = prune(tiny_llama, R("magnitude", 0.5, granularity, layers=[name]))
    x = _inputs_of(copy.deepcopy(tiny_llama.model), name, calib[0], tiny_llama)
    W = layer_weight(tiny_llama.model, name)

    def err(w2):
        return float(torch.linalg.norm(x @ W.T - x @ w2.T))

    assert err(sgpt.pruned_weights(tiny_llama)[name]) < err(mag.pruned_weights(tiny_llama)[name])


def test_ranker_gives_prune_masks_for_score_based_methods(tiny_bert):
    ranker = mask_ranker(tiny_bert, R("magnitude"))
    for s in (0.2, 0.5, 0.8):
        for g in ("layer", "row", "global", "4:8"):
            direct = prune(tiny_bert, R("magnitude", s, g)).masks
            fast = ranker.masks(s, g)
            assert all(torch.equal(direct[n], fast[n]) for n in direct)


def test_wanda_dense_scores_match_the_walk_on_the_first_block(tiny_bert):
    calib = _calibration(tiny_bert)
    scores = compute_scores(tiny_bert, R("wanda"), calibration=calib)
    walked = prune(tiny_bert, R("wanda", 0.5, "layer"), calibration=calib)
    from pruning.masks import layer_mask

    first = transformer_blocks(tiny_bert.model)[0][0]
    name = [n for n in scores if n.startswith(first + ".")][0]
    assert torch.equal(layer_mask(scores[name], 0.5, layer_weight(tiny_bert.model, name)), walked.masks[name])


def test_two_threads_prune_and_evaluate_one_shared_model(tiny_bert):
    from pruning.loading.functional import with_overrides

    batch = _calibration(tiny_bert)[0]
    results, errors = {}, []
    expected = {}
    for method in ("magnitude", "random"):
        r = prune(tiny_bert, R(method, 0.7, "layer", seed=3))
        with torch.no_grad():
            expected[method] = with_overrides(tiny_bert.model, r.overrides(tiny_bert))(**batch).logits

    def work(method):
        try:
            for _ in range(5):
                r = prune(tiny_bert, R(method, 0.7, "layer", seed=3))
                with torch.no_grad():
                    out = with_overrides(tiny_bert.model, r.overrides(tiny_bert))(**batch).logits
                assert torch.equal(out, expected[method])
            results[method] = True
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in ("magnitude", "random")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == {"magnitude": True, "random": True}


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_calibration_in_slices_of_samples_gives_the_one_batch_statistics_and_masks(request, fixture):
    """On an accelerator the one-pass walk runs the calibration samples through each block in slices
    (pruning.budget.calibration_chunk). Statistics add up over the slices: every layer sees the same
    tokens (padding excluded, sample 0 is padded), the same squared norms and Gram matrix, so Wanda
    gives the very same masks and SparseGPT the same weights as one batch."""
    from pruning.calibration import sequential_prune

    loaded = request.getfixturevalue(fixture)
    calib = _calibration(loaded, n=5, length=12)
    layers = [i.name for i in prunable_layers(loaded.model)]

    def stats_of(chunk):
        seen = {}

        def record(names, weights, stats):
            seen.update((n, (stats.n_tokens, stats.sq_sum.clone(), stats.gram.clone())) for n in names)
            return [(None, torch.ones_like(w, dtype=torch.bool)) for w in weights]

        sequential_prune(loaded, layers, calib, record, want_gram=True, chunk=chunk)
        return seen

    whole, sliced = stats_of(None), stats_of(2)  # slices of 2, 2 and 1 samples
    assert whole.keys() == sliced.keys() == set(layers)
    for name in layers:
        assert whole[name][0] == sliced[name][0] == 5 * 12 - 3, name
        assert torch.allclose(whole[name][1], sliced[name][1], rtol=1e-5, atol=1e-6), name
        assert torch.allclose(whole[name][2], sliced[name][2], rtol=1e-5, atol=1e-5), name
    from pruning import calibration as C

    def pruned(chunk, method):
        real = C.calibration_chunk
        C.calibration_chunk = (lambda model, n, length, place: n) if chunk is None else (lambda model, n, length, place: chunk)
        try:
            return prune(loaded, R(method, 0.5, "2:4"), calibration=calib)
        finally:
            C.calibration_chunk = real

    for method in ("wanda", "sparsegpt"):
        a, b = pruned(None, method), pruned(2, method)
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in layers), method
        if method == "sparsegpt":
            assert all(torch.allclose(a.weights[n], b.weights[n], rtol=1e-4, atol=1e-5) for n in layers)


def test_calibration_chunk_is_one_batch_on_the_cpu_and_fits_the_budget_elsewhere(tiny_llama):
    from types import SimpleNamespace

    from pruning.budget import DEVICE_ACTIVATIONS, calibration_bytes, calibration_chunk
    from pruning.loading.devices import Placement

    assert calibration_chunk(tiny_llama.model, 128, 2048, Placement()) == 128
    seven_b = SimpleNamespace(config=SimpleNamespace(hidden_size=4096, intermediate_size=11008, num_attention_heads=32))
    gpu = SimpleNamespace(on_cpu=False, torch_device=torch.device("meta"))
    k = calibration_chunk(seven_b, 128, 2048, gpu)
    assert k == DEVICE_ACTIVATIONS // calibration_bytes(seven_b, 1, 2048) == 10
    assert calibration_bytes(seven_b, k, 2048) <= DEVICE_ACTIVATIONS < calibration_bytes(seven_b, k + 1, 2048)
    assert calibration_chunk(seven_b, 4, 2048, gpu) == 4
