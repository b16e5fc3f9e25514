"""Shared fixtures: tiny random models built from configs, with tiny offline tokenizers.

``tiny_bert`` (BertForSequenceClassification, 2 labels), ``tiny_llama``
(LlamaForCausalLM, grouped-query attention) and ``tiny_gpt2`` (GPT2LMHeadModel,
Conv1D layers) are :class:`pruning.core.LoadedModel` objects, built once per
session with fixed seeds. Tests must never modify them (evaluate through
overrides). No downloads.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

WORDS = (
    "the a an and or but not no very good bad great awful fine film movie story plot actor acting "
    "funny boring dull fun love hate best worst is was it this that of to in on with for as by "
    "i you he she they we my its one two some all more most less"
).split()


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: uses the real embedded default models (bounded in time)")


def _wordpiece_tokenizer():
    """A lower-casing BERT-style WordPiece tokenizer: specials, some words, characters, ##characters."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()\"")
    vocab_list = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars + ["##" + c for c in chars]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def _byte_tokenizer():
    """A byte-level tokenizer (one token per UTF-8 byte, no merges) plus <eos>; any text encodes."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", model_max_length=128)


def saved_folder(tmp_path_factory, loaded, name: str):
    """``loaded`` written with save_pretrained (model and tokenizer) into a fresh temporary folder."""
    folder = tmp_path_factory.mktemp(name)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def _loaded(name, model, tokenizer, task, max_length):
    from pruning.core import LoadedModel

    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(name, model, tokenizer, task, max_length, f"tiny random {type(model).__name__}", {})


def make_tiny_bert():
    """BertForSequenceClassification: 2 blocks, hidden 32, FFN 64, 4 heads, 2 labels (also built by subprocesses)."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = _wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
        pad_token_id=0,
        architectures=["BertForSequenceClassification"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
    return _loaded("tiny-bert", model, tokenizer, "classification", 64)


@pytest.fixture(scope="session")
def tiny_bert():
    """BertForSequenceClassification: 2 blocks, hidden 32, FFN 64, 4 heads, 2 labels."""
    return make_tiny_bert()


@pytest.fixture(scope="session")
def tiny_llama():
    """LlamaForCausalLM: 2 blocks, hidden 32, FFN 64, 4 heads / 2 key-value heads, byte vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        architectures=["LlamaForCausalLM"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return _loaded("tiny-llama", model, tokenizer, "causal-lm", 128)


@pytest.fixture(scope="session")
def tiny_gpt2():
    """GPT2LMHeadModel: 2 blocks of Conv1D layers, width 32, 4 heads, byte vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _byte_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["GPT2LMHeadModel"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    return _loaded("tiny-gpt2", model, tokenizer, "causal-lm", 128)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_bert):
    """The tiny BERT saved as a model folder (what a user passes as --model)."""
    return saved_folder(tmp_path_factory, tiny_bert, "tiny-bert")


APP_ENV = ("PRUNESCOPE_TEST_MODEL", "PRUNESCOPE_EVAL_SIZE", "PRUNESCOPE_CALIBRATION", "PRUNESCOPE_DATA_DIRS", "PRUNESCOPE_RUNS_DIR")


@pytest.fixture(scope="module")
def tiny_model_folder(tiny_bert, tmp_path_factory):
    """The app's environment for one module of AppTest tests (``pytestmark = pytest.mark.usefixtures("tiny_model_folder")``):
    the tiny BERT saved to a folder as the app's model, 32 evaluation examples, 8 calibration samples, pytest's temporary
    folder an allowed root for typed paths, and an empty runs folder; the old environment comes back afterwards."""
    folder = saved_folder(tmp_path_factory, tiny_bert, "tiny_bert_model")
    old = {k: os.environ.get(k) for k in APP_ENV}
    os.environ.update(PRUNESCOPE_TEST_MODEL=str(folder), PRUNESCOPE_EVAL_SIZE="32", PRUNESCOPE_CALIBRATION="8",
                      PRUNESCOPE_DATA_DIRS=str(tmp_path_factory.getbasetemp()), PRUNESCOPE_RUNS_DIR=str(tmp_path_factory.mktemp("runs")))
    yield folder
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    """32 labelled review snippets in a CSV file with text and label columns."""
    import csv

    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    rows = [("a very good film", 1), ("awful and boring", 0), ("great fun", 1), ("the worst plot", 0)] * 8
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------- tiny task data (seed methods train on it)
POS = "good great fine fun love best funny".split()
NEG = "bad awful boring dull hate worst".split()


def make_tiny_sentiment():
    """96 two-class snippets, one sentiment word each (also built by subprocesses)."""
    from pruning.loading.data import ClassificationData

    rng = random.Random(0)
    texts, labels = [], []
    for i in range(96):
        y = i % 2
        words = [rng.choice(POS if y else NEG)] + [rng.choice("the film was very it this a".split()) for _ in range(4)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y)
    return ClassificationData("tiny-sentiment", {"train": (texts, labels)}, ["negative", "positive"])


@pytest.fixture(scope="session")
def tiny_sentiment():
    return make_tiny_sentiment()


@pytest.fixture(scope="session")
def tiny_text():
    from pruning.loading.data import LMText

    rng = random.Random(0)
    words = "the film was very good and the story was bad but the actor is great".split()
    train = " ".join(rng.choice(words) for _ in range(600))
    return LMText("tiny-text", train[:300], train)
