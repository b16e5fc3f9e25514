"""Is this mask decided, or a coin flip? One request pruned R times, with R calibration draws or R seeds.

:func:`calibration_draws` gives R calibration sets: ``"calib"`` cuts disjoint slices of the
calibration source (training sentences, or non-overlapping token windows of the training
text), ``"resample"`` draws R seeded resamples (they may share samples), ``"seed"`` keeps one
calibration set and changes the request's seed (for seeded methods). :func:`stability` prunes
once per draw, evaluates each pruned model (keeping its answers, :mod:`pruning.analysis.flips`) and sums
it up:

* per layer: the mean pairwise Jaccard of the kept sets and its spread, the *keep frequency*
  of every weight (the share of draws that keep it) as the shares kept by all draws, pruned by
  all, and undecided, a histogram of keep frequencies, and a small picture of the layer;
* for the model: the metric of each draw, their spread, the t interval of their mean, flips
  against the dense model and between draws, the items that flip most often;
* a verdict: decided, masks change but the metric does not, or both change.

Each finished draw is a checkpoint row (:mod:`pruning.store.checkpoint`) and a file of its packed
masks and answers in a folder beside it, so a killed run resumes where it stopped and gives
the same rows. The pure parts (:func:`pairwise_jaccard`, :func:`keep_frequency`,
:func:`layer_summary`, :func:`mean_interval_t`, :func:`rank_methods`) take masks and numbers.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..budget import check_calibration
from ..errors import PruneScopeError
from ..loading.data import (
    ClassificationData,
    LMText,
    RT_NAME,
    RT_PLOTS_NAME,
    calibration_batches,
    load_classification,
    load_lm_text,
    pad_batch,
    pad_id_of,
    token_ids,
    tokenize,
    training_texts,
)
from ..paths import atomic_file
from ..prune import prune
from ..request import PruneRequest
from ..store.checkpoint import as_checkpoint
from .evaluate import evaluation_plan, paired_difference, summary
from .flips import compare, fragile_items, pairwise_flips, predict

DRAW_KINDS = {
    "calib": "disjoint slices of the calibration source",
    "resample": "seeded resamples of the calibration source (they may share samples; a seeded method's seed follows the draw's)",
    "seed": "one calibration set, a different seed per draw",
}
DEFAULT_DRAWS = 8
GRID = 48  # the layer picture: at most GRID x GRID cells of block means
DECIDED = 1.0  # a layer whose every pair of draws has Jaccard 1 is decided
# two-sided 95% t quantiles for 1..30 degrees of freedom (beyond: the normal quantile)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


# ---------------------------------------------------------------- calibration draws
@dataclass(frozen=True)
class CalibrationDraw:
    """One draw: its index, the seed it prunes with, its batches, and where its samples come from
    (``sources``: training-sentence indices, or start offsets of token windows; empty for resamples)."""

    index: int
    seed: int
    batches: list = field(compare=False, repr=False)
    sources: tuple[int, ...] = ()


def draw_seed(seed: int, index: int) -> int:
    """The seed of draw ``index``: the request's seed for draw 0, then the next ones (mod 2**63)."""
    return (int(seed) + int(index)) % 2**63


def check_kind(kind: str) -> str:
    if kind not in DRAW_KINDS:
        raise PruneScopeError(f"draw kind must be one of {', '.join(DRAW_KINDS)}, got {kind!r}")
    return kind


def check_draws(draws) -> int:
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or int(draws) < 2:
        raise PruneScopeError(f"a stability run needs at least 2 draws to compare, got {draws!r}")
    return int(draws)


