"""Hearing the key (``liveperf.music.key_finder``): the follower's change at a bar line as an exact event list in virtual
time, the estimator's stability under bad input (hypothesis), the shipped model, and the setlist's key fields."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.music.key_finder import (FEATURES, FOLLOW_AUTO, FOLLOW_MODULATIONS, MIN_PITCH_CLASSES, MODES, NUM_INPUTS,
                                 KeyFinder, KeyFollower, KeyModel, candidate_index, key_of_candidate, shipped_model)
from liveperf.music.melody import on
from liveperf.modes.duet import Duet
from liveperf.music.sampler import new_rng_state
from liveperf.music.scales import Key, parse_key
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedDuet, performer, run_engine, settings

MAJOR = (0, 2, 4, 5, 7, 9, 11)
# Probabilities from the compiled (float32) first layer against float64: measured worst 2.6e-5 over 3,000 random
# profiles of 0-200 in every input (a real tune's heard profiles: 5e-7; the estimate never changed).
FLOAT32_ATOL = 1e-4


def template_model() -> KeyModel:
    """A readable stand-in for the trained network: major keys only, scored by how much of what was just heard
    lies in the scale, plus the tonic's weight; the other modes never win."""
    w1 = np.zeros((NUM_INPUTS, len(MODES)))
    for i in MAJOR:
        w1[i, 0] = 3.0  # the short half-life's sounding profile, i semitones above the root
    w1[0, 0] += 1.0
    w1[3 * 12 + 0, 0] = 0.0
    b1 = np.full(len(MODES), -1e3)
    b1[0] = 0.0
    return KeyModel(w1, b1, np.eye(len(MODES)), np.zeros(len(MODES)), half_lives_bars=(1.0, 4.0), relu=False,
                    name="template")


def strike(finder: KeyFinder, step: int, pitches) -> None:
    """The grid reaches ``step``; then whatever sounded ends and ``pitches`` are struck there."""
    finder.on_step(step)
    finder.release_all(step)
    for p in pitches:
        finder.note_on(p, step)


def follower(start: Key | None, **over) -> KeyFollower:
    return KeyFollower(KeyFinder(template_model(), 16, 4), start, **{**FOLLOW_AUTO, **over})


def test_a_key_change_applies_at_the_bar_line_and_moves_the_partners_mask():
    # The duet model asks for F#3 (54) at steps 0, 8 and 16 and holds in between. The song starts in C major,
    # where F# is masked: the greedy choice is the likeliest pitch in key (this fake's tie: the lowest, C3). The
    # performer plays a G major scale through bar 1; at the bar line (step 16) the follower hears G major and the
    # mask moves there: the partner plays F#3 itself. No note is cut: C3 sounds until the model's next note.
    stepper = ScriptedDuet({1: on(54), 9: on(54), 17: on(54)})
    keys = follower(parse_key("C major"))

    def make(clock, sink, now_fn):
        mode = Duet(settings(channel=1, velocity=90), stepper, clock, sink, new_rng_state(0))
        return Engine(mode, clock=clock, sink=sink, keys=keys, pitch_range=(48, 84))

    scale = [(2 * i, 2 * i + 2, p, 80) for i, p in enumerate((67, 69, 71, 72, 74, 76, 78, 79))]
    wire, engine, _ = run_engine(performer(scale), make, InternalClock(120, 4, 0), steps=20)
    assert engine.key_changes == [(16, "G major")]
    assert wire == [(0, ("on", 1, 48, 90)), (8 * S, ("off", 1, 48)), (8 * S, ("on", 1, 48, 90)),
                    (16 * S, ("off", 1, 48)), (16 * S, ("on", 1, 54, 90)), (20 * S, ("off", 1, 54))]
    assert keys.key == parse_key("G major") and keys.confidence > 0.6


def test_no_change_mid_bar_and_none_on_a_passing_chord():
    keys = follower(parse_key("C major"))
    finder = keys.finder
    for step in range(16):  # a G major triad arpeggiated all through bar 0: a chord, not a key
        strike(finder, step, [(67, 71, 74)[step % 3]])
    assert keys.ask(16) is None and keys.key == parse_key("C major")
    for step in range(16, 28):  # then the scale's other notes: the key moves, but only when asked at a bar line
        strike(finder, step, [(69, 72, 76, 78)[step % 4]])
    assert keys.key == parse_key("C major")
    assert keys.ask(32) == parse_key("G major") and [(c.step, str(c.key)) for c in keys.changes] == [(32, "G major")]


