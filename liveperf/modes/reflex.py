"""Harmonize's reflex: the partner's answer sent by the output port itself, in the cycle of the performer's note-on.

The engine answers a note-on once a Python thread has woken up, looked the answer up and handed it to the
scheduler: at best the JACK cycle after the note-on. The ``jack-native`` port can do better: harmonize publishes,
every grid step, the answer it *would* play to each pitch at this step and the next (drawn ahead from the model's
batched peek, with the same sampler and RNG), and the port's compiled callback sends it on the note-on's own frame
(``liveperf.io.jack_native_callback`` has the rules for when it may). The engine then *adopts* what was sent:
the partner voice holds that note, the scheduler counts it as sounding, and it ends like any other harmony.

Contract (``Reflex``), engine thread only:
- ``publish(t0_ns, mid_ns, end_ns, partner_channel, answers, velocity)``: answers ([2, 128]: a pitch, or -1 for
  "leave it to the engine") for note-ons stamped in [t0_ns, mid_ns) and [mid_ns, end_ns);
- ``enable(on)``: the port may answer (a table for now is published; off when the mode stops);
- ``hold(cause_pitch, channel, pitch)``: the engine itself played this harmony for that performer pitch: the port
  may end it on the frame of the cause's release, as it does its own answers;
- ``answered(ts_ns, data)``: the answer sent for this note-on (``ReflexAnswer``), or None; each answer once;
- ``leftovers(before_ns)``: answers whose note-on the engine never handled (it arrived as the song ended): the
  engine ends them, so nothing the port sent is left sounding.
``input_channel`` (None: any channel but the partner's) is set by the engine: the port answers only there.

``windows(clock, step)`` gives the two steps' windows exactly as ``clock.nearest_step`` splits time.
``PortReflex`` is the real one (over ``JackMidiClient``); ``VirtualReflex`` makes the port's decision in virtual
time, so the engine's side is tested with exact event lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


@dataclass(frozen=True)
class ReflexAnswer:
    ts_ns: int  # the performer note-on's stamp
    cause: bytes  # the note-on
    answer: bytes  # the note-on the port sent on the partner channel
    sent_ns: int  # when it went out (the note-on's frame)


class Reflex(Protocol):
    input_channel: int | None

    def publish(self, t0_ns: int, mid_ns: int, end_ns: int, partner_channel: int, answers: np.ndarray,
                velocity: np.ndarray) -> None: ...

    def enable(self, on: bool) -> None: ...

    def hold(self, cause_pitch: int, channel: int, pitch: int) -> None: ...

    def answered(self, ts_ns: int, data: bytes) -> ReflexAnswer | None: ...

    def leftovers(self, before_ns: int) -> list[ReflexAnswer]: ...


def windows(clock, step: int) -> tuple[int, int, int]:
    """(t0, mid, end): note-ons in [t0, mid) are nearest to ``step``, in [mid, end) to ``step + 1``."""
    def boundary(s: int) -> int:  # nearest_step: ties go to the later step
        a, b = clock.ns_at_step(s), clock.ns_at_step(s + 1)
        return a + (b - a + 1) // 2
    return boundary(step - 1), boundary(step), boundary(step + 1)


class PortReflex:
    """The reflex of a ``jack-native`` port: its ``LiveClient`` (``liveperf.io.jack_native_ports``), whose client
    (``liveperf.io.jack_native.JackMidiClient``) may be replaced after a server restart; times in and out are on the
    show's clock (the client's frame clock plus the live offset)."""

    def __init__(self, live) -> None:
        self.live = live
        self.input_channel: int | None = None
        self._waiting: list[ReflexAnswer] = []

    def publish(self, t0_ns, mid_ns, end_ns, partner_channel, answers, velocity) -> None:
        client, offset = self.live.current
        client.publish_reflex(t0_ns - offset, mid_ns - offset, end_ns - offset, partner_channel, self.input_channel,
                              answers, velocity)

    def enable(self, on: bool) -> None:
        self.live.reflex_on = on
        self.live.client.reflex_enable(on)

    def hold(self, cause_pitch: int, channel: int, pitch: int) -> None:
        self.live.client.reflex_hold(cause_pitch, channel, pitch)

    def _pull(self) -> None:
        client, offset = self.live.current
        for ts, cause, answer, sent in client.reflex_answers():
            if sent >= 0:  # -1: the cycle's buffer was full, nothing went out (the engine answers instead)
                self._waiting.append(ReflexAnswer(ts + offset, cause, answer, sent + offset))

    def answered(self, ts_ns: int, data: bytes) -> ReflexAnswer | None:
        self._pull()
        for i, a in enumerate(self._waiting):
            if a.ts_ns == ts_ns and a.cause == bytes(data):
                return self._waiting.pop(i)
        return None

    def leftovers(self, before_ns: int) -> list[ReflexAnswer]:
        self._pull()
        old = [a for a in self._waiting if a.ts_ns < before_ns]
        self._waiting = [a for a in self._waiting if a.ts_ns >= before_ns]
        return old


class VirtualReflex:
    """The port's decision, in virtual time: ``quiet(channel, ts_ns)`` says whether the partner channel is silent on
    the wire then (``VirtualScheduler.channel_quiet``). Every answer is kept in ``sent`` for tests."""

    def __init__(self, quiet: Callable[[int, int], bool]) -> None:
        self.quiet = quiet
        self.input_channel: int | None = None
        self.enabled = False
        self.table: tuple | None = None
        self.sent: list[ReflexAnswer] = []
        self.declined = 0

    def publish(self, t0_ns, mid_ns, end_ns, partner_channel, answers, velocity) -> None:
        self.table = (t0_ns, mid_ns, end_ns, partner_channel, np.array(answers), np.array(velocity))

    def enable(self, on: bool) -> None:
        self.enabled = on

    def hold(self, cause_pitch: int, channel: int, pitch: int) -> None:
        pass  # ending at the release's frame changes nothing in virtual time: the engine's off is due then too

    def answered(self, ts_ns: int, data: bytes) -> ReflexAnswer | None:
        if not self.enabled or self.table is None or len(data) != 3 or data[0] & 0xF0 != 0x90 or data[2] == 0:
            return None
        t0, mid, end, partner, answers, velocity = self.table
        ch = data[0] & 0x0F
        if not t0 <= ts_ns < end or ch == partner or (self.input_channel is not None and ch != self.input_channel):
            return None
        pitch = int(answers[0 if ts_ns < mid else 1, data[1]])
        if not 0 <= pitch <= 127:
            return None
        if not self.quiet(partner, ts_ns):
            self.declined += 1
            return None
        vel = max(1, min(127, int(velocity[data[2]])))
        a = ReflexAnswer(ts_ns, bytes(data), bytes((0x90 | partner, pitch, vel)), ts_ns)
        self.sent.append(a)
        return a

    def leftovers(self, before_ns: int) -> list[ReflexAnswer]:
        return []  # every answer is handed over by ``answered`` itself
