"""Where a mode's long computations run: off the engine thread's step in a show, at once in virtual time.

Why: call and response plans a whole answer (every candidate drawn through the model, ``answer_plan``) in the
silence before it plays: 17-29 ms on the dev VM, more with a core busy. Run inside the engine's step, that one step
held up every other partner's notes due in the next lookahead (8 ms): in the three-partner JACK soak, notes went
out late and a note-off late enough to outlive the note-length cap. A job here runs while the engine goes on
stepping; the engine collects the result at a later step, and plays without it if it is not in time.

Contract (both planners):
- ``submit(fn, *args)`` is called by the engine thread and returns a ``concurrent.futures.Future``. The job must
  own everything it touches: the caller copies before submitting (model state forked, its own RNG stream and
  scratch, the settings as they are now). Shared read-only objects (an onnxruntime session, whose ``run`` may be
  called from several threads; the copy index) are fine.
- The engine never waits on a future: it polls ``done()`` at each later step, reads ``result()`` (which raises
  what the job raised) only when done, and calls ``cancel()`` when the plan is no longer wanted. A job already
  running is not stopped by ``cancel()``; its result is simply never read.
- ``close()`` drops jobs not yet started and returns at once; a running job ends by itself (tens of ms).

``InlinePlanner`` runs the job on the caller's thread at once: virtual time (tests, the music-quality harness,
back-to-back benches), where steps run faster than real time and a thread's result would come in at an arbitrary
step. ``ThreadPlanner`` (``liveperf play``) runs jobs one at a time on one worker thread. Both give the same
result for the same job, so a show that plans in time plays what the harness measured.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class InlinePlanner:
    """Runs each job at once on the caller's thread; the future it returns is already done."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # handed to the engine through the future, as the thread planner does
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        pass


class ThreadPlanner:
    """One worker thread (``liveperf-planner``), jobs in submission order. Any thread may submit; one show owns it
    and closes it when the show ends."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liveperf-planner")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


INLINE = InlinePlanner()  # stateless: one for everyone who plans in virtual time
