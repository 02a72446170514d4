"""Harmonize with a reflex (the port answers a note-on in its own cycle), in virtual time: the port's decision is
made by ``VirtualReflex`` with the callback's rules, so the engine's side (drawing answers ahead, adopting what the
port sent, ending what no mode holds) is checked with exact event lists. The real callback's side is in
``test_jack_reflex.py``."""

from __future__ import annotations

import numpy as np

from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.modes.duet import Duet
from liveperf.modes.harmonize import Harmonize
from liveperf.music.notes import note_on
from liveperf.modes.reflex import ReflexAnswer, VirtualReflex, windows
from liveperf.music.sampler import new_rng_state
from liveperf.timing.virtual_scheduler import VirtualScheduler
from tests.fakes import STEP_NS_120 as S
from tests.fakes import ScriptedDuet, performer, run_engine, settings


class BatchedDuet(ScriptedDuet):
    """``ScriptedDuet`` with the batched peek harmonize draws its table from."""

    def peek_many(self, tokens, partner_prev, voice, positions):
        return np.stack([self.peek(t, partner_prev, voice, p) for t, p in zip(tokens, positions)])


def harmonize(reflexes: list, **over):
    def make(clock, sink, now_fn):
        reflex = VirtualReflex(sink.channel_quiet) if reflexes is not None else None
        if reflexes is not None:
            reflexes.append(reflex)
        mode = Harmonize(settings(channel=1, **over), BatchedDuet(ranking=(-4, -3)), clock, sink, new_rng_state(0),
                         now_fn, reflex)
        return Engine(mode, clock=clock, sink=sink, reflex=reflex)
    return make


STACCATO = [(0.3, 1.2, 64, 100), (2.0, 2.9, 67, 60), (2.9, 3.8, 65, 90), (5.5, 6.0, 72, 110)]


def test_the_port_answers_staccato_notes_and_the_wire_is_what_the_engine_alone_plays():
    reflexes: list = []
    wire, engine, sched = run_engine(performer(STACCATO), harmonize(reflexes), InternalClock(120, 4, 0), steps=8)
    alone, _, _ = run_engine(performer(STACCATO), harmonize(None), InternalClock(120, 4, 0), steps=8)
    assert wire == alone == [
        (int(0.3 * S), ("on", 1, 60, 85)), (int(1.2 * S), ("off", 1, 60)),
        (2 * S, ("on", 1, 64, 51)), (int(2.9 * S), ("off", 1, 64)),
        (int(2.9 * S), ("on", 1, 62, 76)), (int(3.8 * S), ("off", 1, 62)),  # lifted and pressed at once: quiet
        (int(5.5 * S), ("on", 1, 69, 94)), (6 * S, ("off", 1, 69)),
    ]
    sent = reflexes[0].sent
    assert [(a.ts_ns, a.answer) for a in sent] == [(t, bytes((0x91, p, v))) for t, (_, _, p, v) in
                                                   [(w[0], w[1]) for w in wire if w[1][0] == "on"]]
    assert engine.mode.reflex_answers == 4 == sched.stats.reflex_sent and engine.mode.stats.harmonies == 4
    assert engine.reflex_ended == 0


def test_a_note_out_of_key_is_left_to_the_engine():
    reflexes: list = []
    wire, engine, _ = run_engine(performer([(0.3, 1.2, 66, 100)]), harmonize(reflexes), InternalClock(120, 4, 0),
                                 steps=3)
    assert wire == [(int(0.3 * S), ("on", 1, 62, 85)), (int(1.2 * S), ("off", 1, 62))]  # F#: answered by a peek
    assert reflexes[0].sent == [] and engine.mode.table_misses == 1


