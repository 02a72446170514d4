"""The duet listens (``liveperf.modes.duet``): where the predictor expects a new performer note it waits up to
``LISTEN_NS`` for it and answers the note it heard; exact event lists in virtual time, through the real engine loop
(its ``wake_ns`` / ``on_wake``) and the real ``Anticipation``, over a fake duet model and predictor."""

from __future__ import annotations

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.music.melody import HOLD, OFF, on
from liveperf.modes.anticipation import Anticipation
from liveperf.modes.duet import LISTEN_NS, Duet
from liveperf.timing.scheduler import REACTION_LATE_NS
from liveperf.music.sampler import new_rng_state
from tests.fakes import STEP_NS_120 as STEP, performer, run_engine, settings

E5, BASS_E = 76, 64  # the fake duet model answers a performer note an octave below


class FakePredictor:
    """Predicts a new performer note at the steps in ``strikes`` (the token), HOLD elsewhere."""

    def __init__(self, strikes: dict[int, int]):
        self.strikes = strikes

    def reset(self):
        pass

    def feed(self, token, step):  # fed step t: logits for the performer's token at t + 1
        logits = np.full(melody.NUM_CLASSES, -30.0, np.float32)
        logits[self.strikes.get(step + 1, HOLD)] = 30.0
        return logits


class FakeDuetModel:
    """Answers a performer note an octave below; "no new note" (HOLD, OFF) with ``still.get(step)``, else it holds
    on (a silent partner, whose HOLD is masked: a rest). The state counts the steps fed."""

    def __init__(self, still: dict[int, int] | None = None):
        self.still = still or {}
        self.fed: list[tuple[int, int]] = []  # (performer token, step) really fed
        self.peeks = 0
        self.reset()

    def reset(self):
        self.state = np.zeros((1, 1, 1), np.float32)

    def _row(self, performer, step):
        logits = np.full(melody.NUM_CLASSES, -50.0, np.float32)
        if melody.is_on(int(performer)):
            logits[on(melody.pitch_of(int(performer)) - 12)] = 20.0
        else:
            logits[HOLD], logits[OFF] = 20.0, 10.0
            if int(step) in self.still:
                logits[self.still[int(step)]] = 25.0
        return logits

    def feed(self, performer, partner_prev, voice, step):
        self.fed.append((int(performer), int(step)))
        self.state = self.state + 1
        return self._row(performer, step)

    def peek_many(self, tokens, partner_prev, voice, steps, with_states=False):
        self.peeks += 1
        logits = np.stack([self._row(t, s) for t, s in zip(tokens, steps)])
        states = np.repeat(self.state + 1, len(tokens), axis=1)
        return (logits, states) if with_states else logits

    def set_state(self, state):
        self.state = state.copy()


class Tolerances:
    """Passes everything to the scheduler and keeps each partner note-on's own late tolerance (``late_ok_ns``)."""

    def __init__(self, sink):
        self.sink, self.note_ons = sink, []

    def schedule(self, due_ns, data, late_ok_ns=None):
        if data[0] & 0xF0 == 0x90 and data[0] & 0x0F == 1:
            self.note_ons.append((due_ns, late_ok_ns))
        self.sink.schedule(due_ns, data, late_ok_ns)

    def __getattr__(self, name):
        return getattr(self.sink, name)


def play(events, strikes, still=None, steps=8, tolerances=None, **over):
    duet = FakeDuetModel(still)

    def factory(clock, sink, now_fn):
        sink = Tolerances(sink) if tolerances is None else tolerances(sink)
        ant = Anticipation(duet, FakePredictor(strikes), voice=0)
        mode = Duet(settings(channel=1, **over), FakeDuetModel(), clock, sink, new_rng_state(0), anticipation=ant,
                    now_fn=now_fn)
        return Engine({"duet": mode}, clock=clock, sink=sink)

    wire, engine, _ = run_engine(events, factory, InternalClock(120, 4, 0), steps=steps)
    return [w for w in wire if w[1][1] == 1], engine.mode, duet  # the partner's channel only


def test_a_note_struck_on_the_step_is_answered_at_its_time():
    wire, mode, duet = play(performer([(4, 8, E5, 80)]), {4: on(E5)})
    assert wire == [(4 * STEP, ("on", 1, BASS_E, 80)), (8 * STEP, ("off", 1, BASS_E))]
    assert (mode.listened, mode.reactions, mode.fallbacks) == (1, 1, 0)


