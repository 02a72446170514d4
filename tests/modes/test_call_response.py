"""Call-and-response in virtual time: exact event lists with a scripted model and greedy sampling."""

from liveperf.music import melody
from liveperf.music.melody import HOLD, OFF, on
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedStepper, performer, run_virtual

# Performer: C D E F, two steps each from step 0, played a little off the grid (±10 ms); last note ends at step 8.
PHRASE = [(0.08, 2.0, 60, 80), (1.95, 4.0, 62, 90), (4.0, 5.9, 64, 100), (6.04, 8.0, 65, 110)]
# The answer starts at step 12 (4 silent steps) and lasts 16 steps. Feed n predicts phrase step n.
ANSWER = {12: on(62), 14: on(64), 16: OFF, 18: on(61), 20: on(67)}
# The answer's velocity (liveperf.music.dynamics): the call's mean, 95 (80, 90, 100, 110), plus the performer's own accent
# where the answer plays: the call's notes between beats (steps 2 and 6) came out louder than its level, so the
# answer's notes between beats do too (+1, a 2-note estimate shrunk towards 0); on a beat the call's one note
# (step 4) gives +0.5, which rounds away.
BEAT, BETWEEN = 95, 96


def test_answer_exact_events():
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER))
    assert wire == [
        (12 * S, ("on", 0, 62, BEAT)),
        (14 * S, ("off", 0, 62)),
        (14 * S, ("on", 0, 64, BETWEEN)),
        (16 * S, ("off", 0, 64)),
        # Step 18 wanted C#4 (61): not in C major, masked. The model expects a note there, so greedy plays the
        # likeliest note in key and range (liveperf.modes.note_choice); in this fake the rest tie: the lowest, C3.
        (18 * S, ("on", 0, 48, BETWEEN)),
        (20 * S, ("off", 0, 48)),
        (20 * S, ("on", 0, 67, BEAT)),
        (28 * S, ("off", 0, 67)),  # the answer's end (12 + 16)
    ]
    assert mode.stats.responses == 1 and mode.stats.tokens == 16 and mode.stats.interrupted == 0


def test_model_is_primed_with_the_phrase_then_fed_its_own_answer():
    stepper = ScriptedStepper(ANSWER)
    run_virtual(performer(PHRASE), stepper)
    performer_tokens = [on(60), HOLD, on(62), HOLD, on(64), HOLD, on(65), HOLD, OFF, HOLD, HOLD, HOLD]
    own = [on(62), HOLD, on(64), HOLD, OFF, HOLD, on(48), HOLD, on(67)] + [HOLD] * 7
    assert [t for t, _ in stepper.fed] == performer_tokens + own
    assert [p for _, p in stepper.fed] == list(range(28))  # song steps (the real stepper makes its position input)
    assert stepper.resets == 1


def test_performer_interrupts_answer_at_once():
    script = dict(ANSWER)
    script[21] = on(69)
    # Performer comes back 3 ms before step 21 is due: step 21 was already computed (8 ms lookahead).
    back_ns = 21 * S - 3_000_000
    events = performer(PHRASE) + [(back_ns, bytes((0x90, 72, 100))), (back_ns + 2 * S, bytes((0x80, 72, 0)))]
    wire, mode, sched = run_virtual(events, ScriptedStepper(script), steps=40)
    assert wire[:7] == [
        (12 * S, ("on", 0, 62, BEAT)),
        (14 * S, ("off", 0, 62)),
        (14 * S, ("on", 0, 64, BETWEEN)),
        (16 * S, ("off", 0, 64)),
        (18 * S, ("on", 0, 48, BETWEEN)),  # C#4 masked: the likeliest allowed note (see test_answer_exact_events)
        (20 * S, ("off", 0, 48)),
        (20 * S, ("on", 0, 67, BEAT)),
    ]
    # The pending ON(69) at step 21 is cancelled; 67 stops when the performer plays. The new phrase (72, steps
    # 21..23) is answered from step 27: greedy, its first step needs a note (the model says HOLD, every other
    # logit ties: C3); after the reset, feed 12 predicts phrase step 12 = step 33, feed 18 the masked C#4 again.
    # Its velocity: the new call's 100, every answer note between beats: +2 (three notes heard there now).
    assert wire[7:] == [
        (back_ns, ("off", 0, 67)),
        (27 * S, ("on", 0, 48, 102)),
        (33 * S, ("off", 0, 48)),
        (33 * S, ("on", 0, 62, 102)),
        (35 * S, ("off", 0, 62)),
        (35 * S, ("on", 0, 64, 102)),
        (37 * S, ("off", 0, 64)),
        (39 * S, ("on", 0, 48, 102)),
        (40 * S, ("off", 0, 48)),  # the run ends at step 40
    ]
    assert sched.stats.cancelled == 1 and mode.stats.interrupted == 1
    assert not [e for _, e in wire if e[:3] == ("on", 0, 69)]


