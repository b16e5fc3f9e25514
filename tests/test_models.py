"""Model loading, task detection and prunable-layer naming on tiny random models."""

import pytest
import torch
from torch import nn

from pruning.errors import PruneScopeError
from pruning.loading.models import EMBEDDED_MODELS, detect_task, layer_weight, param_key, prunable_layers, to_module_layout, transformer_blocks
from pruning.core import LoadedModel
from pruning.embedded import load_model


class _Config:
    def __init__(self, architectures):
        self.architectures = architectures


@pytest.mark.parametrize(
    "archs, task",
    [
        (["BertForSequenceClassification"], "classification"),
        (["LlamaForCausalLM"], "causal-lm"),
        (["GPT2LMHeadModel"], "causal-lm"),
        (["BertModel"], "encoder"),
        (None, "encoder"),
    ],
)
def test_task_detection_from_architectures(archs, task):
    assert detect_task(_Config(archs)) == task


def test_embedded_models_are_listed():
    assert set(EMBEDDED_MODELS) == {"minilm-rt", "smollm2-135m"}
    assert all(isinstance(v, str) and v for v in EMBEDDED_MODELS.values())


# ---------------------------------------------------------------- layers
def test_bert_prunable_layers(tiny_bert):
    layers = prunable_layers(tiny_bert.model)
    assert len(layers) == 2 * 6
    first = {i.name.split("layer.0.", 1)[1]: i for i in layers if i.block == 0}
    assert set(first) == {
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    assert first["attention.self.query"].shape == (32, 32)
    assert first["intermediate.dense"].shape == (64, 32)
    assert first["output.dense"].shape == (32, 64)
    assert all(i.kind == "Linear" and i.params == i.shape[0] * i.shape[1] for i in layers)
    assert not any(w in i.name for i in layers for w in ("classifier", "pooler", "embeddings"))
    assert [b for b, _ in transformer_blocks(tiny_bert.model)] == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert [i.block for i in layers] == [0] * 6 + [1] * 6


def test_llama_prunable_layers(tiny_llama):
    layers = prunable_layers(tiny_llama.model)
    assert len(layers) == 2 * 7
    shapes = {i.name: i.shape for i in layers}
    assert shapes["model.layers.0.self_attn.q_proj"] == (32, 32)
    assert shapes["model.layers.0.self_attn.k_proj"] == (16, 32)  # 2 key-value heads of 8
    assert shapes["model.layers.1.mlp.gate_proj"] == (64, 32)
    assert shapes["model.layers.1.mlp.down_proj"] == (32, 64)
    assert "lm_head" not in shapes
    assert [b for b, _ in transformer_blocks(tiny_llama.model)] == ["model.layers.0", "model.layers.1"]


def test_gpt2_conv1d_layers_and_transpose_round_trip(tiny_gpt2):
    model = tiny_gpt2.model
    layers = prunable_layers(model)
    assert len(layers) == 2 * 4 and all(i.kind == "Conv1D" for i in layers)
    shapes = {i.name: i.shape for i in layers}
    assert shapes["transformer.h.0.attn.c_attn"] == (96, 32)
    assert shapes["transformer.h.0.mlp.c_fc"] == (128, 32)
    assert shapes["transformer.h.0.mlp.c_proj"] == (32, 128)
    params = dict(model.named_parameters())
    for info in layers:
        w = layer_weight(model, info.name)
        assert tuple(w.shape) == info.shape
        key = param_key(model, info.name)
        assert torch.equal(w, params[key].t())
        back = to_module_layout(model, info.name, w.clone())
        assert back.shape == params[key].shape and torch.equal(back, params[key])
    # the layout really is (d_out, d_in): y = x W^T + b
    x = torch.randn(3, 32)
    name = "transformer.h.0.mlp.c_fc"
    module = model.get_submodule(name)
    with torch.no_grad():
        assert torch.allclose(module(x), x @ layer_weight(model, name).T + module.bias, atol=1e-6)


def test_linear_layout_is_the_parameter_itself(tiny_llama):
    name = "model.layers.0.self_attn.k_proj"
    w = layer_weight(tiny_llama.model, name)
    assert torch.equal(w, tiny_llama.model.get_parameter(param_key(tiny_llama.model, name)))
    assert torch.equal(to_module_layout(tiny_llama.model, name, w), w)
    with pytest.raises(PruneScopeError, match="does not fit"):
        to_module_layout(tiny_llama.model, name, w.t())


def test_include_exclude_patterns(tiny_llama):
    attn = prunable_layers(tiny_llama.model, include=r"self_attn")
    assert len(attn) == 8 and all("self_attn" in i.name for i in attn)
    no_down = prunable_layers(tiny_llama.model, exclude=r"down_proj$")
    assert len(no_down) == 12
    assert prunable_layers(tiny_llama.model, include=r"layers\.1\.", exclude="mlp")[0].block == 1
    with pytest.raises(PruneScopeError, match="regular expression"):
        prunable_layers(tiny_llama.model, include="(")


def test_unknown_layer_name_is_a_clear_error(tiny_bert):
    with pytest.raises(PruneScopeError, match="no layer named"):
        layer_weight(tiny_bert.model, "bert.encoder.layer.9.output.dense")
    with pytest.raises(PruneScopeError, match="not a Linear"):
        layer_weight(tiny_bert.model, "bert.encoder.layer.0.output.LayerNorm")


def test_generic_block_fallback_finds_the_outer_module_list():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(5))  # longer, but nested
            self.proj = nn.Linear(4, 4)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.stack = nn.ModuleList(Block() for _ in range(3))
            self.head = nn.Linear(4, 2)

    net = Net()
    assert [n for n, _ in transformer_blocks(net)] == ["stack.0", "stack.1", "stack.2"]
    names = [i.name for i in prunable_layers(net)]
    assert len(names) == 18 and "head" not in names and "stack.2.proj" in names


