"""Background jobs in one place: the shared store, the jobs in it, who follows them, Stop.

How the app caches
------------------
One process-wide :class:`Store` lives in ``st.cache_resource`` (so Streamlit's
"Clear cache" empties it, and every session and thread sees the same one). Every
entry is keyed by *all* the settings that produced it (``app.resources`` builds the
keys, pages never do), so a session only ever gets what its own settings ask for.
Entries are read-only: the loaded model is never modified.

Heavy work runs as a :class:`Job` on a background thread, keyed like any entry. A
page asks ``app.resources`` for a result and gets one of three answers: the result,
a running job (:func:`wait` draws its progress bar and a **Stop** button until it is
done), or "not started" (:class:`NotStarted`, or an :class:`Answer` without a job:
the page offers a Run button). If the user moves a slider or leaves the page
meanwhile, the script run stops but the job goes on, and the next run (in this
session or another asking for the same thing) picks it up instead of starting again.

Sessions and Stop
-----------------
Each browser session has an id (:func:`session`). The store remembers which job of
each kind every session follows; a session follows at most one job of a kind: when
its settings ask for a new one, the old one is released, and a released job that no
other session follows is stopped. Stopping is cooperative: the job's progress
callback raises :class:`Stopped` once stop is requested (the engine reports progress
often), and the stopped job leaves the store at once, so the same settings can be
started again. A job the session stopped itself is not restarted by the next script
run: the page says "not started" until the user presses Run.

Jobs that share the process
---------------------------
Every job runs in this one process, whose torch thread count is set once for all of
them (``pruning.threads``): two heavy jobs at once would each ask for every core. So the
slow work that starts from a Run button (``answer``, and ``result`` with ``ask``) is
*queued*: a process-wide :class:`Gate` lets at most :func:`job_slots` of them run at once
(one by default, ``PRUNESCOPE_JOBS`` to change it) and the rest wait in the order they
were started, their progress line saying their place in the queue. Two sessions' runs
then take twice as long as one, not more. Stop reaches a queued job before it starts
(it never runs) and a running one at its next progress call, as before. Short jobs
(loading, data, an evaluation) are not queued: they run beside a queued job, which the
OpenMP wait settings keep gentle.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

# How many entries of each kind the store keeps (least recently used goes first).
LIMITS = {
    "model": 2,
    "data": 6,
    "calibration": 6,
    "input-norms": 4,
    "ranker": 4,
    "prune": 6,
    "eval": 512,
    "sweep": 16,
    "sensitivity": 16,
    "candidates": 16,
    "agreement": 8,
    "memo": 256,
    "run": 4,
}


class Stopped(BaseException):
    """Raised inside a job (from its progress callback) once it was stopped, and to a page following it.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in the engine takes it
    for a failure (and, say, deletes a cache it was reading)."""


def job_slots(environ=None) -> int:
    """How many queued jobs may run at once: ``PRUNESCOPE_JOBS`` (a whole number, at least 1), else 1."""
    text = (os.environ if environ is None else environ).get("PRUNESCOPE_JOBS", "").strip()
    return max(1, int(text)) if text.isdigit() else 1


class Gate:
    """At most ``slots`` jobs run at once, process-wide; the others wait first come, first served.

    :meth:`enter` blocks the job's own thread until it is its turn (or raises :class:`Stopped`
    as soon as the job was stopped while it waited); :meth:`leave` hands its place on."""

    def __init__(self, slots: int = 1):
        self.slots = max(1, int(slots))
        self._cond = threading.Condition()
        self._running: list = []
        self._waiting: list = []

    def position(self, job) -> int | None:
        """0 while ``job`` runs, n >= 1 while it is n-th in the queue, None otherwise."""
        with self._cond:
            if job in self._running:
                return 0
            return self._waiting.index(job) + 1 if job in self._waiting else None

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def enter(self, job) -> None:
        with self._cond:
            self._waiting.append(job)
            try:
                while True:
                    if job.stop_requested:
                        raise Stopped(f"{job.label}: stopped before it started.")
                    place = self._waiting.index(job)
                    if place < self.slots - len(self._running):
                        break
                    ahead = place + len(self._running)
                    job.message = f"queued: {ahead} job{'s' if ahead != 1 else ''} ahead of it"
                    self._cond.wait(1.0)
            finally:
                self._waiting.remove(job)
                self._cond.notify_all()
            self._running.append(job)

    def leave(self, job) -> None:
        with self._cond:
            if job in self._running:
                self._running.remove(job)
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


GATE = Gate(job_slots())  # process-wide, like the store: every session's queued jobs pass through it


class Job:
    """One piece of heavy work on a background thread, with progress the page can draw.

    With a ``gate`` the job waits for its turn there before ``fn`` runs (:class:`Gate`)."""

    def __init__(self, label: str, fn: Callable[["Job"], Any], gate: Gate | None = None):
        self.label = label
        self.fn = fn
        self.gate = gate
        self.fraction = 0.0
        self.message = "starting"
        self.value: Any = None
        self.error: BaseException | None = None
        self.partial: list = []  # what the job has reported so far (sweep rows, method snapshots)
        self.followers: set[str] = set()  # ids of the sessions that follow it
        self.done = threading.Event()
        self._stop = threading.Event()
        self.started = time.perf_counter()
        self.seconds = 0.0

    def check(self) -> None:
        """Raise :class:`Stopped` if stop was requested (called by every callback the engine calls)."""
        if self._stop.is_set():
            raise Stopped(f"{self.label}: stopped.")

    def progress(self, done: int, total: int, message: str) -> None:
        self.check()
        self.fraction = min(1.0, max(0.0, done / total)) if total else 0.0
        self.message = str(message)

    def add(self, entry) -> None:
        """Keep an intermediate result (a sweep row); the page draws ``partial`` live."""
        self.check()
        self.partial.append(entry)

    def observe(self, kind: str, entry: dict) -> None:
        """The ``observe`` callback of :func:`pruning.prune.prune` (snapshots, stages)."""
        self.add(entry)

    def stop(self) -> None:
        self._stop.set()
        if self.gate is not None:
            self.gate.wake()  # a queued job leaves the queue at once

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def queue_position(self) -> int | None:
        """0 while it runs, n >= 1 while n-th in the queue, None for a job without a gate (or done)."""
        return None if self.gate is None or self.done.is_set() else self.gate.position(self)

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def start(self) -> "Job":
        threading.Thread(target=self._run, name=f"prunescope-{self.label[:30]}", daemon=True).start()
        return self

    def _run(self) -> None:
        entered = False
        try:
            if self.gate is not None:
                self.gate.enter(self)
                entered = True
                self.started = time.perf_counter()  # the time it ran, not the time it waited
                self.message = "starting"
            self.value = self.fn(self)
        except BaseException as exc:  # noqa: BLE001 - handed to the page that shows it
            self.error = exc
        finally:
            if entered:
                self.gate.leave(self)
            self.seconds = time.perf_counter() - self.started
            self.fraction = 1.0
            self.done.set()


class Store:
    """Thread-safe keyed store with a least-recently-used bound per kind, and the sessions' jobs."""

    def __init__(self):
        self._lock = threading.RLock()
        self._items: dict[str, OrderedDict] = {}
        self._following: dict[tuple, Any] = {}  # (session, kind) -> key of the session's latest job of that kind
        self._stopped: set[tuple] = set()  # (session, kind, key) the session stopped: not restarted by itself

    def _kind(self, kind: str) -> OrderedDict:
        return self._items.setdefault(kind, OrderedDict())

    def _bound(self, kind: str) -> None:
        items = self._kind(kind)
        while len(items) > LIMITS.get(kind, 32):
            items.popitem(last=False)

    def get(self, kind: str, key) -> tuple[bool, Any]:
        with self._lock:
            items = self._kind(kind)
            if key in items:
                items.move_to_end(key)
                return True, items[key]
            return False, None

    def put(self, kind: str, key, value) -> None:
        with self._lock:
            items = self._kind(kind)
            items[key] = value
            items.move_to_end(key)
            self._bound(kind)

    def items(self, kind: str) -> list:
        """``(key, value)`` of every entry of ``kind`` held now (a copy: the store may change meanwhile)."""
        with self._lock:
            return list(self._kind(kind).items())

    def peek(self, kind: str, key):
        with self._lock:
            return self._items.get(kind, {}).get(key)

    def forget(self, kind: str, key, job=None) -> None:
        with self._lock:
            items = self._kind(kind)
            if key in items and (job is None or items[key] is job):
                del items[key]

    def get_or_start(self, kind: str, key, label: str, fn: Callable[[Job], Any], session: str, gate: Gate | None = None) -> Job:
        """The job under ``key`` (started now if there is none; through ``gate``'s queue when given),
        followed by ``session`` from now on."""
        with self._lock:
            items = self._kind(kind)
            job = items.get(key)
            if job is None:
                job = items[key] = Job(label, fn, gate)
                self._bound(kind)
                job.start()
            else:
                items.move_to_end(key)
            self.follow(session, kind, key, job)
            return job

    def follow(self, session: str, kind: str, key, job: Job) -> None:
        """``session`` follows ``job``; its earlier job of this kind is released (stopped if nobody else follows it)."""
        with self._lock:
            old = self._following.get((session, kind))
            if old is not None and old != key:
                self._release(session, kind, old)
            job.followers.add(session)
            self._following[(session, kind)] = key
            self._stopped.discard((session, kind, key))

    def _release(self, session: str, kind: str, key) -> None:
        job = self._items.get(kind, {}).get(key)
        if not isinstance(job, Job) or job.done.is_set():
            return
        job.followers.discard(session)
        if not job.followers:
            job.stop()
            self.forget(kind, key, job)

    def stop(self, session: str, kind: str, key) -> None:
        """``session`` stops following the job (it stops when nobody else follows it) and will not restart it by itself."""
        with self._lock:
            self._release(session, kind, key)
            self._stopped.add((session, kind, key))

    def was_stopped(self, session: str, kind: str, key) -> bool:
        with self._lock:
            return (session, kind, key) in self._stopped

    def latest(self, session: str, kind: str):
        """``(key, job)`` of the session's latest job of ``kind`` still in the store, or ``(None, None)``."""
        with self._lock:
            key = self._following.get((session, kind))
            job = self._items.get(kind, {}).get(key) if key is not None else None
            return (key, job) if isinstance(job, Job) else (None, None)


