"""Duet, harmonize and phrase modes, mode switches at bar lines, echo guard, tap tempo and sending MIDI clock:
exact event lists in virtual time with scripted models and greedy sampling."""

from __future__ import annotations

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.timing.echo_guard import EchoGuardSink
from liveperf.engine import Engine
from liveperf.music.melody import HOLD, OFF, on
from liveperf.modes.call_response import CallAndResponse
from liveperf.modes.duet import Duet
from liveperf.modes.harmonize import Harmonize
from liveperf.modes.phrase import PhraseMode
from liveperf.music.notes import control_change, describe, note_off, note_on
from liveperf.music.sampler import new_rng_state
from liveperf.timing.virtual_scheduler import VirtualScheduler
from tests.fakes import STEP_NS_120 as S
from tests.fakes import FixedPhrases, ScriptedDuet, ScriptedStepper, performer, run_engine, settings

BAR = 16 * S


def duet_engine(stepper, **over):
    def make(clock, sink, now_fn):
        mode = Duet(settings(channel=1, **over), stepper, clock, sink, new_rng_state(0))
        return Engine(mode, clock=clock, sink=sink)
    return make


def test_duet_plays_every_step_fed_with_the_performer_one_step_late():
    # Performer: E4 from step 0 to 4, G4 from 4 to 8. The duet model answers C3 at its 2nd feed, E3 at its 6th.
    stepper = ScriptedDuet({2: on(48), 6: on(52), 8: OFF})
    wire, engine, _ = run_engine(performer([(0, 4, 64, 80), (4, 8, 67, 100)]), duet_engine(stepper),
                                 InternalClock(120, 4, 0), steps=12)
    assert wire == [
        (1 * S, ("on", 1, 48, 80)),  # velocity follows the performer (only 80 heard by step 1)
        (5 * S, ("off", 1, 48)),
        (5 * S, ("on", 1, 52, 87)),  # the level moves 35 % of the way to 100 (liveperf.music.dynamics): 86.8
        (7 * S, ("off", 1, 52)),
    ]
    # Step t is fed the performer's token of t - 1 (HOLD at the first step) and the partner's own token of t - 1.
    fed_performer = [f[0] for f in stepper.fed]
    assert fed_performer == [HOLD, on(64), HOLD, HOLD, HOLD, on(67), HOLD, HOLD, HOLD, OFF, HOLD, HOLD]
    fed_partner = [f[1] for f in stepper.fed]
    # While the voice is silent HOLD is masked (a silent chorale voice would otherwise stay silent): the greedy
    # choice among equal logits is then OFF, an explicit rest, until the script asks for a note.
    assert fed_partner == [HOLD, OFF, on(48), HOLD, HOLD, HOLD, on(52), HOLD, OFF, OFF, OFF, OFF]
    assert [f[3] for f in stepper.fed] == list(range(12))  # the position (reduced mod 4 by the real stepper)
    assert engine.mode.stats.tokens == 12


def test_duet_masks_out_of_key_and_range_and_caps_note_length():
    # C#3 (49) is out of C major: the model expects a note, so greedy plays the likeliest one in key and range
    # (liveperf.modes.note_choice; in this fake the rest tie: the lowest, C3). A note held past max_note_steps is
    # ended.
    stepper = ScriptedDuet({1: on(49), 3: on(50)})
    wire, engine, _ = run_engine([], duet_engine(stepper, max_note_steps=4), InternalClock(120, 4, 0), steps=10)
    assert wire == [(0, ("on", 1, 48, 90)), (2 * S, ("off", 1, 48)), (2 * S, ("on", 1, 50, 90)),
                    (6 * S, ("off", 1, 50))]


def test_duet_model_failure_silences_resets_and_goes_on():
    stepper = ScriptedDuet({1: on(48), 2: on(52)}, fail_at=3)
    wire, engine, _ = run_engine([], duet_engine(stepper), InternalClock(120, 4, 0), steps=6)
    # Feed 3 (step 2) fails: the sounding note ends at step 2; after the reset, feed 1 again prefers C3 at step 3.
    assert wire == [(0, ("on", 1, 48, 90)), (1 * S, ("off", 1, 48)), (1 * S, ("on", 1, 52, 90)),
                    (2 * S, ("off", 1, 52)), (3 * S, ("on", 1, 48, 90)), (4 * S, ("off", 1, 48)),
                    (4 * S, ("on", 1, 52, 90)), (6 * S, ("off", 1, 52))]
    assert engine.mode.stats.model_errors == 1 and stepper.resets == 3  # construction, begin, the failure


