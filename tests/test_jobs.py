"""The app's job runner shares the process: queued jobs of all sessions pass one at a time (or
``PRUNESCOPE_JOBS`` at a time) through the process-wide gate, in the order they started; Stop takes a
queued job out before it starts. Synchronised with events, not timed."""

import threading

import pytest

from app import jobs

WAIT = 30  # seconds: a bound for a hung test, never a measurement


def _blocking(log: list, name: str, release: threading.Event):
    def fn(job):
        log.append(name)
        job.progress(0, 1, "running")
        assert release.wait(WAIT)
        return name

    return fn


def _until(predicate):
    done = threading.Event()
    for _ in range(WAIT * 100):
        if predicate():
            return True
        done.wait(0.01)
    return False


@pytest.mark.parametrize("n", [1, 2, 3])
def test_one_slot_runs_one_job_and_queues_the_others_in_order(n):
    gate, store, log = jobs.Gate(1), jobs.Store(), []
    releases = [threading.Event() for _ in range(n)]
    started = []
    for i in range(n):
        started.append(store.get_or_start("sensitivity", ("key", i), f"job {i}", _blocking(log, f"job {i}", releases[i]), f"session {i}", gate))
        assert _until(lambda i=i: started[i].queue_position is not None)  # in the gate before the next one starts
    assert _until(lambda: log == ["job 0"])
    assert [j.queue_position for j in started] == list(range(n))  # 0 runs; the others 1st, 2nd in the queue
    assert gate.counts() == (1, n - 1)
    for j in started[1:]:
        k = j.queue_position
        assert j.message == f"queued: {k} job{'s' if k != 1 else ''} ahead of it"
    for i in range(n):  # each finishes; the next in line starts, never two at once
        assert log == [f"job {k}" for k in range(i + 1)]
        releases[i].set()
        assert started[i].done.wait(WAIT) and started[i].value == f"job {i}"
        if i + 1 < n:
            assert _until(lambda i=i: len(log) == i + 2)
    assert gate.counts() == (0, 0)


def test_two_slots_run_two_jobs_and_queue_the_third():
    gate, store, log = jobs.Gate(2), jobs.Store(), []
    releases = [threading.Event() for _ in range(3)]
    started = [store.get_or_start("sweep", i, f"job {i}", _blocking(log, f"job {i}", releases[i]), f"s{i}", gate) for i in range(3)]
    assert _until(lambda: sorted(log) == ["job 0", "job 1"] or sorted(log) == ["job 0", "job 2"] or sorted(log) == ["job 1", "job 2"])
    assert gate.counts() == (2, 1)
    assert sorted(j.queue_position for j in started) == [0, 0, 1]
    for r in releases:
        r.set()
    assert all(j.done.wait(WAIT) for j in started) and sorted(log) == ["job 0", "job 1", "job 2"]


def test_a_queued_job_stopped_before_it_starts_never_runs_and_leaves_the_store():
    gate, store, log = jobs.Gate(1), jobs.Store(), []
    first_release, never = threading.Event(), threading.Event()
    first = store.get_or_start("sensitivity", "a", "first", _blocking(log, "first", first_release), "s1", gate)
    assert _until(lambda: log == ["first"])
    queued = store.get_or_start("sensitivity", "b", "second", _blocking(log, "second", never), "s2", gate)
    assert _until(lambda: queued.queue_position == 1)
    store.stop("s2", "sensitivity", "b")  # the Stop button of the only session that follows it
    assert queued.done.wait(WAIT)  # out of the queue while the first one still runs
    assert first.running and isinstance(queued.error, jobs.Stopped)
    assert store.peek("sensitivity", "b") is None and gate.counts() == (1, 0)
    first_release.set()
    assert first.done.wait(WAIT) and log == ["first"]  # the stopped one never ran


def test_a_running_job_stops_at_its_next_progress_call_and_hands_its_place_on():
    gate, store, log = jobs.Gate(1), jobs.Store(), []
    stop_seen, release = threading.Event(), threading.Event()

    def looping(job):
        log.append("looping")
        while True:
            job.progress(0, 1, "working")  # raises Stopped once stopped
            stop_seen.wait(0.01)

    running = store.get_or_start("sensitivity", "a", "looping", looping, "s1", gate)
    waiting = store.get_or_start("sensitivity", "b", "next", _blocking(log, "next", release), "s2", gate)
    assert _until(lambda: waiting.queue_position == 1)
    store.stop("s1", "sensitivity", "a")
    assert running.done.wait(WAIT) and isinstance(running.error, jobs.Stopped)
    assert _until(lambda: log == ["looping", "next"])
    release.set()
    assert waiting.done.wait(WAIT) and waiting.value == "next"


def test_job_slots_reads_prunescope_jobs():
    assert jobs.job_slots({}) == 1
    assert jobs.job_slots({"PRUNESCOPE_JOBS": "3"}) == 3
    assert jobs.job_slots({"PRUNESCOPE_JOBS": "0"}) == 1 and jobs.job_slots({"PRUNESCOPE_JOBS": "many"}) == 1