@st.cache_resource(show_spinner=False)
def store() -> Store:
    return Store()


def session() -> str:
    """This browser session's id (made on its first run)."""
    if "ps_session_id" not in st.session_state:
        st.session_state["ps_session_id"] = uuid.uuid4().hex
    return st.session_state["ps_session_id"]


def memo(kind_key, fn: Callable[[], Any]):
    """Compute ``fn()`` once per key, in this thread (for sub-second derived data)."""
    hit, value = store().get("memo", kind_key)
    if hit:
        return value
    value = fn()
    store().put("memo", kind_key, value)
    return value


# ---------------------------------------------------------------- the three answers
class NotStarted(Exception):
    """A result nobody has started (or this session stopped): ``start()`` starts it as a shared job.

    ``ui.guarded`` shows what it will do and a button that calls ``start``. ``method`` is set for a
    slow method (it says what the run will do and with which ``params``).
    """

    def __init__(self, label: str, start: Callable[[], Job], kind: str, method=None, params=None, model_size: int = 0, task: str = ""):
        super().__init__(f"{label}: not started")
        self.label = label
        self.start = start
        self.kind = kind
        self.method = method
        self.params = dict(params or {})  # the parameters it will run with (those that differ from the defaults)
        self.model_size = model_size  # parameters of the model it will train or pass over
        self.task = task


