"""The claims bench (bench/bench_claims.py): its points, settings and the report it builds from raw per-item files."""

import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_claims as B  # noqa: E402


def _write(folder: Path, name: str, **fields) -> None:
    record = {"point": name, "wall_s": 125.0, "seed": int(name.rsplit(".s", 1)[-1]) if ".s" in name else 0, **fields}
    B.write_json_atomic(folder / f"{name}.json", record)


def test_every_row_of_the_issue_is_a_point_with_a_unique_name():
    points = B.all_points()
    names = [p.name for p in points]
    assert len(names) == len(set(names))
    # SDS: dense + {sparsegpt, wanda} x {2:4, 50%} x {one-shot, SDS}; MGPP: 2 methods x 2 sparsities x 3 seeds;
    # randomized: 2 methods x 3 seeds; plus the dense minilm-rt reference
    assert sum(p.claim == "sds" for p in points) == 9
    assert sum(p.claim == "mgpp" and p.method != "dense" for p in points) == 12
    assert sum(p.claim == "randomized" for p in points) == 6
    assert {p.sparsity for p in points if p.claim == "mgpp" and p.method != "dense"} == {0.8, 0.9}


def test_settings_scale_the_papers_budgets_to_minilm_rt():
    mgpp = B.mgpp_settings(False)
    # 9,990 training snippets at batch 32 -> 312 steps an epoch; 6 epochs
    assert (mgpp["steps"], mgpp["batch_size"]) == (1872, 32)
    # the paper's t0 = 1000 of 6 x 67,349 / 32 = 12,628 steps -> the same fraction of 1,872
    assert mgpp["t0"] == round(1872 * 1000 / 12628) == 148
    rnd = B.randomized_settings(False)
    assert rnd["k"] * rnd["steps"] + rnd["final_steps"] == 8 * 39 + 312
    assert rnd["schedule"] == "0.54,0.83,0.92,0.9375"
    sds = B.sds_settings(False)
    assert sds["calib_samples"] * sds["calib_len"] == 128 * 512 and sds["iters"] == 200 and sds["eval_windows"] >= 100


def test_report_computes_intervals_from_the_raw_items(tmp_path):
    out = tmp_path / "claims"
    acc = {"metric": "accuracy"}
    _write(out, "mgpp.gmp.80.s0", **acc, value=0.5, correct=[1, 1, 0, 0])
    _write(out, "mgpp.mgpp.80.s0", **acc, value=0.75, correct=[1, 1, 1, 0])
    ppl = {"metric": "perplexity", "window_tokens": [511, 511]}
    _write(out, "sds.sparsegpt.2-4.oneshot.s0", **ppl, value=20.0, window_mean_nll=[math.log(20.0)] * 2)
    _write(out, "sds.sparsegpt.2-4.sds.s0", **ppl, value=10.0, window_mean_nll=[math.log(10.0)] * 2)
    text = B.write_report(out).read_text()
    # Wilson 95% interval of 2/4: centre 0.5, half-width 1.96 sqrt(1/16 + 1.96^2/64) / (1 + 1.96^2/4) = 0.3500
    assert "| 80% | 0 | 0.5000 [0.1500, 0.8500] | 0.7500 [0.3006, 0.9544] | +0.2500 [" in text
    # every window has the same NLL, so every bootstrap resample gives the same perplexity
    assert "| sparsegpt | 2:4 | 20.00 [20.00, 20.00] | 10.00 [10.00, 10.00] | -10.00 [-10.00, -10.00] |" in text
    assert "| wanda | 2:4 | not measured | not measured | - |" in text
    assert "| 80% | mean of 1 | | | +0.2500" in text


def test_point_files_are_written_whole(tmp_path):
    B.write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary sibling left behind


def test_stop_at_is_the_next_time_the_clock_reads_it():
    import datetime

    now = datetime.datetime(2026, 12, 3, 14, 0, 30)
    assert B.next_clock_time("15:25", now) == datetime.datetime(2026, 12, 3, 15, 25).timestamp()
    assert B.next_clock_time("07:30", now) == datetime.datetime(2026, 12, 4, 7, 30).timestamp()  # passed today: tomorrow


def _args(tmp_path, stop):
    import argparse

    return argparse.Namespace(out=str(tmp_path), wikitext=str(tmp_path / "none"), no_start_after=None, stop=stop, tiny=True)


