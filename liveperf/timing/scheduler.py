"""Send each message at its due time; never late; every note-on that went out gets its note-off.

The engine hands over ``(due_ns, data)`` a little ahead of time. Two implementations share one contract
(``OutputSink``) and one core (``liveperf.timing.plan.Plan``: the pending messages and the notes actually sounding):
- ``Scheduler``: a real-time thread that owns the output port. It sleeps against absolute deadlines on
  ``time.monotonic_ns`` (to ``spin_ns`` before the deadline, then yields in a short spin), sends, and records.
  A message that would go out more than ``late_tolerance_ns`` after its due time is dropped and counted (note-offs
  are never dropped: they go out at once, also counted); a reaction (``late_ok_ns``, ``REACTION_LATE_NS``) waits
  longer. On ``close`` it sends note-offs for every note still held.
  With a *timed* port (``TimedOutputPort``: the ``jack-native`` backend) the thread does not time anything: it
  hands each message over ``lead_ns`` before it is due and JACK's thread sends it at its frame. "Sent" then means
  handed over; a cancel also revokes the handed-over note-ons due from its cut on, and the send - due errors are
  the port's true ones (``emitted``).
- ``VirtualScheduler`` (``liveperf.timing.virtual_scheduler``): the same rules in virtual time for tests; "sent" means
  appended to ``sent`` at ``due_ns``.

``schedule``/``cancel_pending``/``panic`` may be called from any thread (they enqueue); only the scheduler's own
thread touches the heap, the port and the held-note table.

No stuck note, whatever the order of events between threads. The engine decides from its own idea of time
whether a note it cancels has sounded yet; the scheduler thread may already have sent it (it was due, or was being
sent while the cancel waited in the inbox). So the note-offs of a cancel are not taken from the engine's belief but
from what really went out: a cancel puts a *cut* at ``max(at_ns, now)`` on the channel, and the cut sends a
note-off for every note of the channel that was sent and not yet released. Two more rules close the other gaps:
a note-off is never sent before the note-on scheduled ahead of it for the same (channel, pitch) (its due time is
raised to that note-on's), and a note-off for a note that is not sounding (its note-on was dropped, cancelled,
or already ended) is not sent, only counted (``unheld_offs``), so the wire never shows an off without an on.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, Protocol

from liveperf.music.notes import goes_out_late
from liveperf.timing.plan import Item, Plan, TimingStats


# How late a *reaction* may still go out: a note due the moment the engine computed it (the duet's answer to the
# note it listened for, or its note at the end of the window; a harmony; the comp's chord for a melody note it
# waited for). The show's late tolerance (2 ms) keeps the grid: a grid note later than that would sound off the beat,
# so it is dropped. A reaction is off the grid by design, and its lateness is only the hand-over between the engine
# and JACK's thread: on a busy machine that passed 2 ms for 2 % of the reactions (a 2-minute band soak with a core
# busy, 27 of 1,272), and each one dropped was a partner note not played. Later than this it is dropped still.
REACTION_LATE_NS = 20_000_000

# A timed port must have a message before JACK processes the cycle of its due frame, up to a period before it; the
# port asks for it ``lead_ns`` (a period + 2 ms) ahead. The engine computes each step this much before the lead:
# time for the step itself and for a late engine thread. With the show's 8 ms lookahead at a 256-frame period
# (lead 7.3 ms) that slack was 2.7 ms, and with a core busy 9 of 636 grid messages went out late (0.6-6 ms; the
# engine's step reached the scheduler 3.4 ms to -5.5 ms before its due time, 6.8 ms at the median).
ENGINE_SLACK_NS = 4_000_000


def engine_lookahead_ns(lookahead_ns: int, port: object) -> int:
    """How long before its due time the engine computes a step: the show's ``lookahead_ms``, and never less than a
    timed port's lead plus ``ENGINE_SLACK_NS`` (a 256-frame JACK period: 11.3 ms; 64 frames: 8 ms, unchanged)."""
    lead_ns = int(getattr(port, "lead_ns", 0) or 0)
    return max(int(lookahead_ns), lead_ns + ENGINE_SLACK_NS) if lead_ns else int(lookahead_ns)