@dataclass
class Answer:
    """What a Run-button view gets from the resources: the job at its settings (running or done) or
    ``None`` (not started; ``start()`` starts it), and this session's last finished job of the same
    kind at other settings (``previous``), which the view may show as out of date."""

    kind: str
    key: Any
    job: Job | None
    start: Callable[[], Job]
    previous: Job | None = None

    @property
    def not_started(self) -> bool:
        return self.job is None


def answer(kind: str, key, label: str, prepare: Callable[[], Callable[[Job], Any]]) -> Answer:
    """The answer for a job that starts only from a Run button.

    ``prepare()`` runs in the script run when the job starts (it may wait for other results,
    such as calibration data) and returns the job's function.
    """
    sid = session()
    job = None if store().was_stopped(sid, kind, key) else store().peek(kind, key)
    if job is not None:
        store().follow(sid, kind, key, job)
    old_key, old = store().latest(sid, kind)
    previous = old if old is not None and old_key != key and old.done.is_set() and old.error is None else None
    return Answer(kind, key, job, lambda: store().get_or_start(kind, key, label, prepare(), sid, GATE), previous)


def result(kind: str, key, label: str, fn: Callable[[Job], Any], on_partial=None, ask: Callable[..., NotStarted] | None = None):
    """The value under ``key``: computed now (as a job, drawing its progress) or waited for if running.

    With ``ask`` (a slow computation), a job nobody started raises ``ask(start)`` instead of starting.
    A job this session stopped is not restarted either: :class:`NotStarted` offers to run it again.
    """
    sid = session()

    def start() -> Job:  # slow work (asked for with a Run button) waits its turn in the process-wide queue
        return store().get_or_start(kind, key, label, fn, sid, GATE if ask is not None else None)

    job = None if store().was_stopped(sid, kind, key) else store().peek(kind, key)
    if job is None and (ask is not None or store().was_stopped(sid, kind, key)):
        raise ask(start) if ask is not None else NotStarted(label, start, kind)
    job = start() if job is None else job
    store().follow(sid, kind, key, job)
    return wait(job, kind, key, on_partial)


