"""No stuck note from the scheduler, whatever the order of events between the engine and the sending thread.

The real ``Scheduler`` is driven step by step here: its thread is not started, the test calls ``pump`` (the
thread's one turn) with an injected clock, so an interleaving seen once in four real JACK runs (a note-on sent
while the engine was cancelling it, its note-off never sent) is replayed exactly, without sleeps. Hypothesis then
tries random interleavings of schedule / cancel / panic / time on both schedulers; the wire (the bytes the port
got) must never show a note-off for a note not sounding, and nothing may sound after close.
"""

from __future__ import annotations

import random
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.modes.partner_voice import PartnerVoice
from liveperf.music.notes import describe, is_note_off, is_note_on, note_off, note_on
from liveperf.timing.scheduler import Scheduler
from liveperf.timing.virtual_scheduler import VirtualScheduler


class RecordingPort:
    """Records every message sent (any thread: list.append is atomic)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))


class FakeClock:
    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def wire_check(messages) -> tuple[set, int]:
    """(notes still sounding at the end, note-offs for notes not sounding) of a stream of raw messages."""
    sounding: set = set()
    unmatched = 0
    for data in messages:
        key = (data[0] & 0x0F, data[1]) if len(data) == 3 else None
        if is_note_on(data):
            sounding.add(key)
        elif is_note_off(data):
            if key in sounding:
                sounding.discard(key)
            else:
                unmatched += 1
    return sounding, unmatched


def stepped(now_ns: int = 0) -> tuple[Scheduler, RecordingPort, FakeClock]:
    port, clock = RecordingPort(), FakeClock(now_ns)
    return Scheduler(port, spin_ns=0, late_tolerance_ns=2_000_000, realtime_priority=None, clock_ns=clock), port, clock


def test_a_cancel_that_comes_after_the_note_on_went_out_still_ends_it():
    # The pitch-81 stuck note: the engine stops at a transport Stop stamped 90; the partner's note-on was due at
    # 100, so the engine believes it never sounded and sends no note-off. But the sending thread already sent it.
    sched, port, clock = stepped(0)
    voice = PartnerVoice(0, sched, max_note_steps=16)
    voice.start(81, 100, step=8, due_ns=100)
    clock.now_ns = 105
    sched.pump()
    assert [describe(d) for d in port.sent] == [("on", 0, 81, 100)]
    voice.silence(90, cancel=True)  # the engine thread: held onset 100 > 90, so no note-off of its own
    sched.pump()
    assert [describe(d) for d in port.sent] == [("on", 0, 81, 100), ("off", 0, 81)]
    assert sched.held_count == 0


def test_a_cancel_that_arrives_before_an_overdue_note_on_is_sent_drops_it():
    # The note-on is due (105 > 100) but the thread has not sent it yet when the cancel is in its inbox.
    sched, port, clock = stepped(0)
    voice = PartnerVoice(0, sched, max_note_steps=16)
    voice.start(81, 100, step=8, due_ns=100)
    clock.now_ns = 105
    voice.silence(90, cancel=True)
    sched.pump()
    assert port.sent == [] and sched.stats.cancelled == 1


def test_a_note_off_due_before_its_note_on_waits_for_it():
    sched, port, clock = stepped(0)
    sched.schedule(100, note_on(0, 60, 90))
    sched.schedule(50, note_off(0, 60))  # scheduled after the note-on, due earlier: it must not go first
    for clock.now_ns in (50, 100, 150):
        sched.pump()
    assert [describe(d) for d in port.sent] == [("on", 0, 60, 90), ("off", 0, 60)]


def test_a_cut_in_the_future_lets_earlier_notes_play_and_ends_them_at_the_cut():
    sched, port, clock = stepped(0)
    sent_at = []
    sched._on_sent = lambda ts, data: sent_at.append((ts, describe(data)))
    sched.schedule(100, note_on(0, 60, 90))
    sched.schedule(300, note_on(0, 62, 90))
    sched.cancel_pending(0, 200)  # a mode switch at the next bar line, computed ahead
    sched.schedule(200, note_on(0, 64, 90))  # the new mode's first note, at the cut, after it
    for clock.now_ns in (50, 100, 200, 300, 400):
        sched.pump()
    assert sent_at == [(100, ("on", 0, 60, 90)), (200, ("off", 0, 60)), (200, ("on", 0, 64, 90))]
    assert sched.stats.cancelled == 1


def test_a_note_off_for_a_note_that_never_sounded_is_not_sent():
    sched, port, clock = stepped(10_000_000)
    sched.schedule(1_000_000, note_on(0, 60, 90))  # 9 ms late: dropped
    sched.schedule(12_000_000, note_off(0, 60))
    for clock.now_ns in (10_000_000, 12_000_000):
        sched.pump()
    assert port.sent == [] and sched.stats.late_dropped == 1 and sched.stats.unheld_offs == 1


def test_panic_and_close_silence_everything_sent():
    sched, port, clock = stepped(0)
    for ch, pitch in ((0, 60), (1, 64), (2, 67)):
        sched.schedule(10, note_on(ch, pitch, 90))
    sched.schedule(500, note_on(3, 70, 90))
    clock.now_ns = 10
    sched.pump()
    sched.panic()
    sched.pump()
    assert wire_check(port.sent) == (set(), 0) and len(port.sent) == 6
    clock.now_ns = 600
    sched.pump()
    assert len(port.sent) == 6  # the pending note-on was dropped by the panic


# ---- random interleavings -------------------------------------------------------------------------------------

KEYS = st.tuples(st.integers(0, 2), st.sampled_from([60, 62, 81]))
OPS = st.lists(st.one_of(
    st.tuples(st.just("on"), KEYS, st.integers(-5, 40)),
    st.tuples(st.just("off"), KEYS, st.integers(-5, 40)),
    st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(-10, 20)),
    st.tuples(st.just("panic")),
    st.tuples(st.just("time"), st.integers(0, 30)),
    st.tuples(st.just("pump")),
), max_size=60)
UNIT_NS = 1_000_000  # one op unit: 1 ms, so the 2 ms late tolerance matters


def _message(op) -> bytes:
    (ch, pitch) = op[1]
    return note_on(ch, pitch, 80) if op[0] == "on" else note_off(ch, pitch)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_real_scheduler_any_interleaving_leaves_no_stuck_note(ops):
    sched, port, clock = stepped(0)
    for op in ops:
        if op[0] in ("on", "off"):
            sched.schedule(clock.now_ns + op[2] * UNIT_NS, _message(op))
        elif op[0] == "cancel":
            sched.cancel_pending(op[1], clock.now_ns + op[2] * UNIT_NS)
        elif op[0] == "panic":
            sched.panic()
        elif op[0] == "time":
            clock.now_ns += op[1] * UNIT_NS
        else:
            sched.pump()
        assert wire_check(port.sent)[1] == 0
    clock.now_ns += 100 * UNIT_NS
    sched.pump()
    sched.silence_all()  # what the thread does when it ends (close)
    assert wire_check(port.sent) == (set(), 0)
    assert sched.held_count == 0


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_virtual_scheduler_any_interleaving_leaves_no_stuck_note(ops):
    now = [0]
    sched = VirtualScheduler(late_tolerance_ns=2 * UNIT_NS, now_fn=lambda: now[0])
    for op in ops:
        if op[0] in ("on", "off"):
            sched.schedule(now[0] + op[2] * UNIT_NS, _message(op))
        elif op[0] == "cancel":  # at, before or after virtual now (a Stop stamped earlier, a bar line ahead)
            sched.cancel_pending(op[1], max(0, now[0] + op[2] * UNIT_NS))
        elif op[0] == "panic":
            sched.panic(now[0])
        elif op[0] == "time":
            now[0] += op[1] * UNIT_NS
        else:
            sched.flush(now[0])
        assert wire_check(d for _, d in sched.sent)[1] == 0
    sched.close(now[0] + 100 * UNIT_NS)
    assert wire_check(d for _, d in sched.sent) == (set(), 0)
    assert [t for t, _ in sched.sent] == sorted(t for t, _ in sched.sent)


def test_real_thread_under_random_engine_traffic_leaves_no_stuck_note():
    """The started thread, real time: an engine thread schedules partner notes a little ahead and cancels at
    random moments (some in the past, as after a transport Stop), so cancels meet notes at every stage."""
    for seed in range(3):
        rng = random.Random(seed)
        port = RecordingPort()
        sched = Scheduler(port, spin_ns=100_000, late_tolerance_ns=1_000_000, realtime_priority=None)
        sched.start()
        voices = [PartnerVoice(ch, sched, max_note_steps=4) for ch in range(2)]

        def engine() -> None:
            for step in range(300):
                now = time.monotonic_ns()
                voice = voices[rng.randrange(2)]
                r = rng.random()
                if r < 0.6:
                    voice.start(rng.choice((60, 67, 81)), 90, step, now + rng.randrange(0, 1_500_000))
                elif r < 0.8:
                    voice.end(now + rng.randrange(0, 1_000_000))
                else:
                    voice.silence(now + rng.randrange(-2_000_000, 1_000_000), cancel=rng.random() < 0.8)
                if rng.random() < 0.3:
                    time.sleep(0.0005)

        t = threading.Thread(target=engine)
        t.start()
        t.join(10)
        sched.close()
        sounding, unmatched = wire_check(list(port.sent))
        assert sounding == set() and unmatched == 0, seed
        assert sched.stats.sent == len(port.sent) > 50