def calibration_draws(loaded, request: PruneRequest, draws: int = DEFAULT_DRAWS, kind: str = "calib", source=None, batch_size: int = 8) -> list[CalibrationDraw]:
    """``draws`` calibration sets of the request's size (``calib_samples`` x ``calib_len``) from
    ``source`` (a :class:`pruning.loading.data.ClassificationData` or :class:`pruning.loading.data.LMText`; default:
    the request's dataset), from its training part only.

    ``"calib"``: a seeded shuffle of the source cut into disjoint slices (an error when the
    source holds fewer than ``draws x calib_samples`` samples); ``"resample"``:
    :func:`pruning.loading.data.calibration_batches` with seeds ``seed, seed + 1, ...``; ``"seed"``: the
    request's own calibration set every time (the seed changes, see :func:`draw_requests`).
    """
    draws, kind = check_draws(draws), check_kind(kind)
    n, seq_len, seed = request.calib_samples, request.calib_len, request.seed
    source = request.dataset if source is None else source
    if kind == "seed":
        batches = calibration_batches(loaded, source, n, seq_len, seed, batch_size)
        return [CalibrationDraw(r, draw_seed(seed, r), batches) for r in range(draws)]
    if kind == "resample":
        return [CalibrationDraw(r, draw_seed(seed, r), calibration_batches(loaded, source, n, seq_len, draw_seed(seed, r), batch_size)) for r in range(draws)]
    return _disjoint_draws(loaded, source, n, seq_len, seed, draws, batch_size)


def _disjoint_draws(loaded, source, n: int, seq_len: int, seed: int, draws: int, batch_size: int) -> list[CalibrationDraw]:
    rng = random.Random(int(seed))
    tokenizer = loaded.tokenizer
    seq_len = min(seq_len, int(getattr(loaded, "max_length", seq_len) or seq_len))
    check_calibration(loaded, n, seq_len)
    wanted = draws * n
    if loaded.task == "causal-lm":
        if isinstance(source, ClassificationData):
            text = LMText(source.name, "", "\n\n".join(training_texts(source)))
        else:
            text = load_lm_text(source if source is not None else RT_PLOTS_NAME)
        ids = token_ids(tokenizer, text.train_text)
        slots = ids.numel() // seq_len  # non-overlapping windows on a fixed grid
        if slots < wanted:
            raise PruneScopeError(
                f"{draws} disjoint calibration draws of {n} windows of {seq_len} tokens need {wanted} windows; the calibration "
                f"text of {text.name} holds {slots}. Use fewer draws or samples, or --draw-kind resample"
            )
        picks = rng.sample(range(slots), wanted)
        out = []
        for r in range(draws):
            starts = [p * seq_len for p in picks[r * n : (r + 1) * n]]
            windows = torch.stack([ids[s : s + seq_len] for s in starts])
            batches = [{"input_ids": windows[i : i + batch_size].clone(), "attention_mask": torch.ones_like(windows[i : i + batch_size])} for i in range(0, n, batch_size)]
            out.append(CalibrationDraw(r, int(seed), batches, tuple(starts)))
        return out
    if isinstance(source, LMText):
        raise PruneScopeError("a classification or encoder model calibrates on sentences; plain text was given")
    data = source if isinstance(source, ClassificationData) else load_classification(source if source is not None else RT_NAME)
    texts = training_texts(data)
    if len(texts) < wanted:
        raise PruneScopeError(
            f"{draws} disjoint calibration draws of {n} sentences need {wanted} training sentences; {data.name} has {len(texts)}. "
            "Use fewer draws or samples, or --draw-kind resample"
        )
    picks = rng.sample(range(len(texts)), wanted)
    left, pad = getattr(tokenizer, "padding_side", "right") == "left", pad_id_of(tokenizer)
    out = []
    for r in range(draws):
        rows = picks[r * n : (r + 1) * n]
        encoded = tokenize(tokenizer, [texts[i] for i in rows], truncation=True, max_length=seq_len, return_attention_mask=False)["input_ids"]
        batches = [pad_batch(encoded[i : i + batch_size], pad, left) for i in range(0, n, batch_size)]
        out.append(CalibrationDraw(r, int(seed), batches, tuple(rows)))
    return out


def draw_requests(request: PruneRequest, draws: Sequence[CalibrationDraw]) -> list[PruneRequest]:
    """The request of each draw: its own seed (for ``"calib"`` draws the request's seed, unchanged)."""
    return [request if d.seed == request.seed else request.replace(seed=d.seed) for d in draws]


