"""Cached default models carry content hashes; a damaged one rebuilds itself and says why (issue 9, item 3).

The real builds (an 8-minute fine-tune, a 30-second dequantization) are replaced
by saving a tiny model, so the cache code itself is what runs.
"""

from __future__ import annotations

import json

import pytest
import torch

from pruning.store import integrity


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


def test_load_verified_loads_beside_the_check_and_reloads_after_a_rebuild(tmp_path, tiny_bert):
    from safetensors.torch import load_file

    target, builds, loads = tmp_path / "cached", [], []
    build = save_tiny(tiny_bert, builds)

    def load(folder):
        loads.append(folder)
        return load_file(folder / "model.safetensors")

    weights, reason = integrity.load_verified(target, build, "tiny", load)
    assert reason == "it was not built yet" and len(builds) == 1 and len(loads) == 1
    assert integrity.load_verified(target, build, "tiny", load)[1] is None
    assert len(builds) == 1 and len(loads) == 2  # verified while loading: loaded once, not rebuilt
    damage(target / "model.safetensors")
    weights, reason = integrity.load_verified(target, build, "tiny", load)
    assert "damaged" in reason and len(builds) == 2 and len(loads) == 4  # the damaged load is dropped, then reloaded
    expected = tiny_bert.model.state_dict()
    assert all(torch.equal(weights[k], expected[k]) for k in weights)


def test_load_verified_raises_the_loads_own_error_when_the_files_match(tmp_path, tiny_bert):
    target, builds = tmp_path / "cached", []
    build = save_tiny(tiny_bert, builds)
    integrity.ensure_cached(target, build, "tiny")

    def load(folder):
        raise ValueError("unsupported architecture")

    with pytest.raises(ValueError, match="unsupported architecture"):
        integrity.load_verified(target, build, "tiny", load)
    assert len(builds) == 1  # matching files are not rebuilt because a load failed


def test_weights_fingerprint_sees_one_changed_weight(tiny_bert):
    import copy

    other = copy.deepcopy(tiny_bert.model)
    assert integrity.weights_fingerprint(other) == integrity.weights_fingerprint(tiny_bert.model)
    with torch.no_grad():
        other.bert.encoder.layer[1].output.dense.weight[3, 5] += 1e-3
    assert integrity.weights_fingerprint(other) != integrity.weights_fingerprint(tiny_bert.model)


@pytest.mark.parametrize("name", ["minilm-rt", "smollm2-135m"])
def test_both_defaults_rebuild_a_damaged_cache(name, tmp_path, monkeypatch, tiny_bert, tiny_llama):
    from pruning import embedded
    from pruning.embedded import minilm_rt as finetune
    from pruning.embedded import smollm2

    monkeypatch.setenv("PRUNESCOPE_CACHE", str(tmp_path))
    builds = []
    if name == "minilm-rt":
        build = save_tiny(tiny_bert, builds)

        def train(folder, progress=None, checkpoint=None):
            build(folder)
            (folder / finetune.REPORT_FILE).write_text(json.dumps({"test_accuracy": 0.5}))

        monkeypatch.setattr(finetune, "train_minilm_rt", train)
    else:
        build = save_tiny(tiny_llama, builds)
        monkeypatch.setattr(smollm2, "build_smollm2_copy", lambda folder, progress=None: build(folder))
    first = embedded.load_model(name)
    assert first.info.get("rebuilt") == integrity.NOT_BUILT and len(builds) == 1
    assert "rebuilt" not in embedded.load_model(name).info and len(builds) == 1
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    damage(folder / "model.safetensors")
    again = embedded.load_model(name)
    assert "model.safetensors" in again.info["rebuilt"] and len(builds) == 2
    w = next(iter(first.model.state_dict().values()))
    assert torch.equal(next(iter(again.model.state_dict().values())), w)


def test_a_verified_folder_is_trusted_by_identity_and_any_write_brings_the_hash_back(tmp_path, tiny_bert, monkeypatch):
    """After a full check, unchanged files (inode, size, mtime, ctime) are not hashed again; a write that
    keeps the size and sets the modification time back still changes the ctime, so it is hashed and caught."""
    import os
    import time

    target, builds = tmp_path / "cached", []
    integrity.ensure_cached(target, save_tiny(tiny_bert, builds), "tiny")
    monkeypatch.setattr(integrity, "SETTLE_S", 1e9)
    assert integrity.problem(target) is None
    assert not integrity.identities_file(target).exists()  # files written within SETTLE_S: not remembered yet
    monkeypatch.setattr(integrity, "SETTLE_S", 0.0)
    assert integrity.problem(target) is None and integrity.identities_file(target).exists()
    hashed = []
    real_digest = integrity.file_digest
    monkeypatch.setattr(integrity, "file_digest", lambda p: hashed.append(p) or real_digest(p))
    assert integrity.problem(target) is None and hashed == []  # trusted by identity: nothing hashed
    assert integrity.problem(target, full=True) is None and hashed  # a full check hashes everything
    weights = target / "model.safetensors"
    before = weights.stat()
    time.sleep(0.05)  # past the file system's timestamp tick
    damage(weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # size and mtime as they were
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime_ns == before.st_mtime_ns
    assert "damaged" in integrity.problem(target)
    integrity.forget_verified(target)
    assert not integrity.identities_file(target).exists()


def test_prepare_verify_forgets_the_remembered_identities_before_loading(tmp_path, monkeypatch):
    from pruning import cli, embedded
    from pruning.embedded.minilm_rt import minilm_rt_dir

    monkeypatch.setenv("PRUNESCOPE_CACHE", str(tmp_path))
    folder = minilm_rt_dir()
    folder.mkdir(parents=True)
    integrity.identities_file(folder).write_text("{}")
    seen = []
    monkeypatch.setattr(embedded, "load_model", lambda name, progress=None: seen.append((name, integrity.identities_file(folder).exists())))
    assert cli.main(["prepare", "--verify", "minilm-rt"]) == 0
    assert seen == [("minilm-rt", False)]  # forgotten before the load, so the load hashes every file
