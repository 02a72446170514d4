"""Send each message at its due time; never late; every note-on that went out gets its note-off.

The engine hands over ``(due_ns, data)`` a little ahead of time. Two implementations share one contract
(``OutputSink``):
- ``Scheduler``: a real-time thread that owns the output port. It sleeps against absolute deadlines on
  ``time.monotonic_ns`` (to ``spin_ns`` before the deadline, then yields in a short spin), sends, and records.
  A message that would go out more than ``late_tolerance_ns`` after its due time is dropped and counted (note-offs
  are never dropped: they go out at once, also counted). On ``close`` it sends note-offs for every note still held.
- ``VirtualScheduler``: the same rules in virtual time for tests; "sent" means appended to ``sent`` at ``due_ns``.

``schedule``/``cancel_pending``/``panic`` may be called from any thread (they enqueue); only the scheduler's own
thread touches the heap, the port and the held-note table.
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from liveperf.notes import HeldNotes, is_note_off


class OutputPort(Protocol):
    def send(self, data: bytes) -> None: ...


class OutputSink(Protocol):
    """What the engine sees of the scheduler."""

    def schedule(self, due_ns: int, data: bytes) -> None:
        """Send ``data`` at ``due_ns`` (monotonic ns)."""

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        """Drop not-yet-sent note-ons on ``channel``; bring its pending note-offs forward to now."""


@dataclass
class TimingStats:
    """Counters and timing errors (send time minus due time, ns) of sent messages; owned by the scheduler thread."""

    sent: int = 0
    late_dropped: int = 0
    late_note_offs: int = 0
    cancelled: int = 0
    send_errors: int = 0
    errors_ns: list[int] = field(default_factory=list)


@dataclass(order=True)
class _Item:
    due_ns: int
    seq: int
    data: bytes = field(compare=False)


class VirtualScheduler:
    """``OutputSink`` in virtual time: keeps the same drop/cancel rules, records ``(due_ns, data)`` as sent."""

    def __init__(self, late_tolerance_ns: int = 0, now_fn: Callable[[], int] | None = None) -> None:
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self.sent: list[tuple[int, bytes]] = []
        self.held = HeldNotes()
        self.stats = TimingStats()
        self.late_tolerance_ns = late_tolerance_ns
        self._now_fn = now_fn

    def _advance(self, now_ns: int) -> None:
        while self._heap and self._heap[0].due_ns <= now_ns:
            item = heapq.heappop(self._heap)
            self._emit(item.due_ns, item.data)

    def _emit(self, at_ns: int, data: bytes) -> None:
        self.sent.append((at_ns, data))
        self.held.update(data)
        self.stats.sent += 1

    def schedule(self, due_ns: int, data: bytes) -> None:
        now = self._now_fn() if self._now_fn else due_ns
        self._advance(now)
        if due_ns < now - self.late_tolerance_ns:
            if is_note_off(data):
                self.stats.late_note_offs += 1
                self._emit(now, data)
            else:
                self.stats.late_dropped += 1
            return
        heapq.heappush(self._heap, _Item(max(due_ns, now), next(self._seq), data))

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        self._advance(now_ns)
        keep = []
        for item in self._heap:
            if not _on_channel(item.data, channel):
                keep.append(item)
            elif not is_note_off(item.data):
                self.stats.cancelled += 1
            else:
                keep.append(_Item(now_ns, item.seq, item.data))
        self._heap = keep
        heapq.heapify(self._heap)
        self._advance(now_ns)

    def flush(self, now_ns: int | None = None) -> None:
        """Send everything pending (up to ``now_ns`` if given)."""
        self._advance(now_ns if now_ns is not None else (1 << 62))

    def close(self, now_ns: int) -> None:
        """Pending note-ons are dropped, pending note-offs and note-offs for all held notes go out at ``now_ns``."""
        self._advance(now_ns)
        self.cancel_all(now_ns)
        for data in self.held.release_all():
            self.sent.append((now_ns, data))

    def cancel_all(self, now_ns: int) -> None:
        for ch in sorted({item.data[0] & 0x0F for item in self._heap if item.data[0] < 0xF0}):
            self.cancel_pending(ch, now_ns)


def _on_channel(data: bytes, channel: int) -> bool:
    """A channel message on ``channel`` (system messages such as MIDI clock belong to no channel)."""
    return data[0] < 0xF0 and data[0] & 0x0F == channel


_CANCEL = object()
_PANIC = object()
_STOP = object()
_IDLE = object()


class Scheduler:
    """Real-time sender thread; see the module docstring. ``on_sent(ts_ns, data)`` is called on this thread."""

    def __init__(
        self,
        port: OutputPort,
        *,
        late_tolerance_ns: int = 2_000_000,
        spin_ns: int = 300_000,
        on_sent: Callable[[int, bytes], None] | None = None,
        keep_errors: bool = True,
        realtime_priority: int | None = 70,
    ) -> None:
        self._port = port
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._held = HeldNotes()
        self._on_sent = on_sent
        self._keep_errors = keep_errors
        self.late_tolerance_ns = late_tolerance_ns
        self.spin_ns = spin_ns
        self.stats = TimingStats()
        self._idle_waiters: list[threading.Event] = []
        self._rt_priority = realtime_priority
        self.scheduling = "not started"  # set by the thread: which OS scheduling it got, and why
        self._thread = threading.Thread(target=self._run, name="liveperf-scheduler", daemon=True)

    # ---- any thread ----
    def start(self) -> None:
        self._thread.start()

    def schedule(self, due_ns: int, data: bytes) -> None:
        self._inbox.put((due_ns, data))

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        self._inbox.put((_CANCEL, channel))

    def panic(self) -> None:
        """Drop everything pending and silence every held note now."""
        self._inbox.put((_PANIC, None))

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until everything scheduled so far has been sent, dropped or cancelled (True), or timeout."""
        if not self._thread.is_alive():
            return True
        done = threading.Event()
        self._inbox.put((_IDLE, done))
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Silence held notes, stop the thread, join it. Safe to call twice."""
        if self._thread.is_alive():
            self._inbox.put((_STOP, None))
            self._thread.join(timeout_s)

    # ---- scheduler thread ----
    def _run(self) -> None:
        self.scheduling = try_realtime(self._rt_priority)
        try:
            while True:
                if not self._drain(self._wait_s()):
                    break
                self._send_due()
                if self._idle_waiters and not self._heap:
                    for ev in self._idle_waiters:
                        ev.set()
                    self._idle_waiters.clear()
        finally:
            self._silence_all()

    def _wait_s(self) -> float | None:
        if not self._heap:
            return 0.1
        left = self._heap[0].due_ns - time.monotonic_ns() - self.spin_ns
        return max(0.0, left / 1e9)

    def _drain(self, timeout_s: float | None) -> bool:
        """Take commands from the inbox (blocking up to ``timeout_s`` for the first). False on stop."""
        try:
            cmd = self._inbox.get(timeout=timeout_s) if timeout_s else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            head, arg = cmd
            if head is _STOP:
                return False
            if head is _IDLE:
                self._idle_waiters.append(arg)
            elif head is _CANCEL:
                self._cancel(arg)
            elif head is _PANIC:
                self._cancel(None)
                self._silence_all()
            else:
                heapq.heappush(self._heap, _Item(head, next(self._seq), arg))
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _cancel(self, channel: int | None) -> None:
        now = time.monotonic_ns()
        keep = []
        for item in self._heap:
            if channel is not None and not _on_channel(item.data, channel):
                keep.append(item)
            elif is_note_off(item.data):
                keep.append(_Item(now, item.seq, item.data))
            else:
                self.stats.cancelled += 1
        self._heap = keep
        heapq.heapify(self._heap)

    def _send_due(self) -> None:
        if not self._heap:
            return
        now = time.monotonic_ns()
        due = self._heap[0].due_ns
        if due - now > self.spin_ns:
            return
        # Short spin for the last part: time.sleep overshoots by ~0.1 ms, which a drummer would hear across a set.
        while now < due:
            time.sleep(0)
            now = time.monotonic_ns()
        while self._heap and self._heap[0].due_ns <= now:
            item = heapq.heappop(self._heap)
            late_ns = now - item.due_ns
            if late_ns > self.late_tolerance_ns:
                if is_note_off(item.data):
                    self.stats.late_note_offs += 1
                else:
                    self.stats.late_dropped += 1
                    continue
            self._send(now, item.data, item.due_ns)
            now = time.monotonic_ns()

    def _send(self, now_ns: int, data: bytes, due_ns: int) -> None:
        try:
            self._port.send(data)
        except Exception as exc:  # the port vanished mid-show: count it, keep the clock going
            self.stats.send_errors += 1
            self.last_send_error = f"{type(exc).__name__}: {exc}"
            return
        sent_ns = time.monotonic_ns()
        self._held.update(data)
        self.stats.sent += 1
        if self._keep_errors:
            self.stats.errors_ns.append(sent_ns - due_ns)
        if self._on_sent is not None:
            self._on_sent(sent_ns, data)

    def _silence_all(self) -> None:
        for data in self._held.release_all():
            now = time.monotonic_ns()
            self._send(now, data, now)
        self._held = HeldNotes()

    @property
    def held_count(self) -> int:
        """Approximate (read from another thread): notes sounding now."""
        return len(self._held)


def try_realtime(priority: int | None) -> str:
    """Ask for SCHED_FIFO for the calling thread (Linux, needs privileges); say in one line what we got.

    Under normal scheduling a busy machine delays this thread by 2-12 ms; SCHED_FIFO kept it under 0.4 ms in
    DESIGN.md's measurements. The thread sleeps until ~0.3 ms before each deadline, so it cannot starve the system.
    """
    if priority is None:
        return "normal scheduling (real-time priority not requested)"
    if not hasattr(os, "sched_setscheduler"):
        return "normal scheduling (SCHED_FIFO not available on this OS)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"normal scheduling (SCHED_FIFO {priority} refused: {exc.strerror}; see README, real-time priority)"
    return f"SCHED_FIFO priority {priority}"