def harmonize_engine(stepper, echo_ns: int = 0, **over):
    def make(clock, sink, now_fn):
        guard = EchoGuardSink(sink, echo_ns) if echo_ns else None
        mode = Harmonize(settings(channel=1, **over), stepper, clock, guard or sink, new_rng_state(0), now_fn)
        return Engine(mode, clock=clock, sink=sink, echo_guard=guard)
    return make


def test_harmonize_answers_each_note_at_once_with_a_consonant_note_below():
    # The model would rather play a 2nd below (dissonant: masked), then a 4th below (masked), then a 3rd below.
    stepper = ScriptedDuet(ranking=(-2, -5, -4, -3))
    events = performer([(0.3, 2.2, 64, 100), (3.1, 6.0, 67, 60)])  # E4 off-grid, then G4
    wire, engine, _ = run_engine(events, harmonize_engine(stepper), InternalClock(120, 4, 0), steps=8)
    t1, t2 = int(0.3 * S), int(3.1 * S)
    assert wire == [
        (t1, ("on", 1, 60, 85)),  # E4 - 4 = C4 (major 3rd below; D4 and B3 are masked), velocity 0.85 x 100
        (int(2.2 * S), ("off", 1, 60)),  # the performer's release ends it
        (t2, ("on", 1, 64, 51)),  # G4 - 3 = E4 (minor 3rd; -4 = D#4 is out of key, masked)
        (6 * S, ("off", 1, 64)),
    ]
    # Each peek heard the performer's note and the partner's previous step; the state advanced every step.
    assert [p[0] for p in stepper.peeked] == [on(64), on(67)]
    assert [p[3] for p in stepper.peeked] == [0, 3]
    assert [f[1] for f in stepper.fed][:4] == [HOLD, on(60), HOLD, OFF]
    assert engine.mode.stats.harmonies == 2


def test_harmonize_with_no_consonant_candidate_plays_nothing_and_counts():
    stepper = ScriptedDuet(ranking=(-1,))
    wire, engine, _ = run_engine(performer([(0, 2, 64, 100)]),
                                 harmonize_engine(stepper, pitch_range=None) if False else
                                 harmonize_engine(stepper, allowed=melody_mask_only(62, 63)),
                                 InternalClock(120, 4, 0), steps=4)
    assert wire == [] and engine.mode.stats.no_candidate == 1


def melody_mask_only(*pitches):
    import numpy as np

    mask = np.zeros(melody.NUM_CLASSES, dtype=np.bool_)
    mask[[HOLD, OFF]] = True
    for p in pitches:
        mask[on(p)] = True
    return mask


def test_echo_guard_ignores_our_own_notes_coming_back():
    # Our harmony C4 on channel 2 is echoed into the input 1 ms after it went out: it must not be harmonised.
    stepper = ScriptedDuet(ranking=(-4, -3))
    t1 = int(0.3 * S)
    events = performer([(0.3, 2.2, 64, 100)]) + [(t1 + 1_000_000, note_on(1, 60, 85)),
                                                  (int(2.2 * S) + 1_000_000, note_off(1, 60))]
    wire, engine, _ = run_engine(events, harmonize_engine(stepper, echo_ns=30_000_000), InternalClock(120, 4, 0),
                                 steps=4)
    assert wire == [(t1, ("on", 1, 60, 85)), (int(2.2 * S), ("off", 1, 60))]
    assert engine.input_stats.echoes == 2 and engine.input_stats.note_ons == 1


PHRASE_A = [on(60), HOLD, on(62), HOLD, OFF, HOLD, HOLD, HOLD, on(64)]  # then HOLD to the end (32 steps)
PHRASE_B = [HOLD, HOLD, on(67), OFF]


