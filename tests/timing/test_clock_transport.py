"""Following external MIDI clock in virtual time: the partner's notes land on the external grid and start, stop,
continue, locate, change tempo and survive a dropout with it. Exact event lists (times within 2 µs of the true
tick times: the follower floors its fitted map to whole ns)."""

from __future__ import annotations

from fractions import Fraction

from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.music.melody import HOLD, OFF, on
from liveperf.timing.midi_clock import MidiClockFollower
from liveperf.modes.phrase import PhraseMode
from liveperf.music.sampler import new_rng_state
from liveperf.timing.virtual_scheduler import VirtualScheduler
from tests.fakes import FixedPhrases, run_engine, settings

MS = 1_000_000
PHRASE = [on(60), HOLD, HOLD, HOLD, on(62), OFF]  # note-ons at phrase steps 0 and 4, rest from 5


def tick_ns(bpm: float) -> Fraction:
    return Fraction(60_000_000_000) / (Fraction(str(bpm)) * 24)


def ticks(first_ns: int, bpm: float, first: int, last: int, origin: int | None = None) -> list[tuple[int, bytes]]:
    """Ticks with indices first..last (inclusive); tick ``origin`` (default ``first``) falls at ``first_ns``."""
    origin = first if origin is None else origin
    t = tick_ns(bpm)
    return [(first_ns + int((i - origin) * t), b"\xf8") for i in range(first, last + 1)]


def run(events, dropout="stop", steps=None):
    def make(clock, sink, now_fn):
        mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32), FixedPhrases([PHRASE]), clock,
                          sink, new_rng_state(0))
        return Engine(mode, clock=clock, sink=sink)
    clock = MidiClockFollower(4, 120.0, on_dropout=dropout)
    wire, engine, _ = run_engine(events, make, clock, steps=steps, stop_when_done=True)
    return wire, clock


def assert_wire(wire, expected):
    assert [m for _, m in wire] == [m for _, m in expected], wire
    for (t, m), (want, _) in zip(wire, expected):
        assert abs(t - want) <= 2_000, (m, t, want, t - want)


def test_start_stop_continue_at_123_4_bpm():
    bpm, t0 = 123.4, 60 * MS
    tn = tick_ns(bpm)
    at = lambda n: t0 + int(n * tn)  # noqa: E731  tick n of the first run
    stop_ns = at(204) + 1 * MS  # after step 34's tick: the second phrase's first note (step 32) is sounding
    t2 = stop_ns + 1_000 * MS  # Continue a second later; the position is tick 205 -> step ceil(205 / 6) = 35
    after = lambda n: t2 + 10 * MS + int((n - 205) * tn)  # noqa: E731
    events = [(50 * MS, b"\xfa")] + ticks(t0, bpm, 0, 204) + [(stop_ns, b"\xfc"), (t2, b"\xfb")] \
        + ticks(t2 + 10 * MS, bpm, 205, 6 * 60, origin=205) + [(after(360) + 1 * MS, b"\xfc")]
    wire, clock = run(events)
    assert_wire(wire, [
        (at(0), ("on", 1, 60, 70)), (at(24), ("off", 1, 60)), (at(24), ("on", 1, 62, 70)), (at(30), ("off", 1, 62)),
        (at(192), ("on", 1, 60, 70)),
        (stop_ns, ("off", 1, 60)),  # Stop: the sounding note ends at once, nothing more until Continue
        # Continue at step 35: the mode begins again, its next phrase at the next bar line (step 48).
        (after(288), ("on", 1, 60, 70)), (after(312), ("off", 1, 60)), (after(312), ("on", 1, 62, 70)),
        (after(318), ("off", 1, 62)),
    ])
    assert abs(clock.tempo_bpm - bpm) < 0.01
    assert clock.stats.starts == 1 and clock.stats.stops == 2 and clock.stats.continues == 1


