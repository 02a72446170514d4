"""The engine loop: interleave performer input and grid steps, each step computed ``lookahead_ns`` before it is due.

One loop, two sources of time:
- ``QueueInput`` (real time): waits on the queue the input adapters fill, against the show's clock
  (``time.monotonic_ns``, or the jack-native port's frame clock);
- ``ScriptedInput`` (virtual time): replays a list of timestamped events and jumps the virtual clock.
Both implement ``wait_until(deadline_ns) -> (ts_ns, data) | None`` and ``now_ns()``; the loop cannot tell them apart,
so the virtual-time tests exercise the same code the show runs. The loop runs on the engine thread.
"""

from __future__ import annotations

import queue
import time
from typing import Callable, Iterable, Protocol

from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine

END_OF_INPUT = b""  # an input adapter puts (ts, END_OF_INPUT) when its source is finished


class InputSource(Protocol):
    exhausted: bool

    def now_ns(self) -> int: ...

    def wait_until(self, deadline_ns: int) -> tuple[int, bytes] | None: ...


class ScriptedInput:
    """Virtual time: events (ts_ns, data) in any order; time jumps to each event or deadline."""

    def __init__(self, events: Iterable[tuple[int, bytes]], start_ns: int = 0) -> None:
        self._events = sorted(events, key=lambda e: e[0])
        self._i = 0
        self._now = start_ns
        self.exhausted = not self._events

    def now_ns(self) -> int:
        return self._now

    def wait_until(self, deadline_ns: int) -> tuple[int, bytes] | None:
        if self._i < len(self._events) and self._events[self._i][0] <= deadline_ns:
            ev = self._events[self._i]
            self._i += 1
            self._now = max(self._now, ev[0])
            self.exhausted = self._i >= len(self._events)
            return ev
        self._now = max(self._now, deadline_ns)
        return None


class QueueInput:
    """Real time: adapters (MIDI port poll thread, file player) put (ts_ns, data) on ``inbox``. ``heard_ns``: the
    show's time up to which input has arrived (default ``now_ns``; the jack-native port: up to the frames JACK has
    run, which on a server running slower than real time lag ``now_ns`` by up to a few hundred ms)."""

    def __init__(self, inbox: "queue.SimpleQueue[tuple[int, bytes]]", sources: int = 1,
                 now_ns: Callable[[], int] = time.monotonic_ns, heard_ns: Callable[[], int] | None = None) -> None:
        self.inbox = inbox
        self._open_sources = sources
        self.exhausted = sources == 0
        self.now_ns = now_ns
        self.heard_ns = heard_ns or now_ns

    def wait_until(self, deadline_ns: int) -> tuple[int, bytes] | None:
        while True:
            left_s = (deadline_ns - self.now_ns()) / 1e9
            try:
                ev = self.inbox.get(timeout=left_s) if left_s > 0 else self.inbox.get_nowait()
            except queue.Empty:
                return None
            if ev[1] == END_OF_INPUT:
                self._open_sources -= 1
                self.exhausted = self._open_sources <= 0
                continue
            return ev


CLOCK_STATUS = frozenset((0xF8, 0xFA, 0xFB, 0xFC, 0xF2))  # MIDI clock and transport: for the clock, not the engine
IDLE_WAIT_NS = 50_000_000  # while the transport is stopped, look at should_stop this often


