"""The engine: one object, one thread, all musical state of the song being played.

``on_input(ts_ns, data)`` takes the performer's raw MIDI (already timestamped by the input adapter);
``on_step(step)`` computes one grid step a little before it is due and schedules what it plays on the sink
(``(due_ns, bytes)``). No I/O, no wall clock: the loop (``liveperf.loop``) calls it, in real or virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass

from liveperf.modes.call_response import CallAndResponse


@dataclass
class InputStats:
    note_ons: int = 0
    note_offs: int = 0
    triggers: int = 0
    ignored: int = 0


class Engine:
    """Routes performer input to the song's mode; owns the mode. Engine thread only."""

    def __init__(self, mode: CallAndResponse, *, trigger_cc: int | None = None, input_channel: int | None = None):
        self.mode = mode
        self.trigger_cc = trigger_cc
        self.input_channel = input_channel  # None: omni
        self.input_stats = InputStats()

    @property
    def idle(self) -> bool:
        return self.mode.idle

    def on_input(self, ts_ns: int, data: bytes) -> None:
        if len(data) != 3 or data[0] < 0x80 or data[0] >= 0xF0:
            self.input_stats.ignored += 1
            return
        kind, ch = data[0] & 0xF0, data[0] & 0x0F
        if self.input_channel is not None and ch != self.input_channel:
            self.input_stats.ignored += 1
            return
        if kind == 0x90 and data[2] > 0:
            self.input_stats.note_ons += 1
            self.mode.note_on(ts_ns, data[1], data[2])
        elif kind == 0x80 or kind == 0x90:
            self.input_stats.note_offs += 1
            self.mode.note_off(ts_ns, data[1])
        elif kind == 0xB0 and self.trigger_cc is not None and data[1] == self.trigger_cc and data[2] >= 64:
            self.input_stats.triggers += 1
            self.mode.trigger()
        else:
            self.input_stats.ignored += 1

    def input_ended(self, now_ns: int) -> None:
        """The performer's source is finished: release whatever it still holds, as if the keys came up now."""
        self.mode.release_performer(now_ns)

    def on_step(self, step: int) -> None:
        self.mode.on_step(step)

    def stop(self, now_ns: int) -> None:
        self.mode.stop(now_ns)