def sequences():
    """Performer input, one step at a time (a tuple of sounding pitches per step): runs of an atonal cluster, all 128
    notes, one repeated note (the same one all through) and silence, in any order and length."""
    runs = st.lists(st.tuples(st.sampled_from(["cluster", "all", "note", "silence"]), st.integers(1, 80)),
                    min_size=1, max_size=8)

    def expand(args):
        note, parts = args
        pitches = {"cluster": tuple(range(60, 72)), "all": tuple(range(128)), "note": (note,), "silence": ()}
        return [pitches[kind] for kind, n in parts for _ in range(n)]

    return st.tuples(st.integers(0, 127), runs).map(expand)


@hsettings(max_examples=60, deadline=None)
@given(sequences(), st.sampled_from(["C major", "A minor", "D dorian", "Bb mixolydian"]))
def test_bad_input_never_moves_the_key(steps, start):
    # Atonal clusters, all 128 notes held, one repeated note, silence: whatever their order and length, the last
    # key holds (the shipped model and the follower's defaults).
    keys = KeyFollower(KeyFinder(shipped_model(), 16, 4), parse_key(start), **FOLLOW_AUTO)
    for step, pitches in enumerate(steps):
        if step % 16 == 0:
            assert keys.ask(step) is None
        strike(keys.finder, step, pitches)
    assert keys.key == parse_key(start) and keys.changes == []
    assert np.isfinite(keys.finder.heard).all() and keys.finder.heard.max() <= 16 * 4 * 2 * 128


def test_minutes_of_silence_hold_the_key_with_falling_confidence():
    keys = KeyFollower(KeyFinder(shipped_model(), 16, 4), None, **FOLLOW_AUTO)
    tune = [67, 71, 74, 71, 67, 69, 71, 72, 74, 72, 71, 69, 67, 66, 67, 67] * 4  # G major, 4 bars of 16ths
    for step, p in enumerate(tune):
        if step % 16 == 0:
            keys.ask(step)
        strike(keys.finder, step, [p])
    keys.finder.release_all(64)
    assert keys.key == parse_key("G major")
    heard_confidence = keys.confidence
    for step in range(64, 64 + 16 * 120):  # two minutes of silence at 120 BPM
        if step % 16 == 0:
            assert keys.ask(step) is None
        keys.finder.on_step(step)
    assert keys.key == parse_key("G major") and keys.confidence < heard_confidence / 2


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.integers(48, 72), min_size=1, max_size=64), st.integers(-11, 11))
def test_the_estimate_moves_with_a_transposition(pitches, shift):
    # The model is one network looked at from each root: the same notes moved by k semitones score every
    # candidate as the unmoved notes scored the candidate k semitones lower (same mode).
    model = shipped_model()
    heard = []
    for k in (0, shift):
        f = KeyFinder(model, 16, 4)
        for step, p in enumerate(pitches):
            strike(f, step, [p + k])
        heard.append(f.probabilities())
    moved = np.roll(heard[0].reshape(len(MODES), 12), shift % 12, axis=1).ravel()
    # The compiled first layer is float32 (KeyModel): the moved notes add the same rows in another order.
    assert np.allclose(heard[1], moved, rtol=0.0, atol=FLOAT32_ATOL)


def test_how_each_note_was_reached_and_where_a_phrase_ended_are_heard():
    # No grid steps in between: nothing fades, so every count is exact. C on the downbeat, a leap up to G, a
    # semitone up to A flat held two beats, a rest of two beats, a semitone down to G.
    f = KeyFinder(template_model(), 16, 4)
    f.note_on(60, 0)
    f.note_off(60, 2)
    f.note_on(67, 2)
    f.note_off(67, 4)
    f.note_on(68, 4)
    f.note_off(68, 12)
    f.note_on(67, 20)
    f.note_off(67, 21)
    expected = np.zeros((len(FEATURES), 12))
    for feature, pc, count in (("sounding", 0, 2), ("sounding", 7, 3), ("sounding", 8, 8), ("downbeat", 0, 1),
                               ("offbeat", 7, 1), ("beat", 8, 1), ("beat", 7, 1), ("phrase_start", 0, 1),
                               ("leap_in", 7, 1), ("semitone_up_in", 8, 1), ("semitone_down_in", 7, 1),
                               ("long", 8, 1), ("phrase_end", 8, 1)):
        expected[FEATURES.index(feature), pc] += count
    assert np.array_equal(f.heard[0], expected) and np.array_equal(f.heard[1], expected)


def test_candidates_and_names():
    for index in range(len(MODES) * 12):
        key = key_of_candidate(index)
        assert candidate_index(key) == index
    assert candidate_index(parse_key("E harmonic minor")) == candidate_index(parse_key("E minor"))
    assert candidate_index(parse_key("C blues")) is None
    assert FOLLOW_MODULATIONS["enter"] > FOLLOW_AUTO["enter"]