def test_song_position_pointer_locates_while_stopped():
    bpm, t0 = 97.3, 20 * MS
    stop_ns = t0 + int(100 * tick_ns(bpm))
    t2 = stop_ns + 500 * MS
    # SPP 64 sixteenths = step 64 (bar 5); Continue; the first tick after it is tick 384.
    events = [(10 * MS, b"\xfa")] + ticks(t0, bpm, 0, 100) + [(stop_ns, b"\xfc"), (t2, bytes([0xF2, 64, 0])),
                                                            (t2 + 5 * MS, b"\xfb")] \
        + ticks(t2 + 15 * MS, bpm, 384, 384 + 60, origin=384) + [(t2 + 2_000 * MS, b"\xfc")]
    wire, clock = run(events)
    at2 = lambda n: t2 + 15 * MS + int((n - 384) * tick_ns(bpm))  # noqa: E731
    assert_wire(wire, [
        (t0, ("on", 1, 60, 70)), (t0 + int(24 * tick_ns(bpm)), ("off", 1, 60)),
        (t0 + int(24 * tick_ns(bpm)), ("on", 1, 62, 70)), (t0 + int(30 * tick_ns(bpm)), ("off", 1, 62)),
        # After the locate, step 64 is a bar line: the phrase starts right on the first tick.
        (at2(384), ("on", 1, 60, 70)), (at2(408), ("off", 1, 60)), (at2(408), ("on", 1, 62, 70)),
        (at2(414), ("off", 1, 62)),
    ])
    assert clock.stats.locates == 1


def test_tempo_change_is_followed_onto_the_new_grid():
    t0, change = 30 * MS, 6 * 24  # 123.4 BPM for 6 beats, then 131.7 BPM
    first = ticks(t0, 123.4, 0, change)
    t_change = first[-1][0]
    second = ticks(t_change, 131.7, change, 6 * 96, origin=change)
    events = [(20 * MS, b"\xfa")] + first + second[1:] + [(second[-1][0] + MS, b"\xfc")]
    wire, clock = run(events)
    ons = [t for t, m in wire if m[0] == "on"]
    # Phrases start at steps 0, 32, 64: ticks 0, 192, 384. Step 32 is 2 beats after the change: on the new grid.
    new = lambda n: t_change + int((n - change) * tick_ns(131.7))  # noqa: E731
    assert abs(ons[2] - new(192)) < 300_000, (ons[2] - new(192))  # within 0.3 ms, 2 beats after the change
    assert abs(ons[4] - new(384)) < 2_000
    assert abs(clock.tempo_bpm - 131.7) < 0.01


def test_dropout_stops_after_250_ms_then_ticks_resume():
    bpm, t0 = 123.4, 60 * MS
    tn = tick_ns(bpm)
    last = t0 + int(200 * tn)  # the last tick before the cable is pulled: step 33 (second phrase's C4 sounds)
    back = last + 600 * MS  # ticks come back (no Start, no Continue): resume where we stopped
    events = [(50 * MS, b"\xfa")] + ticks(t0, bpm, 0, 200) + ticks(back, bpm, 201, 201 + 150, origin=201) \
        + [(back + int(150 * tn) + MS, b"\xfc")]
    wire, clock = run(events)
    # Resumed at tick 201 -> step 34; the next bar line is step 48 = tick 288.
    assert_wire(wire, [
        (t0, ("on", 1, 60, 70)), (t0 + int(24 * tn), ("off", 1, 60)), (t0 + int(24 * tn), ("on", 1, 62, 70)),
        (t0 + int(30 * tn), ("off", 1, 62)), (t0 + int(192 * tn), ("on", 1, 60, 70)),
        (last + 250 * MS + 1, ("off", 1, 60)),  # the dropout: 250 ms after the last tick, all notes off
        (back + int(87 * tn), ("on", 1, 60, 70)), (back + int(111 * tn), ("off", 1, 60)),
        (back + int(111 * tn), ("on", 1, 62, 70)), (back + int(117 * tn), ("off", 1, 62)),
    ])
    assert clock.stats.dropouts == 1 and clock.stats.resumes == 1