def stop(kind: str, key, sid: str) -> None:
    """What the Stop button does (``sid``: the session that pressed it)."""
    store().stop(sid, kind, key)


def wait(job: Job, kind: str, key, on_partial: Callable[[list], None] | None = None, poll: float = 0.2):
    """Block this script run until ``job`` is done, drawing its progress and a Stop button; return its value.

    A failed job is forgotten (so fixing the input and trying again works) and its error
    raised here, where the page shows it; a stopped one raises :class:`Stopped`.
    """
    if not job.done.wait(0.05):
        box = st.empty()
        with box.container():
            st.caption(f"{job.label} ...")
            bar = st.progress(0.0)
            digest = hashlib.sha1(repr((kind, key)).encode()).hexdigest()[:12]
            st.button("Stop", key=f"btn_stop_{kind}_{digest}", on_click=stop, args=(kind, key, session()))
        seen = -1
        while not job.done.wait(poll):
            elapsed = time.perf_counter() - job.started
            bar.progress(job.fraction, text=f"{job.message} ({elapsed:.0f} s{remaining(elapsed, job.fraction)})")
            if on_partial is not None and len(job.partial) != seen:
                seen = len(job.partial)
                on_partial(list(job.partial))
        box.empty()
    if job.error is not None:
        store().forget(kind, key, job)
        raise job.error
    return job.value


def remaining(elapsed: float, fraction: float) -> str:
    """``", about 3 min left"`` from the time so far and the share done (nothing until 2% is done)."""
    if fraction < 0.02 or fraction >= 1.0 or elapsed < 5:
        return ""
    left = elapsed * (1.0 - fraction) / fraction
    return f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left"
