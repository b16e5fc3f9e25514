"""Training that resumes (pruning/store/resume.py): a run killed mid-way and run again ends exactly where an
uninterrupted run ends; a damaged checkpoint is skipped for the previous one; other settings are refused."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pruning.errors import PruneScopeError
from pruning.prune import prune
from pruning.request import PruneRequest
from pruning.store.resume import StopRequest, TrainingCheckpoint, TrainingStopped

WORKER = Path(__file__).resolve().parent / "resume_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONHASHSEED": "0"}


def _worker(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _run(*args: str) -> str:
    proc = _worker(*args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def _saved_step(path: Path) -> int | None:
    """The step a checkpoint file holds (None while there is none, or while it is being replaced)."""
    try:
        return int(torch.load(path, weights_only=True)["done"])
    except Exception:
        return None


def _assert_same(a_path: Path, b_path: Path) -> None:
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a["info"] == b["info"]  # the whole history: losses, metrics, samples, histograms (JSON text)
    for key in ("masks", "weights", "other"):
        assert (a[key] is None) == (b[key] is None)
        if a[key] is None:
            continue
        assert sorted(a[key]) == sorted(b[key]) and a[key]
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


@pytest.mark.parametrize("method", ["mgpp", "gmp"])
def test_a_run_killed_mid_way_resumes_to_the_same_weights_masks_and_history(tmp_path, method):
    whole = tmp_path / "whole.pt"
    _run("--method", method, "--checkpoint", str(tmp_path / "whole.ckpt"), "--result", str(whole))

    ckpt, pieces = tmp_path / "pieces.ckpt", tmp_path / "pieces.pt"
    proc = _worker("--method", method, "--checkpoint", str(ckpt), "--result", str(pieces), "--every", "1", "--delay", "0.5")
    deadline = time.monotonic() + 240
    while (_saved_step(ckpt) or 0) < 3:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: no handler, no clean-up
    proc.wait()
    killed_at = _saved_step(ckpt)
    assert 3 <= killed_at < 8 and not pieces.exists()

    out = _run("--method", method, "--checkpoint", str(ckpt), "--result", str(pieces))
    assert f"resumed at step {killed_at} of 8" in out and f"resumed_at_step={killed_at}" in out
    _assert_same(whole, pieces)


# ---------------------------------------------------------------- in-process: a stop asked for by the entry point
def _request(method="gmp"):
    params = {"steps": 6, "t0": 1, "t1": 4, "interval": 1, "history_points": 3, "holdout": 16, "batch_size": 8}
    return PruneRequest.make(method, 0.8, "global", params=params, seed=0)


def test_a_stop_request_saves_then_stops_and_the_rerun_ends_like_an_uninterrupted_run(tiny_bert, tiny_sentiment, tmp_path):
    whole = prune(tiny_bert, _request(), data=tiny_sentiment)
    stop = StopRequest()
    notes = []

    def progress(done, total, message):
        if done == 2:
            stop.request("SIGTERM")  # what the entry point's signal handler does

    ckpt = TrainingCheckpoint(tmp_path / "run.ckpt", interval_s=None, stop=stop, note=notes.append)
    with pytest.raises(TrainingStopped) as stopped:
        prune(tiny_bert, _request(), data=tiny_sentiment, progress=progress, checkpoint=ckpt)
    assert (stopped.value.done, stopped.value.total, stopped.value.reason) == (2, 6, "SIGTERM")
    again = TrainingCheckpoint(tmp_path / "run.ckpt", interval_s=None, note=notes.append)
    resumed = prune(tiny_bert, _request(), data=tiny_sentiment, checkpoint=again)
    assert notes == [f"resumed at step 2 of 6 from {tmp_path / 'run.ckpt'}"]
    assert resumed.info["history"] == whole.info["history"] and resumed.info["resumed_at_step"] == 2
    for name in whole.masks:
        assert torch.equal(whole.masks[name], resumed.masks[name]) and torch.equal(whole.weights[name], resumed.weights[name])
    assert all(torch.equal(whole.other_params[k], resumed.other_params[k]) for k in whole.other_params)


def test_a_deadline_stops_the_run_before_it_is_reached(tiny_bert, tiny_sentiment, tmp_path):
    ckpt = TrainingCheckpoint(tmp_path / "run.ckpt", interval_s=None, stop=StopRequest(deadline=time.time() + 0.5))
    with pytest.raises(TrainingStopped) as stopped:
        prune(tiny_bert, _request(), data=tiny_sentiment, checkpoint=ckpt)
    assert "deadline" in stopped.value.reason
    assert torch.load(ckpt.path, weights_only=True)["done"] == stopped.value.done < 6


def test_a_checkpoint_cut_off_half_written_is_ignored_and_the_previous_one_used(tiny_bert, tiny_sentiment, tmp_path):
    whole = prune(tiny_bert, _request(), data=tiny_sentiment)
    ckpt = TrainingCheckpoint(tmp_path / "run.ckpt", every_steps=2, interval_s=None)
    prune(tiny_bert, _request(), data=tiny_sentiment, checkpoint=ckpt)
    # saved at steps 2, 4, 6: the current file holds step 6, the previous one step 4
    assert _saved_step(ckpt.path) == 6 and _saved_step(tmp_path / "run.prev.ckpt") == 4
    data = ckpt.path.read_bytes()
    ckpt.path.write_bytes(data[: len(data) // 2])  # cut off half-way, as a write stopped by a power cut leaves it
    warnings, notes = [], []
    again = TrainingCheckpoint(ckpt.path, every_steps=2, interval_s=None, warn=warnings.append, note=notes.append)
    resumed = prune(tiny_bert, _request(), data=tiny_sentiment, checkpoint=again)
    assert len(warnings) == 1 and warnings[0].startswith(f"{ckpt.path} cannot be read") and "trying the previous checkpoint" in warnings[0]
    assert notes == [f"resumed at step 4 of 6 from {tmp_path / 'run.prev.ckpt'}"]
    assert resumed.info["history"] == whole.info["history"]
    assert all(torch.equal(whole.weights[n], resumed.weights[n]) for n in whole.weights)


def test_changed_settings_are_refused_naming_the_setting(tiny_bert, tiny_sentiment, tmp_path):
    stop = StopRequest()
    stop.request("a test")
    with pytest.raises(TrainingStopped):
        prune(tiny_bert, _request("mgpp"), data=tiny_sentiment, checkpoint=TrainingCheckpoint(tmp_path / "run.ckpt", stop=stop))
    changed = _request("mgpp").replace(params={**dict(_request("mgpp").params), "lr": 1e-3})
    with pytest.raises(PruneScopeError, match=r"method parameter lr \(--param\) = 5e-05, this run has 0.001"):
        prune(tiny_bert, changed, data=tiny_sentiment, checkpoint=TrainingCheckpoint(tmp_path / "run.ckpt"))
    with pytest.raises(PruneScopeError, match="--sparsity = 0.8, this run has 0.7"):
        prune(tiny_bert, _request("mgpp").replace(sparsity=0.7), data=tiny_sentiment, checkpoint=TrainingCheckpoint(tmp_path / "run.ckpt"))
    with pytest.raises(PruneScopeError, match="the task data"):
        other = type(tiny_sentiment)("tiny-sentiment", {"train": (tiny_sentiment.splits["train"][0][::-1], tiny_sentiment.splits["train"][1][::-1])}, tiny_sentiment.label_names)
        prune(tiny_bert, _request("mgpp"), data=other, checkpoint=TrainingCheckpoint(tmp_path / "run.ckpt"))
    assert _saved_step(tmp_path / "run.ckpt") == 1  # refused before any step: the checkpoint is untouched


def test_the_checkpoint_holds_plain_data_only(tiny_bert, tiny_sentiment, tmp_path):
    ckpt = TrainingCheckpoint(tmp_path / "run.ckpt", every_steps=3, interval_s=None)
    prune(tiny_bert, _request("mgpp"), data=tiny_sentiment, checkpoint=ckpt)
    saved = torch.load(ckpt.path, weights_only=True)  # would raise on any pickled object
    header = json.loads(saved["header"])
    assert saved["done"] == saved["total"] == 6 and header["method"] == "mgpp" and header["params.steps"] == 6
    ckpt.remove()
    assert not list(tmp_path.iterdir())


def test_settings_are_read_from_the_request_not_listed_by_hand(tiny_bert, tiny_sentiment, tmp_path):
    """Every field of the request and every method parameter is part of the header."""
    import dataclasses

    from pruning.store.resume import training_header

    request = _request("mgpp")
    header = training_header(tiny_bert, request, ["a"], tiny_sentiment)
    fields = {f.name for f in dataclasses.fields(request)} - {"params"}
    assert fields <= set(header) and {f"params.{k}" for k, _ in request.params} <= set(header)
    other = training_header(tiny_bert, request.replace(params={**dict(request.params), "v0": 1e-8}), ["a"], tiny_sentiment)
    assert [k for k in header if header[k] != other[k]] == ["params.v0"]


# ---------------------------------------------------------------- the CLI: a real SIGTERM, then the same command again
def _cli_args(folder, data, out, *extra):
    args = ["prune", "--model", str(folder), "--method", "mgpp", "--sparsity", "0.7", "--dataset", str(data), "--out", str(out), "--no-model"]
    for p in ("steps=6", "t0=1", "t1=4", "interval=1", "history_points=3", "holdout=8", "batch_size=4"):
        args += ["--param", p]
    return args + list(extra)


@pytest.fixture
def split_data(tmp_path, tiny_csv):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.csv", "test.csv"):
        (data / name).write_text(tiny_csv.read_text())
    return data


def _sigterm_at_step_2(monkeypatch):
    """Make the CLI's progress lines send the process a real SIGTERM after step 2 (as `kill` from a shell would)."""
    from pruning import cli

    lines = cli._eta_lines

    def eta_lines(what, every=30.0):
        update = lines(what, every)

        def progress(done, total, message):
            update(done, total, message)
            if done == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        return progress

    monkeypatch.setattr(cli, "_eta_lines", eta_lines)
    return lambda: monkeypatch.setattr(cli, "_eta_lines", lines)


