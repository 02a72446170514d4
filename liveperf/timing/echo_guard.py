"""Ignore our own output when it comes back into our input (a MIDI loop through a DAW, a thru port, a cable).

``EchoGuardSink`` sits between the modes and the scheduler: it forwards everything and remembers each note
message it scheduled with its due time. ``is_echo(ts_ns, data)`` is then true for an input note message with the
same bytes (status with channel, pitch, velocity) arriving within ``window_ns`` after it was due (or up to 2 ms
before, for drivers that stamp a little early). Each remembered message matches one echo at most.
A performer playing the partner's exact note on the partner's channel inside the window is indistinguishable from
an echo: keep the performer and the partner on different channels (the setlists do).
Engine thread only (the modes schedule and the engine reads input on that thread).
"""

from __future__ import annotations

from collections import deque

from liveperf.timing.scheduler import OutputSink

EARLY_NS = 2_000_000


class EchoGuardSink:
    def __init__(self, sink: OutputSink, window_ns: int) -> None:
        self.sink = sink
        self.window_ns = window_ns
        self._recent: deque[tuple[int, bytes]] = deque()
        self.echoes = 0

    def schedule(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> None:
        self._remember(due_ns, data)
        self.sink.schedule(due_ns, data, late_ok_ns)

    def _remember(self, due_ns: int, data: bytes) -> None:
        if self.window_ns > 0 and len(data) == 3 and 0x80 <= data[0] < 0xA0:
            self._recent.append((due_ns, bytes(data)))
            if len(self._recent) > 512:  # bounded, whatever happens
                self._recent.popleft()

    def adopt(self, sent_ns: int, data: bytes) -> None:
        self._remember(sent_ns, data)  # a reflex answer echoes back like any other note
        self.sink.adopt(sent_ns, data)

    def cancel_pending(self, channel: int, now_ns: int) -> None:
        self.sink.cancel_pending(channel, now_ns)

    def is_echo(self, ts_ns: int, data: bytes) -> bool:
        if self.window_ns <= 0:
            return False
        while self._recent and self._recent[0][0] < ts_ns - self.window_ns:
            self._recent.popleft()
        data = bytes(data)
        for i, (due, sent) in enumerate(self._recent):
            if sent == data and due - EARLY_NS <= ts_ns:
                del self._recent[i]
                self.echoes += 1
                return True
        return False
