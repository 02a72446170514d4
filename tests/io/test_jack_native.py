"""The jack-native backend against a real JACK server (dummy driver, 48 kHz / 256 frames): the compiled process
callback sends each message at its frame, in the order written, drops late note-ons with their note-offs,
revokes cancelled ones, and stamps input at its frame. A second JackMidiClient is the outside peer: it stamps what
it hears at the frame it arrived on, so the assertions are about frames, not about when a Python thread ran. Due
times are on the writing client's frame clock (``now_ns``), as the show's are."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import rtmidi

from liveperf.io.jack_native import JackMidiClient
from liveperf.io.jack_native_ports import open_ports
from liveperf.io.midi_ports import MidiUnavailable
from native_chain import native_chain

pytestmark = pytest.mark.jack

FRAME_NS = 1e9 / 48000
# Arrival is checked in JACK frames, exactly: each client's frame clock has its own base (its first cycle's estimate
# of where the frames are on the wall clock; two clients' bases were seen 3.8 ms apart under CI load), so times in
# ns compare only inside one client. The server is synchronous (``conftest.jack_server_sync``): every client reads
# its own cycle's frame, where in asynchronous mode a client running late reads the next cycle's.


@pytest.fixture()
def pair(jack_server_sync):
    """``(sender, listener)``: sender:out connected to listener:in, carrying data."""
    sender = JackMidiClient.open("nat-send", inputs=False)
    listener = JackMidiClient.open("nat-hear", outputs=False)
    try:
        assert sender.connect(sender.out_name, listener.in_name)
        deadline = time.monotonic() + 5
        while not listener.read():  # a new connection takes effect at a cycle boundary
            assert time.monotonic() < deadline, "no data crossed the new JACK connection"
            sender.write(sender.now_ns(), bytes([0xBF, 119, 1]))
            time.sleep(0.02)
        time.sleep(0.05)
        listener.read(), sender.emitted()
        yield sender, listener
    finally:
        sender.close()
        listener.close()


def _hear(listener: JackMidiClient, count: int, timeout_s: float = 3.0) -> list[tuple[int, bytes]]:
    """``[(JACK frame, data)]``: the first ``count`` messages ``listener`` heard (fewer after ``timeout_s``)."""
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        listener.wait(0.05)
        got += [(frame, data) for frame, _, data in listener.read_frames()]
    return got


def test_messages_go_out_at_their_frame_in_the_order_written(pair):
    sender, listener = pair
    late_before = sender.counters()["late"]
    start = sender.now_ns() + 60_000_000  # handed over well ahead, as the scheduler does
    written = [(start + i * 2_345_678, bytes([0x90 | (i % 3), 40 + i, 100])) for i in range(40)]
    # A note-off written after its note-on but due 1 ms *before* it must not overtake it.
    written.append((start + 40 * 2_345_678 + 5_000_000, bytes([0x90, 99, 90])))
    written.append((start + 40 * 2_345_678 + 4_000_000, bytes([0x80, 99, 0])))
    for due, data in written:
        assert sender.write(due, data)
    heard = _hear(listener, len(written))
    assert [d for _, d in heard] == [d for _, d in written]  # all of them, in the order written
    emitted = sender.emitted()
    assert [due for due, _ in emitted] == [due for due, _ in written]
    for due, sent in emitted[:-1]:
        assert 0 <= sent - due < FRAME_NS + 1, (due, sent)  # the first frame at or after the due time
    assert emitted[-1][1] == emitted[-2][1]  # the off goes out on its note-on's frame, after it
    assert [frame for frame, _ in heard] == [sender.jack_frame(sent) for _, sent in emitted]
    # None missed its cycle, but the held-back off may: its own frame can lie in the cycle before its note-on's.
    assert sender.counters()["late"] - late_before <= 1


def test_a_late_note_on_is_dropped_with_its_note_off_and_a_late_note_off_still_goes(pair):
    sender, listener = pair
    now = sender.now_ns()
    sender.write(now - 50_000_000, bytes([0x91, 70, 100]))  # 50 ms late: beyond drop_late_ns (2 ms)
    sender.write(now - 40_000_000, bytes([0x81, 70, 0]))  # its note-off: swallowed (its on never sounded)
    sender.write(now + 20_000_000, bytes([0x91, 72, 100]))
    sender.write(now - 1_000_000, bytes([0x81, 72, 0]))  # late, but a note-off: sent, after its on
    heard = _hear(listener, 2)
    time.sleep(0.05)
    heard += listener.read()
    assert [d for _, d in heard] == [bytes([0x91, 72, 100]), bytes([0x81, 72, 0])]
    c = sender.counters()
    assert (c["late_dropped"], c["swallowed_offs"]) == (1, 1)
    assert [sent for _, sent in sender.emitted()][:2] == [-1, -3]  # dropped late, swallowed


def test_a_reaction_may_go_out_later_than_the_ports_tolerance_up_to_its_own(pair):
    """A reaction (``late_ok_ns``: due when computed, scheduler.REACTION_LATE_NS) 5 ms late still sounds, where a
    grid note would be dropped (2 ms); later than its own tolerance it is dropped too."""
    sender, listener = pair
    dropped_before = sender.counters()["late_dropped"]
    now = sender.now_ns()
    sender.write(now - 100_000_000, bytes([0x94, 64, 100]), late_ok_ns=40_000_000)  # 100 ms late: beyond 40 ms
    sender.write(now - 5_000_000, bytes([0x94, 65, 100]), late_ok_ns=40_000_000)  # 5 ms late: goes out
    sender.write(now + 20_000_000, bytes([0x84, 65, 0]))
    heard = _hear(listener, 2)
    time.sleep(0.05)
    heard += listener.read()
    assert [d for _, d in heard] == [bytes([0x94, 65, 100]), bytes([0x84, 65, 0])]
    assert sender.counters()["late_dropped"] - dropped_before == 1
    assert [sent >= 0 for _, sent in sender.emitted()] == [False, True, True]


def test_revoked_note_ons_never_sound_and_their_note_offs_are_swallowed(pair):
    sender, listener = pair
    now = sender.now_ns()
    sender.write(now + 80_000_000, bytes([0x92, 59, 100]))  # due before the cut: plays
    sender.write(now + 150_000_000, bytes([0x92, 60, 100]))  # handed over, due after the cut
    sender.write(now + 150_000_000, bytes([0x93, 61, 100]))  # another channel: not revoked
    sender.revoke(2, now + 100_000_000)  # a transport stop at +100 ms, decided now
    sender.write(now + 100_000_000, bytes([0x82, 59, 0]))  # the cut's note-offs
    sender.write(now + 100_000_000, bytes([0x82, 60, 0]))
    sender.write(now + 200_000_000, bytes([0x92, 60, 90]))  # written after the revoke: plays
    sender.write(now + 220_000_000, bytes([0x82, 60, 0]))
    heard = [d for _, d in _hear(listener, 5)]
    time.sleep(0.05)
    heard += [d for _, d in listener.read()]
    # In the order written (the cut's offs wait behind the channel-3 note): p60's on and off never sound.
    assert heard == [bytes([0x92, 59, 100]), bytes([0x93, 61, 100]), bytes([0x82, 59, 0]), bytes([0x92, 60, 90]),
                     bytes([0x82, 60, 0])]
    c = sender.counters()
    assert (c["revoked"], c["swallowed_offs"]) == (1, 1)


def test_input_is_stamped_at_its_frame_and_oversized_events_are_counted(jack_server_sync):
    out, inp = open_ports("nat-lp")
    sender = JackMidiClient.open("nat-peer", inputs=False)
    peer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "nat-rt")
    peer.open_virtual_port("o")
    got: list[tuple[int, bytes]] = []
    try:
        inp.start(lambda ts, data: got.append((ts, data)))
        # The rtmidi peer first, alone: JACK's dummy server was seen to lose events when two sources feed one port.
        assert sender.connect("nat-rt:o", inp.full_name)
        deadline = time.monotonic() + 5
        while not inp.overflow:
            assert time.monotonic() < deadline, "the oversized sysex was not counted"
            peer.send_message([0xF0] + [1] * 100 + [0xF7])  # longer than a slot: counted, not delivered
            time.sleep(0.05)
        subprocess.run(["jack_disconnect", "nat-rt:o", inp.full_name], check=True, timeout=10)
        assert sender.connect(sender.out_name, inp.full_name)
        deadline = time.monotonic() + 5
        while not got:
            assert time.monotonic() < deadline, "no data crossed the new JACK connection"
            sender.write(sender.now_ns(), bytes([0xBF, 119, 1]))
            time.sleep(0.02)
        time.sleep(0.05)
        got.clear()
        sender.emitted()  # the probes' send times
        received_before, overflow_before = inp.received, inp.overflow
        start = sender.now_ns() + 50_000_000
        dues = [start + i * 3_210_987 for i in range(20)]
        for i, due in enumerate(dues):
            sender.write(due, bytes([0x90, 50 + i, 80]))
        deadline = time.monotonic() + 3
        while len(got) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [d for _, d in got] == [bytes([0x90, 50 + i, 80]) for i in range(20)], (
            sender.counters(), inp.client.counters(), inp.malformed, inp.filtered, inp.dropped)
        # each stamped on its frame: the frame it was sent on
        sent_frames = [sender.jack_frame(sent) for _, sent in sender.emitted()]
        assert [inp.client.jack_frame(ts) for ts, _ in got] == sent_frames
        assert inp.received - received_before == 20 and inp.overflow == overflow_before
    finally:
        peer.close_port()
        peer.delete()
        sender.close()
        inp.close()
        out.close()


def test_open_ports_connects_to_the_one_matching_synth_and_controller(jack_server_sync):
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "nat-synth")
    synth.open_virtual_port("midi_in")
    keys = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "nat-keys")
    keys.open_virtual_port("capture")
    try:
        time.sleep(0.3)
        out, inp = open_ports("nat-show", out_target="nat-synth", in_target="nat-keys")
        try:
            assert (out.connected_to, inp.connected_to) == ("nat-synth:midi_in", "nat-keys:capture")
        finally:
            inp.close()
            out.close()
        # A synth not plugged in yet is not an error: the port opens unconnected and is watched for it
        # (tests/show/test_faults_late_ports.py connects one that comes late).
        late, _ = open_ports("nat-show2", out_target="no-such-synth", inputs=False)
        try:
            assert late.connected_to is None and late.missing == {"out": "no-such-synth"}
        finally:
            late.close()
        pad = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "nat-pad")
        pad.open_virtual_port("capture")
        try:
            time.sleep(0.3)
            with pytest.raises(MidiUnavailable, match="more than one MIDI source matches 'capture'"):
                open_ports("nat-show3", in_target="capture")  # ambiguous: still an error
        finally:
            pad.close_port()
            pad.delete()
    finally:
        for port in (synth, keys):
            port.close_port()
            port.delete()


def test_a_due_time_from_an_input_stamp_lands_on_its_frame_across_a_server_stall(jack_server_sync):
    """The frame clock: a stall of the server (SIGSTOP, as a busy machine does to the dummy driver) moves where the
    frames are on the wall clock, and ``now_ns`` with it, but not the scale of stamps and due times: a message due
    500 ms after an input's stamp arrives exactly 500 ms of frames after that input, on the listener's frames."""
    with native_chain("nat") as (src, lp, hear):
        rate, late_before = lp.sample_rate, lp.counters()["late"]
        results = []
        for _ in range(3):
            src.write(src.now_ns(), bytes([0x90, 60, 100]))
            got = []
            while not got:
                lp.wait(0.05)
                got = lp.read_frames()
            frame_in, stamp_ns, _ = got[0]
            slip_before = time.monotonic_ns() - lp.now_ns()
            jack_server_sync.process.send_signal(signal.SIGSTOP)
            time.sleep(0.15)
            jack_server_sync.process.send_signal(signal.SIGCONT)
            nows = []
            for _ in range(100):  # the frame clock waits for the frames; it never runs backwards
                nows.append(lp.now_ns())
                time.sleep(0.001)
            assert nows == sorted(nows)
            assert lp.write(stamp_ns + 500_000_000, bytes([0x90, 72, 100]))
            heard = []
            deadline = time.monotonic() + 3
            while not heard and time.monotonic() < deadline:
                hear.wait(0.05)
                heard = hear.read_frames()
            assert heard, "the answer never arrived"
            slip_ms = (time.monotonic_ns() - lp.now_ns() - slip_before) / 1e6
            results.append((heard[0][0] - frame_in, round(slip_ms, 1)))
        print(f"answer frame - input frame, frames slipped against the wall clock (ms): {results}")
        assert all(abs(frames - rate // 2) <= 1 for frames, _ in results), results
        assert lp.counters()["late"] == late_before  # each went out on its frame, none at a later cycle's start
