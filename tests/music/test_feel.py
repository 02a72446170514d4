"""Swing (``liveperf.music.feel``): the warp and its inverse, exact due times, the estimator, and the partner's swung
off-beats in virtual time."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liveperf.timing.clock import InternalClock
from liveperf.music.feel import MIN_SAMPLES, Feel, straight_phase, swung_phase
from liveperf.music.melody import HOLD, OFF, on
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedStepper, performer, run_virtual

BEAT = 4 * S  # 120 BPM, 4 steps a beat


@given(st.floats(0.0, 1.0), st.floats(0.5, 0.75))
def test_straight_phase_undoes_swung_phase(phase, swing):
    assert straight_phase(swung_phase(phase, swing), swing) == pytest.approx(phase, abs=1e-12)
    assert swung_phase(phase, swing) >= phase - 1e-12  # swing only ever delays


def test_straight_is_the_clocks_own_integers():
    clock = InternalClock(97, 4, 123)
    feel = Feel(clock, 4)
    assert [feel.due_ns(s) for s in range(40)] == [clock.ns_at_step(s) for s in range(40)]
    assert [feel.nearest_step(t) for t in range(0, 3 * 10**9, 7_777_777)] == \
        [clock.nearest_step(t) for t in range(0, 3 * 10**9, 7_777_777)]


def test_due_times_with_a_triplet_swing():
    feel = Feel(InternalClock(120, 4, 0), 4, swing=2 / 3)
    # Steps 0..3 of beat 1: straight at 0, 1/4, 1/2, 3/4 of a beat; swung at 0, 1/3, 2/3, 5/6.
    assert [feel.due_ns(4 + k) for k in range(4)] == [BEAT, BEAT + round(BEAT / 3), BEAT + round(2 * BEAT / 3),
                                                      BEAT + round(5 * BEAT / 6)]  # to the nearest ns
    # A note played at the swung off-beat (a little late) belongs to the beat's second eighth, step 2.
    assert feel.nearest_step(BEAT + 2 * BEAT // 3 + 10_000_000) == 6


def eighth_pairs(beats: int, swing: float, late_ns: int = 0) -> list[int]:
    times = []
    for b in range(beats):
        times += [b * BEAT + late_ns, b * BEAT + int(swing * BEAT) + late_ns]
    return times


def test_following_takes_the_estimate_once_it_is_confident():
    feel = Feel(InternalClock(120, 4, 0), 4, swing=None)
    times = eighth_pairs(MIN_SAMPLES + 2, 0.62, late_ns=4_000_000)
    for t in times[:2 * MIN_SAMPLES]:  # MIN_SAMPLES - 1 beats closed (a beat's sample counts when the next begins)
        feel.heard(t)
    assert feel.swing == 0.5 and not feel.estimator.confident
    for t in times[2 * MIN_SAMPLES:]:
        feel.heard(t)
    assert feel.estimator.confident and feel.swing == pytest.approx(0.62, abs=1e-6)
    assert feel.estimator.offset_ns == 4_000_000  # late on the beat, and not read as swing


def test_straight_sixteenths_and_chords_are_never_swing():
    feel = Feel(InternalClock(120, 4, 0), 4, swing=None)
    for s in range(64):
        for k in range(3):  # a three-note chord on every sixteenth, rolled over 2 ms
            feel.heard(s * S + k * 1_000_000)
    assert feel.estimator.samples == type(feel.estimator.samples)() and feel.swing == 0.5


@given(st.lists(st.integers(0, 10**11), max_size=300))
def test_any_playing_at_all_keeps_swing_in_range(times):
    feel = Feel(InternalClock(120, 4, 0), 4, swing=None)
    for t in sorted(times):
        feel.heard(t)
        assert 0.5 <= feel.swing <= 0.75


def test_call_and_response_answers_on_swung_off_beats():
    """An answer with swing 2/3: the notes on beats on the grid, the off-beat eighths (steps 14 and 18: the
    second eighth of their beats) at 2/3 of their beat instead of 1/2."""
    phrase = [(0.08, 2.0, 60, 80), (1.95, 4.0, 62, 90), (4.0, 5.9, 64, 100), (6.04, 8.0, 65, 110)]
    answer = {12: on(62), 14: on(64), 16: on(65), 18: on(67)}
    wire, _, _ = run_virtual(performer(phrase), ScriptedStepper(answer), swing=2 / 3)
    onsets = [(t, e[2]) for t, e in wire if e[0] == "on"]
    assert onsets == [(12 * S, 62), (12 * S + round(2 * BEAT / 3), 64), (16 * S, 65),
                      (16 * S + round(2 * BEAT / 3), 67)]


def test_humanize_delays_each_step_by_its_own_seeded_amount_and_zero_keeps_the_grid():
    clock = InternalClock(120, 4, 0)
    feel = Feel(clock, 4, 0.5, humanize_ms=5.0, seed=11)
    delays = [feel.humanize_ns(s) for s in range(200)]
    assert all(0 <= d <= 5_000_000 for d in delays) and len(set(delays)) > 150
    assert delays == [Feel(clock, 4, 0.5, humanize_ms=5.0, seed=11).humanize_ns(s) for s in range(200)]
    assert delays != [Feel(clock, 4, 0.5, humanize_ms=5.0, seed=12).humanize_ns(s) for s in range(200)]
    assert [feel.due_ns(s) - clock.ns_at_step(s) for s in range(200)] == delays
    assert [Feel(clock, 4, 0.5).due_ns(s) for s in range(64)] == [clock.ns_at_step(s) for s in range(64)]
    fast = InternalClock(300, 4, 0)  # a 16th is 50 ms: at most a third of it
    assert max(Feel(fast, 4, 0.5, humanize_ms=20.0).humanize_ns(s) for s in range(500)) <= 50_000_000 // 3


def test_humanized_phrase_is_the_straight_one_each_step_delayed():
    from liveperf.engine import Engine
    from liveperf.modes.phrase import PhraseMode
    from liveperf.music.sampler import new_rng_state
    from tests.fakes import FixedPhrases, run_engine, settings

    phrase = [on(60), HOLD, on(62), OFF, HOLD, on(64), HOLD, HOLD, on(65)]

    def run(humanize_ms):
        def make(clock, sink, now_fn):
            feel = Feel(clock, 4, 0.5, humanize_ms=humanize_ms, seed=5)
            mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32), FixedPhrases([phrase]), clock,
                              sink, new_rng_state(0), feel=feel)
            return Engine(mode, clock=clock, sink=sink)
        return run_engine([], make, InternalClock(120, 4, 0), steps=31)[0]
    straight, human = run(0.0), run(8.0)
    feel = Feel(InternalClock(120, 4, 0), 4, 0.5, humanize_ms=8.0, seed=5)
    step_ns = InternalClock(120, 4, 0).ns_at_step(1)
    assert [ev for _, ev in human] == [ev for _, ev in straight]
    assert [t for t, _ in human] == [t + feel.humanize_ns(t // step_ns) for t, _ in straight]
    assert any(t_h != t_s for (t_h, _), (t_s, _) in zip(human, straight))
