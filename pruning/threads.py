"""How many threads PruneScope's entry points ask for, and how their threads wait: set once, at the start.

The one place that chooses them. The CLI (``python -m pruning``), the app (``app/main.py``)
and the bench scripts call :func:`prepare` before anything imports torch, then
:func:`apply` once torch is there; engine calls never touch either (a test reads
``pruning/`` for that). This module imports no torch at module level.

Why: torch's CPU kernels run on an OpenMP team (libgomp). By default a worker thread
that finishes its share of an operation spins for a while (about 300 000 spins) before
it sleeps, so that the next operation starts without waking it. On a quiet machine that
saves a little; on a busy one the spinning threads hold cores that other processes (and
the team's own late threads) need, and a run that takes 30 s quiet took 400 s beside
four busy processes on two cores. libgomp reads its wait settings once, when it is
loaded (at ``import torch``), so they have to be in the environment before that:
:func:`prepare` puts them there.

What is chosen (measured by ``bench/bench_busy.py``, figures in ``bench/results/busy.md``):

* the wait, from the load at the start (:func:`wait_for`): on a quiet machine ``GOMP_SPINCOUNT`` =
  :data:`SPIN_COUNT` (a worker spins that many times, then sleeps: the quiet speed of back-to-back
  small operations, and little spinning under load); when at least as many other threads want a
  CPU as this process may use, ``OMP_WAIT_POLICY=PASSIVE`` (no spin at all: measured 17% slower
  than the short spin quiet, and 10-30% faster than it beside four busy processes).
* intra-op threads (``torch.set_num_threads``, which also sets MKL's and oneDNN's, both
  running on the same OpenMP team): the CPUs this process may run on
  (``os.sched_getaffinity``: a ``taskset`` or a container's CPU set counts), not fewer under
  load (:func:`intra_threads` says why); the load at the start is recorded.
* inter-op threads: 1 (PruneScope runs no inter-op parallel work; the pool's threads
  would only sit there).

The user's own settings win: ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` in the
environment leaves the waiting alone; ``PRUNESCOPE_THREADS``, ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` leaves the thread count alone (``PRUNESCOPE_THREADS`` is applied
with ``torch.set_num_threads``, the others torch reads by itself). :func:`record` says
what is in force (``report.json`` and the bench results keep it), :func:`describe`
says it in a line (the CLI's ``--help``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field

SPIN_COUNT = 10000  # spins before an idle OpenMP worker sleeps (libgomp's default is 300000)
WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
THREAD_KEYS = ("PRUNESCOPE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Choice:
    """What an entry point asks for: environment entries to set before torch loads, and thread counts."""

    env: dict = field(default_factory=dict)  # entries :func:`prepare` puts into the environment (none of the user's)
    intra_op: int | None = None  # None: the user's own count (or torch's own default) stays
    inter_op: int | None = 1
    cpus: int = 1
    load: float | None = None  # the threads that wanted a CPU at the start (:func:`load_average`)
    user: dict = field(default_factory=dict)  # the user's own settings that won, as they were given

    def as_dict(self) -> dict:
        return asdict(self)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity; the machine's count where that is not known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average(samples: int = 5, pause: float = 0.02) -> float | None:
    """How many other threads want a CPU now: the median of a few readings of the kernel's count of
    runnable threads (``/proc/loadavg``, less this one), which follows the load at once where the
    1-minute load average lags a minute behind; that average where the count cannot be read."""
    import time

    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(pause)
    if counts:
        return float(sorted(counts)[len(counts) // 2])
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def intra_threads(cpus: int, load: float | None) -> int:
    """Intra-op threads: every CPU this process may run on, whatever the load at the start.

    Measured (``bench/results/busy.md``): fewer threads than CPUs under load gives the process a
    smaller share of the machine (the kernel shares it out per thread), so the run slows by more
    than the load; and a count taken at the start halves a quiet run whenever something else
    happened to be running at that moment. The short spin is what makes the full count cheap
    under load. ``load`` is recorded, not used.

    >>> intra_threads(2, 0.3), intra_threads(2, 6.0)
    (2, 2)
    """
    return cpus


def wait_for(cpus: int, load: float | None) -> dict:
    """The OpenMP wait for a process started on ``cpus`` CPUs while ``load`` other threads want one.

    Measured side by side (``bench/results/busy.md``): beside four busy processes on two cores no spin at
    all (PASSIVE) is 10-30% faster than the short spin, and on a quiet machine 17% slower; so the short
    spin when the machine is quiet at the start, PASSIVE when it is full (``load >= cpus``). The load
    is read once (libgomp reads its settings once): a run started busy stays passive when the machine
    quiets down, one started quiet keeps the short spin (which already spins little).

    >>> wait_for(2, 0.0), wait_for(2, 4.0), wait_for(2, None)
    ({'GOMP_SPINCOUNT': '10000'}, {'OMP_WAIT_POLICY': 'PASSIVE'}, {'GOMP_SPINCOUNT': '10000'})
    """
    if load is not None and load >= cpus:
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}


def choose(environ: dict, cpus: int, load: float | None) -> Choice:
    """The settings for an entry point started with ``environ`` on ``cpus`` CPUs at ``load`` (pure)."""
    user = {k: environ[k] for k in WAIT_KEYS + THREAD_KEYS if environ.get(k, "").strip()}
    env = {} if any(k in user for k in WAIT_KEYS) else wait_for(cpus, load)
    if "PRUNESCOPE_THREADS" in user:
        intra = _count(user["PRUNESCOPE_THREADS"], "PRUNESCOPE_THREADS")
    elif any(k in user for k in THREAD_KEYS):
        intra = None
    else:
        intra = intra_threads(cpus, load)
    return Choice(env=env, intra_op=intra, inter_op=1, cpus=cpus, load=None if load is None else round(load, 2), user=user)


def _count(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from .errors import PruneScopeError

        raise PruneScopeError(f"{name} must be a whole number of threads, at least 1 (got {text!r})")
    return value


# ---------------------------------------------------------------- the entry points' two calls
_STATE: dict = {}  # "choice", "in_time" (the wait settings were in the environment before torch loaded), "applied"


def prepare(environ=None) -> Choice:
    """Choose (once per process) and put the wait settings into ``environ`` (``os.environ``) before torch loads.

    Call it first thing in an entry point. If torch is already imported the environment
    is still set (child processes inherit it) but this process's OpenMP runtime has read
    its settings already: :func:`record` then says ``"wait_in_force": false``."""
    if "choice" in _STATE:
        return _STATE["choice"]
    environ = os.environ if environ is None else environ
    choice = choose(dict(environ), available_cpus(), load_average())
    for key, value in choice.env.items():
        environ.setdefault(key, value)
    _STATE["choice"] = choice
    _STATE["in_time"] = "torch" not in sys.modules
    return choice


def apply() -> Choice:
    """Set torch's intra-op and inter-op thread counts as chosen (once per process; after :func:`prepare`)."""
    choice = prepare()
    if _STATE.get("applied"):
        return choice
    import torch

    if choice.intra_op is not None:
        torch.set_num_threads(choice.intra_op)
    if choice.inter_op is not None:
        try:
            torch.set_num_interop_threads(choice.inter_op)
        except RuntimeError:  # inter-op work already ran in this process (a test calling main twice): keep it
            pass
    _STATE["applied"] = True
    return choice


