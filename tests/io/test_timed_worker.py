"""TimedWorker: jobs run on its thread at their due times, in order; a failing job is counted, never raised."""

from __future__ import annotations

import threading
import time

from liveperf.io.timed_worker import TimedWorker


def test_jobs_run_in_due_order_not_in_call_order_and_failures_are_counted():
    logs, ran, done = [], [], threading.Event()
    w = TimedWorker(log=logs.append).start()
    t0 = time.monotonic_ns()
    w.at(t0 + 60_000_000, lambda: (ran.append(("late", time.monotonic_ns() - t0)), done.set()))
    w.at(t0 + 20_000_000, lambda: ran.append(("early", time.monotonic_ns() - t0)))
    w.now(lambda: ran.append(("now", threading.current_thread().name)))
    w.now(lambda: 1 / 0)
    w.now(lambda: 1 / 0)
    assert done.wait(5)
    w.close()
    assert [r[0] for r in ran] == ["now", "early", "late"]
    assert ran[0][1] == "liveperf-worker"
    assert ran[1][1] >= 20_000_000 and ran[2][1] >= 60_000_000  # never early (lateness is the machine's)
    assert w.failed == 2 and w.ran == 3 and len(logs) == 1 and "ZeroDivisionError" in logs[0]


def test_close_runs_what_is_due_and_drops_the_rest():
    ran = []
    w = TimedWorker().start()
    w.now(ran.append, 1)
    w.at(time.monotonic_ns() + 10_000_000_000, ran.append, 2)
    time.sleep(0.05)
    t = time.monotonic()
    w.close()
    assert ran == [1] and time.monotonic() - t < 2