def test_dropout_freewheels_on_the_last_tempo_when_asked():
    bpm, t0 = 123.4, 60 * MS
    tn = tick_ns(bpm)
    events = [(50 * MS, b"\xfa")] + ticks(t0, bpm, 0, 100)  # ticks stop at step 16; nothing else comes
    wire, clock = run(events, dropout="freewheel", steps=70)
    # The partner plays on: phrase 2 at step 32 and phrase 3 at step 64 on the extrapolated grid.
    assert_wire(wire, [
        (t0, ("on", 1, 60, 70)), (t0 + int(24 * tn), ("off", 1, 60)), (t0 + int(24 * tn), ("on", 1, 62, 70)),
        (t0 + int(30 * tn), ("off", 1, 62)),
        (t0 + int(192 * tn), ("on", 1, 60, 70)), (t0 + int(216 * tn), ("off", 1, 60)),
        (t0 + int(216 * tn), ("on", 1, 62, 70)), (t0 + int(222 * tn), ("off", 1, 62)),
        (t0 + int(384 * tn), ("on", 1, 60, 70)), (t0 + int(408 * tn), ("off", 1, 60)),
        (t0 + int(408 * tn), ("on", 1, 62, 70)), (t0 + int(414 * tn), ("off", 1, 62)),
    ])
    assert clock.stats.dropouts == 1 and clock.running


class LateInput(ScriptedInput):
    """Input that arrives ``lag_ns`` after its stamp, as from a JACK server running slower than real time: the
    stamps are on its frames, and the frame clock's now runs ahead of them (up to ~250 ms at half speed, measured
    2026-12-07). ``heard_ns``: the time up to which input has arrived, as ``LiveClient.heard_through_ns`` says."""

    def __init__(self, events, lag_ns: int) -> None:
        super().__init__(events)
        self.lag_ns = lag_ns

    def wait_until(self, deadline_ns):
        if self._i < len(self._events) and self._events[self._i][0] + self.lag_ns <= deadline_ns:
            ev = self._events[self._i]
            self._i += 1
            self._now = max(self._now, ev[0] + self.lag_ns)
            self.exhausted = self._i >= len(self._events)
            return ev
        self._now = max(self._now, deadline_ns)
        return None

    def heard_ns(self) -> int:
        return self._now - self.lag_ns


def test_ticks_arriving_late_are_no_dropout_and_silence_still_is():
    """Ticks that arrive 300 ms after their stamps (more than the 250 ms dropout) keep the transport running: a
    dropout is judged on the input that has arrived, not on now (before, every tick of a JACK server at half speed
    was a dropout and the show played nothing). When the ticks stop, the dropout still comes, 250 ms of input after
    the last tick."""
    bpm, t0, lag = 123.4, 60 * MS, 300 * MS
    last = t0 + int(200 * tick_ns(bpm))
    source = LateInput([(50 * MS, b"\xfa")] + ticks(t0, bpm, 0, 200), lag)
    clock = MidiClockFollower(4, 120.0, on_dropout="stop")
    sched = VirtualScheduler(now_fn=source.now_ns)
    mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32), FixedPhrases([PHRASE]), clock, sched,
                      new_rng_state(0))
    transport = []
    run_loop(Engine(mode, clock=clock, sink=sched), clock, source, lookahead_ns=8 * MS, stop_at_step=200,
             stop_when_done=True, on_transport=lambda state, ts: transport.append((state, ts)))
    assert [state for state, _ in transport] == ["playing", "stopped"], transport
    assert transport[0][1] == 50 * MS and abs(transport[1][1] - (last + 250 * MS)) <= 2_000, transport
    assert clock.stats.dropouts == 1 and clock.stats.ticks == 201