def record() -> dict:
    """What is in force in this process, for ``report.json`` and the bench results."""
    choice = _STATE.get("choice")
    out = {
        "chosen_by": "pruning.threads" if choice is not None else "nobody (no entry point prepared it)",
        "wait": {k: os.environ[k] for k in WAIT_KEYS if k in os.environ} or "libgomp default",
        "wait_in_force": bool(_STATE.get("in_time")) if choice is not None else None,
        "user": dict(choice.user) if choice is not None else {},
        "cpus": choice.cpus if choice is not None else available_cpus(),
        "load_at_start": choice.load if choice is not None else None,
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["intra_op"] = torch.get_num_threads()
        out["inter_op"] = torch.get_num_interop_threads()
    return out


def describe(choice: Choice | None = None) -> str:
    """One paragraph for ``--help``: what this process chose and how to override it."""
    choice = choice or prepare()
    wait = ", ".join(f"{k}={v}" for k, v in choice.env.items()) or "the user's " + ", ".join(f"{k}={choice.user[k]}" for k in WAIT_KEYS if k in choice.user)
    count = (
        f"{choice.intra_op} intra-op thread(s) (the CPUs this process may use)"
        if choice.intra_op is not None and "PRUNESCOPE_THREADS" not in choice.user
        else f"{choice.intra_op} intra-op thread(s) from PRUNESCOPE_THREADS"
        if choice.intra_op is not None
        else "the thread count from " + ", ".join(k for k in THREAD_KEYS if k in choice.user)
    )
    when = "" if not choice.env else (" (the machine was busy at the start)" if "OMP_WAIT_POLICY" in choice.env else " (the machine was quiet at the start)")
    return (
        f"threads: {wait}{when}; {count}; 1 inter-op thread. Your own OMP_WAIT_POLICY / GOMP_SPINCOUNT and "
        "PRUNESCOPE_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS win (see pruning/threads.py)."
    )