def phrase_engine(source, **over):
    def make(clock, sink, now_fn):
        mode = PhraseMode(settings(channel=1, velocity=70, **over), source, clock, sink, new_rng_state(0))
        return Engine(mode, clock=clock, sink=sink)
    return make


def test_phrase_mode_plays_two_bar_phrases_every_n_bars():
    source = FixedPhrases([PHRASE_A, PHRASE_B])
    wire, engine, _ = run_engine([], phrase_engine(source, phrase_every_steps=48, max_note_steps=64),
                                 InternalClock(120, 4, 0), steps=100)
    assert wire == [
        (0, ("on", 1, 60, 70)), (2 * S, ("off", 1, 60)), (2 * S, ("on", 1, 62, 70)), (4 * S, ("off", 1, 62)),
        (8 * S, ("on", 1, 64, 70)), (32 * S, ("off", 1, 64)),  # the phrase's end ends its last note
        (50 * S, ("on", 1, 67, 70)), (51 * S, ("off", 1, 67)),  # the second phrase starts at bar 3 (step 48)
        (96 * S, ("on", 1, 60, 70)),  # the third at step 96; the run ends at step 100 ...
        (98 * S, ("off", 1, 60)), (98 * S, ("on", 1, 62, 70)),
        (100 * S, ("off", 1, 62)),  # ... and the stop silences it
    ]
    assert engine.mode.stats.phrases == 3


def test_phrase_mode_is_generated_one_step_early_and_hears_the_performer():
    source = FixedPhrases([PHRASE_B])
    events = performer([(20, 22, 65, 90), (24, 26, 69, 90)])
    run_engine(events, phrase_engine(source, phrase_every_steps=32), InternalClock(120, 4, 0), steps=40)
    # The second phrase (for step 32) is made while step 31 is computed: the history ends with step 30.
    second = source.histories[1]
    assert len(second) == 32 and second[-32 + 21:] == [on(65), HOLD, OFF, HOLD, on(69), HOLD, OFF] + [HOLD] * 4


def test_the_next_phrase_is_made_after_the_step_before_it_is_scheduled():
    """Issue 14, item 5: the generation is off the step that plays. At step 31 the phrase's own last note is
    scheduled first, then the phrase for step 32 is made (the GAN's best-of-8 takes milliseconds)."""
    log = []

    class Logged(FixedPhrases):
        def next_phrase(self, *args):
            log.append("make")
            return super().next_phrase(*args)

    clock, sched = InternalClock(120, 4, 0), VirtualScheduler()
    schedule = sched.schedule
    sched.schedule = lambda due, data: (log.append((due, describe(data))), schedule(due, data))
    mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32), Logged([[HOLD] * 31 + [on(64)]]),
                      clock, sched, new_rng_state(0))
    for step in range(33):
        mode.on_step(step)
    assert log[0] == "make"  # the first phrase starts at step 0, where the mode began: made before it plays
    at = log.index((31 * S, ("on", 1, 64, 70)))
    assert log[at + 1] == "make" and log.count("make") == 2
    assert log[at + 2:] == [(32 * S, ("off", 1, 64))]  # step 32: the new phrase (silent at first) ends it


def test_phrase_generation_failure_skips_that_phrase_only():
    source = FixedPhrases([PHRASE_B], fail_at=1)
    wire, engine, _ = run_engine([], phrase_engine(source, phrase_every_steps=32), InternalClock(120, 4, 0),
                                 steps=40)
    assert wire == [(34 * S, ("on", 1, 67, 70)), (35 * S, ("off", 1, 67))]
    assert engine.mode.stats.model_errors == 1


def four_modes(clock, sink, now_fn, cr_script=None, duet_script=None):
    modes = {
        "call_response": CallAndResponse(settings(channel=1), ScriptedStepper(cr_script or {}), clock, sink,
                                         new_rng_state(0)),
        "duet": Duet(settings(channel=1), ScriptedDuet(duet_script or {}), clock, sink, new_rng_state(0)),
        "harmonize": Harmonize(settings(channel=1), ScriptedDuet(ranking=(-4, -3)), clock, sink, new_rng_state(0),
                               now_fn),
        "phrase": PhraseMode(settings(channel=1, velocity=70), FixedPhrases([[on(72)]]), clock, sink,
                             new_rng_state(0)),
    }
    return modes