def test_a_legato_note_is_left_to_the_engine_and_plays_the_answer_drawn_ahead():
    reflexes: list = []
    legato = [(0.3, 2.5, 64, 100), (2.0, 3.5, 67, 60)]  # the second comes while the first's answer sounds
    wire, engine, _ = run_engine(performer(legato), harmonize(reflexes), InternalClock(120, 4, 0), steps=6)
    alone, _, _ = run_engine(performer(legato), harmonize(None), InternalClock(120, 4, 0), steps=6)
    assert wire == alone == [(int(0.3 * S), ("on", 1, 60, 85)), (2 * S, ("off", 1, 60)), (2 * S, ("on", 1, 64, 51)),
                             (int(3.5 * S), ("off", 1, 64))]
    assert [a.ts_ns for a in reflexes[0].sent] == [int(0.3 * S)] and reflexes[0].declined == 1
    assert engine.mode.reflex_answers == 1 and engine.mode.stats.harmonies == 2


def test_the_table_covers_this_step_and_the_next_and_is_off_while_the_partner_sounds():
    reflexes: list = []
    run_engine(performer([(0.3, 1.2, 64, 100)]), harmonize(reflexes), InternalClock(120, 4, 0), steps=3)
    reflex = reflexes[0]
    clock = InternalClock(120, 4, 0)
    t0, mid, end, partner, answers, velocity = reflex.table
    assert (t0, mid, end) == windows(clock, 2) == (int(1.5 * S), int(2.5 * S), int(3.5 * S))  # the last step's
    assert partner == 1 and answers[0, 64] == answers[1, 64] == 60 and answers[0, 61] == -1  # C# is out of key
    assert velocity[100] == 85 and velocity[1] == 1
    assert not reflex.enabled  # the engine stopped: the port may not answer any more


def test_an_answer_no_mode_can_hold_is_adopted_and_ended_at_once():
    class Canned:
        input_channel = None

        def __init__(self):
            self.left = [ReflexAnswer(2_500, note_on(0, 50, 90), note_on(1, 47, 70), 2_500)]

        def answered(self, ts_ns, data):
            return ReflexAnswer(ts_ns, bytes(data), note_on(1, 59, 80), ts_ns + 10)

        def leftovers(self, before_ns):
            out, self.left = self.left, []
            return out

        def enable(self, on):
            pass

    sched = VirtualScheduler()
    clock = InternalClock(120, 4, 0)
    engine = Engine(Duet(settings(channel=1), ScriptedDuet(), clock, sched, new_rng_state(0)), clock=clock,
                    sink=sched, reflex=Canned(), input_channel=0)
    engine.begin(0)
    engine.on_input(1_000, note_on(0, 62, 100))  # duet does not answer note-ons: the port's answer is ended
    engine.on_input(2_000, note_on(3, 62, 100))  # not the performer's channel: ended too
    engine.stop(3_000)  # an answer whose note-on never reached the engine: ended at the end
    sched.close(3_000)
    assert [(t, bytes(d)) for t, d in sched.sent] == [
        (1_010, note_on(1, 59, 80)), (1_010, bytes((0x81, 59, 0))),
        (2_010, note_on(1, 59, 80)), (2_010, bytes((0x81, 59, 0))),
        (2_500, note_on(1, 47, 70)), (2_500, bytes((0x81, 47, 0))),
    ]
    assert engine.reflex_ended == 3 and sched.held.held() == []


def test_density_rests_are_drawn_ahead_and_nothing_sticks():
    reflexes: list = []
    notes = [(0.2 + i * 1.5, 1.0 + i * 1.5, (60, 62, 64, 65, 67)[i % 5], 100) for i in range(40)]  # in key
    wire, engine, sched = run_engine(performer(notes), harmonize(reflexes, density=0.5), InternalClock(120, 4, 0),
                                     steps=64)
    ons = [w for w in wire if w[1][0] == "on"]
    assert 8 <= len(ons) <= 32  # about half are rests
    assert engine.mode.reflex_answers == len(ons) == len(reflexes[0].sent)  # every note played was the port's
    assert sched.held.held() == [] and len([w for w in wire if w[1][0] == "off"]) == len(ons)