def test_a_bad_model_file_names_itself(tmp_path):
    bad = tmp_path / "key.json"
    bad.write_text('{"format": "liveperf.key_model", "modes": ["major"]}')
    with pytest.raises(ValueError, match="key.json"):
        KeyModel.load(bad)


@hsettings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 200.0), min_size=NUM_INPUTS, max_size=NUM_INPUTS))
def test_the_compiled_probabilities_are_the_softmax_of_the_numpy_scores(values):
    model = shipped_model()
    heard = np.array(values).reshape(2, -1, 12)
    s = model.scores(heard)
    expected = np.exp(s - s.max())
    expected /= expected.sum()
    # The specification is float64; the compiled first layer float32 (KeyModel: ~30 % faster at the bar line).
    assert np.allclose(model.probabilities(heard, np.empty(len(MODES) * 12)), expected, rtol=0.0, atol=FLOAT32_ATOL)


def test_a_key_with_no_pitch_in_the_partners_range_is_not_applied():
    # The partner's range is one note, F#3: C major has no pitch there, so a move to C major is refused (counted),
    # and the partner keeps G major.
    keys = follower(parse_key("G major"))
    stepper = ScriptedDuet({})

    def make(clock, sink, now_fn):
        return Engine(Duet(settings(channel=1), stepper, clock, sink, new_rng_state(0)), clock=clock, sink=sink,
                      keys=keys, pitch_range=(54, 54))

    scale = [(2 * i, 2 * i + 2, p, 80) for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72))]
    _, engine, _ = run_engine(performer(scale), make, InternalClock(120, 4, 0), steps=20)
    assert engine.key_errors == 1 and engine.key_changes == [] and keys.key == parse_key("G major")
    assert keys.changes == []


def test_key_follow_modulations_needs_two_bar_lines_and_more_confidence():
    keys = KeyFollower(KeyFinder(template_model(), 16, 4), parse_key("C major"), **FOLLOW_MODULATIONS)
    g_major = (67, 69, 71, 72, 74, 76, 78)
    for step in range(48):
        if step % 16 == 0:
            moved = keys.ask(step)
            assert moved is None or (step == 32 and moved == parse_key("G major"))
        strike(keys.finder, step, [g_major[step % 7]])
    assert [(c.step, str(c.key)) for c in keys.changes] == [(32, "G major")]  # asked at 16 and 32: two in a row


def test_the_recording_marks_key_changes_and_its_journal_keeps_them(tmp_path):
    import mido

    from liveperf.io import journal as jr
    from liveperf.io.recorder import Recorder

    bar_ns = 2_000_000_000  # 4/4 at 120 BPM
    rec = Recorder(folder=tmp_path)
    rec.begin_song("Tune", 120, 0, 4)
    for i, name in enumerate(("G major", "E dorian", "F# minor", "Ab harmonic_minor")):
        rec.key_change(i * bar_ns, name)
    assert rec.close()
    tick, conductor = 0, []
    for msg in mido.MidiFile(tmp_path / "01-tune.mid").tracks[0]:
        tick += msg.time
        if msg.type in ("marker", "key_signature"):
            conductor.append((tick, msg.text if msg.type == "marker" else msg.key))
    assert conductor == [(0, "Tune"), (0, "key G major"), (0, "G"), (3840, "key E dorian"),  # a mode: no signature
                         (7680, "key F# minor"), (7680, "F#m"), (11520, "key Ab harmonic_minor"), (11520, "Abm")]
    journal = tmp_path / "x.journal"  # a crash mid-song: the journal's key lines come back
    song = jr.SongRecord("Tune", 120.0, 0, 4.0, keys=[(5, "E dorian")])
    journal.write_bytes(jr.journal_bytes(song))
    assert jr.read_journal(journal).keys == [(5, "E dorian")]


def test_key_change_at_beats_moves_the_mask_on_a_beat():
    # key_change_at = "beat": the follower is asked at every beat; here it hears G B D F# A by step 12 and moves
    # there, on beat 4 of bar 1, and the partner's F#3 sounds from that beat on.
    stepper = ScriptedDuet({1: on(54), 5: on(54), 9: on(54), 13: on(54), 17: on(54)})
    keys = follower(parse_key("C major"))

    def make(clock, sink, now_fn):
        mode = Duet(settings(channel=1, velocity=90), stepper, clock, sink, new_rng_state(0))
        return Engine(mode, clock=clock, sink=sink, keys=keys, pitch_range=(48, 84), key_every_steps=4)

    arpeggio = [(2 * i, 2 * i + 2, p, 80) for i, p in enumerate((67, 71, 74, 78, 69, 72, 76, 79))]
    wire, engine, _ = run_engine(performer(arpeggio), make, InternalClock(120, 4, 0), steps=20)
    assert engine.key_changes == [(12, "G major")]
    assert wire == [(0, ("on", 1, 48, 90)), (4 * S, ("off", 1, 48)), (4 * S, ("on", 1, 48, 90)),
                    (8 * S, ("off", 1, 48)), (8 * S, ("on", 1, 48, 90)), (12 * S, ("off", 1, 48)),
                    (12 * S, ("on", 1, 54, 90)), (16 * S, ("off", 1, 54)), (16 * S, ("on", 1, 54, 90)),
                    (20 * S, ("off", 1, 54))]


