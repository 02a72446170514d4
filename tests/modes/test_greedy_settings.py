"""Greedy and narrow settings play notes (``liveperf.modes.note_choice``), and settings that can never sound are
warned about (``liveperf.setlist.lint``, in ``liveperf check`` and ``liveperf play``).

A step model's likeliest token is almost always HOLD: before, ``temperature = 0``, ``top_k = 1`` or a narrow range
with ``top_p = 0.5`` answered with silence. Exact event lists in virtual time with a rest-heavy fake model, and
seeded property tests: a due note is always played, and nothing changes where the settings left notes to draw."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from liveperf.music import melody
from liveperf.music.sampler_reference import kept_tokens
from liveperf.timing.clock import InternalClock
from liveperf.music.melody import HOLD, OFF, on
from liveperf.modes.note_choice import NoteChoice
from liveperf.music.sampler import NO_CANDIDATE, new_rng_state, sample
from liveperf.music.sampler_reference import _sum_in_token_order
from liveperf.music.scales import parse_key, token_mask
from tests.fakes import STEP_NS_120 as S
from tests.fakes import performer, run_engine, run_virtual
from tests.modes.test_call_response import PHRASE
from tests.modes.test_modes import duet_engine
from tests.music.test_sampler import _logit_values, _masks, _seeds, _temperatures, _top_ks, _top_ps

N = melody.NUM_CLASSES
PROPS = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# At these steps a few pitches come close to HOLD (logit 4): together the note-ons outweigh it, no single one does.
ONSETS = {14: {64: 3.2, 67: 3.0, 60: 3.0}, 18: {67: 3.3, 65: 3.0, 69: 3.0}, 22: {72: 3.5, 74: 3.0, 62: 2.0}}


def rest_heavy(onsets: dict, n: int) -> np.ndarray:
    """Logits of a model whose likeliest token is always HOLD; C4 is the likeliest note when none is due."""
    x = np.full(N, -10.0, dtype=np.float32)
    x[HOLD], x[OFF], x[on(60)] = 4.0, 0.0, -5.0
    for pitch, value in onsets.get(n, {}).items():
        x[on(pitch)] = value
    return x


class RestHeavy:
    """Step model fake: feed n (since reset) returns ``rest_heavy(onsets, n)``; n predicts phrase step n."""

    steps_per_beat = 4

    def __init__(self, onsets: dict) -> None:
        self.onsets, self._n = onsets, 0

    def reset(self) -> None:
        self._n = 0

    def feed(self, token, pos) -> np.ndarray:
        self._n += 1
        return rest_heavy(self.onsets, self._n)


class RestHeavyDuet(RestHeavy):
    def feed(self, performer_token, partner_prev, voice, pos) -> np.ndarray:
        return super().feed(performer_token, pos)


def test_before_the_sampler_alone_answered_these_logits_with_silence():
    for n in (12, 13, 14, 18, 22):
        assert sample(rest_heavy(ONSETS, n), token_mask(parse_key("C major"), 48, 84), 0.0, 0, 1.0,
                      new_rng_state(0), HOLD) == HOLD


GREEDY_ANSWER = [  # velocities: the call's 95, +1 between beats (the performer's accent, test_call_response)
    (12 * S, ("on", 0, 60, 95)),  # the answer's first step needs a note: the likeliest (C4)
    (14 * S, ("off", 0, 60)),
    (14 * S, ("on", 0, 64, 96)),  # notes outweigh HOLD: the likeliest note, E4
    (18 * S, ("off", 0, 64)),
    (18 * S, ("on", 0, 67, 96)),
    (22 * S, ("off", 0, 67)),
    (22 * S, ("on", 0, 72, 96)),
    (28 * S, ("off", 0, 72)),  # the answer's end
]


@pytest.mark.parametrize("over", [dict(temperature=0.0), dict(temperature=1.0, top_k=1)], ids=["t0", "top_k1"])
def test_greedy_answers_play_the_likeliest_note_where_one_is_due(over):
    wire, mode, _ = run_virtual(performer(PHRASE), RestHeavy(ONSETS), **over)
    assert wire == GREEDY_ANSWER
    assert mode.choice.notes_chosen == 4 and mode.stats.tokens == 16


def test_a_narrow_range_with_top_p_plays_the_likeliest_note_in_range():
    # C major, 60..64: C4, D4, E4. With top_p 0.5 the sampler keeps HOLD alone at every step.
    wire, _, _ = run_virtual(performer(PHRASE), RestHeavy(ONSETS), temperature=1.0, top_p=0.5,
                             allowed=token_mask(parse_key("C major"), 60, 64))
    assert wire == [
        (12 * S, ("on", 0, 60, 95)),
        (14 * S, ("off", 0, 60)),
        (14 * S, ("on", 0, 64, 96)),
        (18 * S, ("off", 0, 64)),
        (18 * S, ("on", 0, 60, 96)),  # the model wants G4 (out of range): a note is due, the likeliest in range
        (22 * S, ("off", 0, 60)),
        (22 * S, ("on", 0, 62, 96)),  # mostly C5 / D5 out of range; D4 is the likeliest in range
        (28 * S, ("off", 0, 62)),
    ]


def test_settings_that_leave_notes_to_draw_are_untouched():
    # temperature 1, no cut: the sampler's own draws, exactly (a rest drawn stands; nothing chosen for it).
    wire, mode, _ = run_virtual(performer(PHRASE), RestHeavy(ONSETS), temperature=1.0, seed=3)
    ref_rng, allowed, expected = new_rng_state(3), token_mask(parse_key("C major"), 48, 84), []
    for step in range(12, 28):
        expected.append(sample(rest_heavy(ONSETS, step), allowed, 1.0, 0, 1.0, ref_rng, HOLD))
    assert mode.choice.notes_chosen == 0
    ons = [e[2] for _, e in wire if e[0] == "on"]
    assert ons == [melody.pitch_of(t) for t in expected if melody.is_on(t)]


def test_greedy_duet_plays_the_likeliest_note_where_one_is_due():
    # Silent, HOLD is masked (Duet._mask): OFF beats every note until step 2, where E3 beats OFF (the sampler's own
    # pick). Sounding, HOLD is the likeliest token; at step 5 the notes outweigh it: F3.
    stepper = RestHeavyDuet({3: {52: 3.2, 55: 3.0, 48: 3.0}, 6: {53: 3.2, 57: 3.0, 50: 3.0}})
    wire, engine, _ = run_engine([], duet_engine(stepper), InternalClock(120, 4, 0), steps=8)
    assert wire == [(2 * S, ("on", 1, 52, 90)), (5 * S, ("off", 1, 52)), (5 * S, ("on", 1, 53, 90)),
                    (8 * S, ("off", 1, 53))]
    assert engine.mode.choice.notes_chosen == 1


# ---- properties ----------------------------------------------------------------------------------------------

def likeliest_allowed(logits, allowed) -> int:
    best = -1
    for t in range(melody.PITCH_OFFSET, N):
        if allowed[t] and math.isfinite(float(logits[t])) and (best < 0 or float(logits[t]) > float(logits[best])):
            best = t
    return best


def masses(logits) -> tuple[float, float, float]:
    """(note-ons, HOLD, OFF) at temperature 1, unmasked, non-finite logits weighing nothing."""
    vals = [float(v) for v in logits]
    m = max(v for v in vals if math.isfinite(v))
    w = [math.exp(v - m) if math.isfinite(v) else 0.0 for v in vals]
    return math.fsum(w[melody.PITCH_OFFSET:]), w[HOLD], w[OFF]


def choose(logits, mask, temperature, top_k, top_p, seed, need_note=False, fallback=NO_CANDIDATE):
    state = new_rng_state(seed)
    token = NoteChoice().choose(logits, mask, SimpleNamespace(temperature=temperature, top_k=top_k, top_p=top_p),
                                state, fallback, need_note)
    return token, int(state[0])


@PROPS
@given(arrays(np.float32, N, elements=_logit_values), _masks, _temperatures, _top_ks, _top_ps, _seeds, st.booleans())
def test_choose_keeps_the_samplers_contract(logits, mask, temperature, top_k, top_p, seed, need_note):
    """One draw, as the sampler; its note unchanged; otherwise its rest, or the likeliest allowed note."""
    ref_state = new_rng_state(seed)
    drawn = sample(logits, mask, temperature, top_k, top_p, ref_state, NO_CANDIDATE)
    token, state = choose(logits, mask, temperature, top_k, top_p, seed, need_note)
    assert state == int(ref_state[0])
    if drawn >= melody.PITCH_OFFSET:
        assert token == drawn
    else:
        assert token in (drawn, likeliest_allowed(logits, mask))


_finite = st.floats(-30.0, 30.0, width=32)
_note_masks = arrays(bool, N)
_greedy = st.sampled_from([(0.0, 0, 1.0), (-1.0, 0, 1.0), (1.0, 1, 1.0), (0.7, 1, 0.9), (math.nan, 5, 0.5)])


@PROPS
@given(arrays(np.float32, N, elements=_finite), _note_masks, _greedy, _seeds, st.booleans())
def test_greedy_plays_the_likeliest_allowed_note_when_notes_outweigh_rests(logits, mask, greedy, seed, need_note):
    assume(mask[melody.PITCH_OFFSET:].any())
    onset, hold, off = masses(logits)
    assume(abs(onset - max(hold, off)) > 1e-6 * max(onset, hold, off))  # no tie within rounding
    token, _ = choose(logits, mask, *greedy, seed, need_note)
    drawn = sample(logits, mask, *greedy, new_rng_state(seed), NO_CANDIDATE)
    if melody.is_on(drawn):
        assert token == drawn  # (top_k 1 at a temperature: near-equal logits can tie in weight, lower token first)
    elif onset > max(hold, off) or need_note:
        assert token == likeliest_allowed(logits, mask)  # a note inside the mask, never silence
    else:
        assert token == drawn  # the rest stands


def kept_reference(logits, mask, temperature, top_k, top_p) -> list[int]:
    """The tokens the sampler may draw (w > 0) after top-k and top-p, per ``liveperf.music.sampler``'s steps 5-8."""
    vals = [float(v) for v in logits]
    cands = [i for i in range(N) if mask[i] and math.isfinite(vals[i])]
    kept, w = kept_tokens(vals, cands, temperature, top_k, top_p)
    return [i for i in kept if w[i] > 0.0]


