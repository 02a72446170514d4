"""The copy guard (issue 17, item 4): passage keys, the index file, finding and cutting a planted copy, and the
guard in phrase mode and call and response as exact event lists in virtual time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.music.copy_guard import INDEX_LENGTHS, CopyGuard, CopyIndex, CopyIndexError, window_hashes
from liveperf.engine import Engine
from liveperf.music.melody import HOLD, OFF, on
from liveperf.modes.phrase import PhraseMode
from liveperf.music.sampler import new_rng_state
from liveperf.music.scales import parse_key, token_mask
from liveperf.setlist.schema import SetlistError, parse_setlist
from tests.fakes import STEP_NS_120 as S
from tests.fakes import FixedPhrases, ScriptedStepper, performer, run_engine, run_virtual, settings
from tests.modes.test_call_response import ANSWER, PHRASE

CHROMATIC = token_mask(parse_key("C chromatic"), 48, 84)  # the script's C# (ANSWER, step 18) is allowed
# A 16-step passage with 6 onsets, and a tune holding it (transposed up a fourth) among other notes.
PASSAGE = [on(60), HOLD, on(62), HOLD, on(64), OFF, on(65), HOLD, on(67), HOLD, HOLD, HOLD, on(65), HOLD, on(64),
           HOLD]
TUNE = [on(70), HOLD, OFF, HOLD] + [t + 5 if t >= melody.PITCH_OFFSET else t for t in PASSAGE] + [on(72), OFF]


def test_keys_ignore_transposition_and_need_an_onset_start_and_enough_notes():
    keys, starts = window_hashes(np.array(TUNE), 16)
    assert window_hashes(np.array(PASSAGE), 16)[0][0] in keys and 4 in starts.tolist()
    assert window_hashes(np.array([HOLD] + PASSAGE[:15]), 16)[0].size == 0  # starts on a rest: not a passage
    sparse = [on(60)] + [HOLD] * 7 + [on(62)] + [HOLD] * 7  # two notes: too few to be recognised
    assert window_hashes(np.array(sparse), 16)[0].size == 0
    assert window_hashes(np.array(PASSAGE[:10]), 16)[0].size == 0  # shorter than the window


def test_index_round_trip_and_a_bad_file_names_itself(tmp_path):
    index = CopyIndex.build([np.array(TUNE)], (8, 16), {"corpora": ["test"]})
    index.save(tmp_path / "i.npz")
    back = CopyIndex.load(tmp_path / "i.npz")
    assert back.meta["corpora"] == ["test"] and set(back.keys) == {8, 16}
    for k in (8, 16):
        assert np.array_equal(back.keys[k], index.keys[k]) and back.keys[k].size
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CopyIndexError, match="bad.npz: not a readable copy index"):
        CopyIndex.load(tmp_path / "bad.npz")


def test_the_shipped_index():
    index = CopyIndex.load()
    assert tuple(index.keys) == INDEX_LENGTHS and index.meta["corpora"] == ["essenFolksong", "oneills1850",
                                                                          "ryansMammoth"]
    assert all(v.size > 100_000 and np.all(np.diff(v.astype(np.int64)) > 0) for v in index.keys.values())


def test_guard_finds_where_a_planted_copy_ends_and_only_in_new_steps():
    guard = CopyGuard(CopyIndex.build([np.array(TUNE)], (16,)), max_copy_steps=16)
    line = np.array([on(50), OFF, HOLD] + PASSAGE + [on(70)])
    assert guard.window_steps == 16 and guard.first_copy(line) == 3 + 15
    assert guard.first_copy(line, new_from=19) is None  # the copy ended before the new steps
    assert guard.first_copy(line[:-2]) is None  # one step short of the passage
    assert CopyGuard(CopyIndex.build([np.array(TUNE)], (16,)), max_copy_steps=15).window_steps == 0  # nothing fits
    cut, n = guard.cut(line, new_from=5)
    assert n == 1 and cut[18] == OFF and guard.first_copy(cut) is None and cut[:18].tolist() == line[:18].tolist()


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([HOLD, OFF] + [on(p) for p in (55, 60, 62, 64, 65, 67)]), max_size=20),
       st.lists(st.sampled_from([HOLD, OFF] + [on(p) for p in (55, 60, 62, 64, 65, 67)]), max_size=20),
       st.integers(-7, 7), st.integers(0, 40))
def test_cut_leaves_no_copy_and_never_touches_the_past(before, after, shift, new_from):
    guard = CopyGuard(CopyIndex.build([np.array(TUNE)], (16,)), max_copy_steps=20)
    planted = [t + shift if t >= melody.PITCH_OFFSET else t for t in PASSAGE]
    line = np.array(before + planted + after, dtype=np.int64)
    new_from = min(new_from, len(before))  # the planted passage is new
    assert guard.first_copy(line, new_from) is not None
    cut, n = guard.cut(line, new_from)
    assert n >= 1 and guard.first_copy(cut, new_from) is None
    assert cut[:new_from].tolist() == line[:new_from].tolist()


def phrase_run(phrases, guard, steps: int = 31):
    """Steps 0-30: one phrase, made at step 0 (the next would be made at step 31)."""
    source = FixedPhrases(phrases)

    def make(clock, sink, now_fn):
        mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32, max_note_steps=64), source, clock,
                          sink, new_rng_state(0), guard=guard)
        return Engine(mode, clock=clock, sink=sink)
    wire, engine, _ = run_engine([], make, InternalClock(120, 4, 0), steps=steps)
    return wire, engine.mode.stats


CLEAN = [on(72), HOLD, HOLD, HOLD, OFF]


def test_phrase_mode_draws_a_copying_phrase_again():
    guard = CopyGuard(CopyIndex.build([np.array(TUNE)], (16,)), max_copy_steps=32)
    wire, stats = phrase_run([PASSAGE, CLEAN], guard)
    assert wire == [(0, ("on", 1, 72, 70)), (4 * S, ("off", 1, 72))]  # the second draw plays
    assert (stats.copies_redrawn, stats.copies_cut) == (1, 0)
    unguarded, stats = phrase_run([PASSAGE, CLEAN], None)
    assert [ev[2] for _, ev in unguarded if ev[0] == "on"] == [60, 62, 64, 65, 67, 65, 64]
    assert (stats.copies_redrawn, stats.copies_cut) == (0, 0)


def test_phrase_mode_cuts_a_phrase_that_copies_after_every_redraw():
    guard = CopyGuard(CopyIndex.build([np.array(TUNE)], (16,)), max_copy_steps=32)
    wire, stats = phrase_run([PASSAGE], guard)
    ons = [(t // S, ev[2]) for t, ev in wire if ev[0] == "on"]
    # the passage's last step (its E still held) became a note-off: one step short of the copy
    assert ons == [(0, 60), (2, 62), (4, 64), (6, 65), (8, 67), (12, 65), (14, 64)]
    assert wire[-1] == (15 * S, ("off", 1, 64))
    assert (stats.copies_redrawn, stats.copies_cut) == (4, 1)


def test_an_answer_drawn_step_by_step_does_not_complete_a_copy():
    """The scripted answer (steps 12-27) is a training passage: its last step, a held G, would complete it; the
    guard draws that step again without HOLD, and the likeliest other token is OFF, one step before the answer
    would have ended it."""
    answer = [ANSWER.get(s, HOLD) for s in range(12, 28)]
    guard = CopyGuard(CopyIndex.build([np.array([on(40), OFF] + answer)], (16,)), max_copy_steps=16)
    plain, _, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER), allowed=CHROMATIC)
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER), guard=guard, allowed=CHROMATIC)
    assert plain[-1] == (28 * S, ("off", 0, 67)) and wire == plain[:-1] + [(27 * S, ("off", 0, 67))]
    assert (mode.stats.copies_redrawn, mode.stats.copies_cut) == (1, 0)


def test_a_planned_answer_passes_over_copying_candidates():
    answer = [ANSWER.get(s, HOLD) for s in range(12, 28)]
    guard = CopyGuard(CopyIndex.build([np.array(answer)], (16,)), max_copy_steps=16)
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER), answer_candidates=4, guard=guard,
                                allowed=CHROMATIC)
    plan = mode.last_plan
    assert plan.copied == 2 and not plan.cut and plan.echo  # both free candidates are the script: an echo plays
    assert guard.first_copy(plan.tokens) is None and mode.stats.copies_redrawn == 2


def test_max_copy_bars_in_the_setlist(tmp_path):
    song = {"title": "s", "tempo_bpm": 100, "key": "C major"}
    assert parse_setlist({"song": [song]}, tmp_path / "s.toml").max_copy_bars == 2
    assert parse_setlist({"show": {"max_copy_bars": 0}, "song": [song]}, tmp_path / "s.toml").max_copy_bars == 0
    with pytest.raises(SetlistError, match=r"s.toml: \[show\].*max_copy_bars.*0 to 8"):
        parse_setlist({"show": {"max_copy_bars": 9}, "song": [song]}, tmp_path / "s.toml")
