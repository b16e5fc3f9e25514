"""Cached default models carry content hashes; a damaged one rebuilds itself and says why (issue 9, item 3).

The real builds (an 8-minute fine-tune, a 30-second dequantization) are replaced
by saving a tiny model, so the cache code itself is what runs.
"""

from __future__ import annotations

import json

import pytest
import torch

from pruning import integrity


def save_tiny(tiny, counter):
    def build(folder):
        counter.append(folder)
        tiny.model.save_pretrained(folder)
        tiny.tokenizer.save_pretrained(folder)

    return build


def damage(path):
    """Flip one byte in the middle of a file: same size, other content."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_cache_is_rebuilt_with_the_reason(tmp_path, tiny_bert):
    target, builds, messages = tmp_path / "cached", [], []
    build = save_tiny(tiny_bert, builds)
    assert integrity.ensure_cached(target, build, "tiny") == "it was not built yet"
    recorded = json.loads((target / integrity.MANIFEST).read_text())["sha256"]
    assert "model.safetensors" in recorded and len(builds) == 1
    assert integrity.ensure_cached(target, build, "tiny") is None and len(builds) == 1  # verified, not rebuilt
    size = (target / "model.safetensors").stat().st_size
    damage(target / "model.safetensors")
    assert (target / "model.safetensors").stat().st_size == size
    reason = integrity.ensure_cached(target, build, "tiny", progress=lambda d, t, m: messages.append(m))
    assert "model.safetensors" in reason and "damaged" in reason and len(builds) == 2
    assert messages[0].startswith("checking the cached tiny")
    assert any("rebuilt" in m and "model.safetensors" in m for m in messages)
    assert integrity.problem(target) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cached.lock", "cached"]  # no temporary leftovers


def test_weights_fingerprint_sees_one_changed_weight(tiny_bert):
    import copy

    other = copy.deepcopy(tiny_bert.model)
    assert integrity.weights_fingerprint(other) == integrity.weights_fingerprint(tiny_bert.model)
    with torch.no_grad():
        other.bert.encoder.layer[1].output.dense.weight[3, 5] += 1e-3
    assert integrity.weights_fingerprint(other) != integrity.weights_fingerprint(tiny_bert.model)


@pytest.mark.parametrize("name", ["minilm-rt", "smollm2-135m"])
def test_both_defaults_rebuild_a_damaged_cache(name, tmp_path, monkeypatch, tiny_bert, tiny_llama):
    from pruning import finetune, models

    monkeypatch.setenv("PRUNESCOPE_CACHE", str(tmp_path))
    builds = []
    if name == "minilm-rt":
        build = save_tiny(tiny_bert, builds)

        def train(folder, progress=None):
            build(folder)
            (folder / finetune.REPORT_FILE).write_text(json.dumps({"test_accuracy": 0.5}))

        monkeypatch.setattr(finetune, "train_minilm_rt", train)
    else:
        build = save_tiny(tiny_llama, builds)
        monkeypatch.setattr(models, "build_smollm2_copy", lambda folder, progress=None: build(folder))
    first = models.load_model(name)
    assert first.info.get("rebuilt") == integrity.NOT_BUILT and len(builds) == 1
    assert "rebuilt" not in models.load_model(name).info and len(builds) == 1
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    damage(folder / "model.safetensors")
    again = models.load_model(name)
    assert "model.safetensors" in again.info["rebuilt"] and len(builds) == 2
    w = next(iter(first.model.state_dict().values()))
    assert torch.equal(next(iter(again.model.state_dict().values())), w)
