"""Answer planning in call and response (``liveperf.modes.answer_plan``), in virtual time: exact event lists."""

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from liveperf.music.melody import HOLD, OFF, on
from liveperf.modes.answer_plan import beat_reuse, echo_line, is_cadence, onset_beats, restrike_run, tonic_triad
from liveperf.music.scales import SCALES
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedStepper, performer, run_virtual
from tests.modes.test_call_response import ANSWER, PHRASE

C_TRIAD = tonic_triad(0, SCALES["major"])


def test_a_certain_model_plans_the_answer_it_would_have_drawn():
    """The model is sure of every token (the fake's script): the free candidates are its answer, the echoes pay
    for every forced note, so the plan is the step-by-step answer, note for note; it was made at step 10, half the
    silence (4 steps) in, two steps before the answer."""
    stepper = ScriptedStepper(ANSWER)
    wire, mode, _ = run_virtual(performer(PHRASE), stepper, answer_candidates=4, tonic_pcs=C_TRIAD)
    drawn, _, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER))
    assert wire == drawn
    assert stepper.forks == [4] and mode.stats.plans == 1 and mode.last_plan.start == 12
    # The batch was fed the rest of the assumed silence (steps 10-11) and then each answer step but the last, one
    # row per candidate: the model is not called on the step that plays the plan.
    batch = stepper.batches[0]
    assert [step for _, step in batch.fed] == [10, 11] + list(range(12, 27))
    assert batch.fed[0][0] == [HOLD] * 4


def test_an_unsure_model_answers_with_the_calls_own_bar():
    """With a model that barely prefers its script (strength 1), an echo candidate wins: the answer's second bar
    half repeats the call's first beats at the same place in the bar (steps 16-19 = the call's steps 0-3)."""
    stepper = ScriptedStepper(ANSWER, strength=1.0)
    wire, mode, _ = run_virtual(performer(PHRASE), stepper, answer_candidates=4, tonic_pcs=C_TRIAD)
    plan = mode.last_plan
    assert plan.echo and plan.start == 12
    assert plan.tokens[4:8].tolist() == [on(60), HOLD, on(62), HOLD]
    ons = [(t // S, d[2]) for t, d in wire if d[0] == "on"]
    assert (16, 60) in ons and (18, 62) in ons
    held = {}
    for t, d in wire:  # every note-on has its note-off
        if d[0] == "on":
            held[d[2]] = t
        else:
            held.pop(d[2], None)
    assert not held


def test_a_performer_note_in_the_silence_drops_the_plan():
    """The plan made at step 10 assumed the silence would hold; the performer plays again at step 10, so the
    phrase goes on and the answer is planned once more half the new silence in: at step 14, for step 16."""
    events = performer(PHRASE + [(10.0, 11.9, 67, 100)])
    stepper = ScriptedStepper(ANSWER)
    wire, mode, _ = run_virtual(events, stepper, answer_candidates=4, tonic_pcs=C_TRIAD, steps=48)
    assert [b.fed[0][1] for b in stepper.batches] == [10, 14]
    assert mode.stats.plans == 2 and mode.last_plan.start == 16  # last note ends at 12, + 4 silent steps
    assert all(t >= 16 * S for t, d in wire if d[0] == "on")


def test_no_plan_without_time_for_it():
    """An explicit trigger starts the answer at once: there is no silence to plan in, the answer is drawn."""
    trigger = [(int(8.2 * S), bytes((0xB0, 64, 127)))]
    stepper = ScriptedStepper(ANSWER)
    wire, mode, _ = run_virtual(performer(PHRASE) + trigger, stepper, trigger_cc=64, answer_candidates=4,
                                tonic_pcs=C_TRIAD)
    assert stepper.forks == [] or mode.last_plan.start != mode._answer_start
    assert any(d[0] == "on" for _, d in wire)


def test_measures():
    call = np.array([on(60), HOLD, on(62), HOLD, on(64), HOLD, on(65), HOLD])
    assert onset_beats(call, 0, 4) == [(on(60), HOLD, on(62), HOLD), (on(64), HOLD, on(65), HOLD)]
    ans = np.array([on(62), HOLD, on(64), HOLD, on(60), HOLD, on(62), HOLD])
    assert beat_reuse(onset_beats(call, 0, 4), onset_beats(ans, 8, 4)) == 0.5
    assert beat_reuse(onset_beats(call, 0, 4), onset_beats(ans, 8, 4), shape=True) == 1.0
    assert is_cadence(np.array([on(62), HOLD, HOLD, HOLD, on(67)]), 0, 4, C_TRIAD)  # G on a beat
    assert is_cadence(np.array([on(67), HOLD, on(62)]), 0, 4, C_TRIAD)  # G on the beat; D after it is a pickup
    assert not is_cadence(np.array([on(62), HOLD, on(67)]), 0, 4, C_TRIAD)  # D on the beat
    assert restrike_run(np.array([on(60), on(60), HOLD, on(60), on(62), on(62)])) == 3
    assert tonic_triad(9, SCALES["minor"]) == frozenset({9, 0, 4})


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([HOLD, OFF, on(60), on(62), on(64)]), min_size=1, max_size=40),
       st.integers(0, 40), st.integers(1, 40), st.sampled_from([8, 12, 16]))
def test_echo_repeats_the_call_at_the_same_bar_position(call, start_after, steps, bar):
    call = np.array(call)
    start = len(call) + start_after
    echo = echo_line(call, 0, start, steps, bar)
    for i, tok in enumerate(echo.tolist()):
        t = start + i
        same_place = [k for k in range(len(call)) if (t - k) % bar == 0]
        assert tok == (int(call[max(same_place)]) if same_place else -1)