def test_mode_switch_waits_for_the_bar_line_and_ends_the_sounding_note_there():
    # Duet holds D3 from step 1; at step 5 the phrase mode is requested: the switch happens at step 16.
    def make(clock, sink, now_fn):
        return Engine(four_modes(clock, sink, now_fn, duet_script={2: on(50)}), clock=clock, sink=sink,
                      initial="duet")
    wire, engine, _ = run_engine([], make, InternalClock(120, 4, 0), steps=20,
                                 requests=[(5, lambda e: e.request_mode("phrase"))])
    assert wire == [
        (1 * S, ("on", 1, 50, 90)),
        (16 * S, ("off", 1, 50)),  # the duet's note ends exactly at the bar line ...
        (16 * S, ("on", 1, 72, 70)),  # ... where the phrase mode's first phrase begins
        (20 * S, ("off", 1, 72)),  # the run ends at step 20
    ]
    assert engine.switches == [(16, "phrase")]


def test_every_mode_can_follow_every_other_at_bar_lines_without_stuck_notes():
    order = ["call_response", "duet", "harmonize", "phrase", "duet", "call_response", "phrase", "harmonize",
             "call_response"]
    requests = [(16 * i + 3, (lambda name: lambda e: e.request_mode(name))(name)) for i, name in enumerate(order)]
    events = performer([(s + 0.2, s + 1.5, 64 + (s % 5), 90) for s in range(0, 150, 3)])

    def make(clock, sink, now_fn):
        return Engine(four_modes(clock, sink, now_fn, cr_script={1: on(60), 3: on(62)},
                                 duet_script={2: on(48), 4: OFF}), clock=clock, sink=sink, initial="phrase")
    wire, engine, sched = run_engine(events, make, InternalClock(120, 4, 0), steps=16 * 10, requests=requests)
    assert [s for s, _ in engine.switches] == [16 * (i + 1) for i in range(len(order)) if
                                               order[i] != (["phrase"] + order)[i]]
    held = {}
    for t, m in wire:
        if m[0] == "on":
            assert m[2] not in held
            held[m[2]] = t
        elif m[0] == "off":
            held.pop(m[2], None)
    assert not held and len(sched.held) == 0


def test_tap_tempo_cc_changes_the_tempo_at_the_next_step():
    taps = [(i * 600_000_000, control_change(0, 80, 127)) for i in range(4)]  # 100 BPM taps from t = 0

    def make(clock, sink, now_fn):
        return Engine(four_modes(clock, sink, now_fn), clock=clock, sink=sink, initial="call_response", tap_cc=80)
    clock = InternalClock(120, 4, 0)
    run_engine(taps, make, clock, steps=40)
    assert clock.tempo_bpm == 100.0
    # Three taps give a tempo: the third at 1.2 s (step 9.6); it applies from the next step computed (step 10).
    assert clock.ns_at_step(10) == 10 * S and clock.ns_at_step(11) == 10 * S + 150_000_000


def test_internal_clock_master_sends_start_ticks_and_stop():
    def make(clock, sink, now_fn):
        return Engine(four_modes(clock, sink, now_fn), clock=clock, sink=sink, initial="call_response",
                      send_clock=True)
    clock = InternalClock(100, 4, 0)  # a tick is 60 / 100 / 24 s = 25 ms
    wire, _, _ = run_engine([], make, clock, steps=8)
    assert wire[0] == (0, ("raw", 0xFA))
    ticks = [t for t, m in wire if m == ("raw", 0xF8)]
    assert ticks == [i * 25_000_000 for i in range(48)]
    assert wire[-1] == (8 * 150_000_000, ("raw", 0xFC))


def test_all_notes_off_from_the_controller_releases_the_performer():
    # A key whose note-off never came (a flaky cable): the controller's All Notes Off (CC 123) lets go of it,
    # and the harmony under it ends there too.
    stepper = ScriptedDuet(ranking=(-4,))  # a major third below E4: C4
    events = [(int(0.5 * S), note_on(0, 64, 100)), (int(3.5 * S), control_change(0, 123, 0))]
    wire, engine, _ = run_engine(events, harmonize_engine(stepper), InternalClock(120, 4, 0), steps=8)
    assert wire == [(int(0.5 * S), ("on", 1, 60, 85)), (int(3.5 * S), ("off", 1, 60))]
    assert engine.input_stats.all_notes_off == 1 and not engine.mode.grid.sounding


