"""The rules both schedulers share (``liveperf.timing.scheduler.Scheduler`` on its thread, ``VirtualScheduler`` in
virtual time): the pending messages in due order, the notes really sent and not released, and the counters.
Owned by one thread; every time is passed in (ns), so the real and the virtual scheduler follow these rules exactly
(the scheduler's module docstring says why each rule keeps notes from sticking)."""

from __future__ import annotations

import heapq
import itertools
from array import array
from dataclasses import dataclass, field

from liveperf.music.notes import HeldNotes, is_note_off, is_note_on, note_off


@dataclass
class TimingStats:
    """Counters and timing errors (send time minus due time, ns) of sent messages; owned by the scheduler thread."""

    # Went out: a timed port's (jack-native) once it reports the message sent (``emitted``), not at hand-over, so
    # what it dropped as late, revoked or swallowed is not counted here; plus notes the port sent itself (reflex)
    sent: int = 0
    late_dropped: int = 0
    late_note_offs: int = 0  # late but sent: note-offs, synth-state messages (CC, Program Change), MIDI clock
    cancelled: int = 0
    send_errors: int = 0
    port_dropped: int = 0  # refused by a port that was down (JACK restarting): never sounded
    unheld_offs: int = 0  # note-offs not sent: their note was not sounding (never sent, or already ended)
    reflex_sent: int = 0  # sent by the port itself and adopted (``adopt``); also in ``sent``
    wire_offs: int = 0  # note-offs for notes the port still had sounding at the end (the last safety net)
    clock_ticks: int = 0  # MIDI clock ticks (0xF8) sent
    # 8 bytes per message sent (a 3-hour show at 20 messages/s: 1.7 MB), not a Python int object each
    errors_ns: array = field(default_factory=lambda: array("q"))
    # the due time of each of those messages (same order): tells a note due on the grid from a reaction due when it
    # was computed (bench.timing_jack measures the two apart)
    dues_ns: array = field(default_factory=lambda: array("q"))
    # 1 where that message was a reaction (scheduled with ``late_ok_ns``: due the moment it was computed), else 0;
    # the report gives the two kinds' timing apart (a reaction goes out in a following cycle by design)
    reactions: array = field(default_factory=lambda: array("b"))
    late_dues_ns: array = field(default_factory=lambda: array("q"))  # the due time of each message dropped as late


@dataclass(order=True)
class Item:
    due_ns: int
    seq: int
    data: bytes = field(compare=False)
    cut: int | None = field(default=None, compare=False)  # a cut: end every sounding note of this channel
    late_ok_ns: int | None = field(default=None, compare=False)  # how late it may go (None: the tolerance)


class Plan:
    """Pending messages (a heap) and the notes really sent and not released. Owned by one thread; every time is
    passed in (ns), so the real and the virtual scheduler share these rules exactly."""

    def __init__(self, stats: TimingStats) -> None:
        self.heap: list[Item] = []
        self.held = HeldNotes()
        self.stats = stats
        self._seq = itertools.count()
        self._last_on_due: dict[tuple[int, int], int] = {}  # latest note-on due time per (channel, pitch)

    def push(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> None:
        if len(data) == 3 and (is_note_on(data) or is_note_off(data)):
            key = (data[0] & 0x0F, data[1])
            if is_note_on(data):
                self._last_on_due[key] = max(due_ns, self._last_on_due.get(key, due_ns))
            else:  # never before a note-on scheduled ahead of it: it would leave that note sounding
                due_ns = max(due_ns, self._last_on_due.get(key, due_ns))
        heapq.heappush(self.heap, Item(due_ns, next(self._seq), data, late_ok_ns=late_ok_ns))

    def cancel(self, channel: int | None, at_ns: int, now_ns: int) -> None:
        """Cut ``channel`` (None: every channel) at ``max(at_ns, now_ns)``: drop what is due from ``at_ns`` on,
        and what is overdue (it would sound for no time), keep note-offs up to the cut; the cut itself ends the
        sounding notes. System messages (clock) are not touched."""
        cut_ns = max(at_ns, now_ns)
        keep = []
        for item in self.heap:
            data = item.data
            if item.cut is not None or not data or data[0] >= 0xF0 or (
                    channel is not None and data[0] & 0x0F != channel):
                keep.append(item)
            elif is_note_off(data):
                if item.due_ns <= cut_ns:
                    keep.append(item)
            elif item.due_ns >= at_ns or item.due_ns <= now_ns:
                self.stats.cancelled += 1
            else:
                keep.append(item)  # due before the cut, still ahead of now: it plays, the cut ends it
        self.heap = keep
        heapq.heapify(self.heap)
        for ch in range(16) if channel is None else (channel,):
            heapq.heappush(self.heap, Item(cut_ns, next(self._seq), b"", ch))

    def pop_due(self, now_ns: int) -> Item | None:
        if self.heap and self.heap[0].due_ns <= now_ns:
            return heapq.heappop(self.heap)
        return None

    def to_send(self, item: Item) -> list[bytes]:
        """The bytes to send for a popped item: a cut's note-offs, a message, or nothing (an unheld note-off)."""
        if item.cut is not None:
            return [note_off(ch, p) for ch, p in self.held.held() if ch == item.cut]
        if is_note_off(item.data) and (item.data[0] & 0x0F, item.data[1]) not in self.held:
            self.stats.unheld_offs += 1
            return []
        return [item.data]
