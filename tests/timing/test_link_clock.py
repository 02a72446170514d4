"""LinkClock: the step grid on a Link session's timeline, in virtual time (the session is scripted here; the real
aalink peer is in ``test_link_session.py``). Exact wire events through phrase mode when a peer changes the tempo,
starts and stops the transport, or the timeline jumps; the integer map's contract over random sessions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from liveperf.engine import Engine
from liveperf.modes.phrase import PhraseMode
from liveperf.music.sampler import new_rng_state
from liveperf.timing.link_clock import LeadingLinkClock, LinkClock, LinkState, us_per_beat
from tests.fakes import FixedPhrases, run_engine, settings
from tests.modes.test_modes import PHRASE_A

MS = 1_000_000
S120 = 125 * MS  # a 16th at 120 BPM
S150 = 100 * MS  # a 16th at 150 BPM


class ScriptedSession:
    """A Link session as a list of segments (from_ns, beat at from_ns, tempo, playing, peers); ``read`` gives the
    segment in force at ``now()`` (set to the virtual clock by the engine factory)."""

    def __init__(self, segments):
        self.segments = segments
        self.now = lambda: 0
        self.written: list[float] = []

    def read(self) -> LinkState:
        t = self.now()
        t0, beat0, tempo, playing, peers = [s for s in self.segments if s[0] <= t][-1]
        return LinkState(beat=beat0 + (t - t0) * tempo / 60e9, at_ns=t, tempo_bpm=tempo, playing=playing,
                         peers=peers)


def phrase_engine(session, source, **over):
    def make(clock, sink, now_fn):
        session.now = now_fn
        mode = PhraseMode(settings(channel=1, velocity=70, **over), source, clock, sink, new_rng_state(0))
        return Engine(mode, clock=clock, sink=sink, steps_per_bar=16)
    return make


def test_a_peer_changes_the_tempo_and_the_partner_moves_to_the_new_grid():
    # 120 BPM from beat 0; at 2 s (beat 4, step 16) a peer sets 150 BPM: steps after 16 are 100 ms apart.
    session = ScriptedSession([(0, 0.0, 120.0, True, 1), (2000 * MS, 4.0, 150.0, True, 1)])
    clock = LinkClock(session.read, 4, 4.0)
    source = FixedPhrases([PHRASE_A])
    wire, engine, _ = run_engine([], phrase_engine(session, source, phrase_every_steps=32, max_note_steps=64),
                                 clock, steps=44)
    after = lambda step: 2000 * MS + (step - 16) * S150  # noqa: E731
    assert wire == [
        (0, ("on", 1, 60, 70)), (2 * S120, ("off", 1, 60)), (2 * S120, ("on", 1, 62, 70)),
        (4 * S120, ("off", 1, 62)), (8 * S120, ("on", 1, 64, 70)),
        (after(32), ("off", 1, 64)), (after(32), ("on", 1, 60, 70)),  # the second phrase, on the new grid
        (after(34), ("off", 1, 60)), (after(34), ("on", 1, 62, 70)), (after(36), ("off", 1, 62)),
        (after(40), ("on", 1, 64, 70)), (after(44), ("off", 1, 64)),
    ]
    assert clock.stats.tempo_changes == 1 and clock.stats.locates == 0 and clock.tempo_bpm == 150.0


def test_start_and_stop_follow_the_session_transport_from_the_next_bar_line():
    # Stopped until 1 s (beat 2, step 8), when a peer starts: we start at the next bar line, step 16 (2 s).
    # At 4.5 s the peer stops: our notes end there.
    session = ScriptedSession([(0, 0.0, 120.0, False, 1), (1000 * MS, 2.0, 120.0, True, 1),
                               (4500 * MS, 9.0, 120.0, False, 1)])
    clock = LinkClock(session.read, 4, 4.0)
    assert not clock.running
    source = FixedPhrases([PHRASE_A])
    late_cc = [(6000 * MS, bytes([0xB0, 20, 0]))]  # keeps the virtual input open until 6 s
    wire, engine, _ = run_engine(late_cc, phrase_engine(session, source, phrase_every_steps=32, max_note_steps=64),
                                 clock, steps=None, stop_when_done=True)
    assert wire[:5] == [
        (16 * S120, ("on", 1, 60, 70)), (18 * S120, ("off", 1, 60)), (18 * S120, ("on", 1, 62, 70)),
        (20 * S120, ("off", 1, 62)), (24 * S120, ("on", 1, 64, 70)),
    ]
    stop_ns = wire[5][0]
    assert wire[5:] == [(stop_ns, ("off", 1, 64))] and 4500 * MS <= stop_ns < 4500 * MS + S120
    assert (clock.stats.starts, clock.stats.stops, clock.running) == (1, 1, False)


def test_a_timeline_jump_relocates_the_engine_instead_of_playing_late_steps():
    # A peer joins at 1 s and the phases are aligned: our beat jumps from 2.0 to 3.0 (4 steps ahead).
    session = ScriptedSession([(0, 0.0, 120.0, True, 0), (1000 * MS, 3.0, 120.0, True, 1)])
    clock = LinkClock(session.read, 4, 4.0)
    source = FixedPhrases([PHRASE_A])
    wire, engine, _ = run_engine([], phrase_engine(session, source, phrase_every_steps=16, max_note_steps=64),
                                 clock, steps=40)
    seen = 1000 * MS + S120 - 8 * MS  # the read before step 9 (lookahead 8 ms) sees the jump
    bar = 1000 * MS + 4 * S120  # the session's next bar line: beat 4, our step 16
    assert wire == [
        (0, ("on", 1, 60, 70)), (2 * S120, ("off", 1, 60)), (2 * S120, ("on", 1, 62, 70)),
        (4 * S120, ("off", 1, 62)), (8 * S120, ("on", 1, 64, 70)),
        (seen, ("off", 1, 64)),  # relocated: what sounds ends there, no step is played late
        (bar, ("on", 1, 60, 70)), (bar + 2 * S120, ("off", 1, 60)), (bar + 2 * S120, ("on", 1, 62, 70)),
        (bar + 4 * S120, ("off", 1, 62)), (bar + 8 * S120, ("on", 1, 64, 70)),
        (bar + 16 * S120, ("off", 1, 64)), (bar + 16 * S120, ("on", 1, 60, 70)),
        (bar + 18 * S120, ("off", 1, 60)), (bar + 18 * S120, ("on", 1, 62, 70)), (bar + 20 * S120, ("off", 1, 62)),
    ]
    assert (clock.stats.locates, clock.stats.reanchors, clock.stats.peers_max) == (1, 1, 1)


def test_leading_sets_the_session_tempo_and_keeps_the_step_where_it_was():
    session = ScriptedSession([(0, 0.0, 120.0, True, 0)])
    clock = LeadingLinkClock(session.read, session.written.append, 4, 4.0)
    clock.set_tempo(150.0, 8)
    assert session.written == [150.0]
    assert clock.ns_at_step(8) == 8 * S120 and clock.ns_at_step(12) == 8 * S120 + 4 * S150
    assert not hasattr(LinkClock(session.read, 4, 4.0), "set_tempo")  # following: tempo commands are refused


@given(beat=st.floats(-64, 1e6, allow_nan=False), at_ns=st.integers(0, 10**15), tempo=st.floats(20, 999),
       spb=st.sampled_from([2, 4, 6]), bar=st.sampled_from([2.0, 3.0, 3.5, 4.0, 6.0]),
       probe=st.integers(-10**12, 10**12))
def test_the_map_is_exact_and_bar_lines_fall_on_the_quantum(beat, at_ns, tempo, spb, bar, probe):
    clock = LinkClock(lambda: LinkState(beat, at_ns, tempo), spb, bar)
    ns = at_ns + probe
    s = clock.step_at(ns)
    assert clock.ns_at_step(s) <= ns < clock.ns_at_step(s + 1)
    step_ns = us_per_beat(tempo) * 1000 / spb
    assert abs(clock.ns_at_step(s + 1) - clock.ns_at_step(s) - step_ns) <= 1
    # The session's beat at its stamp is on the map to within a nanosecond or two of float rounding.
    exact = beat * spb
    assert abs(clock.ns_at_step(int(exact // 1)) + (exact - exact // 1) * step_ns - at_ns) <= 2 + abs(beat) * 1e-6
    b = clock.next_bar_step(ns)
    assert b % clock.steps_per_bar == 0 and clock.ns_at_step(b) >= ns
    assert clock.ns_at_step(b - clock.steps_per_bar) < ns
