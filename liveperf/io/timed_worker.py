"""A thread that runs small jobs at given monotonic times: OSC feedback (sent when the beat or note it reports is
due, not when it was computed, which is up to ``lookahead_ms`` earlier) and slow work that must stay off the engine
and scheduler threads (writing a learned MIDI mapping into the setlist).

``at(due_ns, fn, *args)`` may be called from any thread and never blocks; ``fn(*args)`` runs on the worker thread,
which owns whatever the jobs touch (the ``OscFeedback`` sockets). A job that raises is counted, logged once per
kind and dropped: feedback must never take the show down. Jobs due at the same time run in the order given.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from typing import Any, Callable

_STOP = object()


class TimedWorker:
    def __init__(self, name: str = "liveperf-worker", log: Callable[[str], None] = print,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._heap: list[tuple[int, int, Callable, tuple]] = []
        self._seq = itertools.count()
        self._log = log
        self._clock_ns = clock_ns
        self.ran = 0
        self.failed = 0
        self._failed_kinds: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> TimedWorker:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def at(self, due_ns: int, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker thread at ``due_ns`` (at once if that has passed). Any thread."""
        self._inbox.put((due_ns, fn, args))

    def now(self, fn: Callable[..., Any], *args: Any) -> None:
        self._inbox.put((0, fn, args))

    def close(self, timeout_s: float = 2.0) -> None:
        """Run what is already due, drop what is not, stop the thread. Safe to call twice."""
        if self._started and self._thread.is_alive():
            self._inbox.put((0, _STOP, ()))
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            timeout = None
            if self._heap:
                timeout = max(0.0, (self._heap[0][0] - self._clock_ns()) / 1e9)
            try:
                due, fn, args = self._inbox.get(timeout=timeout) if timeout != 0.0 else self._inbox.get_nowait()
            except queue.Empty:
                pass
            else:
                if fn is _STOP:
                    self._run_due()
                    return
                heapq.heappush(self._heap, (due, next(self._seq), fn, args))
            self._run_due()

    def _run_due(self) -> None:
        now = self._clock_ns()
        while self._heap and self._heap[0][0] <= now:
            _, _, fn, args = heapq.heappop(self._heap)
            try:
                fn(*args)
                self.ran += 1
            except Exception as exc:  # noqa: BLE001 -- a failing feedback target or file must not stop the show
                self.failed += 1
                kind = f"{getattr(fn, '__qualname__', fn)}: {type(exc).__name__}"
                if kind not in self._failed_kinds:
                    self._failed_kinds.add(kind)
                    self._log(f"worker: {kind}: {exc} (further failures of this kind are only counted)")
