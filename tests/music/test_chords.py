"""Hearing chords (``liveperf.music.chords``): the recogniser names every chord it knows in every key and inversion,
moves with a transposition, never fails on any set of notes; the listener never grows or fails."""

from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.music.chords import CHORD_TYPES, Chord, ChordListener, chord_of

SYMMETRIC = {"aug", "dim7"}  # every tone can be the root: the bass decides


@given(st.sampled_from(range(len(CHORD_TYPES))), st.integers(0, 11), st.data())
def test_every_chord_in_every_key_and_inversion(t, root, data):
    suffix, quality, intervals = CHORD_TYPES[t]
    tones = [(root + i) % 12 for i in intervals]
    bass = data.draw(st.sampled_from(tones))
    octave = data.draw(st.integers(2, 4))
    pitches = [12 * (octave + 1) + bass]
    for pc in tones:  # every tone above the bass, some doubled an octave up
        pitches.append(12 * (octave + 2) + pc)
        if data.draw(st.booleans()):
            pitches.append(12 * (octave + 3) + pc)
    got = chord_of(data.draw(st.permutations(pitches)))
    want_root = bass if suffix in SYMMETRIC else root
    assert got == Chord(want_root, suffix, quality, bass)


@given(st.lists(st.integers(0, 115), min_size=1, max_size=12), st.integers(0, 12))
def test_a_transposed_chord_is_the_same_chord_transposed(pitches, k):
    a, b = chord_of(pitches), chord_of([p + k for p in pitches])
    if a is None:
        assert b is None
    else:
        assert b == Chord((a.root + k) % 12, a.suffix, a.quality, (a.bass + k) % 12)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 127), max_size=300))
def test_any_notes_at_all(pitches):
    got = chord_of(pitches)  # clusters, all 128 keys, one note repeated: named or None, never an error
    assert got is None or (0 <= got.root < 12 and 0 <= got.bass < 12 and got.name)
    if len({p % 12 for p in pitches}) < 3:
        assert got is None  # a melody line alone never names a chord


events = st.one_of(st.tuples(st.just("on"), st.integers(0, 127)), st.tuples(st.just("off"), st.integers(0, 127)),
                   st.tuples(st.just("cc"), st.integers(0, 127), st.integers(0, 127)), st.just(("release",)),
                   st.just(("step",)))


@settings(max_examples=300)
@given(st.lists(events, max_size=400))
def test_the_listener_follows_anything_and_never_grows(script):
    lis, step, changes = ChordListener(), 0, 0
    for ev in script:
        if ev[0] == "on":
            lis.note_on(ev[1])
        elif ev[0] == "off":
            lis.note_off(ev[1])
        elif ev[0] == "cc":
            lis.control(ev[1], ev[2])
        elif ev[0] == "release":
            lis.release_all()
        else:
            step += 1
            changes += lis.on_step(step)
        assert len(lis.sounding) <= 128
    assert lis.changes == changes
    lis.release_all()
    lis.on_step(step + 1)
    assert lis.sounding == set() and lis.changes == changes  # every key up: the last chord stays