def run_loop(
    engine: Engine,
    clock: InternalClock,
    source: InputSource,
    *,
    lookahead_ns: int,
    first_step: int = 0,
    stop_at_step: int | None = None,
    stop_when_done: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    on_input: Callable[[int, bytes], bool | None] | None = None,
    stop_at_bar: Callable[[], bool] = lambda: False,
    on_control: Callable[[int, object], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_step_done: Callable[[int], None] | None = None,
    on_transport: Callable[[str, int], None] | None = None,
) -> int:
    """Run until ``should_stop()``, ``stop_at_step`` is reached, the next bar line once ``stop_at_bar()`` (a song
    change), or (with ``stop_when_done``) the input is exhausted and the engine is idle. Returns the first step not
    computed. ``on_input`` sees each performer event first (the recorder, show control) and returns True when it
    consumed it (a Program Change that selects a song is not for the engine). Inbox items whose data is not bytes are
    control commands (OSC, stage keys) and go to ``on_control``. ``on_step(step, due_ns)`` runs just before the
    engine computes each step (glides, beat feedback); ``on_step_done(ns)`` gets how long the engine took (wall
    time, for the stage view's latency figure; it changes nothing). Between steps the loop also wakes the engine
    when its mode asks (``engine.wake_ns()``: the end of the duet's listening window).

    ``clock`` is an ``InternalClock`` (always running) or a ``MidiClockFollower``: MIDI clock and transport bytes
    from the input go to it, and its events move the engine: start/continue/locate/resume -> ``relocate`` at the
    event's step, stop/dropout (when it stops the transport) -> ``halt``. While the transport is stopped no step
    is computed. ``on_transport(state, ts_ns)`` hears each of those changes as it is applied: "playing" (start,
    continue, resume, a locate while running) or "stopped", at the stamp of the message (or poll) that caused it."""
    step = first_step
    engine.begin(step)
    ended = False
    # A clock dropout is "no tick for dropout_ns of input": judged on the time up to which input has arrived, not
    # on now (a JACK server at half speed made every tick a dropout, 2026-12-07); ScriptedInput: now.
    heard_ns = getattr(source, "heard_ns", source.now_ns)
    bar = engine.steps_per_bar
    while not should_stop():
        if source.exhausted and not ended:
            # The source is gone (take finished, controller unplugged): nothing it still holds will be released.
            engine.input_ended(source.now_ns())
            ended = True
        if stop_at_step is not None and step >= stop_at_step:
            break
        if step % bar == 0 and stop_at_bar():
            break
        if stop_when_done and source.exhausted and (engine.idle or not clock.running):
            break
        if clock.running:
            deadline = clock.ns_at_step(step) - lookahead_ns
        else:
            deadline = source.now_ns() + IDLE_WAIT_NS
        dropout = clock.dropout_deadline_ns()
        if dropout is not None:  # when the input lags now by L, it reaches the deadline L later
            deadline = min(deadline, dropout + 1 + max(0, source.now_ns() - heard_ns()))
        wake = engine.wake_ns() if clock.running else None
        if wake is not None:
            deadline = min(deadline, wake)
        ev = source.wait_until(deadline)
        if ev is not None:
            data = ev[1]
            if not isinstance(data, (bytes, bytearray)):
                if on_control is not None:
                    on_control(ev[0], data)
                continue
            if data and data[0] in CLOCK_STATUS:
                step = _transport(engine, clock, clock.on_message(ev[0], data), step, on_transport)
                continue
            if on_input is not None and on_input(ev[0], data):
                continue
            engine.on_input(ev[0], data)
            continue
        if wake is not None and source.now_ns() >= wake:
            engine.on_wake(source.now_ns())
        polled_ns = heard_ns() if clock.dropout_deadline_ns() is not None else source.now_ns()
        step = _transport(engine, clock, clock.poll(polled_ns), step, on_transport)
        if not clock.running or source.now_ns() < clock.ns_at_step(step) - lookahead_ns:
            continue  # woken for a dropout check or while stopped, not for this step
        if source.exhausted and engine.idle and stop_when_done:
            break
        if on_step is not None:
            on_step(step, clock.ns_at_step(step))
        t0 = time.perf_counter_ns()
        engine.on_step(step)
        if on_step_done is not None:
            on_step_done(time.perf_counter_ns() - t0)
        step += 1
    return step


def _transport(engine: Engine, clock, events, step: int,
               on_transport: Callable[[str, int], None] | None = None) -> int:
    """Apply the clock's transport events to the engine (and tell ``on_transport``); returns the next step."""
    for ev in events:
        if ev.kind == "resume" and not engine.halted and abs(ev.step - step) <= 1:
            continue  # a freewheel bridged the gap: the music never stopped, the map just re-locked
        state = None
        if ev.kind in ("start", "continue", "resume") or (ev.kind == "locate" and clock.running):
            engine.relocate(ev.step, ev.ts_ns)
            step, state = ev.step, "playing"
        elif ev.kind == "locate":
            step = ev.step
        elif ev.kind in ("stop", "dropout") and not clock.running:
            engine.halt(ev.ts_ns)
            state = "stopped"
        if state is not None and on_transport is not None:
            on_transport(state, ev.ts_ns)
    return step