def test_cli_prune_stops_at_a_checkpoint_on_sigterm_and_the_same_command_resumes(tmp_path, tiny_folder, split_data, monkeypatch, capsys):
    from pruning import cli
    from pruning.store.io import load_masks, read_report

    assert cli.main(_cli_args(tiny_folder, split_data, tmp_path / "whole")) == 0
    assert "mgpp: step 6/6" in capsys.readouterr().err  # progress lines (with the time left while there is some)

    undo = _sigterm_at_step_2(monkeypatch)
    out = tmp_path / "pieces"
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(_cli_args(tiny_folder, split_data, out)) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped at step 2 of 6 (SIGTERM)" in err and "run the same command again" in err
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI put the handler back
    assert not out.exists() and (tmp_path / "pieces.ckpt").exists()
    undo()
    assert cli.main(_cli_args(tiny_folder, split_data, out)) == 0
    assert "note: resumed at step 2 of 6" in capsys.readouterr().err
    assert not (tmp_path / "pieces.ckpt").exists()  # removed once the run folder is in place
    a, b = load_masks(tmp_path / "whole" / "masks.safetensors"), load_masks(out / "masks.safetensors")
    assert sorted(a) == sorted(b) and all(torch.equal(a[n], b[n]) for n in a)
    assert read_report(tmp_path / "whole" / "report.json")["history"] == read_report(out / "report.json")["history"]


