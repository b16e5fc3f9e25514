"""The engine on the real embedded default (minilm-rt), bounded to about a minute.

Numbers a reader can check with `python -m pruning prune --eval`: on the first
512 test sentences minilm-rt scores about 0.85 dense; Wanda at 50% per row
stays within a few points; random pruning at 50% falls far below it.
"""

import pytest

from pruning.masks import keep_count
from pruning.request import PruneRequest

R = PruneRequest.make

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm():
    from pruning.loading.data import calibration_batches, load_classification
    from pruning.embedded import load_model

    loaded = load_model("minilm-rt")
    return loaded, load_classification("rotten-tomatoes"), calibration_batches(loaded, None, n_samples=16, seed=0)


def test_minilm_rt_pruned_accuracy_ranges(minilm):
    from pruning.analysis.evaluate import evaluate
    from pruning.prune import prune

    loaded, data, calib = minilm
    dense = evaluate(loaded, data, None, max_examples=512)["value"]
    assert 0.78 <= dense <= 0.92
    wanda = prune(loaded, R("wanda", 0.5, "row"), calibration=calib)
    for name, mask in wanda.masks.items():
        assert (mask.sum(dim=1) == keep_count(mask.shape[1], 0.5)).all(), name
    acc_wanda = evaluate(loaded, data, wanda.overrides(loaded), max_examples=512)["value"]
    acc_random = evaluate(loaded, data, prune(loaded, R("random", 0.5)).overrides(loaded), max_examples=512)["value"]
    assert dense - 0.06 <= acc_wanda <= dense + 0.02
    assert acc_random < acc_wanda - 0.08
    assert 36 == len(wanda.masks)  # 6 blocks x (q, k, v, attention out, FFN in, FFN out)


def test_sds_lifts_wanda_at_2_4_on_minilm_rt(minilm):
    """bench/results/seeds-minilm.md: on the whole test split Wanda 2:4 scores 0.767 and SDS
    from it 0.808 (seed 0, 16 calibration sentences). Here: the first 512 test sentences, fewer
    iterations (about 20 s), and the claim that a reader can check: SDS beats its start."""
    from pruning.analysis.evaluate import evaluate
    from pruning.masks import is_nm_valid
    from pruning.prune import prune

    loaded, data, calib = minilm
    wanda = prune(loaded, R("wanda", 0.5, "2:4", seed=0), calibration=calib)
    # The bench figure above was measured with the best-iterate adjustment, which this test keeps. The
    # default is now the paper's rule (skip or keep-last), which at this small budget lifts Wanda far less
    # (0.785 -> 0.791 on these 512 sentences, within noise): bench/bench_choices.py compares the two.
    params = {"base": "wanda", "iters": 50, "adjust_iters": 10, "track_metric": False, "adjust_rule": "best"}
    sds = prune(loaded, R("sds", 0.5, "2:4", params=params, seed=0), calibration=calib)
    assert all(is_nm_valid(m, 2, 4) for m in sds.masks.values())
    acc_wanda = evaluate(loaded, data, wanda.overrides(loaded), max_examples=512)["value"]
    acc_sds = evaluate(loaded, data, sds.overrides(loaded), max_examples=512)["value"]
    assert acc_sds >= acc_wanda + 0.01, (acc_wanda, acc_sds)
    assert [s["stage"] for s in sds.info["steps"]] == ["dense", "sparse", "dense step", "sparse again"]