class OutputPort(Protocol):
    def send(self, data: bytes) -> None: ...


class TimedOutputPort(OutputPort, Protocol):
    """A port that sends at a given time itself (``liveperf.io.jack_native_ports.NativeOutPort``): the scheduler
    hands each message over ``lead_ns`` before it is due, then learns the true send times from ``emitted``."""

    lead_ns: int

    def send_at(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> bool: ...

    def revoke(self, channel: int | None, from_ns: int) -> None: ...

    def emitted(self) -> list[tuple[int, int]]: ...

    def pending(self) -> int: ...


class OutputSink(Protocol):
    """What the engine sees of the scheduler."""

    def schedule(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> None:
        """Send ``data`` at ``due_ns`` (monotonic ns). ``late_ok_ns``: how late it may still go out (None: the
        show's late tolerance; never less than it); a reaction, due the moment it was computed, gets
        ``REACTION_LATE_NS``."""

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        """Silence ``channel`` from ``now_ns`` (or from the moment the scheduler sees this, if later): drop
        not-yet-sent messages due from then on, and end every note of the channel that is sounding then."""

    def adopt(self, sent_ns: int, data: bytes) -> None:
        """``data`` was already sent at ``sent_ns`` by the port itself (``liveperf.modes.reflex``): count it as sent and
        sounding, so its note-off (and a cancel, panic or close) ends it; do not send it again."""


class DiscardSink:
    """An ``OutputSink`` that keeps nothing (``liveperf check`` times a mode's work playing to it)."""

    def schedule(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> None:
        pass

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        pass

    def adopt(self, sent_ns: int, data: bytes) -> None:
        pass


_CANCEL = object()
_ADOPT = object()
_PANIC = object()
_STOP = object()
_IDLE = object()


class Scheduler:
    """Real-time sender thread; see the module docstring. ``on_sent(ts_ns, data)`` is called on this thread.

    ``clock_ns`` (default ``time.monotonic_ns``) is injectable so tests can run the thread's side step by step
    (``pump``) without starting the thread and without sleeping.
    """

    def __init__(
        self,
        port: OutputPort,
        *,
        late_tolerance_ns: int = 2_000_000,
        spin_ns: int = 300_000,
        on_sent: Callable[[int, bytes], None] | None = None,
        keep_errors: bool = True,
        realtime_priority: int | None = 70,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._port = port
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.stats = TimingStats()
        self._plan = Plan(self.stats)
        self._on_sent = on_sent
        self._keep_errors = keep_errors
        self._clock_ns = clock_ns
        self.late_tolerance_ns = late_tolerance_ns
        self.spin_ns = spin_ns
        self.last_send_error = ""
        self._idle_waiters: list[threading.Event] = []
        self._rt_priority = realtime_priority
        self.scheduling = "not started"  # set by the thread: which OS scheduling it got, and why
        self._thread = threading.Thread(target=self._run, name="liveperf-scheduler", daemon=True)
        # A timed port sends at the due time itself: hand over ``lead_ns`` early, no spinning (module docstring).
        self._lead_ns = int(getattr(port, "lead_ns", 0) or 0)
        # A timed port: the due times of reactions handed over and not yet reported back by ``emitted`` (a reaction
        # is due when it was computed, in ns, so its due time tells it from the grid's), with how many each
        self._reactions_out: dict[int, int] = {}

    # ---- any thread ----
    def start(self) -> None:
        self._thread.start()

    def schedule(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> None:
        self._inbox.put((due_ns, data) if late_ok_ns is None else (due_ns, (data, late_ok_ns)))

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        self._inbox.put((_CANCEL, (channel, now_ns)))

    def adopt(self, sent_ns: int, data: bytes) -> None:
        self._inbox.put((_ADOPT, (sent_ns, bytes(data))))

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
            while self.pump(self._wait_s()):
                pass
        finally:
            self.silence_all(wire=True)

    def pump(self, timeout_s: float | None = None) -> bool:
        """One turn of the thread: take commands (waiting up to ``timeout_s`` for the first), send what is due.
        Scheduler thread only (tests call it directly instead of ``start``). False once asked to stop."""
        if not self._drain(timeout_s):
            return False
        self._send_due()
        if self._idle_waiters and not self._plan.heap:
            for ev in self._idle_waiters:
                ev.set()
            self._idle_waiters.clear()
        return True

    def _wait_s(self) -> float | None:
        if not self._plan.heap:
            return 0.01 if self._lead_ns else 0.1  # a timed port's send reports are collected now and then
        left = self._plan.heap[0].due_ns - self._clock_ns() - (self._lead_ns or self.spin_ns)
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
                now = self._clock_ns()
                self._revoke(arg[0], max(arg[1], now))
                self._plan.cancel(arg[0], arg[1], now)
            elif head is _ADOPT:
                self._plan.held.update(arg[1])
                self.stats.sent += 1
                self.stats.reflex_sent += 1
                if self._on_sent is not None:
                    self._on_sent(*arg)
            elif head is _PANIC:
                now = self._clock_ns()
                self._revoke(None, now)
                self._plan.cancel(None, 0, now)
                self.silence_all()
            elif isinstance(arg, tuple):  # (data, late_ok_ns): a reaction
                self._plan.push(head, arg[0], arg[1])
            else:
                self._plan.push(head, arg)
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _revoke(self, channel: int | None, from_ns: int) -> None:
        """A timed port: note-ons handed over but due from ``from_ns`` on are not to sound (a cancel's cut)."""
        if self._lead_ns:
            self._port.revoke(channel, from_ns)

    def _collect_emitted(self) -> None:
        """A timed port: the true send times of what it sent (``sent_ns`` -1: it dropped a late note-on; -2: it
        revoked one; -3: it swallowed a note-off whose note it never sounded or had ended itself)."""
        for due_ns, sent_ns in self._port.emitted():
            if sent_ns < 0:
                if sent_ns == -1:
                    self.stats.late_dropped += 1
                    if self._keep_errors:
                        self.stats.late_dues_ns.append(due_ns)
                elif sent_ns == -2:
                    self.stats.cancelled += 1
                # else: a note-off the port swallowed: counted by the port (``swallowed_offs``)
                self._took_back(due_ns)
            else:
                self.stats.sent += 1
                reaction = self._took_back(due_ns)
                if self._keep_errors:
                    self.stats.errors_ns.append(sent_ns - due_ns)
                    self.stats.dues_ns.append(due_ns)
                    self.stats.reactions.append(reaction)
        if len(self._reactions_out) > 1024:  # a server restart lost some reports: forget those over 10 s old
            newest = max(self._reactions_out)
            self._reactions_out = {d: n for d, n in self._reactions_out.items() if d > newest - 10_000_000_000}

    def _took_back(self, due_ns: int) -> int:
        """1 when a reaction due at ``due_ns`` was out with the timed port (now reported back), else 0."""
        n = self._reactions_out.get(due_ns, 0)
        if not n:
            return 0
        if n == 1:
            del self._reactions_out[due_ns]
        else:
            self._reactions_out[due_ns] = n - 1
        return 1

    def _send_due(self) -> None:
        plan = self._plan
        if self._lead_ns:
            self._collect_emitted()
            if plan.heap:
                self._hand_over(self._clock_ns())
            return
        if not plan.heap:
            return
        now = self._clock_ns()
        due = plan.heap[0].due_ns
        if due - now > self.spin_ns:
            return
        # Short spin for the last part: time.sleep overshoots by ~0.1 ms, which a drummer would hear across a set.
        while now < due:
            time.sleep(0)
            now = self._clock_ns()
        while (item := plan.pop_due(now)) is not None:
            for data in plan.to_send(item):
                if not self._dropped_as_late(item, data, now):
                    self._send(data, item.due_ns, item.late_ok_ns)
            now = self._clock_ns()

    def _dropped_as_late(self, item: Item, data: bytes, now: int) -> bool:
        """Past the tolerance at ``now``: a note-on (or other message) is dropped (True); a note-off or a synth-state
        message (``notes.goes_out_late``) still goes, counted. A cut's note-offs always go."""
        tolerance = max(self.late_tolerance_ns, item.late_ok_ns or 0)
        if now - item.due_ns <= tolerance or item.cut is not None:
            return False
        if goes_out_late(data):
            self.stats.late_note_offs += 1
            return False
        self.stats.late_dropped += 1
        if self._keep_errors:
            self.stats.late_dues_ns.append(item.due_ns)
        return True

    def _hand_over(self, now: int) -> None:
        """A timed port: give it everything due within ``lead_ns``; it sends each at its due time."""
        plan = self._plan
        while (item := plan.pop_due(now + self._lead_ns)) is not None:
            for data in plan.to_send(item):
                if not self._dropped_as_late(item, data, now):
                    self._send(data, max(item.due_ns, now) if item.cut is not None else item.due_ns,
                               item.late_ok_ns)

    def _send(self, data: bytes, due_ns: int, late_ok_ns: int | None = None) -> None:
        try:
            if not self._lead_ns:
                accepted = self._port.send(data)
            elif late_ok_ns is None:
                accepted = self._port.send_at(due_ns, data)
            else:  # the port's own late drop waits as long (a reaction; never less than the show's tolerance)
                accepted = self._port.send_at(due_ns, data, max(late_ok_ns, self.late_tolerance_ns))
        except Exception as exc:  # the port vanished mid-show: count it, keep the clock going
            self.stats.send_errors += 1
            self.last_send_error = f"{type(exc).__name__}: {exc}"
            return
        if accepted is False:  # a supervised port that is down (port_watch): not played, so not held, not recorded
            self.stats.port_dropped += 1
            return
        # A timed port sends it at due_ns; its true send time comes back through ``emitted``.
        sent_ns = due_ns if self._lead_ns else self._clock_ns()
        if self._lead_ns and late_ok_ns is not None:
            self._reactions_out[due_ns] = self._reactions_out.get(due_ns, 0) + 1
        self._plan.held.update(data)
        if not self._lead_ns:  # a timed port's messages count as sent when it says so (``_collect_emitted``)
            self.stats.sent += 1
        if data == b"\xf8":
            self.stats.clock_ticks += 1
        if self._keep_errors and not self._lead_ns:
            self.stats.errors_ns.append(sent_ns - due_ns)
            self.stats.dues_ns.append(due_ns)
            self.stats.reactions.append(late_ok_ns is not None)
        if self._on_sent is not None:
            self._on_sent(sent_ns, data)

    def silence_all(self, wire: bool = False) -> None:
        """Note-offs for every note sent and not yet released, now; with ``wire`` (the end) also for whatever a
        timed port itself still has sounding. Scheduler thread only (or after it ended)."""
        now = self._clock_ns()
        self._revoke(None, now)  # a timed port: what was handed over to sound later does not sound at all
        for data in self._plan.held.release_all():
            self._send(data, now)
        if self._lead_ns:
            self._drain_port()
            # The last net: whatever the port itself still has sounding (an answer it sent for a note-on the engine
            # never got to handle) ends here too.
            net = getattr(self._port, "silence_wire", None) if wire else None
            if net is not None:
                self.stats.wire_offs += net()
                self._drain_port()

    def _drain_port(self) -> None:
        deadline = time.monotonic() + 0.5  # let JACK's thread send them before the port closes
        while self._port.pending() and time.monotonic() < deadline:
            time.sleep(0.002)
        self._collect_emitted()

    @property
    def held_count(self) -> int:
        """Approximate (read from another thread): notes sounding now."""
        return len(self._plan.held)


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
        return f"normal scheduling (SCHED_FIFO {priority} refused: {exc.strerror}; see docs/playing.md, real-time priority)"
    return f"SCHED_FIFO priority {priority}"