# ---------------------------------------------------------------- pure mask statistics
def pack(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """A boolean mask as packed bits (1/8 of a byte per weight)."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return np.packbits(m.astype(bool).reshape(-1))


def unpack(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    size = int(np.prod(shape))
    return np.unpackbits(bits, count=size).astype(bool).reshape(tuple(shape))


def _popcount(bits: np.ndarray) -> int:
    return int(np.bitwise_count(bits).sum(dtype=np.int64))


def pairwise_jaccard(packed: Sequence[np.ndarray]) -> np.ndarray:
    """Jaccard of the kept sets of every pair of draws (packed masks of one layer): an R x R matrix
    (1 on the diagonal; 1 for two empty kept sets)."""
    r = len(packed)
    out = np.ones((r, r))
    for i in range(r):
        for j in range(i + 1, r):
            inter, union = _popcount(packed[i] & packed[j]), _popcount(packed[i] | packed[j])
            out[i, j] = out[j, i] = 1.0 if union == 0 else inter / union
    return out


def keep_counts(masks: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
    """How many of the masks keep each weight (uint8, or uint16 beyond 255 masks)."""
    if not masks:
        raise PruneScopeError("keep frequencies need at least one mask")
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    out = np.zeros(tuple(masks[0].shape), dtype=dtype)
    for m in masks:
        out += (m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)).astype(dtype)
    return out


def keep_frequency(masks: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
    """The share of the masks that keep each weight (float64, in [0, 1])."""
    return keep_counts(masks) / len(masks)


def frequency_summary(counts: np.ndarray, draws: int) -> dict:
    """From keep counts over ``draws`` masks: the shares kept by all, pruned by all, undecided, and the
    histogram ``[number of weights kept by exactly c draws for c = 0..draws]``."""
    hist = np.bincount(counts.reshape(-1).astype(np.int64), minlength=draws + 1)[: draws + 1]
    total = max(1, int(counts.size))
    kept_all, pruned_all = int(hist[draws]), int(hist[0])
    return {
        "kept_by_all": kept_all / total,
        "pruned_by_all": pruned_all / total,
        "undecided": (total - kept_all - pruned_all) / total,
        "histogram": [int(x) for x in hist],
        "weights": int(counts.size),
    }


def picture(counts: np.ndarray, draws: int, grid: int = GRID) -> dict:
    """A small picture of one layer's keep frequencies: block means on an at most ``grid x grid``
    grid (``keep`` mean keep frequency, ``undecided`` share of undecided weights per block) and per
    row (``row_keep``, ``row_undecided``), as float32 arrays rounded to 4 decimals."""
    freq = counts.astype(np.float64) / draws
    undecided = ((counts > 0) & (counts < draws)).astype(np.float64)
    rows, cols = freq.shape
    br, bc = math.ceil(rows / grid), math.ceil(cols / grid)

    def blocks(x: np.ndarray) -> np.ndarray:
        nr, nc = math.ceil(rows / br), math.ceil(cols / bc)
        padded = np.full((nr * br, nc * bc), np.nan)
        padded[:rows, :cols] = x
        return np.nanmean(padded.reshape(nr, br, nc, bc), axis=(1, 3))

    return {  # float32 arrays: a result of 200 layers stays a few MB in the app's store (lists in to_json)
        "block": [br, bc],
        "keep": blocks(freq).round(4).astype(np.float32),
        "undecided": blocks(undecided).round(4).astype(np.float32),
        "row_keep": freq.mean(axis=1).round(4).astype(np.float32),
        "row_undecided": undecided.mean(axis=1).round(4).astype(np.float32),
    }


def _plain(value):
    """``value`` with NumPy arrays and numbers as lists and Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), 4).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def layer_summary(name: str, packed: Sequence[np.ndarray], shape: Sequence[int], with_picture: bool = True) -> tuple[dict, np.ndarray]:
    """One layer over R draws (packed masks): mean pairwise Jaccard, its spread (standard deviation and
    minimum over pairs), the keep-frequency shares and histogram, the picture. Returns the row and the
    keep counts."""
    r = len(packed)
    jac = pairwise_jaccard(packed)
    pairs = jac[np.triu_indices(r, 1)]
    counts = np.zeros(int(np.prod(shape)), dtype=np.uint8)
    for bits in packed:
        counts += np.unpackbits(bits, count=counts.size)
    counts = counts.reshape(tuple(shape))
    freq = frequency_summary(counts, r)
    row = {
        "layer": name,
        "params": int(counts.size),
        "jaccard": float(pairs.mean()),
        "jaccard_sd": float(pairs.std(ddof=1)) if pairs.size > 1 else 0.0,
        "jaccard_min": float(pairs.min()),
        "kept_by_all": freq["kept_by_all"],
        "pruned_by_all": freq["pruned_by_all"],
        "undecided": freq["undecided"],
        "histogram": freq["histogram"],
    }
    if with_picture:
        row["picture"] = picture(counts, r)
    return row, counts


