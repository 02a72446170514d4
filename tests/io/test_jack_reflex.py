"""The reflex on a real JACK server: the compiled callback answers a performer note-on in the same cycle, at its own
frame, from the table the engine published, and only when the partner channel is quiet on the wire.

Three native clients in a chain, as on stage: performer ``rx-perf:out`` -> liveperf ``rx-lp:in``/``rx-lp:out`` ->
listener ``rx-hear:in``. JACK runs them in that order within each cycle, so an answer sent in the cycle of its
note-on reaches the listener on the note-on's own frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from liveperf.io.jack_native import JackMidiClient
from native_chain import native_chain

pytestmark = pytest.mark.jack

# Across clients, times are compared in JACK frames: each client's frame clock has its own base (its first cycle's
# estimate of where the frames are on the wall clock), and under CI load two clients' bases were 1.8-3.8 ms apart.
# The server is synchronous, so every client reads its own cycle's frame (``conftest.jack_server_sync``).
PERFORMER_CH, PARTNER_CH = 0, 1


@pytest.fixture()
def chain(jack_server_sync):
    with native_chain("rx") as clients:
        yield clients


def _table(answers: dict[int, int], velocity_scale: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    table = np.full((2, 128), -1, dtype=np.int64)
    for pitch, answer in answers.items():
        table[0, pitch] = table[1, pitch] = answer
    return table, np.array([max(1, int(v * velocity_scale)) for v in range(128)], dtype=np.int64)


def _publish(lp: JackMidiClient, answers: dict[int, int], span_ns: int = 10_000_000_000, input_channel=None) -> None:
    now = lp.now_ns()
    table, velocity = _table(answers)
    lp.publish_reflex(now - 1_000_000, now + span_ns // 2, now + span_ns, PARTNER_CH, input_channel, table, velocity)
    lp.reflex_enable(True)


def _play(perf: JackMidiClient, *messages: bytes, gap_ns: int = 30_000_000) -> list[int]:
    """Write ``messages`` to go out ``gap_ns`` apart (from 20 ms ahead); returns their due times."""
    start = perf.now_ns() + 20_000_000
    dues = [start + i * gap_ns for i in range(len(messages))]
    for due, data in zip(dues, messages):
        assert perf.write(due, data)
    return dues


def _collect(client: JackMidiClient, until_s: float) -> list[tuple[int, bytes]]:
    """``[(JACK frame, data)]`` of what ``client`` heard within ``until_s``."""
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + until_s
    while time.monotonic() < deadline:
        client.wait(0.02)
        got += [(frame, data) for frame, _, data in client.read_frames()]
    return got


def test_an_answer_goes_out_in_the_note_ons_cycle_on_its_frame(chain):
    perf, lp, hear = chain
    _publish(lp, {60: 55, 64: 57})
    _play(perf, bytes([0x90, 60, 100]), bytes([0x80, 60, 0]))
    heard = _collect(hear, 0.3)
    answers = lp.reflex_answers()
    assert [(cause, answer) for _, cause, answer, _ in answers] == [(bytes([0x90, 60, 100]), bytes([0x91, 55, 50]))]
    stamp, _, _, sent = answers[0]
    assert sent == stamp  # same frame, same clock: the answer left on the note-on's frame
    perf_frames = [perf.jack_frame(sent) for _, sent in perf.emitted()]
    # The answer on the note-on's frame, and its end on the frame of the performer's release (harmonize: held until
    # the cause is let go), as the listener heard them.
    assert [d for _, d in heard] == [bytes([0x91, 55, 50]), bytes([0x81, 55, 0])]
    assert [frame for frame, _ in heard] == perf_frames
    assert sum(c.counters()["frame_jumps"] for c in chain) == 0
    assert lp.sounding() == [] and lp.counters()["reflexes"] == 1 and lp.counters()["reflex_released"] == 1
    # The engine's own note-off for the answer follows later: swallowed, so the wire shows one off, not two.
    swallowed = lp.counters()["swallowed_offs"]
    assert lp.write(lp.now_ns(), bytes([0x81, 55, 0]))
    time.sleep(0.05)
    assert _collect(hear, 0.05) == [] and lp.counters()["swallowed_offs"] == swallowed + 1


def test_an_answer_the_engine_played_over_is_not_ended_at_the_old_release(chain):
    perf, lp, hear = chain
    _publish(lp, {60: 55})
    _play(perf, bytes([0x90, 60, 100]))
    time.sleep(0.08)
    assert len(lp.reflex_answers()) == 1
    now = lp.now_ns()
    assert lp.write(now, bytes([0x81, 55, 0])) and lp.write(now, bytes([0x91, 55, 70]))  # the engine re-struck it
    time.sleep(0.05)
    _play(perf, bytes([0x80, 60, 0]))  # the old cause's release: the engine's note is not ours to end
    time.sleep(0.08)
    assert lp.sounding() == [(PARTNER_CH, 55)] and lp.counters()["reflex_released"] == 0


def test_a_harmony_the_engine_played_ends_on_its_cause_s_release_frame(chain):
    perf, lp, hear = chain
    _publish(lp, {})  # no answers: the engine plays this one itself
    assert lp.write(lp.now_ns(), bytes([0x91, 57, 80]))
    lp.reflex_hold(64, PARTNER_CH, 57)
    time.sleep(0.05)
    _play(perf, bytes([0x90, 64, 90]), bytes([0x80, 64, 0]))
    heard = _collect(hear, 0.2)
    assert [d for _, d in heard] == [bytes([0x91, 57, 80]), bytes([0x81, 57, 0])]
    assert heard[1][0] == perf.jack_frame(perf.emitted()[1][1])  # on the release's frame
    assert lp.sounding() == [] and lp.counters()["reflex_released"] == 1


def test_the_answer_is_reported_before_its_note_on_can_be_read(chain):
    perf, lp, hear = chain
    _publish(lp, {60: 55})
    _play(perf, bytes([0x90, 60, 90]))
    deadline = time.monotonic() + 2
    while not (got := lp.read()):
        assert time.monotonic() < deadline
        lp.wait(0.01)
    assert [d for _, d in got] == [bytes([0x90, 60, 90])]
    answers = lp.reflex_answers()  # read after the note-on: it must be there already
    assert len(answers) == 1 and answers[0][0] == got[0][0]


def test_no_answer_while_the_partner_sounds_or_is_disabled_or_out_of_window(chain):
    perf, lp, hear = chain
    _publish(lp, {60: 55, 62: 57, 64: 57})
    assert lp.write(lp.now_ns(), bytes([0x91, 40, 80]))  # the partner sounds (the engine played it)
    time.sleep(0.05)
    _play(perf, bytes([0x90, 60, 100]))
    time.sleep(0.1)
    assert lp.reflex_answers() == [] and lp.counters()["reflex_declined"] == 1
    assert lp.write(lp.now_ns(), bytes([0x81, 40, 0]))  # silent again: answers resume
    time.sleep(0.05)
    _play(perf, bytes([0x90, 62, 100]))
    time.sleep(0.1)
    assert [a for _, _, a, _ in lp.reflex_answers()] == [bytes([0x91, 57, 50])]
    assert lp.write(lp.now_ns(), bytes([0x81, 57, 0]))
    time.sleep(0.05)
    lp.reflex_enable(False)
    _play(perf, bytes([0x90, 64, 100]))
    time.sleep(0.1)
    assert lp.reflex_answers() == []
    now = lp.now_ns()
    table, velocity = _table({64: 57})
    lp.publish_reflex(now - 2_000_000_000, now - 1_500_000_000, now - 1_000_000_000, PARTNER_CH, None, table, velocity)
    lp.reflex_enable(True)
    _play(perf, bytes([0x90, 64, 100]))
    time.sleep(0.1)
    assert lp.reflex_answers() == []  # the table's windows are over
    assert hear.read() and lp.sounding() == []


def test_never_answers_the_partner_channel_or_another_performer_channel(chain):
    perf, lp, hear = chain
    _publish(lp, {60: 55}, input_channel=PERFORMER_CH)
    _play(perf, bytes([0x91, 60, 100]), bytes([0x81, 60, 0]),  # our own partner channel (an echo): never
          bytes([0x92, 60, 100]), bytes([0x82, 60, 0]))  # not the performer's channel
    time.sleep(0.25)
    assert lp.reflex_answers() == [] and lp.counters()["reflexes"] == 0
    _play(perf, bytes([0x90, 60, 100]))
    time.sleep(0.1)
    assert len(lp.reflex_answers()) == 1


def test_two_note_ons_in_one_cycle_get_one_answer(chain):
    perf, lp, hear = chain
    _publish(lp, {60: 55, 64: 57})
    due = perf.now_ns() + 20_000_000
    perf.write(due, bytes([0x90, 60, 100]))
    perf.write(due, bytes([0x90, 64, 100]))  # the same frame, so surely the same cycle
    time.sleep(0.15)
    answers = lp.reflex_answers()
    assert [a for _, _, a, _ in answers] == [bytes([0x91, 55, 50])]
    assert lp.counters()["reflex_declined"] == 1
