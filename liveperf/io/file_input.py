"""File-backed performer: a MIDI take played into the engine in real time, as if a musician were playing it.

The take's beats are laid on the song's clock (beat 0 of the file = step 0 of the song), so a take recorded at any
tempo is played at the song's tempo and lands on its grid. ``take_events`` gives the timed events (used directly in
virtual time); ``TakePlayer`` is the real-time adapter: its own thread sleeps to each absolute deadline and puts
``(ts_ns, data)`` on the engine's inbox, then ``(ts_ns, END_OF_INPUT)``.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from liveperf.timing.clock import InternalClock
from liveperf.io.midi_file import Take
from liveperf.loop import END_OF_INPUT


def take_events(take: Take, clock: InternalClock, channel_voice_only: bool = True) -> list[tuple[int, bytes]]:
    """The take's messages as (ts_ns, bytes) on ``clock``."""
    out = []
    for m in take.messages:
        if channel_voice_only and not 0x80 <= m.data[0] < 0xF0:
            continue
        out.append((clock.ns_at_tick(m.tick, take.ticks_per_beat), bytes(m.data)))
    return out


class TakePlayer:
    """Plays timed events into ``inbox`` from its own thread, at their times on ``now_ns``'s clock (the show's);
    ``stop()`` ends early (and joins)."""

    def __init__(self, events: list[tuple[int, bytes]], inbox: queue.SimpleQueue,
                 now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._events = events
        self._now_ns = now_ns
        self._inbox = inbox
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveperf-take", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        last_ts = self._now_ns()
        for ts_ns, data in self._events:
            # Event.wait is an interruptible sleep; the engine samples input once per step, so ~0.1 ms of
            # oversleep here is far below what quantisation to the grid absorbs.
            while not self._stop.is_set():
                left = ts_ns - self._now_ns()
                if left <= 0:
                    break
                self._stop.wait(min(left / 1e9, 0.05))
            if self._stop.is_set():
                break
            self._inbox.put((ts_ns, data))
            last_ts = ts_ns
        self._inbox.put((last_ts, END_OF_INPUT))
