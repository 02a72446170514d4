"""``VirtualScheduler``: the scheduler's rules (``liveperf.timing.plan.Plan``) in virtual time, for tests and the
soak bench. "Sent" means appended to ``sent`` at the due time; nothing sleeps and no thread runs. One thread."""

from __future__ import annotations

from typing import Callable

from liveperf.music.notes import goes_out_late
from liveperf.timing.plan import Plan, TimingStats


class VirtualScheduler:
    """``OutputSink`` in virtual time: keeps the same drop/cancel rules, records ``(due_ns, data)`` as sent."""

    def __init__(self, late_tolerance_ns: int = 0, now_fn: Callable[[], int] | None = None) -> None:
        self.stats = TimingStats()
        self._plan = Plan(self.stats)
        self.sent: list[tuple[int, bytes]] = []
        self.held = self._plan.held
        self.late_tolerance_ns = late_tolerance_ns
        self._now_fn = now_fn
        self._until_ns = 0  # everything due up to here has gone out

    def _advance(self, now_ns: int) -> None:
        self._until_ns = max(self._until_ns, now_ns)
        while (item := self._plan.pop_due(now_ns)) is not None:
            for data in self._plan.to_send(item):
                self._emit(item.due_ns, data)

    def _emit(self, at_ns: int, data: bytes) -> None:
        self.sent.append((at_ns, data))
        self.held.update(data)
        self.stats.sent += 1
        if data == b"\xf8":
            self.stats.clock_ticks += 1

    def schedule(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> None:
        now = self._now_fn() if self._now_fn else due_ns
        self._advance(now)
        if due_ns < now - max(self.late_tolerance_ns, late_ok_ns or 0):
            if not goes_out_late(data):
                self.stats.late_dropped += 1
                return
            self.stats.late_note_offs += 1
        self._plan.push(max(due_ns, now), data)

    def adopt(self, sent_ns: int, data: bytes) -> None:
        self._advance(sent_ns)
        self._emit(sent_ns, bytes(data))
        self.stats.reflex_sent += 1

    def channel_quiet(self, channel: int, now_ns: int) -> bool:
        """Nothing sounds on ``channel`` at ``now_ns`` and no note message waits for it (``VirtualReflex``)."""
        self._advance(now_ns)
        return (not any(ch == channel for ch, _ in self.held.held()) and
                not any(i.data and i.data[0] < 0xF0 and i.data[0] & 0x0F == channel for i in self._plan.heap))

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        # As in ``Scheduler``, the cut is at max(now_ns, now): a cut ahead of virtual now (a mode switch at the next
        # bar line) waits in the heap (jumping time to it would send messages scheduled after this call out of
        # order); one stamped earlier (a transport Stop) cannot undo what is due by now: it ends it.
        now = self._now_fn() if self._now_fn else max(now_ns, self._until_ns)
        self._advance(now)
        self._plan.cancel(channel, now_ns, now)
        self._advance(now)

    def panic(self, now_ns: int) -> None:
        """Drop everything pending on every channel and end every sounding note at ``now_ns``."""
        now_ns = max(now_ns, self._until_ns)
        self._advance(now_ns)
        self._plan.cancel(None, now_ns, now_ns)
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
            self.stats.sent += 1

    def cancel_all(self, now_ns: int) -> None:
        for ch in sorted({item.data[0] & 0x0F for item in self._plan.heap if item.data and item.data[0] < 0xF0}):
            self.cancel_pending(ch, now_ns)
