"""The comp (``liveperf.modes.comp``) and its voicing chooser (``liveperf.modes.voicing``): exact event lists in
virtual time over a fake comp model (block chords on the beat, listening for the melody note, a surprise fed again,
stop with every voice sounding), the compiled chooser against its plain-Python specification, and the shipped
model through the real engine loop."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.music.melody import HOLD, on
from liveperf.modes import voicing
from liveperf.modes.build import SongModels, build_modes
from liveperf.modes.comp import LISTEN_NS, Comp
from liveperf.music.performer_grid import PerformerGrid
from liveperf.music.sampler import new_rng_state
from liveperf.music.scales import parse_key, token_mask
from liveperf.setlist.schema import parse_setlist
from tests.fakes import STEP_NS_120 as STEP, performer, run_engine, settings

C3, G3, E4, C5, D5 = 48, 55, 64, 72, 74
CH = 1


class FakeComp:
    """Prefers ``chord`` (bass, tenor, alto) whatever it hears; records the melody tokens fed, per step."""

    def __init__(self, chord=(C3, G3, E4)):
        self.chord = chord
        self.fed: list[tuple[int, int]] = []
        self.reset()

    def reset(self):
        self.state = np.zeros((1, 1, 1), np.float32)

    def set_state(self, state):
        self.state = state

    def feed(self, melody_token, voices_prev, step):
        self.fed.append((int(melody_token), int(step)))
        self.state = self.state + 1
        logits = np.full((3, melody.NUM_CLASSES), -20.0, np.float32)
        for v, p in enumerate(self.chord):
            logits[v, on(p)] = 10.0
        return logits


def comp_settings(**over):
    base = dict(channel=CH, velocity=70, key_allowed=token_mask(parse_key("C major"), 0, 127), comp_rhythm="beat")
    base.update(over)
    return settings(**base)


def play(events, steps=8, model=None, **over):
    model = model or FakeComp()

    def factory(clock, sink, now_fn):
        return Engine({"comp": Comp(comp_settings(**over), model, clock, sink, new_rng_state(0), now_fn)},
                      clock=clock, sink=sink)

    wire, engine, _ = run_engine(events, factory, InternalClock(120, 4, 0), steps=steps)
    return [w for w in wire if w[1][1] == CH], engine.mode, model


def chord(at, kind, *pitches, vel=70):
    return [(at, ("on", CH, p, vel) if kind == "on" else ("off", CH, p)) for p in pitches]


def test_a_block_chord_on_each_beat_answers_the_melody_note_at_once_and_waits_for_it_where_it_holds():
    wire, mode, model = play(performer([(0, 7.9, C5, 80)]), steps=8)
    late = 4 * STEP + LISTEN_NS  # beat 2: the performer holds; the comp waited its window for a note
    assert wire == (chord(0, "on", C3, G3, E4)
                    + chord(late, "off", C3, G3, E4) + chord(late, "on", C3, G3, E4)
                    + chord(8 * STEP, "off", C3, G3, E4))  # the song's end: every voice let go
    assert (mode.listened, mode.reactions, mode.fallbacks, mode.chords) == (2, 1, 1, 2)
    assert model.fed[0] == (on(C5), 0) and model.fed[4] == (HOLD, 4)  # the note heard, then "it holds"


def test_a_beat_the_performer_stopped_striking_is_played_on_time():
    # four bars of one note per bar: beat 2's onset rate falls below LISTEN_RATE after four bars without a note there
    notes = [(16 * b, 16 * b + 15, C5, 80) for b in range(6)]
    wire, mode, _ = play(performer(notes), steps=16 * 5 + 8)
    beat2 = sorted({t for t, m in wire if m[0] == "on" and (t // STEP) % 16 == 4})
    assert [t % STEP for t in beat2] == [LISTEN_NS] * 4 + [0, 0]  # bars 1-4 waited; then on the step's time


def test_a_note_after_the_step_was_decided_is_fed_again_with_the_right_token():
    # 6 bars so beat 2 is decided on time, then the performer strikes there late (after the window, same step)
    notes = [(16 * b, 16 * b + 3.9, C5, 80) for b in range(5)] + [(16 * 5 + 4.2, 16 * 5 + 7, D5, 80)]
    _, mode, model = play(performer(notes), steps=16 * 5 + 8)
    step = 16 * 5 + 4
    fed = [tok for tok, s in model.fed if s == step]
    assert fed == [HOLD, on(D5)] and mode.refed == 1


def test_stop_with_every_voice_sounding_lets_every_voice_go_on_the_wire():
    wire, _, _ = play(performer([(0, 30, C5, 80)]), steps=3)
    assert wire == chord(0, "on", C3, G3, E4) + chord(3 * STEP, "off", C3, G3, E4)


def test_model_rhythm_holds_what_the_model_holds():
    class Holding(FakeComp):
        def feed(self, melody_token, voices_prev, step):
            logits = super().feed(melody_token, voices_prev, step)
            if step > 0:
                logits[:, HOLD] = 20.0
            return logits

    wire, _, _ = play(performer([(0, 7.9, C5, 80)]), steps=8, model=Holding(), comp_rhythm="model")
    assert wire == chord(0, "on", C3, G3, E4) + chord(8 * STEP, "off", C3, G3, E4)


# ---- the voicing chooser ---------------------------------------------------------------------------------------
def brute_force(logp, prev, mel, mel_prev, strong, k):
    tops = [np.argsort(-logp[v], kind="stable")[:k] for v in range(3)]
    best, arg = -np.inf, None
    for combo in itertools.product(*tops):
        if any(not np.isfinite(logp[v, t]) for v, t in enumerate(combo)):
            continue
        pitches = [prev[v] if t == HOLD else t - melody.PITCH_OFFSET for v, t in enumerate(combo)]
        if min(pitches) < 0:
            continue
        s = sum(logp[v, t] for v, t in enumerate(combo)) + voicing.score_chord(pitches, prev, mel, mel_prev, strong)
        if s > best:
            best, arg = s, combo
    return best, arg


@hsettings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mel=st.integers(-1, 90), strong=st.booleans(), k=st.integers(1, 6),
       silent=st.booleans())
def test_the_compiled_chooser_picks_the_best_chord_of_its_specification(seed, mel, strong, k, silent):
    rng = np.random.default_rng(seed)
    logp = rng.normal(0, 3, (3, melody.NUM_CLASSES))
    logp[rng.random(logp.shape) < 0.6] = -np.inf  # masks
    prev = np.array([-1, -1, -1] if silent else sorted(rng.choice(np.arange(36, 80), 3, replace=False)), np.int64)
    mel_prev = int(rng.integers(-1, 90))
    out = np.full(3, -7, np.int64)
    ok = voicing.choose(logp, prev, mel, mel_prev, strong, 0.0, 0.5, out, k=k)
    best, arg = brute_force(logp, prev, mel, mel_prev, strong, k)
    assert ok == (arg is not None)
    if ok:
        pitches = [prev[v] if t == HOLD else t - melody.PITCH_OFFSET for v, t in enumerate(out)]
        assert pitches[0] < pitches[1] < pitches[2]  # never crossed, never a unison on the one channel
        assert all(np.isfinite(logp[v, t]) for v, t in enumerate(out))
        got = sum(logp[v, t] for v, t in enumerate(out)) + voicing.score_chord(pitches, prev, mel, mel_prev, strong)
        assert got == best
    else:
        assert list(out) == [-7, -7, -7]


def test_the_chooser_steps_around_parallel_fifths_the_model_would_play():
    logp = np.full((3, melody.NUM_CLASSES), -np.inf)
    logp[0, on(50)], logp[0, on(43)] = np.log(0.6), np.log(0.4)  # D3 (fifths with the tenor's A3) or G2
    logp[1, on(57)] = 0.0  # tenor A3
    logp[2, on(66)] = 0.0  # alto F#4
    out = np.zeros(3, np.int64)
    # C3 G3 E4 under C5 -> the melody D5: D3 A3 would be parallel fifths with the bass and tenor both rising
    assert voicing.choose(logp, np.array([C3, G3, E4]), D5, C5, True, 0.0, 0.5, out)
    assert list(out) == [on(43), on(57), on(66)]


def test_peek_tells_what_finalize_will_and_changes_nothing():
    grid = PerformerGrid(0)
    grid.note_on(0, C5, 80)
    grid.note_off(2, C5)
    assert [grid.peek(s) for s in (0, 1, 2, 3)] == [on(C5), HOLD, melody.OFF, HOLD]
    assert [grid.finalize(s) for s in (0, 1, 2, 3)] == [on(C5), HOLD, melody.OFF, HOLD]


# ---- the shipped model, through the real engine loop --------------------------------------------------------------
def test_the_shipped_comp_plays_three_voices_under_a_melody_and_lets_every_one_go():
    song = parse_setlist({"song": [{"title": "comp", "tempo_bpm": 120, "key": "G major", "mode": "comp",
                                    "channel": 2}]}, Path("t.toml")).songs[0]
    models = SongModels.load(song, None)
    tune = [67, 71, 74, 72, 71, 69, 67, 66, 67, 69, 71, 72, 74, 72, 71, 67]  # quarter notes, G major
    events = performer([(4 * i, 4 * i + 3.9, p, 90) for i, p in enumerate(tune)])

    def factory(clock, sink, now_fn):
        modes = build_modes(song, models, clock, sink, seed=3, now_fn=now_fn)
        return Engine(modes, clock=clock, sink=sink, initial="comp")

    wire, engine, _ = run_engine(events, factory, InternalClock(120, 4, 0), steps=4 * len(tune))
    sounding: set[int] = set()
    at_beats = []
    for t, m in wire:
        assert m[1] == 1, m  # channel 2
        if m[0] == "on":
            assert m[2] not in sounding  # no unison, no double strike
            sounding.add(m[2])
            assert len(sounding) <= 3
        else:
            sounding.discard(m[2])
        at_beats.append((t, len(sounding)))
    assert not sounding  # every voice let go
    full = {t // (4 * STEP) for t, n in at_beats if n == 3}
    assert full == set(range(len(tune)))  # a three-note chord on every beat
    assert engine.mode.stats.model_errors == 0 and engine.mode.stats.no_candidate == 0


def test_a_cluster_of_every_key_and_minutes_of_pedal_never_give_more_than_three_voices_or_a_stuck_note():
    song = parse_setlist({"song": [{"title": "comp", "tempo_bpm": 120, "key": "C major", "mode": "comp",
                                    "channel": 2}]}, Path("t.toml")).songs[0]
    models = SongModels.load(song, None)
    events = performer([(0, 40, p, 100) for p in range(128)])  # all 128 keys held for 10 bars
    events += [(int(2.5 * STEP), bytes((0xB0, 64, 127))), (int(44 * STEP), bytes((0xB0, 64, 0)))]  # pedal down

    def factory(clock, sink, now_fn):
        return Engine(build_modes(song, models, clock, sink, seed=1, now_fn=now_fn), clock=clock, sink=sink,
                      initial="comp")

    wire, engine, _ = run_engine(sorted(events), factory, InternalClock(120, 4, 0), steps=64)
    sounding: set[int] = set()
    for _, m in wire:
        if m[0] == "on":
            sounding.add(m[2])
            assert len(sounding) <= 3
        elif m[0] == "off":
            sounding.discard(m[2])
    assert not sounding and engine.mode.chords > 0 and engine.mode.stats.model_errors == 0