def test_a_key_that_plainly_does_not_fit_is_left_with_less_confidence():
    # A starting key a tritone off (Bb major) while the performer plays E major: what sounds lies mostly outside
    # it, so the follower's escape applies: the best key needs only probability 0.4 and no margin.
    e_major = (64, 66, 68, 69, 71, 73, 75)
    probs = []
    for escape in (None, 0.4):
        keys = follower(parse_key("Bb major"), enter=0.999, escape=escape)
        for step in range(16):
            strike(keys.finder, step, [e_major[step % 7]])
        best, p, _ = keys.finder.estimate()
        probs.append(p)
        assert keys.ask(16) == (None if escape is None else best)
    assert str(best) == "E major" and 0.4 <= probs[0] < 0.999


def test_a_key_that_plainly_does_not_fit_is_left_at_the_next_beat_one_that_fits_waits_for_the_bar_line():
    # The song starts a tritone off (Bb major) while the performer plays E G# B A ... (E major). The model asks for
    # G#3 (56) every beat; Bb major masks it (the fake's tie: C3). At step 8, a beat inside bar 1, four pitch
    # classes are heard and none but A is in Bb major: the escape question moves the key there, and G#3 sounds
    # from that beat on, not from the bar line at 16.
    stepper = ScriptedDuet({1: on(56), 5: on(56), 9: on(56), 13: on(56), 17: on(56)})

    def run(start: str, pitches):
        keys = follower(parse_key(start))

        def make(clock, sink, now_fn):
            mode = Duet(settings(channel=1, velocity=90), stepper, clock, sink, new_rng_state(0))
            return Engine(mode, clock=clock, sink=sink, keys=keys, pitch_range=(48, 84), key_escape_steps=4)

        line = [(2 * i, 2 * i + 2, p, 80) for i, p in enumerate(pitches)]
        return run_engine(performer(line), make, InternalClock(120, 4, 0), steps=20)[:2]

    wire, engine = run("Bb major", (64, 68, 71, 69, 75, 73, 66, 64))
    assert engine.key_changes == [(8, "E major")]
    assert wire == [(0, ("on", 1, 48, 90)), (4 * S, ("off", 1, 48)), (4 * S, ("on", 1, 48, 90)),
                    (8 * S, ("off", 1, 48)), (8 * S, ("on", 1, 56, 90)), (12 * S, ("off", 1, 56)),
                    (12 * S, ("on", 1, 56, 90)), (16 * S, ("off", 1, 56)), (16 * S, ("on", 1, 56, 90)),
                    (20 * S, ("off", 1, 56))]
    # From C major, which holds all of G B D F# A C E G but the F#, nothing is plainly wrong: the move to G major
    # waits for the bar line, as when the follower is asked at bar lines only.
    _, engine = run("C major", (67, 71, 74, 78, 69, 72, 76, 79))
    assert engine.key_changes == [(16, "G major")]


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 50.0), st.floats(0.0, 1e-8)), min_size=12, max_size=12),
       st.integers(0, 11), st.sampled_from(MODES + ("harmonic_minor",)))
def test_in_scale_is_the_share_of_recent_sound_in_the_scale(sounding, root, scale):
    """The compiled share (asked at every beat) against its specification: None with too little heard (no sound,
    or fewer than MIN_PITCH_CLASSES pitch classes with 5 % of the weight each), else the scale's share."""
    finder = KeyFinder(KeyModel.classic(), 16, 4)
    finder.heard[0, 0] = sounding
    s = np.array(sounding)
    total = 0.0
    for v in sounding:  # in order, as the compiled loop adds (a weight exactly at 5 % must count the same)
        total += v
    key = Key(root, scale)
    got = finder.in_scale(key)
    if total <= 1e-9 or (s >= 0.05 * total).sum() < MIN_PITCH_CLASSES:
        assert got is None
    else:
        assert got == pytest.approx(s[list(key.pitch_classes)].sum() / total, abs=1e-12)
