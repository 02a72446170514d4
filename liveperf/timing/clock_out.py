"""The MIDI clock liveperf sends when it is the clock master (``[show] send_clock``): what a drum machine follows.

A drum machine restarts its pattern on Start and stops on Stop, and takes its tempo from the tick count, so:
- **Start once**, before the first tick of the first song; **Stop once**, after the last tick, when the show ends or
  a song really ends (a take that finished, the last song). A song change at a bar line and a panic keep the clock
  running: the next song's ticks follow the last one on the bar line, at the new song's tempo (no Stop / Start that
  would restart the drum machine's pattern).
- **24 ticks per quarter note**, every one scheduled (``Engine.on_step`` schedules one step's ticks as it computes
  the step); a tick that would be late goes out late, never dropped (``notes.goes_out_late``): a lost tick slows the
  drum machine down for good.
- ``ticks`` counts what was scheduled; the show's report sets it beside the scheduler's count of ticks really sent
  and the ticks the songs' lengths call for (``report.clock_out``).

One ``ClockOut`` lives for the whole show and is handed from song to song; the engine thread of the song playing
owns it. Times in ns on the show's clock; steps on the song's grid.
"""

from __future__ import annotations

TICKS_PER_BEAT = 24  # MIDI clock: 24 per quarter note
START, STOP, TICK = b"\xfa", b"\xfc", b"\xf8"


class ClockOut:
    def __init__(self) -> None:
        self.running = False  # Start sent, Stop not yet
        self.starts = 0
        self.stops = 0
        self.ticks = 0  # ticks scheduled
        self._end_ns = 0  # when the tick after the last one scheduled would be due: Stop goes there

    def step(self, sink, clock, step: int) -> None:
        """Schedule ``step``'s ticks on ``sink`` (Start first, if the clock is not running)."""
        tps = TICKS_PER_BEAT // clock.steps_per_beat
        if not self.running:
            sink.schedule(clock.ns_at_step(step), START)
            self.running = True
            self.starts += 1
        for t in range(step * tps, (step + 1) * tps):
            sink.schedule(clock.ns_at_tick(t, TICKS_PER_BEAT), TICK)
        self.ticks += tps
        self._end_ns = clock.ns_at_step(step + 1)

    def stop(self, sink, now_ns: int) -> None:
        """Stop, after the last tick scheduled (or now, if that is later); nothing if the clock is not running."""
        if self.running:
            sink.schedule(max(now_ns, self._end_ns), STOP)
            self.running = False
            self.stops += 1