@PROPS
@given(arrays(np.float32, N, elements=_logit_values), _note_masks, st.floats(0.01, 10.0),
       st.one_of(st.sampled_from([0, 2, 3]), st.integers(0, N)), _top_ps)
def test_notes_cut_agrees_with_the_samplers_kept_tokens(logits, mask, temperature, top_k, top_p):
    assume(top_k != 1)
    nc = NoteChoice()
    note = nc.likeliest_note(logits, mask)
    assume(note >= 0)
    vals = [float(v) for v in logits]
    cands = [i for i in range(N) if mask[i] and math.isfinite(vals[i])]
    m = max(vals[i] for i in cands)
    w = {i: math.exp((vals[i] - m) / temperature) for i in cands}
    rests = [w[t] for t in (HOLD, OFF) if t in w]
    # Away from rounding boundaries: a rest weighing (almost) what the note does, or the top-p target right at a
    # rest prefix's mass (numpy's and math's exp may differ in the last bit there).
    assume(all(r == w[note] or abs(r - w[note]) > 1e-9 * max(r, w[note]) for r in rests))
    order = sorted(cands, key=lambda i: (-w[i], i))
    for total in (_sum_in_token_order(cands, w), _sum_in_token_order(order[:top_k] if top_k > 0 else order, w)):
        for prefix in (rests[:1], rests[1:], rests):
            assume(not prefix or not 0.0 < top_p < 1.0 or abs(sum(prefix) - top_p * total) > 1e-9 * total)
    cut = nc.notes_cut(logits, mask, temperature, top_k, top_p, note)
    assert cut == (not any(melody.is_on(t) for t in kept_reference(logits, mask, temperature, top_k, top_p)))


