"""Key parsing and the token masks built from keys and pitch ranges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.music.melody import HOLD, NUM_CLASSES, OFF, PITCH_OFFSET
from liveperf.music.scales import ROOTS, SCALE_ALIASES, SCALES, Key, parse_key, token_mask


@pytest.mark.parametrize("name", list(SCALES) + list(SCALE_ALIASES))
def test_every_scale_name_parses(name):
    key = parse_key(f"C {name}")
    assert key.root == 0
    assert key.scale == SCALE_ALIASES.get(name, name)
    assert key.pitch_classes == tuple(sorted(SCALES[key.scale]))


@pytest.mark.parametrize("root, pc", list(ROOTS.items()))
def test_every_root_spelling_parses(root, pc):
    assert parse_key(f"{root} major").root == pc


@pytest.mark.parametrize(
    "text, root, scale, pcs",
    [
        ("C major", 0, "major", (0, 2, 4, 5, 7, 9, 11)),
        ("D dorian", 2, "dorian", (0, 2, 4, 5, 7, 9, 11)),
        ("F# minor", 6, "minor", (1, 2, 4, 6, 8, 9, 11)),
        ("Bb mixolydian", 10, "mixolydian", (0, 2, 3, 5, 7, 8, 10)),
        ("A harmonic_minor", 9, "harmonic_minor", (0, 2, 4, 5, 8, 9, 11)),
        ("E minor_pentatonic", 4, "minor_pentatonic", (2, 4, 7, 9, 11)),
        ("G blues", 7, "blues", (0, 1, 2, 5, 7, 10)),
        ("C chromatic", 0, "chromatic", tuple(range(12))),
        ("  eb   Melodic Minor ", 3, "melodic_minor", (0, 2, 3, 5, 6, 8, 10)),
        ("c# MAJOR-PENTATONIC", 1, "major_pentatonic", (1, 3, 5, 8, 10)),
        ("B♭ lydian", 10, "lydian", (0, 2, 4, 5, 7, 9, 10)),
        ("BB aeolian", 10, "minor", (0, 1, 3, 5, 6, 8, 10)),
        ("B blues", 11, "blues", (2, 4, 5, 6, 9, 11)),
        ("Cb major", 11, "major", (1, 3, 4, 6, 8, 10, 11)),
    ],
)
def test_parse_examples(text, root, scale, pcs):
    key = parse_key(text)
    assert (key.root, key.scale, key.pitch_classes) == (root, scale, pcs)


def test_str_keeps_the_spelling_and_equality_ignores_it():
    assert str(parse_key("gb minor")) == "Gb minor"
    assert str(parse_key("F# ionian")) == "F# major"
    assert str(Key(root=10, scale="dorian")) == "Bb dorian"
    assert parse_key("Gb minor") == parse_key("F# minor")
    assert hash(parse_key("Gb minor")) == hash(parse_key("F# minor"))


@pytest.mark.parametrize(
    "text, bad_part",
    [
        ("H major", "unknown root 'H'"),
        ("C# majr", "unknown scale 'majr'"),
        ("C", "must be 'ROOT SCALE'"),
        ("", "must be 'ROOT SCALE'"),
        ("Cx major", "unknown root 'Cx'"),
        ("C## major", "unknown root 'C##'"),
        ("Cmajor", "must be 'ROOT SCALE'"),
    ],
)
def test_bad_keys_name_the_problem_and_list_the_choices(text, bad_part):
    with pytest.raises(ValueError) as err:
        parse_key(text)
    message = str(err.value)
    assert bad_part in message
    assert "roots: C" in message and "F#" in message and "Bb" in message
    for name in list(SCALES) + list(SCALE_ALIASES):
        assert name in message


def test_non_string_key_is_a_value_error():
    with pytest.raises(ValueError):
        parse_key(None)  # type: ignore[arg-type]


def test_key_validates_direct_construction():
    with pytest.raises(ValueError):
        Key(root=12, scale="major")
    with pytest.raises(ValueError):
        Key(root=0, scale="bebop")


def test_c_major_one_octave_allows_white_keys_hold_and_off():
    mask = token_mask(parse_key("C major"), 60, 72)
    assert mask.shape == (NUM_CLASSES,) and mask.dtype == bool
    allowed = set(np.flatnonzero(mask).tolist())
    assert allowed == {HOLD, OFF} | {PITCH_OFFSET + p for p in (60, 62, 64, 65, 67, 69, 71, 72)}


def test_hold_and_off_can_be_disallowed():
    mask = token_mask(parse_key("C chromatic"), 0, 127, allow_hold=False, allow_off=False)
    assert not mask[HOLD] and not mask[OFF] and mask[PITCH_OFFSET:].all()
    only_rests = token_mask(parse_key("A minor"), 61, 61)  # C# is not in A minor
    assert set(np.flatnonzero(only_rests).tolist()) == {HOLD, OFF}


@pytest.mark.parametrize("low, high", [(-1, 60), (60, 128), (72, 60), (1.5, 60), (True, 60)])
def test_bad_ranges_are_rejected(low, high):
    with pytest.raises(ValueError):
        token_mask(parse_key("C major"), low, high)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(ROOTS)),
    st.sampled_from(list(SCALES) + list(SCALE_ALIASES)),
    st.integers(0, 127),
    st.integers(0, 127),
    st.booleans(),
    st.booleans(),
)
def test_mask_on_pitches_are_in_range_and_in_key(root, scale, a, b, hold, off):
    low, high = min(a, b), max(a, b)
    key = parse_key(f"{root} {scale}")
    mask = token_mask(key, low, high, allow_hold=hold, allow_off=off)
    assert mask[HOLD] == hold and mask[OFF] == off
    on_pitches = np.flatnonzero(mask[PITCH_OFFSET:])
    expected = [p for p in range(low, high + 1) if p % 12 in key.pitch_classes]
    assert on_pitches.tolist() == expected
    assert all(low <= p <= high and key.contains(int(p)) for p in on_pitches)
