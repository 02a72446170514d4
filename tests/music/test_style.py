"""Style knobs (issue 17): the attributes measured exactly, the steering and line reshaping, the shipped decoder's
directions, the knobs through the setlist and the engine, and restyle's register as exact events in virtual time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from liveperf.music import melody, style
from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.music.melody import HOLD, OFF
from liveperf.models.phrase_models import VaeModel
from liveperf.modes.phrase import PhraseMode, VaePhrases
from liveperf.modes.settings import with_param
from liveperf.music.sampler import new_rng_state
from liveperf.music.scales import parse_key, token_mask
from liveperf.setlist.schema import SetlistError, parse_setlist
from liveperf.show.control import song_params
from tests.fakes import performer, run_engine, settings

S = 125_000_000  # one 16th at 120 BPM


def on(p: int) -> int:
    return melody.PITCH_OFFSET + p


@pytest.fixture(scope="module")
def vae():
    return VaeModel.load()


def test_attributes_of_a_phrase_exactly():
    # C4 on the beat for 4 steps; E4 on the half beat (step 6) held over the beat at step 8: syncopated;
    # G4 on the beat at 12, off at 14; 16 steps = 4 beats.
    t = [on(60), HOLD, HOLD, HOLD, OFF, HOLD, on(64), HOLD, HOLD, HOLD, OFF, HOLD, on(67), HOLD, OFF, HOLD]
    density, register, spread, mood, syncopation = style.attributes(t)
    assert density == 3 / 4
    assert register == pytest.approx((60 + 64 + 67) / 3)
    assert spread == pytest.approx(np.std([60, 64, 67]))
    assert syncopation == pytest.approx(1 / 3)
    assert mood > 0  # a C major triad: major-coloured
    assert np.isnan(style.attributes([HOLD, OFF] * 8)).all()  # no onset: no attributes


def test_mood_tells_a_minor_from_c_major():
    a_minor = [on(57), HOLD, HOLD, HOLD, on(60), HOLD, on(64), HOLD, on(57), HOLD, HOLD, HOLD, on(52), HOLD, on(57),
               HOLD]
    c_major = [on(60), HOLD, HOLD, HOLD, on(64), HOLD, on(67), HOLD, on(60), HOLD, HOLD, HOLD, on(55), HOLD, on(60),
               HOLD]
    assert style.attributes(a_minor)[3] < 0 < style.attributes(c_major)[3]


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([HOLD, OFF] + [on(p) for p in (0, 40, 59, 60, 64, 71, 127)]), min_size=1,
                max_size=64))
def test_attributes_are_bounded_or_all_nan(tokens):
    a = style.attributes(tokens)
    if not any(t >= melody.PITCH_OFFSET for t in tokens):
        assert np.isnan(a).all()
        return
    density, register, spread, mood, syncopation = a
    assert 0 < density <= 4 and 0 <= register <= 127 and 0 <= spread <= 64
    assert -2 <= mood <= 2 and 0 <= syncopation <= 1


def test_directions_are_checked_and_name_the_file():
    good = {"knobs": list(style.LATENT_KNOBS), "directions": [[0.0] * 4] * 3, "mix": np.eye(5).tolist()}
    rows, mix = style.parse_directions(json.dumps(good), 4, "dec.onnx")
    assert rows.shape == (3, 4) and mix.shape == (5, 5)
    bad = [good | {"knobs": ["density"]}, good | {"directions": [[0.0] * 5] * 3}, good | {"mix": [[9.0] * 5] * 5},
           good | {"directions": [[float("nan")] * 4] * 3}]
    for entry in bad:
        with pytest.raises(ValueError, match="dec.onnx: attribute_directions"):
            style.parse_directions(json.dumps(entry), 4, "dec.onnx")
    with pytest.raises(ValueError, match="dec.onnx: attribute_directions is not readable"):
        style.parse_directions("{", 4, "dec.onnx")


def test_knobs_at_zero_change_nothing():
    logits = np.zeros((1, 4, melody.NUM_CLASSES), dtype=np.float32)
    u = style.controls((0.0,) * 5, np.eye(5, dtype=np.float32))
    assert style.steer(logits, u, frozenset({0, 4, 7})) is logits
    assert style.attribute_offset(np.ones((3, 8), dtype=np.float32), u) is None
    assert (style.controls([1, 0, 0, 0, 0], None) == [1, 0, 0, 0, 0]).all()


def test_mood_profile_is_the_same_for_relative_keys_and_favours_the_major_tonic():
    c_major, a_minor = style.mood_profile(frozenset({0, 4, 7})), style.mood_profile(frozenset({9, 0, 4}))
    assert np.array_equal(c_major, a_minor)
    assert c_major[7] > 0 > c_major[9]  # G (the major's dominant) bright, A (the relative minor's tonic) dark
    assert style.mood_profile(frozenset()) is None


C_MAJOR_ALL = token_mask(parse_key("C major"), 0, 127)


def test_reshape_line_moves_along_the_scale_and_keeps_the_rhythm():
    line = np.array([on(60), HOLD, on(62), OFF, on(64), HOLD, HOLD, on(65)])
    allowed = token_mask(parse_key("C major"), 48, 84)
    up = style.reshape_line(line, 7, 1.0, C_MAJOR_ALL, allowed)
    assert up.tolist() == [on(72), HOLD, on(74), OFF, on(76), HOLD, HOLD, on(77)]  # an octave up, in key
    assert style.reshape_line(line, 1, 1.0, C_MAJOR_ALL, allowed).tolist() == \
        [on(62), HOLD, on(64), OFF, on(65), HOLD, HOLD, on(67)]
    wide = style.reshape_line(line, 0, 2.0, C_MAJOR_ALL, allowed)  # centre 62.75: 57.25 61.25 65.25 67.25, in key
    assert wide.tolist() == [on(57), HOLD, on(62), OFF, on(65), HOLD, HOLD, on(67)]
    narrow = style.reshape_line(line, 0, 0.5, C_MAJOR_ALL, allowed)
    assert np.std(narrow[narrow >= 2]) < np.std(line[line >= 2])
    high = style.reshape_line(line, 7, 1.0, C_MAJOR_ALL, token_mask(parse_key("C major"), 48, 70))
    assert high.tolist() == line.tolist()  # an octave up leaves the range: folded back by an octave


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([HOLD, OFF] + [on(p) for p in range(40, 90, 3)]), min_size=1, max_size=32),
       st.integers(-14, 14), st.sampled_from([0.5, 1.0, 2.0]), st.integers(30, 70), st.integers(0, 40))
def test_reshape_line_stays_in_range_and_key(tokens, steps, spread, low, width):
    allowed = token_mask(parse_key("D dorian"), low, low + width)
    out = style.reshape_line(np.array(tokens), steps, spread, token_mask(parse_key("D dorian"), 0, 127), allowed)
    assert [t < melody.PITCH_OFFSET for t in out] == [t < melody.PITCH_OFFSET for t in tokens]  # same rhythm
    for before, after in zip(tokens, out):
        assert after == before or allowed[after]


def test_shipped_decoder_carries_directions_and_mix(vae):
    assert vae.directions.shape == (len(style.LATENT_KNOBS), vae.latent_dim)
    assert vae.mix.shape == (5, 5) and np.isfinite(vae.mix).all()


def vae_settings(**over):
    return settings(channel=1, velocity=70, phrase_source="vae", temperature=0.9, top_p=0.95, phrase_every_steps=32,
                    tonic_pcs=frozenset({0, 4, 7}), key_allowed=C_MAJOR_ALL, **over)


def test_density_knob_through_the_live_generator(vae):
    source = VaePhrases(vae)
    silent = np.zeros(32, dtype=np.int64)

    def onsets(knob: float) -> int:
        s = with_param(vae_settings(), "style_density", knob)
        return sum(int((source.next_phrase(s, silent, new_rng_state(k)) >= 2).sum()) for k in range(20))
    assert onsets(-1.0) < onsets(0.0) < onsets(1.0)


def test_restyle_register_is_the_same_phrase_an_octave_up_on_the_wire(vae):
    """The performer plays 2 bars; phrase mode restyles them from bar 3. With style_register = 1 set at step 20,
    the phrase is the one the same show plays with the knob at 0, every note 7 scale steps (an octave) up."""
    events = performer([(0, 3, 60, 90), (4, 6, 64, 90), (8, 11, 67, 90), (12, 16, 65, 90), (16, 20, 64, 90),
                        (20, 24, 62, 90), (24, 32, 60, 90)])

    def run(knob: float):
        def make(clock, sink, now_fn):
            s = vae_settings(latent="restyle", allowed=token_mask(parse_key("C major"), 48, 96), max_note_steps=64)
            return Engine(PhraseMode(s, VaePhrases(vae), clock, sink, new_rng_state(3)), clock=clock, sink=sink)
        wire, _, _ = run_engine(events, make, InternalClock(120, 4, 0), steps=64,
                                requests=[(20, lambda e: e.set_param("style_register", knob, 20 * S))])
        first = [(ns, ev) for ns, ev in wire if ns < 32 * S or (ns == 32 * S and ev[0] == "off")]
        return first, [(ns, ev) for ns, ev in wire if (ns, ev) not in first]  # the first phrase; the restyled one
    (first_plain, plain), (first_up, up) = run(0.0), run(1.0)
    assert first_up == first_plain  # made before the knob moved
    assert plain and [ns for ns, _ in up] == [ns for ns, _ in plain]
    assert [ev[:2] + (ev[2] + 12,) + ev[3:] for _, ev in plain] == [ev for _, ev in up]


def test_style_fields_in_a_setlist_and_as_song_params(tmp_path: Path):
    raw = {"song": [{"title": "s", "tempo_bpm": 100, "key": "C major", "mode": "phrase", "phrase_model": "vae",
                     "latent": "restyle", "style_mood": -0.5, "style_density": 1,
                     "partner": [{"channel": 3, "style_register": 0.25}]}]}
    song = parse_setlist(raw, tmp_path / "s.toml").songs[0]
    assert song.style == (1.0, 0.0, 0.0, -0.5, 0.0) and song.latent == "restyle"
    assert song.partners[0].style == (1.0, 0.25, 0.0, -0.5, 0.0)
    params = song_params(song)
    assert params["style_mood"] == -0.5 and params["p2.style_register"] == 0.25
    with pytest.raises(SetlistError, match="s.toml.*song 1.*style_mood.*from -1.0 to 1.0"):
        parse_setlist({"song": [{**raw["song"][0], "style_mood": 2}]}, tmp_path / "s.toml")
    assert replace(vae_settings(), style=song.style).style[3] == -0.5


def test_style_score_prefers_what_the_knob_asks_for():
    from liveperf.modes.answer_plan import style_score
    sparse = np.array([on(60), HOLD, HOLD, HOLD, HOLD, HOLD, HOLD, HOLD, on(62)] + [HOLD] * 7)
    busy = np.array([on(60), on(62), on(64), on(62)] * 4)
    denser = (1, 0, 0, 0, 0)
    assert style_score(busy, denser, 4) > style_score(sparse, denser, 4)
    assert style_score(busy, (-1, 0, 0, 0, 0), 4) < style_score(sparse, (-1, 0, 0, 0, 0), 4)
    assert style_score(np.array([HOLD] * 16), denser, 4) == 0.0


def test_knobs_choose_among_the_planned_answers():
    """An unsure model (the script barely preferred) gives candidates of different density: the density knob at
    +1 plays an answer with at least as many notes as at 0, and at -1 at most as many."""
    from tests.fakes import ScriptedStepper, run_virtual
    from tests.modes.test_call_response import ANSWER, PHRASE

    def notes(knob: float) -> int:
        _, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER, strength=1.0), answer_candidates=8,
                                 temperature=1.0, style=(knob, 0.0, 0.0, 0.0, 0.0))
        return int((mode.last_plan.tokens >= melody.PITCH_OFFSET).sum())
    low, mid, high = notes(-1.0), notes(0.0), notes(1.0)
    assert low <= mid <= high and low < high


def test_a_gan_phrase_is_moved_into_the_key_whole_not_note_by_note():
    from liveperf.modes.phrase import in_key
    d_major = np.array([on(62), HOLD, on(66), HOLD, on(69), OFF, on(73), HOLD, on(74)])  # D F# A C# D
    s = vae_settings(allowed=token_mask(parse_key("C major"), 48, 84))
    moved = in_key(d_major, s)
    assert moved.tolist() == [on(60), HOLD, on(64), HOLD, on(67), OFF, on(71), HOLD, on(72)]  # down a tone, whole
    high = np.array([on(83), HOLD, on(88), HOLD, on(91)])  # in key, above the range: octaves down into it
    assert in_key(high, s).tolist() == [on(83), HOLD, on(76), HOLD, on(79)]


def _in_key_one_at_a_time(phrase: np.ndarray, s) -> np.ndarray:
    """The specification of ``in_key_rows`` for one phrase: try every shift, smallest first; then the snap."""
    from liveperf.modes.phrase import SHIFTS
    pitches = phrase[phrase >= melody.PITCH_OFFSET] - melody.PITCH_OFFSET
    best, best_fit = 0, -2
    for shift in SHIFTS:
        moved = pitches + shift
        fit = int(s.key_allowed[melody.PITCH_OFFSET + moved].sum()) if ((moved >= 0) & (moved < 128)).all() else -1
        if fit > best_fit:
            best, best_fit = int(shift), fit
    shifted = np.where(phrase >= melody.PITCH_OFFSET, phrase + best, phrase)
    return melody.canonical(style.reshape_line(shifted, 0, 1.0, s.key_allowed, s.allowed))


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(0, 129), min_size=32, max_size=32), min_size=1, max_size=12),
       st.integers(0, 11), st.sampled_from(["major", "minor", "dorian", "major_pentatonic", "chromatic"]),
       st.integers(0, 100), st.integers(0, 40))
def test_gan_candidates_go_into_the_key_all_at_once_as_one_at_a_time(rows, root, scale, low, width):
    from liveperf.modes.phrase import in_key_rows
    from liveperf.music.scales import Key
    key = Key(root, scale)
    s = replace(vae_settings(allowed=token_mask(key, low, min(127, low + width))), key_allowed=token_mask(key, 0, 127))
    phrases = np.array(rows, dtype=np.int64)
    got = in_key_rows(phrases, s)
    assert got.tolist() == [_in_key_one_at_a_time(p, s).tolist() for p in phrases]


@given(st.integers(1, 6), st.integers(1, 40).flatmap(lambda t: st.lists(st.integers(0, 129), min_size=6 * t,
                                                                          max_size=6 * t)))
def test_canonical_rows_is_canonical_of_each_row(k, flat):
    arr = np.array(flat, dtype=np.int64).reshape(6, -1)[:k]
    assert melody.canonical_rows(arr).tolist() == [melody.canonical(r).tolist() for r in arr]


def test_a_chromatic_note_snaps_to_the_lower_key_pitch_as_near_whatever_else_the_phrase_holds():
    allowed = token_mask(parse_key("C major"), 0, 127)
    for others in ([], [on(60)], [on(64), on(67)], [on(71), on(72), on(74)]):  # other notes move the mean pitch
        line = np.array([on(61), *others, on(66), on(70)])
        assert style.reshape_line(line, 0, 1.0, allowed, allowed)[[0, -2, -1]].tolist() == [on(60), on(65), on(69)]
