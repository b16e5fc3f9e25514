"""Training checkpoints: a trained method stopped mid-way goes on where it stopped, with the same result.

A :class:`TrainingCheckpoint` is handed to :func:`pruning.prune.prune` (``checkpoint=``) by an
entry point (the CLI's ``prune``, ``bench/bench_claims.py``). ``prune`` binds it to a header of
everything the result depends on, derived from the request (every field, every method
parameter), the model's weight fingerprint, the layers, the task data and the calibration
batches (:func:`training_header`). The method then

* calls :meth:`TrainingCheckpoint.resume` once at its start: ``None`` (start afresh) or the state
  it saved (a rerun with any header entry changed is refused, naming the setting);
* calls :meth:`TrainingCheckpoint.step` after every unit of work (a training step, a layer) with
  a function that builds its state; the state is saved when ``every_steps`` steps or
  ``interval_s`` seconds of wall time have passed since the last save, at the last step, and
  when the entry point asked it to stop (a signal, a deadline: :class:`StopRequest`); after a
  save for a stop it raises :class:`TrainingStopped`, which the entry point turns into a
  clean exit.

The state is plain data (tensors, dicts, lists, tuples, numbers, strings, None): it is saved
with ``torch.save`` and read with ``torch.load(weights_only=True)``, which unpickles nothing
else. A save goes to a temporary sibling, then the current file becomes the previous one
(``<name>.prev<suffix>``) and the temporary file the current one, so a kill at any moment
leaves at least one whole checkpoint; a file that cannot be read (cut off half-written) is
skipped with a warning and the previous one is used.

Resumed results are bitwise the same as uninterrupted ones on the CPU with the same number of
torch threads (every generator, the optimizer, the data order and the history are saved); with
another thread count the float sums may round differently, and the resume warns about it.
Engine code never installs signal handlers or reads the clock for deadlines itself: the entry
point owns the :class:`StopRequest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import PruneScopeError
from .checkpoint import setting_name as table_setting_name
from .integrity import weights_fingerprint

FORMAT = 1
DEFAULT_INTERVAL_S = 600.0  # a checkpoint every 10 minutes of wall time


class TrainingStopped(Exception):
    """A training saved its checkpoint and stopped because its entry point asked it to."""

    def __init__(self, done: int, total: int, path: Path, reason: str):
        self.done, self.total, self.path, self.reason = done, total, Path(path), reason
        super().__init__(f"stopped at step {done} of {total} ({reason}); checkpoint {path}")


class StopRequest:
    """Set by an entry point (a signal handler, a deadline) and read by the training between steps."""

    def __init__(self, deadline: float | None = None):
        self.reason: str | None = None
        self.deadline = deadline  # time.time() seconds, or None
        self.signum: int | None = None  # the signal that asked for the stop, if one did

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def due(self, margin_s: float = 0.0) -> str | None:
        """Why the training should stop now (None: go on); ``margin_s`` is the time a step and a save take."""
        if self.reason is not None:
            return self.reason
        if self.deadline is not None and time.time() + margin_s >= self.deadline:
            return "the deadline " + time.strftime("%H:%M", time.localtime(self.deadline)) + " is near"
        return None


# ---------------------------------------------------------------- what the result depends on
def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(f"{tuple(part.shape)}:{part.dtype}".encode())
            h.update(part.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def data_fingerprint(data) -> str | None:
    """A digest of the task data's content (classification splits, LM text), a name for anything else."""
    if data is None or isinstance(data, str):
        return data
    if hasattr(data, "splits"):
        return _digest(getattr(data, "name", ""), {k: [list(v[0]), list(v[1])] for k, v in data.splits.items()})
    if hasattr(data, "train_text"):
        return _digest(getattr(data, "name", ""), data.train_text, getattr(data, "eval_text", ""))
    return str(data)


def calibration_fingerprint(calibration) -> str | None:
    if calibration is None:
        return None
    return _digest(*(t for batch in calibration for _, t in sorted(batch.items()) if isinstance(t, torch.Tensor)))