class RandomSteps:
    """A rest-heavy step model with random logits per feed (seeded); records what each feed returned."""

    steps_per_beat = 4

    def __init__(self, seed: int) -> None:
        self.seed, self._n, self.out = seed, 0, {}

    def reset(self) -> None:
        self._n = 0

    def feed(self, *args) -> np.ndarray:
        self._n += 1
        rng = np.random.default_rng((self.seed, self._n))
        x = rng.normal(-1.0, 1.5, N).astype(np.float32)
        x[HOLD], x[OFF] = rng.uniform(2.0, 6.5), rng.uniform(-3.0, 3.0)
        self.out[self._n] = x
        return x


_keys = st.sampled_from(["C major", "A minor", "D dorian", "F# major_pentatonic", "Bb blues"])


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), _keys, st.integers(30, 90), st.integers(0, 20), _greedy)
def test_greedy_modes_never_go_silent_when_a_note_is_due(seed, key, low, width, greedy):
    """Call and response and duet, greedy settings, any mask with a note in it: at every step where the model's
    note-ons clearly outweigh HOLD and OFF (and at an answer's first step), a partner note-on goes out."""
    allowed = token_mask(parse_key(key), low, low + width)
    assume(allowed[melody.PITCH_OFFSET:].any())
    temperature, top_k, top_p = greedy

    def due(x) -> bool:
        onset, hold, off = masses(x)
        return onset > 1.000001 * max(hold, off)

    stepper = RandomSteps(seed)
    wire, _, _ = run_virtual(performer(PHRASE), stepper, allowed=allowed, temperature=temperature, top_k=top_k,
                             top_p=top_p)
    onsets = {t // S for t, e in wire if e[0] == "on"}
    for step in range(12, 28):  # the answer; feed n predicts step n
        if step == 12 or due(stepper.out[step]):
            assert step in onsets, step
    stepper = RandomSteps(seed)
    wire, _, _ = run_engine([], duet_engine(stepper, allowed=allowed, temperature=temperature, top_k=top_k,
                                            top_p=top_p), InternalClock(120, 4, 0), steps=16)
    onsets = {t // S for t, e in wire if e[0] == "on"}
    for step in range(16):  # feed n is step n - 1
        if due(stepper.out[step + 1]):
            assert step in onsets, step


# ---- warnings: settings that can never sound -------------------------------------------------------------------

SILENT_SET = """[show]
lookahead_ms = 100
[show.osc]
udp_port = 0
tcp_port = 0

[[song]]
title = "Fine"
tempo_bpm = 120
key = "C major"
temperature = 0
top_k = 1

[[song]]
title = "No notes"
tempo_bpm = 120
key = "C major pentatonic"
pitch_range = [65, 66]

[[song]]
title = "Rests only"
tempo_bpm = 120
key = "C major"
density = 0
"""


def silent_setlist(tmp_path):
    p = tmp_path / "set.toml"
    p.write_text(SILENT_SET)
    return p


def test_settings_that_can_never_sound_are_named_with_file_song_and_fields(tmp_path):
    from liveperf.setlist.schema import load_setlist
    from liveperf.setlist.lint import setlist_warnings

    p = silent_setlist(tmp_path)
    warnings = setlist_warnings(load_setlist(p))
    assert len(warnings) == 2  # greedy, top_k 1 are not silent any more
    assert warnings[0].startswith(f"{p}: song 2 ('No notes'): fields 'key' = 'C major_pentatonic' and "
                                  f"'pitch_range' = [65, 66] have no pitch in common")
    assert warnings[1].startswith(f"{p}: song 3 ('Rests only'): field 'density' = 0: every partner note-on")


def test_check_warns_per_song_and_stays_go(tmp_path, monkeypatch):
    from liveperf import check

    # The models and their timing are test_check's business: here every song loads and is fast.
    monkeypatch.setattr(check.SongModels, "load", lambda *a, **k: SimpleNamespace(steps_per_beat=4, partners=[]))
    monkeypatch.setattr(check, "measure_mode", lambda *a: ("unit", {"p50": 1.0, "p99": 1.0, "max": 1.0, "n": 1}))
    monkeypatch.setattr(check, "measure_plan", lambda *a: {"p50": 1.0, "p99": 1.0, "max": 1.0, "n": 1})
    report = check.run_check(silent_setlist(tmp_path), steps=50, warmup=10, midi=False)
    assert report.go
    assert [len(s.warnings) for s in report.songs] == [0, 1, 1]
    assert [len(s["warnings"]) for s in report.to_json()["songs"]] == [0, 1, 1]
    table = check.format_table(report)
    assert "      warning: " + report.songs[1].warnings[0] in table
    assert "'density' = 0" in table


def test_play_warns_before_it_loads_anything(tmp_path, monkeypatch):
    from liveperf.show import run as show_module
    from liveperf.setlist.schema import load_setlist

    class Loaded(Exception):
        pass

    def stop(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(show_module, "load_song_models", stop)
    lines: list[str] = []
    show = show_module.Show(load_setlist(silent_setlist(tmp_path)), show_module.ShowOptions(), log=lines.append)
    with pytest.raises(Loaded):
        show.run([0], "file", show_module.NullPort())
    assert len(lines) == 2 and all(line.startswith(f"warning: {tmp_path / 'set.toml'}: song ") for line in lines)
