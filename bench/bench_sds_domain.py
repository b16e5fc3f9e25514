"""Why SDS does not improve SparseGPT on SmolLM2 here: a diagnostic (figures quoted in docs/BENCHMARKS.md).

SparseGPT at 2:4 and SDS started from it, with the seed bench's settings (16 x 256 calibration
tokens of the Rotten Tomatoes plot texts, seed 0), evaluated twice: on 16 x 512 tokens of
WikiText-2 test (what the seed bench reports) and on 16 x 512 tokens of the plot texts' own
evaluation split (the calibration data's domain, disjoint from it). Also counts the layers
whose reconstruction error on the calibration inputs SDS lowered.

    python bench/bench_sds_domain.py        # about 6 minutes on 2 cores

Writes bench/results/sds-domain.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import machine  # noqa: E402
from bench_seeds import WIKITEXT, _commit  # noqa: E402
from pruning.loading.data import calibration_batches, load_lm_text  # noqa: E402
from pruning.analysis.evaluate import perplexity  # noqa: E402
from pruning.embedded import load_model  # noqa: E402
from pruning.prune import prune  # noqa: E402
from pruning.request import PruneRequest  # noqa: E402

R = PruneRequest.make


def main() -> None:
    started = time.perf_counter()
    loaded = load_model("smollm2-135m")
    texts = {"wikitext-2 test": load_lm_text(str(WIKITEXT)), "rt-plots eval split": load_lm_text("rt-plots")}
    calib = calibration_batches(loaded, "rt-plots", n_samples=16, seq_len=256, seed=0)

    def ppl(result):
        over = None if result is None else result.overrides(loaded)
        return {name: perplexity(loaded, t.eval_text, over, seq_len=512, max_windows=16) for name, t in texts.items()}

    out = {"machine": machine(), "commit": _commit(), "calibration": "16 x 256 tokens of rt-plots train text, seed 0", "eval": "16 x 512 tokens each"}
    out["dense"] = ppl(None)
    one = prune(loaded, R("sparsegpt", 0.5, "2:4", seed=0), calibration=calib)
    out["sparsegpt 2:4"] = ppl(one)
    sds = prune(loaded, R("sds", 0.5, "2:4", params={"base": "sparsegpt", "track_metric": False}, seed=0), calibration=calib)
    out["sds from sparsegpt 2:4"] = ppl(sds)
    layers = sds.info["layers"].values()
    out["layers"] = len(sds.info["layers"])
    out["layers where SDS's final error is below the first pruning's"] = sum(
        1 for v in layers if v["relative_error_final"] < v["relative_error_first_sparse"]
    )
    out["median relative reconstruction error, first pruning"] = statistics.median(v["relative_error_first_sparse"] for v in layers)
    out["median relative reconstruction error, SDS final"] = statistics.median(v["relative_error_final"] for v in layers)
    out["seconds"] = time.perf_counter() - started
    path = ROOT / "bench" / "results" / "sds-domain.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