def training_header(loaded, request, layers, data=None, calibration=None) -> dict:
    """Everything a trained result depends on: every field of ``request`` (method parameters as
    ``params.<name>``), the model and its weights, the layers, the task data and calibration."""
    header: dict = {"format": FORMAT, "model": getattr(loaded, "name", None), "weights": weights_fingerprint(loaded.model),
                    "device": getattr(getattr(loaded, "placement", None), "device", "cpu"),
                    "dtype": getattr(getattr(loaded, "placement", None), "dtype", "float32")}
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if f.name == "params":
            header.update({f"params.{k}": _plain(v) for k, v in value})
        else:
            header[f.name] = _plain(value)
    header["layers"] = _digest(list(layers))
    header["data"] = data_fingerprint(data)
    header["calibration"] = calibration_fingerprint(calibration)
    return header


def _plain(value):
    """``value`` as JSON would give it back (tuples as lists, objects as their text)."""
    return json.loads(json.dumps(value, default=str))


def setting_name(key: str) -> str:
    """How a header entry is called in a message (the CLI flag where there is one)."""
    if key.startswith("params."):
        return f"method parameter {key[len('params.'):]} (--param)"
    flags = {"sparsity": "--sparsity", "granularity": "--granularity", "calib_samples": "--calib", "layers": "the layers (--include/--exclude)",
             "data": "the task data (--dataset)", "calibration": "the calibration batches", "format": "checkpoint format"}
    return flags.get(key) or table_setting_name(key)  # the rest named as sweep's checkpoints name them (--seed, ...)