# ---------------------------------------------------------------- loading
def _save(loaded, folder):
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def test_local_folder_detects_task_and_prepares_the_model(tiny_bert, tiny_llama, tmp_path):
    bert = load_model(str(_save(tiny_bert, tmp_path / "bert")))
    assert isinstance(bert, LoadedModel) and bert.task == "classification"
    assert bert.info["label_names"] == ["negative", "positive"]
    assert not bert.model.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in bert.model.parameters())
    assert bert.max_length == 64 and bert.source == str(tmp_path / "bert")
    ids = bert.tokenizer(["a good film"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(bert.model(**ids).logits, tiny_bert.model(**ids).logits, atol=1e-6)
    llama = load_model(str(_save(tiny_llama, tmp_path / "llama")))
    assert llama.task == "causal-lm" and llama.tokenizer.pad_token is not None
    encoder = load_model(str(tmp_path / "bert"), task="encoder")
    assert encoder.task == "encoder" and type(encoder.model).__name__ == "BertModel"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PruneScopeError, match="no such file or folder"):
        load_model(str(tmp_path / "nowhere"))


def test_folder_without_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PruneScopeError, match="holds no model"):
        load_model(str(tmp_path))


def test_folder_with_a_broken_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(PruneScopeError, match="could not load"):
        load_model(str(tmp_path))


def test_non_model_file_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(PruneScopeError, match=r"\.gguf"):
        load_model(str(path))


def test_hub_name_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty Hugging Face cache
    with pytest.raises(PruneScopeError, match=r"could not load 'foo/bar'.*unreachable \(offline\)"):
        load_model("foo/bar")


def test_bad_task_and_embedded_task_mismatch(tmp_path):
    with pytest.raises(PruneScopeError, match="unknown task"):
        load_model(str(tmp_path), task="translation")
    with pytest.raises(PruneScopeError, match="causal-lm model"):
        load_model("smollm2-135m", task="classification")


# ---------------------------------------------------------------- cache folder helpers
def test_cache_dir_precedence(monkeypatch, tmp_path):
    from pruning.paths import cache_dir

    monkeypatch.setenv("PRUNESCOPE_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("PRUNESCOPE_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "prunescope"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "prunescope"


def test_atomic_dir_leaves_nothing_half_made(tmp_path):
    from pruning.paths import atomic_dir, clear_orphans

    target = tmp_path / "thing"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "part").write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "done").write_text("ok")
    assert (target / "done").read_text() == "ok"
    (tmp_path / ".thing.tmp-orphan").mkdir()
    clear_orphans(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def test_cached_minilm_rt_returns_at_once(tmp_path):
    import time

    from pruning.embedded.minilm_rt import MINILM_RT_DIR, ensure_minilm_rt

    folder = tmp_path / MINILM_RT_DIR
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "prunescope.json"):
        (folder / name).write_text("{}")
    start = time.perf_counter()
    assert ensure_minilm_rt(cache_dir=tmp_path) == (folder, None)  # adopted: its hashes are recorded, no retraining
    assert time.perf_counter() - start < 0.5


def test_bucketed_training_batches_cover_every_sentence_once():
    from pruning.embedded.minilm_rt import bucketed_batches

    lengths = [(i * 37) % 50 + 3 for i in range(1000)]
    a, b = bucketed_batches(lengths, 32, seed=0), bucketed_batches(lengths, 32, seed=0)
    assert a == b and a != bucketed_batches(lengths, 32, seed=1)
    assert sorted(i for batch in a for i in batch) == list(range(1000))
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in a)
    assert padded < 1.1 * sum(lengths)


def test_layers_sort_by_block_then_role_not_alphabetically():
    from types import SimpleNamespace

    from pruning.loading.models import block_role_order, layer_role

    names = [
        "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.0.output.dense",
        "bert.encoder.layer.0.attention.self.value", "bert.encoder.layer.0.intermediate.dense",
        "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.output.dense",
        "bert.encoder.layer.0.attention.self.key",
    ]
    rows = [SimpleNamespace(name=n, block=int(n.split(".")[3])) for n in names]
    ordered = [layer_role(r.name)[1] + f" {r.block}" for r in block_role_order(rows)]
    assert ordered == ["q 0", "k 0", "v 0", "attention out 0", "FFN in 0", "FFN out 0", "attention out 1"]
    llama = ["model.layers.0.mlp.down_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.gate_proj",
             "model.layers.0.self_attn.q_proj"]
    assert [layer_role(n)[1] for n in sorted(llama, key=lambda n: layer_role(n)[0])] == ["q", "attention out", "FFN gate", "FFN in", "FFN out"]
    assert layer_role("something.else") == (len(__import__("pruning.loading.models").loading.models.LAYER_ROLES), "other")