def test_a_harmony_never_strikes_a_pitch_whose_capped_note_off_is_still_pending():
    # max 2 steps: sounding from 0.5S, the cap counts from step 0 (the last step at or before the onset: never longer
    # than 2 steps) and ends C4 at step 2 (due 2S, computed 8 ms ahead). The performer lets go and re-strikes E4 just
    # before 2S; its harmony is C4 again and waits for the pending note-off:
    # on, off, on -- never on, on, off (a double strike, and a stuck voice on synths that stack).
    stepper = ScriptedDuet(ranking=(-4,))
    events = [(int(0.5 * S), note_on(0, 64, 100)), (2 * S - 5_000_000, note_off(0, 64)),
              (2 * S - 4_000_000, note_on(0, 64, 100)), (int(3.5 * S), note_off(0, 64))]
    wire, _, _ = run_engine(events, harmonize_engine(stepper, max_note_steps=2), InternalClock(120, 4, 0), steps=6)
    assert wire == [(int(0.5 * S), ("on", 1, 60, 85)), (2 * S, ("off", 1, 60)), (2 * S, ("on", 1, 60, 85)),
                    (int(3.5 * S), ("off", 1, 60))]


def test_the_cap_counts_from_the_last_step_before_a_harmony_sounded():
    # a note-on past the middle of step 0 is filed under step 1 by the performer grid, but its harmony sounds at
    # once: held from 0.6S, the 2-step cap ends it at 2S (1.4 steps), not at 3S (2.4 steps: over the cap)
    stepper = ScriptedDuet(ranking=(-4,))
    events = [(int(0.6 * S), note_on(0, 64, 100)), (int(4.5 * S), note_off(0, 64))]
    wire, _, _ = run_engine(events, harmonize_engine(stepper, max_note_steps=2), InternalClock(120, 4, 0), steps=6)
    assert wire == [(int(0.6 * S), ("on", 1, 60, 85)), (2 * S, ("off", 1, 60))]


class _NoBatch:
    """The real duet stepper with ``peek_many`` hidden: every note-on peeks on its own."""

    def __init__(self, stepper):
        self._s = stepper
        self.steps_per_beat = stepper.steps_per_beat

    def reset(self):
        self._s.reset()

    def feed(self, *a):
        return self._s.feed(*a)

    def peek(self, *a):
        return self._s.peek(*a)


def test_harmonize_table_of_batched_peeks_plays_exactly_what_single_peeks_play():
    import numpy as np
    import pytest

    from liveperf.models.onnx_model import shipped_models_dir
    from liveperf.models.phrase_models import DuetStepper

    if not (shipped_models_dir() / "duet_dnn.onnx").exists():
        pytest.skip("no shipped duet model")
    rng = np.random.default_rng(3)
    notes, t = [], 0.2
    for _ in range(40):  # in and out of key, on and off the grid, some between a step's computation and its due
        pitch = int(rng.choice([60, 62, 64, 65, 67, 69, 71, 72, 61, 66]))
        notes.append((t, t + float(rng.uniform(0.3, 2.5)), pitch, int(rng.integers(60, 120))))
        t += float(rng.uniform(0.4, 3.0))
    events = performer(notes)
    steps = int(t) + 4
    wires, modes = [], []
    for wrap in (lambda s: s, _NoBatch):
        def make(clock, sink, now_fn, wrap=wrap):
            mode = Harmonize(settings(channel=1, temperature=0.8), wrap(DuetStepper.load("duet_dnn")), clock, sink,
                             new_rng_state(5), now_fn)
            modes.append(mode)
            return Engine(mode, clock=clock, sink=sink)
        wire, _, _ = run_engine(events, make, InternalClock(120, 4, 0), steps=steps)
        wires.append(wire)
    assert wires[0] == wires[1] and len(wires[0]) > 20
    assert modes[0].table_hits >= 30 and modes[1].table_hits == 0  # in-key notes were looked up, not peeked