def test_a_point_stopped_at_its_checkpoint_ends_the_run_cleanly(tmp_path, monkeypatch, capsys):
    from pruning.store.resume import StopRequest, TrainingStopped

    started = []

    def stopped_point(pt, args, models):
        started.append(pt.name)
        raise TrainingStopped(5, 12, tmp_path / f"{pt.name}.ckpt", "the deadline 07:30 is near")

    monkeypatch.setattr(B, "run_point", stopped_point)
    points = [p for p in B.all_points() if p.claim == "mgpp"][:3]
    assert B.run_all(points, _args(tmp_path, StopRequest()), {}) == 0  # a deadline: status 0
    assert started == [points[0].name]  # the points after it are not started
    assert f"{points[0].name}: stopped at step 5 of 12 (the deadline 07:30 is near)" in capsys.readouterr().out
    by_signal = StopRequest()
    by_signal.signum = 15
    assert B.run_all(points, _args(tmp_path, by_signal), {}) == 128 + 15
    past = StopRequest(deadline=0.0)
    assert B.run_all(points, _args(tmp_path, past), {}) == 0 and len(started) == 2
    assert "not starting" in capsys.readouterr().out


def test_the_staged_magnitude_baseline_resumes_to_the_same_weights(tiny_bert, tiny_sentiment, tmp_path):
    import pytest
    import torch

    from pruning.store.resume import StopRequest, TrainingCheckpoint, TrainingStopped

    pt = B.Point("randomized.magnitude.s0", "randomized", "magnitude", 0.9375, "layer", 0)
    st = {**B.randomized_settings(True), "holdout": 16}  # 4 stages of 2 x 2 + 2 = 6 steps
    quiet = lambda *a: None  # noqa: E731
    whole = B.staged_magnitude(tiny_bert, tiny_sentiment, pt, st, quiet)
    notes = []
    for at in (4, 6, 15):  # inside stage 1, at its end, inside stage 3
        stop = StopRequest()
        ckpt = TrainingCheckpoint(tmp_path / "p.ckpt", every_steps=1, interval_s=None, stop=stop, note=notes.append)
        with pytest.raises(TrainingStopped) as stopped:
            B.staged_magnitude(tiny_bert, tiny_sentiment, pt, st, lambda d, t, m, at=at, stop=stop: d >= at and stop.request("test"), ckpt)
        assert stopped.value.done == at
    ckpt = TrainingCheckpoint(tmp_path / "p.ckpt", every_steps=1, interval_s=None, note=notes.append)
    resumed = B.staged_magnitude(tiny_bert, tiny_sentiment, pt, st, quiet, ckpt)
    assert [n.split(" from ")[0] for n in notes] == ["resumed at step 4 of 24", "resumed at step 6 of 24", "resumed at step 15 of 24"]
    assert all(torch.equal(whole.masks[n], resumed.masks[n]) and torch.equal(whole.weights[n], resumed.weights[n]) for n in whole.masks)
    assert all(torch.equal(v, resumed.other_params[k]) for k, v in whole.other_params.items())
    with pytest.raises(Exception, match="method parameter lr"):
        B.staged_magnitude(tiny_bert, tiny_sentiment, pt, {**st, "lr": 1e-3}, quiet, TrainingCheckpoint(tmp_path / "p.ckpt"))


def test_the_status_file_says_which_points_are_done_stopped_or_to_do(tmp_path, monkeypatch):
    points = [p for p in B.all_points() if p.claim == "mgpp"][:3]
    (tmp_path / f"{points[0].name}.json").write_text("{}")
    stopped = {points[1].name: (5, 12)}
    monkeypatch.setattr(B, "checkpoint_progress", lambda path: stopped.get(path.name[: -len(".ckpt")]))
    B.write_status(points, tmp_path, tmp_path)
    states = json.loads((tmp_path / "status.json").read_text())["points"]
    assert states == {points[0].name: {"state": "done"}, points[1].name: {"state": "stopped", "step": 5, "of": 12}, points[2].name: {"state": "to do"}}
    table = "\n".join(B.status_report(tmp_path))
    assert points[0].name not in table
    assert f"| {points[1].name} | stopped at step 5 of 12 (42%); resumes there |" in table
    assert f"| {points[2].name} | to do |" in table