def overall_summary(layer_rows: Sequence[dict], packed_layers: Mapping[str, Sequence[np.ndarray]]) -> dict:
    """Every layer together: pairwise Jaccard over all weights, the keep-frequency shares and histogram."""
    names = list(packed_layers)
    r = len(packed_layers[names[0]])
    inter = np.zeros((r, r))
    union = np.zeros((r, r))
    for name in names:
        p = packed_layers[name]
        for i in range(r):
            for j in range(i + 1, r):
                inter[i, j] += _popcount(p[i] & p[j])
                union[i, j] += _popcount(p[i] | p[j])
    iu = np.triu_indices(r, 1)
    pairs = np.where(union[iu] == 0, 1.0, inter[iu] / np.maximum(union[iu], 1))
    hist = np.sum([row["histogram"] for row in layer_rows], axis=0)
    freq = {"histogram": [int(x) for x in hist], "weights": int(hist.sum())}
    total = max(1, freq["weights"])
    return {
        "jaccard": float(pairs.mean()),
        "jaccard_sd": float(pairs.std(ddof=1)) if pairs.size > 1 else 0.0,
        "jaccard_min": float(pairs.min()),
        "kept_by_all": int(hist[r]) / total,
        "pruned_by_all": int(hist[0]) / total,
        "undecided": (total - int(hist[r]) - int(hist[0])) / total,
        **freq,
    }