def test_new_phrase_after_interruption_gets_its_own_answer():
    back = 21 * S - 3_000_000
    events = performer(PHRASE) + [(back, bytes((0x90, 72, 64))), (back + 2 * S, bytes((0x80, 72, 0)))]
    # Second phrase: one note at step 21..23, silence 4 -> answer at 27.
    stepper = ScriptedStepper({**ANSWER, 6: on(71)})  # feed 6 after the reset predicts phrase step 6 = step 27
    wire, mode, _ = run_virtual(events, stepper, steps=60)
    assert mode.stats.responses == 2
    # The new call's level, 64, and the accent between beats, which its one soft note there has pulled below 0.
    assert (27 * S, ("on", 0, 71, 63)) in wire
    assert stepper.resets == 2


def test_explicit_trigger_starts_answer_before_silence():
    events = performer([(0, 2, 60, 100)]) + [(int(2.5 * S), bytes((0xB0, 64, 127)))]
    wire, mode, _ = run_virtual(events, ScriptedStepper({3: on(67)}), trigger_cc=64, steps=30, silence_steps=8)
    # Trigger at step 2.5 -> the answer starts at the next computed step (3), not after 8 silent steps.
    assert wire[0] == (3 * S, ("on", 0, 67, 100))
    assert mode.stats.responses == 1


def test_no_answer_while_performer_keeps_playing():
    notes = [(i * 3, i * 3 + 2, 60 + (i % 5), 90) for i in range(10)]  # gaps of 1 step < silence 4
    wire, mode, _ = run_virtual(performer(notes), ScriptedStepper({n: on(72) for n in range(1, 200)}), steps=30)
    assert wire == [] and mode.stats.responses == 0


def test_note_length_is_capped_and_every_note_on_has_its_off():
    wire, _, _ = run_virtual(performer(PHRASE), ScriptedStepper({12: on(62)}), max_note_steps=5)
    assert wire == [(12 * S, ("on", 0, 62, BEAT)), (17 * S, ("off", 0, 62))]


def test_model_failure_silences_partner_and_show_goes_on():
    # Fails on the 15th feed (predicting step 15, mid-answer): the sounding note stops, nothing more plays.
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER, fail_at=15))
    assert wire == [
        (12 * S, ("on", 0, 62, BEAT)),
        (14 * S, ("off", 0, 62)),
        (14 * S, ("on", 0, 64, BETWEEN)),
        (15 * S, ("off", 0, 64)),
    ]
    assert mode.stats.model_errors == 1


def test_fixed_velocity_and_channel():
    wire, _, _ = run_virtual(performer(PHRASE), ScriptedStepper({12: on(62)}), velocity=70, channel=9)
    assert wire[0] == (12 * S, ("on", 9, 62, 70))
    assert wire[-1][1] == ("off", 9, 62)


def test_answer_respects_tempo_grid():
    # 97 BPM: a step is 60e9 / (97 * 4) ns; answer events sit exactly on ns_at_step of their steps.
    from liveperf.timing.clock import InternalClock

    clock = InternalClock(97, 4, 0)
    step_ns = 60e9 / (97 * 4)
    phrase = performer(PHRASE, step_ns=int(step_ns))
    wire, _, _ = run_virtual(phrase, ScriptedStepper(ANSWER), tempo_bpm=97)
    assert [t for t, _ in wire] == [clock.ns_at_step(s) for s in (12, 14, 14, 16, 18, 20, 20, 28)]
    assert melody.NUM_CLASSES == 130


def test_take_ending_with_a_held_note_still_gets_its_answer_and_ends():
    from liveperf.timing.clock import InternalClock
    from liveperf.engine import Engine
    from liveperf.loop import ScriptedInput, run_loop
    from liveperf.modes.call_response import CallAndResponse
    from liveperf.music.sampler import new_rng_state
    from liveperf.timing.virtual_scheduler import VirtualScheduler
    from tests.fakes import settings

    # The note-on at step 0 never gets its note-off; the input ends at step 2 (its last event).
    events = [(0, bytes((0x90, 60, 100))), (2 * S, bytes((0xB0, 1, 0)))]
    clock = InternalClock(120, 4, 0)
    source = ScriptedInput(events)
    sched = VirtualScheduler(now_fn=source.now_ns)
    mode = CallAndResponse(settings(response_steps=4), ScriptedStepper({6: on(64)}), clock, sched, new_rng_state(0))
    last = run_loop(Engine(mode), clock, source, lookahead_ns=8_000_000, stop_at_step=500)
    sched.flush()
    # Released at step 2, silent 4 steps -> answer at 6..9, ends at 10: the loop stops by itself.
    assert [(t, d.hex()) for t, d in sched.sent] == [(6 * S, "904064"), (10 * S, "804000")]
    assert last == 11  # step 10 was computed (it ended the answer); 11 is the first step not computed