def test_cli_refuses_a_checkpoint_of_other_settings_and_overwrite_starts_again(tmp_path, tiny_folder, split_data, monkeypatch, capsys):
    from pruning import cli

    out = tmp_path / "run"
    undo = _sigterm_at_step_2(monkeypatch)
    assert cli.main(_cli_args(tiny_folder, split_data, out, "--seed", "1")) == 128 + signal.SIGTERM
    undo()
    capsys.readouterr()
    assert cli.main(_cli_args(tiny_folder, split_data, out)) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and error[0].startswith("error: cannot resume from") and "--seed = 1, this run has 0" in error[0]
    assert cli.main(_cli_args(tiny_folder, split_data, out, "--overwrite")) == 0
    assert "resumed" not in capsys.readouterr().err and not (tmp_path / "run.ckpt").exists()
    assert cli.main(_cli_args(tiny_folder, split_data, tmp_path / "x", "--checkpoint-every", "0")) == 2


# ---------------------------------------------------------------- other trained methods, stopped and resumed at several points
def _in_pieces(loaded, request, stops, path, **kwargs):
    """Run ``request`` stopping at each unit in ``stops`` in turn (a checkpoint every unit), resuming each time."""
    notes, stopped = [], []
    for at in stops:
        stop = StopRequest()

        def progress(done, total, message, at=at, stop=stop):
            if done >= at:
                stop.request(f"a test, at {at}")

        ckpt = TrainingCheckpoint(path, every_steps=1, interval_s=None, stop=stop, note=notes.append)
        with pytest.raises(TrainingStopped) as info:
            prune(loaded, request, progress=progress, checkpoint=ckpt, **kwargs)
        stopped.append(info.value.done)
    result = prune(loaded, request, checkpoint=TrainingCheckpoint(path, every_steps=1, interval_s=None, note=notes.append), **kwargs)
    return result, stopped, notes


def _same_result(a, b, keys=("history",)):
    assert sorted(a.masks) == sorted(b.masks)
    for n in a.masks:
        assert torch.equal(a.masks[n], b.masks[n]) and torch.equal(a.weights[n], b.weights[n]), n
    assert sorted(getattr(a, "other_params", {})) == sorted(getattr(b, "other_params", {}))
    for k, v in getattr(a, "other_params", {}).items():
        assert torch.equal(v, b.other_params[k]), k
    for key in keys:
        assert json.dumps(a.info[key], sort_keys=True, default=str) == json.dumps(b.info[key], sort_keys=True, default=str), key


