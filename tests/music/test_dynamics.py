"""The partner's dynamics (``liveperf.music.dynamics``): level and accents learned from the performer, exact arithmetic,
always a MIDI velocity."""

from hypothesis import given
from hypothesis import strategies as st

from liveperf.music.dynamics import DEFAULT_VELOCITY, Dynamics


def test_before_any_note_and_with_a_fixed_velocity():
    d = Dynamics(16, 4)
    assert d.velocity(0) == DEFAULT_VELOCITY
    d.heard(0, 50)
    assert d.velocity(0) == d.velocity(3) == 50  # one note: the level, no accent yet
    assert Dynamics(16, 4, fixed=70).velocity(5) == 70


def test_a_performer_who_leans_on_the_downbeat_gets_a_partner_who_does():
    d = Dynamics(16, 4)
    for bar in range(8):  # 16ths: 100 on each downbeat, 80 on the other beats, 60 between
        for step in range(16 * bar, 16 * bar + 16):
            d.heard(step, 100 if step % 16 == 0 else 80 if step % 4 == 0 else 60)
    down, beat, between = d.velocity(128), d.velocity(132), d.velocity(133)
    assert down > beat > between  # measured: 88, 79, 60 (the performer's 100, 80, 60; an accent heard on only
    assert down - between >= 20   # 8 downbeats still counts two thirds: ACCENT_PRIOR_NOTES)


def test_the_level_follows_a_crescendo_within_a_few_notes():
    d = Dynamics(16, 4)
    heard = [40 + 70 * i // 31 for i in range(32)]  # 40 -> 110 over 8 bars of quarter notes
    for i, v in enumerate(heard):
        d.heard(4 * i, v)
    assert abs(d.velocity(128) - heard[-1]) <= 8  # the mean of the last 8 note-ons it replaces: 100


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 127)), max_size=200), st.integers(0, 10_000))
def test_always_a_midi_velocity(notes, step):
    d = Dynamics(12, 4)
    for s, v in notes:
        d.heard(s, v)
    assert 1 <= d.velocity(step) <= 127


@given(st.integers(1, 127), st.lists(st.integers(0, 1000), min_size=1, max_size=100), st.integers(0, 1000))
def test_an_even_touch_gets_an_even_partner(v, steps, step):
    d = Dynamics(16, 4)
    for s in steps:
        d.heard(s, v)
    assert d.velocity(step) == v  # no accent where the performer made none
