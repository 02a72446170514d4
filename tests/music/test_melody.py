"""The shared melody representation: round trips and odd inputs (hypothesis for the general case)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.music import melody
from liveperf.music.melody import HOLD, OFF, Note, canonical, notes_to_tokens, on, tokens_to_notes

tokens_st = st.lists(st.integers(0, melody.NUM_CLASSES - 1), max_size=80)


@given(tokens_st)
def test_tokens_notes_tokens_round_trip(tokens):
    canon = canonical(tokens)
    assert notes_to_tokens(tokens_to_notes(canon), len(canon)).tolist() == canon.tolist()


@st.composite
def monophonic_notes(draw):
    notes, t = [], draw(st.integers(0, 4))
    for _ in range(draw(st.integers(0, 12))):
        length = draw(st.integers(1, 8))
        notes.append(Note(t, t + length, draw(st.integers(0, 127))))
        t += length + draw(st.integers(0, 3))
    return notes


@given(monophonic_notes())
def test_monophonic_notes_round_trip(notes):
    assert tokens_to_notes(notes_to_tokens(notes)) == [Note(n.start_step, n.end_step, n.pitch) for n in notes]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-2, 10), st.integers(0, 127)), max_size=12))
def test_any_polyphony_gives_valid_canonical_tokens(raw):
    notes = [Note(s, s + d, p) for s, d, p in raw]
    tokens = notes_to_tokens(notes)
    assert tokens.tolist() == canonical(tokens).tolist()
    # The top voice is what sounds: every step where some note sounds has a note in the tokens' expansion.
    sounding = {s for n in notes for s in range(n.start_step, max(n.end_step, n.start_step + 1))}
    heard = {s for n in tokens_to_notes(tokens) for s in range(n.start_step, n.end_step)}
    assert heard == {s for s in sounding if s < len(tokens)}


def test_empty_input():
    assert notes_to_tokens([]).tolist() == []
    assert tokens_to_notes([]) == []
    assert notes_to_tokens([], num_steps=3).tolist() == [HOLD, HOLD, HOLD]


def test_chord_keeps_top_voice():
    chord = [Note(0, 4, 60), Note(0, 4, 64), Note(0, 4, 67)]
    assert notes_to_tokens(chord).tolist() == [on(67), HOLD, HOLD, HOLD]


def test_overlap_hands_over_and_lower_note_comes_back():
    notes = [Note(0, 6, 60), Note(2, 4, 64)]
    assert notes_to_tokens(notes).tolist() == [on(60), HOLD, on(64), HOLD, on(60), HOLD]


def test_note_shorter_than_a_step_lasts_one_step():
    assert notes_to_tokens([Note(3, 3, 70)]).tolist() == [HOLD, HOLD, HOLD, on(70)]


def test_repeated_pitch_is_a_new_note():
    assert notes_to_tokens([Note(0, 2, 62), Note(2, 4, 62)]).tolist() == [on(62), HOLD, on(62), HOLD]


def test_rest_between_notes():
    assert notes_to_tokens([Note(0, 1, 60), Note(3, 4, 62)]).tolist() == [on(60), OFF, HOLD, on(62)]


def test_off_while_silent_is_canonicalised():
    assert canonical([OFF, on(60), OFF, OFF]).tolist() == [HOLD, on(60), OFF, HOLD]


def test_bad_tokens_are_rejected_with_index():
    try:
        melody.validate_tokens([0, 1, 130])
    except ValueError as exc:
        assert "index 2" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_transpose():
    t = np.array([on(60), HOLD, OFF, on(127)])
    assert melody.transpose_tokens(t, 1) is None
    assert melody.transpose_tokens(t, -2).tolist() == [on(58), HOLD, OFF, on(125)]


def test_vocabulary():
    assert len(melody.VOCABULARY) == melody.NUM_CLASSES == 130
    assert melody.token_name(on(60)) == "ON60"