def test_randomized_selection_resumes_inside_candidates_and_the_winners_fine_tuning(tiny_bert, tiny_sentiment, tmp_path):
    params = {"k": 2, "selection": "early", "steps": 3, "eval_every": 1, "final_steps": 3, "stages": 2, "holdout": 16,
              "batch_size": 8, "distill": 0.5}
    request = PruneRequest.make("randomized", 0.75, "layer", params=params, seed=0)
    whole = prune(tiny_bert, request, data=tiny_sentiment)
    # units per stage: 2 + 1 candidates scored, 2 x 3 early steps, 3 winner steps = 12. Stops: inside candidate 1,
    # at its end, inside candidate 2 (a best one kept), in the winner's fine-tuning, inside stage 2
    resumed, stopped, notes = _in_pieces(tiny_bert, request, [5, 6, 8, 11, 17], tmp_path / "r.ckpt", data=tiny_sentiment)
    assert stopped == [5, 6, 8, 11, 17]
    assert [n.split(" from ")[0] for n in notes] == [f"resumed at step {k} of 24" for k in stopped]
    _same_result(whole, resumed, keys=("stages", "selection_scores", "chosen", "held_out_metric"))


def test_sds_resumes_inside_its_dense_steps_and_its_adjustments(tiny_llama, tiny_text, tmp_path):
    from pruning.loading.models import prunable_layers

    params = {"base": "wanda", "iters": 5, "adjust_iters": 3, "adjust_rule": "best", "lm_holdout": 1}
    request = PruneRequest.make("sds", 0.5, "2:4", params=params, seed=0, calib_samples=2, calib_len=32)
    whole = prune(tiny_llama, request, data=tiny_text)
    n = len(prunable_layers(tiny_llama.model))
    total = 2 * n + 4  # one-shot, statistics, a dense step per layer, one-shot, statistics, an adjustment per layer
    # stops: inside the dense steps, after the last one, inside the adjustments
    resumed, stopped, notes = _in_pieces(tiny_llama, request, [5, n + 2, n + 6], tmp_path / "s.ckpt", data=tiny_text)
    assert stopped == [5, n + 2, n + 6]
    assert [x.split(" from ")[0] for x in notes] == [f"resumed at step {k} of {total}" for k in stopped]
    _same_result(whole, resumed, keys=("steps", "layers"))


def test_the_minilm_rt_fine_tune_resumes_across_an_epoch_boundary(tmp_path):
    """The embedded classifier's one-time fine-tune (two epochs of 3 batches here) stopped after steps 2
    and 4 ends with the same weights and losses as one uninterrupted run."""
    from pruning.embedded import minilm_rt as finetune
    from pruning.loading.data import rotten_tomatoes_splits

    texts, labels = (part[:24] for part in rotten_tomatoes_splits().splits["train"])
    recipe = {**finetune.RECIPE, "batch_size": 8, "epochs": 2}

    tokenizer, start = finetune._base_classifier(recipe)
    encoded = tokenizer(texts, truncation=True, max_length=recipe["max_length"], return_attention_mask=False)["input_ids"]

    def train(checkpoint=None, stop_at=None):
        model = copy.deepcopy(start)  # the same fresh head and dropout generator every time
        progress = None if stop_at is None else (lambda done, total, message: done >= stop_at and checkpoint.stop.request("test"))
        if checkpoint is not None:
            checkpoint.bind({**{f"recipe.{k}": v for k, v in recipe.items()}, "texts": texts})
        steps, losses = finetune._fit(model, tokenizer, encoded, labels, recipe, None, progress, checkpoint)
        return steps, losses, {n: p.detach().clone() for n, p in model.named_parameters()}

    steps, losses, whole = train()
    assert steps == 6
    notes = []
    for at in (2, 4):
        ckpt = TrainingCheckpoint(tmp_path / "ft.ckpt", every_steps=1, interval_s=None, stop=StopRequest(), note=notes.append)
        with pytest.raises(TrainingStopped):
            train(ckpt, at)
    steps2, losses2, pieces = train(TrainingCheckpoint(tmp_path / "ft.ckpt", interval_s=None, note=notes.append))
    assert [n.split(" from ")[0] for n in notes] == ["resumed at step 2 of 6", "resumed at step 4 of 6"]
    assert (steps2, losses2) == (steps, losses)
    assert all(torch.equal(whole[n], pieces[n]) for n in whole)
