from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from liveperf.timing.clock import InternalClock


def test_120_bpm_sixteenths():
    c = InternalClock(120, 4, 1_000)
    assert c.ns_at_step(0) == 1_000
    assert c.ns_at_step(4) == 1_000 + 500_000_000
    assert c.step_at(1_000 + 124_999_999) == 0
    assert c.step_at(1_000 + 125_000_000) == 1
    assert c.nearest_step(1_000 + 62_500_000) == 1
    assert c.nearest_step(1_000 + 62_499_999) == 0


def test_no_drift_at_odd_tempo():
    c = InternalClock(97.3, 4, 0)
    step = 4 * 97 * 60 * 10  # about ten hours of sixteenths
    exact = Fraction(60_000_000_000) / (Fraction("97.3") * 4) * step
    assert abs(c.ns_at_step(step) - exact) < 1


@given(st.floats(20, 400), st.integers(-10**6, 10**9), st.integers(0, 10**13))
def test_step_at_inverts_ns_at_step(bpm, start, ns):
    c = InternalClock(round(bpm, 3), 4, start)
    s = c.step_at(ns)
    assert c.ns_at_step(s) <= ns < c.ns_at_step(s + 1)


def test_tempo_change_keeps_past():
    c = InternalClock(120, 4, 0)
    before = c.ns_at_step(16)
    c.set_tempo(60, 16)
    assert c.ns_at_step(16) == before
    assert c.ns_at_step(17) - c.ns_at_step(16) == 250_000_000


def test_ticks_map_to_steps():
    c = InternalClock(100, 4, 0)
    assert c.ns_at_tick(480, 480) == c.ns_at_step(4)
    assert c.ns_at_tick(120, 480) == c.ns_at_step(1)


def _fraction_clock(bpm: float, spb: int, anchor_ns: int, anchor_step: int):
    """The clock's maps as they were computed with ``Fraction`` per call (the reference for the integer ones)."""
    step_ns = Fraction(60_000_000_000) / (Fraction(str(bpm)) * spb)
    return (lambda step: anchor_ns + int((step - anchor_step) * step_ns),
            lambda tick, tpb: anchor_ns + int((Fraction(tick * spb, tpb) - anchor_step) * step_ns))


@given(st.floats(20, 400), st.integers(-10**6, 10**12), st.integers(-10**4, 10**4), st.integers(-10**7, 10**7),
       st.integers(-10**8, 10**8), st.sampled_from([24, 96, 480, 960]))
def test_integer_maps_equal_the_exact_fraction_ones(bpm, start, change_at, step, tick, tpb):
    bpm = round(bpm, 3)
    c = InternalClock(120, 4, start)
    c.set_tempo(bpm, change_at)  # re-anchored at a step: the maps run from (change_at, its ns)
    at_step, at_tick = _fraction_clock(bpm, 4, InternalClock(120, 4, start).ns_at_step(change_at), change_at)
    assert c.ns_at_step(step) == at_step(step)
    assert c.ns_at_tick(tick, tpb) == at_tick(tick, tpb)