def t_quantile(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (normal beyond 30)."""
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.959963984540054


def mean_interval_t(values: Sequence[float]) -> dict:
    """Mean of the draws' metric, their standard deviation, range and the 95% t interval of the mean
    (the draws as a sample of what another calibration draw would give)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise PruneScopeError("no draws to sum up")
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    half = t_quantile(v.size - 1) * sd / math.sqrt(v.size) if v.size > 1 else 0.0
    return {"mean": mean, "sd": sd, "min": float(v.min()), "max": float(v.max()), "mean_ci_low": mean - half, "mean_ci_high": mean + half, "draws": int(v.size)}


def verdict(jaccard: float, metric_moves: bool) -> str:
    """In words: whether the masks change across draws, and whether the metric does beyond evaluation noise."""
    if jaccard >= DECIDED:
        return "decided: every draw gives the same mask"
    if not metric_moves:
        return "masks change, metric does not: no two draws differ beyond evaluation noise"
    return "masks and metric change: some draws differ beyond evaluation noise"


def rank_methods(results: Sequence["StabilityResult"]) -> list[dict]:
    """Methods at the same budget ranked by stability: the highest mean Jaccard first (ties: the smaller
    undecided share), with the metric's spread and the flips between draws beside it."""
    rows = []
    for res in results:
        o, m = res.overall, res.metric
        rows.append(
            {
                "method": res.request.method,
                "jaccard": o["jaccard"],
                "jaccard_sd": o["jaccard_sd"],
                "undecided": o["undecided"],
                "metric": res.rows[0]["metric"] if res.rows else "",
                "metric_mean": m.get("mean"),
                "metric_sd": m.get("sd"),
                "flips_between_draws": res.between.get("flips_mean"),
                "verdict": res.verdict,
            }
        )
    rows.sort(key=lambda r: (-r["jaccard"], r["undecided"], r["method"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def report(model: str, results: Sequence["StabilityResult"]) -> dict:
    """The JSON the CLI writes (and the app hands out): the ranking and every method's result."""
    return {"model": model, "ranking": rank_methods(results), "methods": {r.request.method: r.to_json() for r in results}}


def draw_rows(results: Sequence["StabilityResult"]) -> list[dict]:
    """The per-draw table of several methods (the CLI's ``.draws.csv``)."""
    return [row for r in results for row in r.rows]


def layer_table(results: Sequence["StabilityResult"]) -> list[dict]:
    """The per-layer table of several methods (the CLI's CSV)."""
    return [row for r in results for row in r.layer_rows()]


# ---------------------------------------------------------------- the run
@dataclass
class StabilityResult:
    """What :func:`stability` found. ``rows``: one per draw (JSON-able, as in the checkpoint);
    ``layers``: one per layer (:func:`layer_summary`, with its ``picture``); ``overall``: every layer
    together; ``metric``: :func:`mean_interval_t` of the draws' metric plus ``moves``; ``between``:
    flips between draws; ``fragile``: :func:`pruning.analysis.flips.fragile_items` against the dense model."""

    request: PruneRequest
    kind: str
    rows: list[dict]
    layers: list[dict]
    overall: dict
    metric: dict
    between: dict
    fragile: list[dict]
    dense: dict | None
    verdict: str
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def layer_rows(self) -> list[dict]:
        """The per-layer table (no picture or histogram), for CSV."""
        return [{"method": self.request.method, **{k: v for k, v in r.items() if k not in ("picture", "histogram")}} for r in self.layers]

    def to_json(self) -> dict:
        return {
            "request": self.request.describe(),
            "kind": self.kind,
            "kind_text": DRAW_KINDS[self.kind],
            "verdict": self.verdict,
            "overall": self.overall,
            "metric": self.metric,
            "between_draws": self.between,
            "dense": self.dense,
            "draws": self.rows,
            "layers": _plain(self.layers),
            "fragile": self.fragile,
            "seconds": self.seconds,
            **self.info,
        }


class DrawStore:
    """The packed masks and answers of each finished draw, one ``.npz`` file per draw in ``folder``."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, index: int) -> Path:
        return self.folder / f"draw-{index:03d}.npz"

    def save(self, index: int, packed: Mapping[str, np.ndarray], shapes: Mapping[str, Sequence[int]], arrays: Mapping[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {f"mask/{n}": b for n, b in packed.items()}
        payload.update({f"shape/{n}": np.asarray(s, dtype=np.int64) for n, s in shapes.items()})
        payload.update({f"array/{k}": np.asarray(v) for k, v in arrays.items()})
        with atomic_file(self.path(index)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **payload)

    def load(self, index: int):
        """``(packed, shapes, arrays)`` of a draw, or None when its file is missing or damaged."""
        try:
            with np.load(self.path(index)) as z:
                packed = {k[5:]: z[k] for k in z.files if k.startswith("mask/")}
                shapes = {k[6:]: tuple(int(x) for x in z[k]) for k in z.files if k.startswith("shape/")}
                arrays = {k[6:]: z[k] for k in z.files if k.startswith("array/")}
        except (OSError, ValueError, KeyError, EOFError):
            return None
        return packed, shapes, arrays

    def remove(self) -> None:
        if self.folder.exists():
            for p in self.folder.iterdir():  # the draws, and a temporary file a killed run left
                if p.is_file():
                    p.unlink(missing_ok=True)
            try:
                self.folder.rmdir()
            except OSError:
                pass


def _plan_items(plan) -> int:
    """How many items (examples or windows) an evaluation plan scores."""
    key = "order" if plan.metric == "accuracy" else "input_ids"
    return sum(int(b[key].shape[0]) for b in plan.batches)


def _metric_columns(ev: dict) -> dict:
    return {k: ev[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}


def _per_item(ev: dict) -> dict[str, np.ndarray]:
    return {f"item_{k}": np.asarray(v) for k, v in ev["per_item"].items() if k not in ("answer", "gold")}


def _restore_evaluation(row: dict, arrays: Mapping[str, np.ndarray]) -> dict:
    ev = {k: row[k] for k in ("metric", "value", "ci_low", "ci_high", "n")}
    ev["per_item"] = {k[5:]: arrays[k] for k in arrays if k.startswith("item_")}
    if ev["metric"] == "accuracy":
        ev["per_item"]["correct"] = ev["per_item"]["correct"].astype(bool)
    return ev


def _resumed_draws(ckpt, store, request: PruneRequest, kind: str) -> tuple[dict, dict]:
    """The draws a checkpoint holds for this method and kind whose masks and answers are in ``store``:
    ``({draw: row}, {draw: (packed masks, shapes, arrays)})``."""
    rows = {}
    for row in ([] if ckpt is None else ckpt.rows()):
        if row.get("method") == request.method and row.get("kind") == kind and isinstance(row.get("draw"), int):
            rows[row["draw"]] = row
    saved = {i: store.load(i) for i in rows} if store is not None else {}
    return {i: r for i, r in rows.items() if saved.get(i) is not None}, saved


def _requests_of_draws(loaded, request: PruneRequest, draws: int, kind: str, data):
    """The calibration draws (None for a method without calibration) and the request of each draw."""
    cal = calibration_draws(loaded, request, draws, kind, source=data) if request.method_info.needs_calibration else None
    if cal is not None:
        return cal, draw_requests(request, cal)
    # no calibration to draw: only a seed can change the mask
    return None, [request.replace(seed=draw_seed(request.seed, r)) if kind == "seed" and r else request for r in range(draws)]


def _one_draw(loaded, request: PruneRequest, req: PruneRequest, r: int, kind: str, cal, data, plan, dense, progress):
    """Prune and evaluate draw ``r``: its row, packed masks, mask shapes, evaluation and answers."""
    result = prune(loaded, req, calibration=None if cal is None else cal[r].batches, data=data, progress=progress)
    pred = predict(loaded, data, result.overrides(loaded), plan=plan, progress=progress)
    ev = pred.evaluation
    row = {
        "method": request.method,
        "kind": kind,
        "draw": r,
        "seed": req.seed,
        "sparsity": round(request.sparsity, 6),
        "overall_sparsity": round(result.overall_sparsity, 6),
        **_metric_columns(ev),
    }
    diff = paired_difference(dense.evaluation, ev)
    row.update({k: diff[k] for k in ("drop", "drop_ci_low", "drop_ci_high")})
    f = compare(dense, pred)
    row.update({k: f[k] for k in ("flips", "flips_ci_low", "flips_ci_high", "flipped", "items", "to_wrong", "to_right", "wrong_to_wrong")})
    if cal is not None and cal[r].sources:
        row["calibration_first"] = int(cal[r].sources[0])
    row["seconds"] = round(result.seconds, 3)
    packed = {n: pack(m) for n, m in result.masks.items()}
    shapes = {n: tuple(m.shape) for n, m in result.masks.items()}
    return row, packed, shapes, ev, pred.answers


def _metric_across_draws(rows: list[dict], evaluations: list[dict]) -> dict:
    """The draws' mean metric with its t interval, and how many pairs of draws differ beyond noise."""
    metric = mean_interval_t([r["value"] for r in rows])
    pairs = [
        not paired_difference(evaluations[i], evaluations[j])["within_noise"]
        for i in range(len(evaluations))
        for j in range(i + 1, len(evaluations))
    ]
    metric.update(moves=any(pairs), pairs_beyond_noise=int(sum(pairs)), pairs=len(pairs))
    return metric


def _flips_between_draws(answers: list[np.ndarray]) -> dict:
    """The share of answers that differ between two draws: mean, spread, and every pair."""
    between_pairs = pairwise_flips(answers)
    shares = np.array([p["flips"] for p in between_pairs])
    return {
        "flips_mean": float(shares.mean()),
        "flips_sd": float(shares.std(ddof=1)) if shares.size > 1 else 0.0,
        "flips_min": float(shares.min()),
        "flips_max": float(shares.max()),
        "pairs": [{k: p[k] for k in ("a", "b", "flips", "flips_ci_low", "flips_ci_high", "flipped", "items")} for p in between_pairs],
    }


@dataclass
class _Draws:
    """What the draws gave, in draw order: each layer's packed masks (and shape), answers, evaluations and rows."""

    packed: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    answers: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)
    rows: list = field(default_factory=list)

    def add(self, row: dict, packed, shapes_r, ev, answer) -> None:
        for n, bits in packed.items():
            self.packed.setdefault(n, []).append(bits)
            self.shapes[n] = tuple(shapes_r[n])
        self.answers.append(np.asarray(answer))
        self.evaluations.append(ev)
        self.rows.append(row)

    def summed_up(self, request, kind: str, dense, tokenizer, fragile_top: int, start: float, resumed: int) -> "StabilityResult":
        """The masks' agreement by layer and overall, the metric across draws, the flips and the verdict (``start``:
        when the run began, by ``time.perf_counter``; ``resumed``: how many draws came from a checkpoint)."""
        layers = [layer_summary(n, self.packed[n], self.shapes[n])[0] for n in self.packed]
        overall = overall_summary(layers, self.packed)
        metric = _metric_across_draws(self.rows, self.evaluations)
        return StabilityResult(
            request=request,
            kind=kind,
            rows=self.rows,
            layers=layers,
            overall=overall,
            metric=metric,
            between=_flips_between_draws(self.answers),
            fragile=fragile_items(dense, self.answers, tokenizer, top=fragile_top),
            dense=summary(dense.evaluation),
            verdict=verdict(overall["jaccard"], metric["moves"]),
            seconds=time.perf_counter() - start,
            info={"draws_resumed": resumed, "needs_calibration": request.method_info.needs_calibration},
        )


def _checkpoint_and_store(checkpoint, store):
    """The checkpoint (or ``None``) and where the draws' masks and answers go (default: beside the checkpoint)."""
    ckpt = as_checkpoint(checkpoint)
    if store is None and ckpt is not None:
        store = ckpt.path.with_suffix(".draws")
    return ckpt, DrawStore(store) if store is not None and not isinstance(store, DrawStore) else store


def _dense_on_plan(loaded, data, plan, dense):
    """The dense model's predictions on the plan's items: ``dense`` when given (checked to be on them), else made."""
    if dense is None:
        return predict(loaded, data, None, plan=plan)
    if dense.metric != plan.metric or dense.evaluation["n"] != _plan_items(plan):
        raise PruneScopeError("the dense predictions given were made on other items than this evaluation's")
    return dense


def _keep_draw(ckpt, store, r: int, row: dict, packed, shapes_r, ev, answer) -> None:
    """A finished draw saved for a rerun: its masks and answers in the store, its row in the checkpoint."""
    if store is not None:
        store.save(r, packed, shapes_r, {"answers": answer, **_per_item(ev)})
    if ckpt is not None:
        ckpt.append(row)


def stability(
    loaded,
    request: PruneRequest,
    draws: int = DEFAULT_DRAWS,
    kind: str = "calib",
    data=None,
    max_examples: int | None = None,
    split: str = "test",
    progress: Callable[[int, int, str], None] | None = None,
    on_draw: Callable[[dict], None] | None = None,
    checkpoint=None,
    store: DrawStore | str | Path | None = None,
    fragile_top: int = 20,
    dense=None,
) -> StabilityResult:
    """Prune ``request`` once per draw (:func:`calibration_draws`), evaluate each pruned model against
    the dense one on the same items, and sum up how much the masks and the answers depend on the draw.

    ``on_draw(row)`` sees each draw's row as it finishes. With ``checkpoint`` (a
    :class:`pruning.store.checkpoint.Checkpoint` or a path) every finished draw is appended to it and its
    masks and answers saved in ``store`` (default: a ``.draws`` folder beside the checkpoint); a rerun
    with the same checkpoint skips the draws it finds there (a draw whose file is missing is computed
    again) and gives the same rows. ``dense`` (:func:`pruning.analysis.flips.predict` of the dense model on the
    same data, ``max_examples`` and ``split``) saves its evaluation when several methods are compared.
    """
    draws, kind = check_draws(draws), check_kind(kind)
    ckpt, store = _checkpoint_and_store(checkpoint, store)
    start = time.perf_counter()
    done_rows, saved = _resumed_draws(ckpt, store, request, kind)
    total = draws + 2
    report = progress or (lambda *a: None)
    report(0, total, "calibration draws")
    cal, reqs = _requests_of_draws(loaded, request, draws, kind, data)
    plan = evaluation_plan(loaded, data, max_examples, split)
    report(1, total, "dense model")
    dense = _dense_on_plan(loaded, data, plan, dense)
    got = _Draws()
    for r in range(draws):
        if r in done_rows:
            row, (packed, shapes_r, arrays) = done_rows[r], saved[r]
            ev, answer = _restore_evaluation(row, arrays), arrays["answers"]
        else:
            def sub(done, all_, message, r=r):  # the engine reports often: Stop reaches inside a draw
                report(1 + r, total, f"draw {r + 1}/{draws}: {message}")

            row, packed, shapes_r, ev, answer = _one_draw(loaded, request, reqs[r], r, kind, cal, data, plan, dense, sub)
            _keep_draw(ckpt, store, r, row, packed, shapes_r, ev, answer)
        got.add(row, packed, shapes_r, ev, answer)
        if on_draw is not None:
            on_draw(row)
    report(draws + 1, total, "summing up")
    result = got.summed_up(request, kind, dense, loaded.tokenizer, fragile_top, start, len(done_rows))
    report(total, total, "done")
    return result