# ---------------------------------------------------------------- the checkpoint file
class TrainingCheckpoint:
    """One training's checkpoint file (see the module text).

    ``every_steps``: also save every this many steps (None: by wall time only); ``interval_s``:
    save when this much wall time passed since the last save; ``stop``: the entry point's
    :class:`StopRequest`; ``warn`` and ``note`` receive one-line messages (a damaged file, a
    resume); ``overwrite``: ignore and replace what is there.
    """

    def __init__(
        self,
        path,
        every_steps: int | None = None,
        interval_s: float | None = DEFAULT_INTERVAL_S,
        stop: StopRequest | None = None,
        warn: Callable[[str], None] | None = None,
        note: Callable[[str], None] | None = None,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.every_steps = int(every_steps) if every_steps else None
        self.interval_s = interval_s
        self.stop = stop
        self.warn = warn or (lambda message: None)
        self.note = note or (lambda message: None)
        self.overwrite = overwrite
        self.header: dict | None = None
        self.resumed_at: int | None = None
        self.saved_at: int | None = None
        self.elapsed_before = 0.0  # seconds the interrupted runs spent
        self._started = time.monotonic()
        self._last_save = time.monotonic()
        self._last_step: float | None = None
        self._step_s = 0.0
        self._save_s = 0.0

    @property
    def previous(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.prev{self.path.suffix or '.ckpt'}")

    def bind(self, header: dict) -> None:
        """What the result depends on (set by :func:`pruning.prune.prune` from the request)."""
        self.header = _plain(header)

    # ------------------------------------------------------------ reading
    def resume(self) -> dict | None:
        """The saved state of this same run (None: start afresh); a run with other settings is refused."""
        if self.overwrite:
            self.remove()
            return None
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                if not isinstance(saved, dict) or "state" not in saved or "header" not in saved:
                    raise ValueError("not a training checkpoint")
            except Exception as exc:  # cut off half-written, or not ours: the previous one is used
                reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
                self.warn(f"{path} cannot be read ({reason}); ignored" + (", trying the previous checkpoint" if path == self.path else ""))
                continue
            self._check(path, json.loads(saved["header"]))
            threads = saved.get("threads")
            if threads is not None and threads != torch.get_num_threads():
                self.warn(
                    f"{path} was written by a run with {threads} torch threads, this one has {torch.get_num_threads()}: "
                    "the result may differ from an uninterrupted run in the last bits"
                )
            self.resumed_at = self.saved_at = int(saved["done"])
            self.elapsed_before = float(saved.get("elapsed_s", 0.0))
            self.note(f"resumed at step {saved['done']} of {saved['total']} from {path}")
            return saved["state"]
        return None

    def _check(self, path: Path, recorded: dict) -> None:
        if self.header is None:
            return
        from .checkpoint import recorded_value

        for key in dict.fromkeys([*self.header, *recorded]):
            if recorded_value(recorded, key) != self.header.get(key):
                raise PruneScopeError(
                    f"cannot resume from {path}: it was made with {setting_name(key)} = {recorded_value(recorded, key)!r}, this run has "
                    f"{self.header.get(key)!r}; use the same setting, or delete the checkpoint (CLI: --overwrite) to start again"
                )

    # ------------------------------------------------------------ writing
    def step(self, done: int, total: int, state: Callable[[], dict]) -> None:
        """After unit ``done`` of ``total``: save ``state()`` when due; stop (after saving) when asked to."""
        now = time.monotonic()
        if self._last_step is not None:
            self._step_s = max(self._step_s * 0.8 + (now - self._last_step) * 0.2, 0.0) if self._step_s else now - self._last_step
        self._last_step = now
        stop = self.stop.due(2 * self._step_s + self._save_s + 1.0) if self.stop is not None else None
        due = (
            stop is not None
            or done >= total
            or (self.every_steps is not None and done % self.every_steps == 0)
            or (self.interval_s is not None and now - self._last_save >= self.interval_s)
        )
        if due and done != self.saved_at:
            self.save(done, total, state())
        if stop is not None and done < total:
            raise TrainingStopped(done, total, self.path, stop)
        self._last_step = time.monotonic()  # the save is not a step

    def save(self, done: int, total: int, state: dict) -> None:
        """Write the checkpoint: temporary sibling, previous kept, then one rename."""
        start = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "format": FORMAT,
            "header": json.dumps(self.header),
            "done": int(done),
            "total": int(total),
            "threads": torch.get_num_threads(),
            "elapsed_s": self.elapsed_before + (time.monotonic() - self._started),
            "state": state,
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                torch.save(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if self.path.exists():
                os.replace(self.path, self.previous)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.saved_at = int(done)
        self._last_save = time.monotonic()
        self._save_s = self._last_save - start

    def elapsed(self) -> float:
        """Wall seconds of this training so far, the interrupted runs' included."""
        return self.elapsed_before + (time.monotonic() - self._started)

    def remove(self) -> None:
        """Delete the checkpoint (the result it led to is in place)."""
        for path in (self.path, self.previous):
            path.unlink(missing_ok=True)
        for leftover in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            leftover.unlink(missing_ok=True)


def duration_text(seconds: float) -> str:
    """``42 s``, ``17 min`` or ``2.5 h``: how the time so far and the time left of a long run are printed."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def checkpoint_progress(path) -> tuple[int, int] | None:
    """``(done, total)`` of the newest readable checkpoint at ``path`` (or its previous one); None when there is none."""
    for candidate in (Path(path), TrainingCheckpoint(path).previous):
        try:
            saved = torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
            return int(saved["done"]), int(saved["total"])
        except Exception:
            continue
    return None


def checkpoint_step(checkpoint: TrainingCheckpoint | None, done: int, total: int, state: Callable[[], dict]) -> None:
    """:meth:`TrainingCheckpoint.step` when there is a checkpoint (engine loops call this)."""
    if checkpoint is not None:
        checkpoint.step(done, total, state)


def resume_state(checkpoint: TrainingCheckpoint | None) -> dict | None:
    return None if checkpoint is None else checkpoint.resume()


# ---------------------------------------------------------------- state of generators and data
def python_random_state(rng) -> list | None:
    """``random.Random.getstate()`` as plain lists (``None`` for no generator)."""
    if rng is None:
        return None
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_python_random_state(rng, state) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))
