"""Chords into harmonize: one answer per chord and never a zero-length partner note, with and without the port's
reflex, in virtual time (exact event lists). Before, each note of a chord ended the last one's harmony in the same
millisecond: three note-ons, two note-offs at once, clicks on many synths."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liveperf.timing.clock import InternalClock
from liveperf.modes.harmonize import CHORD_WINDOW_NS, MIN_NOTE_NS
from liveperf.music.notes import note_off, note_on
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedDuet, run_engine
from tests.modes.test_modes import harmonize_engine
from tests.modes.test_reflex import harmonize

MS = 1_000_000
T0 = int(0.3 * S)
UP = int(2.2 * S)


def chord(pitches, at_ns: int, up_ns: int, roll_ns: int = 0, vel: int = 100):
    """Note-ons of ``pitches`` from ``at_ns``, ``roll_ns`` apart, in that order; all released at ``up_ns``."""
    return ([(at_ns + i * roll_ns, note_on(0, p, vel)) for i, p in enumerate(pitches)]
            + [(up_ns, note_off(0, p)) for p in pitches])


def play(events, reflexes=None, steps=4, **over):
    """(wire, mode) in virtual time: the engine alone (``reflexes`` None) or with a ``VirtualReflex``."""
    make = harmonize(reflexes, **over) if reflexes is not None else harmonize_engine(
        ScriptedDuet(ranking=(-4, -3)), **over)
    wire, engine, sched = run_engine(events, make, InternalClock(120, 4, 0), steps=steps)
    assert sched.held.held() == []
    return wire, engine.mode


def check_notes(wire) -> list[tuple[int, int, int]]:
    """(pitch, on_ns, off_ns) of every partner note: each note-on has its note-off, none at its onset."""
    held, notes = {}, []
    for t, m in wire:
        if m[0] == "on":
            assert m[2] not in held, f"{m[2]} struck while sounding"
            held[m[2]] = t
        elif m[0] == "off":
            on_ns = held.pop(m[2])
            assert t > on_ns, f"zero-length note {m[2]} at {t}"
            notes.append((m[2], on_ns, t))
    assert not held
    return notes


# C major, range 48..84; the fake model prefers a major 3rd below, then a minor 3rd. C4-E4-G4: for C4 the major 3rd
# (G#3) is out of key, so A3; for E4, C4; for G4, E4.


def test_block_chord_gets_one_answer_the_harmony_of_its_first_note():
    wire, mode = play(chord([60, 64, 67], T0, UP))
    assert wire == [(T0, ("on", 1, 57, 85)), (UP, ("off", 1, 57))]
    assert mode.stats.harmonies == 1 and mode.chord_notes == 2


def test_rolled_chord_gets_one_answer():
    wire, mode = play(chord([60, 64, 67], T0, UP, roll_ns=10 * MS))
    assert wire == [(T0, ("on", 1, 57, 85)), (UP, ("off", 1, 57))]
    assert mode.chord_notes == 2


def test_a_chord_sent_top_down_is_answered_by_its_first_note_the_top_one():
    wire, _ = play(chord([67, 64, 60], T0, UP))
    assert wire == [(T0, ("on", 1, 64, 85)), (UP, ("off", 1, 64))]  # G4 - 3 = E4 (D#4 is out of key)


def test_the_harmony_ends_with_the_chords_first_note_not_with_the_others():
    events = [(T0, note_on(0, 60, 100)), (T0, note_on(0, 64, 100)), (T0, note_on(0, 67, 100)),
              (T0 + S, note_off(0, 67)), (T0 + S, note_off(0, 64)), (UP, note_off(0, 60))]
    wire, _ = play(events)
    assert wire == [(T0, ("on", 1, 57, 85)), (UP, ("off", 1, 57))]


def test_with_the_reflex_the_port_answers_the_first_note_and_the_engine_the_chord():
    for roll in (0, 10 * MS):
        reflexes: list = []
        wire, mode = play(chord([60, 64, 67], T0, UP, roll_ns=roll), reflexes)
        alone, _ = play(chord([60, 64, 67], T0, UP, roll_ns=roll))
        assert wire == alone == [(T0, ("on", 1, 57, 85)), (UP, ("off", 1, 57))]
        assert [a.ts_ns for a in reflexes[0].sent] == [T0]  # the port sent the first note's answer ...
        assert reflexes[0].declined == 2  # ... and found the partner busy for the others
        assert mode.reflex_answers == 1 and mode.chord_notes == 2


def test_a_chord_whose_first_note_is_out_of_key_is_answered_by_the_engine_once():
    # C#4 has no entry in the port's table (out of key): the engine peeks (A3, a major 3rd below); the port then
    # finds the partner busy for E4 and G4.
    reflexes: list = []
    wire, mode = play(chord([61, 64, 67], T0, UP), reflexes)
    assert wire == [(T0, ("on", 1, 57, 85)), (UP, ("off", 1, 57))]
    assert reflexes[0].sent == [] and mode.table_misses == 1 and mode.chord_notes == 2


def test_a_first_note_with_no_consonant_candidate_lets_the_next_note_of_the_chord_answer():
    from tests.modes.test_modes import melody_mask_only

    # Only C3 and A3 are allowed: nothing consonant under D4 (62 - 3 = B3, 62 - 4 = A#3), A3 under C4 (minor 3rd).
    wire, mode = play(chord([62, 60], T0, UP), allowed=melody_mask_only(48, 57))
    assert wire == [(T0, ("on", 1, 57, 85)), (UP, ("off", 1, 57))]
    assert mode.stats.no_candidate == 1 and mode.stats.harmonies == 1 and mode.chord_notes == 0


def test_a_tap_shorter_than_the_minimum_still_gets_a_whole_note():
    for length_ns in (0, 1, 5 * MS):
        wire, _ = play([(T0, note_on(0, 64, 100)), (T0 + length_ns, note_off(0, 64))])
        assert wire == [(T0, ("on", 1, 60, 85)), (T0 + MIN_NOTE_NS, ("off", 1, 60))]


def test_a_grace_note_released_inside_the_window_starts_a_new_note():
    # E4 tapped for 10 ms, then G4 at 20 ms: E4's harmony (C4) lasts its 30 ms, G4's (E4) starts at 20 ms.
    events = [(T0, note_on(0, 64, 100)), (T0 + 10 * MS, note_off(0, 64)), (T0 + 20 * MS, note_on(0, 67, 100)),
              (UP, note_off(0, 67))]
    wire, mode = play(events)
    assert wire == [(T0, ("on", 1, 60, 85)), (T0 + 20 * MS, ("on", 1, 64, 85)), (T0 + MIN_NOTE_NS, ("off", 1, 60)),
                    (UP, ("off", 1, 64))]
    assert mode.chord_notes == 0


def test_a_note_after_the_window_is_answered_legato():
    events = chord([60], T0, UP) + [(T0 + CHORD_WINDOW_NS + 1, note_on(0, 67, 100)), (UP, note_off(0, 67))]
    wire, _ = play(events)
    later = T0 + CHORD_WINDOW_NS + 1
    assert wire == [(T0, ("on", 1, 57, 85)), (later, ("off", 1, 57)), (later, ("on", 1, 64, 85)),
                    (UP, ("off", 1, 64))]


def test_a_harmony_replaced_at_once_still_lasts_the_minimum():
    # A second note 31 ms after the first (a new chord) but the first harmony went out 5 ms late (the model was
    # slow): it still sounds its 30 ms, overlapping the next harmony by 4 ms; never a zero-length note.
    late = iter([T0 + 5 * MS])

    def make(clock, sink, now_fn):
        def slow_now():
            return next(late, now_fn())
        return harmonize_engine(ScriptedDuet(ranking=(-4, -3)))(clock, sink, slow_now)
    events = chord([60], T0, UP) + [(T0 + 31 * MS, note_on(0, 67, 100)), (UP, note_off(0, 67))]
    wire, _, _ = run_engine(events, make, InternalClock(120, 4, 0), steps=4)
    assert wire == [(T0 + 5 * MS, ("on", 1, 57, 85)), (T0 + 31 * MS, ("on", 1, 64, 85)),
                    (T0 + 35 * MS, ("off", 1, 57)), (UP, ("off", 1, 64))]
    check_notes(wire)


_presses = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 120), st.sampled_from([60, 62, 64, 65, 67, 69, 71,
                                                                                          72, 61, 66])),
                    min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_presses, st.booleans(), st.sampled_from([1.0, 0.5]))
def test_any_playing_gives_whole_notes_each_ended(presses, reflex, density):
    """Random chords, rolls, taps and overlaps (start ms, length ms, pitch): every partner note-on has its
    note-off, none at its onset, each lasting at least MIN_NOTE_NS unless the run's end cut it; a note-on within
    the window of the chord it joins never adds a partner note."""
    events, down = [], {}
    for start_ms, length_ms, pitch in sorted(presses):
        t = T0 + start_ms * MS
        if pitch in down and down[pitch] >= t:
            continue  # the same key pressed again before its release: not something a keyboard sends
        events += [(t, note_on(0, pitch, 90)), (t + length_ms * MS, note_off(0, pitch))]
        down[pitch] = t + length_ms * MS
    wire, mode = play(events, [] if reflex else None, steps=8, density=density)
    notes = check_notes(wire)
    assert all(off - on >= MIN_NOTE_NS for _, on, off in notes)
    assert len(notes) == mode.stats.harmonies <= len(events) // 2 - mode.chord_notes