def test_a_late_note_inside_the_window_is_answered_when_it_comes():
    late = 4 * STEP + 12_000_000
    events = [(late, bytes((0x90, E5, 80))), (8 * STEP, bytes((0x80, E5, 0)))]
    wire, mode, _ = play(events, {4: on(E5)})
    assert wire == [(late, ("on", 1, BASS_E, 80)), (8 * STEP, ("off", 1, BASS_E))]
    assert (mode.listened, mode.reactions) == (1, 1)


def test_no_note_in_the_window_plays_the_answer_to_holding_on_at_its_end():
    wire, mode, _ = play([], {4: on(E5)}, still={4: on(60)})
    assert wire[0] == (4 * STEP + LISTEN_NS, ("on", 1, 60, 90))  # no performer velocity yet: the default
    assert (mode.listened, mode.reactions, mode.fallbacks) == (1, 0, 1)


def test_a_note_after_the_window_is_not_answered():
    events = [(4 * STEP + LISTEN_NS + 5_000_000, bytes((0x90, E5, 80))), (8 * STEP, bytes((0x80, E5, 0)))]
    wire, mode, _ = play(events, {4: on(E5)}, still={4: on(60)}, steps=6)
    assert wire == [(4 * STEP + LISTEN_NS, ("on", 1, 60, 90)), (6 * STEP, ("off", 1, 60))]  # ended by the stop
    assert (mode.reactions, mode.fallbacks) == (0, 1)


def test_a_stop_inside_the_window_leaves_nothing_to_play():
    # The loop stops after computing step 4, inside its window: the answer drawn for it never goes out.
    wire, mode, _ = play([], {4: on(E5)}, still={4: on(60)}, steps=5)
    assert wire == [] and mode.listened == 1 and mode.idle


def test_a_note_played_before_the_step_was_computed_is_heard_not_predicted():
    early = 4 * STEP - 20_000_000  # before step 4 is computed (8 ms ahead), nearest to step 4
    events = [(early, bytes((0x90, E5, 80))), (8 * STEP, bytes((0x80, E5, 0)))]
    wire, mode, _ = play(events, {})  # the predictor expected nothing
    assert wire == [(4 * STEP, ("on", 1, BASS_E, 80)), (8 * STEP, ("off", 1, BASS_E))]
    assert mode.listened == 0


def test_where_no_note_is_expected_the_partner_plays_on_time_and_the_peeked_state_is_reused():
    wire, mode, duet = play(performer([(4, 8, E5, 80)]), {}, still={2: on(60)})
    assert wire[0] == (2 * STEP, ("on", 1, 60, 90))
    assert mode.listened == 0
    # The performer's tokens the predictor expected were peeked: the duet model ran again only for the surprise.
    assert duet.fed == [(on(E5), 4)] and mode.anticipation.state_reused == 6


def test_a_note_capped_on_a_listening_step_ends_at_the_steps_time():
    """The partner's note from step 2 reaches its 4-step cap at step 6, where the duet listens for a performer
    note that never comes. Before, the HOLD answer needed no wake, so the cap's note-off went out when step 7 was
    computed (7 steps - 8 ms: 1,409 ms notes against a 1,333 ms cap in the band soak); now it ends at step 6."""
    wire, mode, _ = play([], {6: on(E5)}, still={2: on(60)}, steps=10, max_note_steps=4)
    assert wire == [(2 * STEP, ("on", 1, 60, 90)), (6 * STEP, ("off", 1, 60))]
    assert mode.listened == 1 and mode.fallbacks == 1


def test_answers_to_what_it_listened_for_are_reactions_grid_notes_are_not():
    """The answer to a note heard in the window, and the note at the window's end, are due when computed: they may
    go out up to REACTION_LATE_NS late (a busy machine's hand-over) before they are dropped; a grid note keeps the
    show's tolerance (``late_ok_ns`` None)."""
    kept = []

    def tolerances(sink):
        kept.append(Tolerances(sink))
        return kept[-1]

    late = 4 * STEP + 12_000_000
    play([(late, bytes((0x90, E5, 80))), (8 * STEP, bytes((0x80, E5, 0)))], {4: on(E5)}, still={2: on(60)},
         tolerances=tolerances)
    play([], {4: on(E5)}, still={4: on(60)}, tolerances=tolerances)
    assert kept[0].note_ons == [(2 * STEP, None), (late, REACTION_LATE_NS)]
    assert kept[1].note_ons == [(4 * STEP + LISTEN_NS, REACTION_LATE_NS)]
