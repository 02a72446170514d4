"""The jack-native callback repairs what a broken link dropped (``liveperf.io.jack_native_callback``, "Repairs"),
against a real JACK server: a peer unplugged by hand and plugged back gets the note-offs it missed, a client seeded
with missed notes (after a server restart) ends them when a peer is connected, and a note-on for a sounding pitch
ends it first. A second client is the outside peer and hears what went over the wire."""

from __future__ import annotations

import subprocess
import time

import pytest

from liveperf.io.jack_native import JackMidiClient

pytestmark = pytest.mark.jack


def _notes(listener: JackMidiClient, count: int, timeout_s: float = 3.0) -> list[bytes]:
    """The first ``count`` note messages ``listener`` heard (fewer after ``timeout_s``); probes (CC) left out."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        listener.wait(0.05)
        got += [d for _, d in listener.read() if d[0] & 0xF0 in (0x80, 0x90)]
    return got


def _wait(predicate, what: str, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _link(sender: JackMidiClient, listener: JackMidiClient) -> list[bytes]:
    """Connect and wait until data crosses (probes: CC 119, heard nowhere else); returns the note messages heard
    meanwhile."""
    assert sender.connect(sender.out_name, listener.in_name)
    deadline = time.monotonic() + 5
    heard: list[bytes] = []
    while True:
        got = [d for _, d in listener.read()]
        heard += [d for d in got if d[0] & 0xF0 in (0x80, 0x90)]
        if any(d[0] == 0xBF for d in got):
            break
        assert time.monotonic() < deadline, "no data crossed the new JACK connection"
        sender.write(sender.now_ns(), bytes([0xBF, 119, 1]))
        time.sleep(0.02)
    time.sleep(0.05)
    return heard + [d for _, d in listener.read() if d[0] & 0xF0 in (0x80, 0x90)]


@pytest.fixture()
def pair(jack_server_sync):
    sender = JackMidiClient.open("rep-send", inputs=False)
    listener = JackMidiClient.open("rep-hear", outputs=False)
    try:
        _link(sender, listener)
        yield sender, listener
    finally:
        sender.close()
        listener.close()


def test_a_peer_unplugged_by_hand_gets_the_note_offs_it_missed_when_plugged_back(pair):
    sender, listener = pair
    assert sender.write(sender.now_ns(), b"\x92\x3c\x50") and sender.write(sender.now_ns(), b"\x92\x40\x50")
    assert _notes(listener, 2) == [b"\x92\x3c\x50", b"\x92\x40\x50"]
    subprocess.run(["jack_disconnect", sender.out_name, listener.in_name], check=True, timeout=10)
    _wait(lambda: sender.counters()["peer_drops"] == 1, "the callback to see the peer go")
    assert sender.write(sender.now_ns(), b"\x82\x3c\x00")  # goes out to nobody: the peer misses it
    _wait(lambda: sender.pending() == 0, "the note-off to go out")
    heard = _link(sender, listener)
    # 0x3c gets its note-off (and once more a cycle later, in case the new link did not carry the first); 0x40 still
    # sounds, so its own note-off, still to come, reaches the peer
    assert heard == [b"\x82\x3c\x00", b"\x82\x3c\x00"], heard
    assert sender.write(sender.now_ns(), b"\x82\x40\x00")
    assert _notes(listener, 1) == [b"\x82\x40\x00"]
    c = sender.counters()
    assert (c["peer_drops"], c["missed_offs"], c["resent_offs"]) == (1, 1, 1), c


def test_a_client_seeded_with_missed_notes_ends_them_when_a_peer_is_connected(jack_server_sync):
    listener = JackMidiClient.open("rep-hear2", outputs=False)
    sender = JackMidiClient.open("rep-send2", inputs=False)
    try:
        sender.seed_missed([(2, 60), (5, 67)])  # what the client before a server restart had sounding
        assert sender.connect(sender.out_name, listener.in_name)
        heard = _notes(listener, 2)
        assert sorted(heard) == [b"\x82\x3c\x00", b"\x85\x43\x00"], heard
        assert sender.counters()["missed_offs"] == 2
    finally:
        sender.close()
        listener.close()


def test_a_note_on_for_a_sounding_pitch_ends_it_first(pair):
    sender, listener = pair
    for data in (b"\x90\x3e\x40", b"\x90\x3e\x50", b"\x80\x3e\x00"):
        assert sender.write(sender.now_ns(), data)
    assert _notes(listener, 4) == [b"\x90\x3e\x40", b"\x80\x3e\x00", b"\x90\x3e\x50", b"\x80\x3e\x00"]
    assert sender.counters()["restruck"] == 1


def test_a_transport_stop_hushes_the_note_ons_due_after_its_frame_until_continue(jack_server_sync):
    """A show following MIDI clock: a Stop on the input silences every note-on due from its frame on, whatever the
    engine (a Python thread that hears the Stop later) had handed over; Continue lets notes through again."""
    from native_chain import native_chain

    with native_chain("hush") as (perf, lp, hear):
        lp.follow_transport(True)
        t0 = lp.now_ns()
        # handed over ahead, as the scheduler does: one due before the Stop, two after it
        for due_ms, pitch in ((40, 60), (400, 62), (600, 64)):
            assert lp.write(t0 + due_ms * 1_000_000, bytes((0x91, pitch, 90)))
            assert lp.write(t0 + (due_ms + 20) * 1_000_000, bytes((0x81, pitch, 0)))
        time.sleep(0.15)
        assert perf.write(perf.now_ns(), b"\xfc")  # Stop: reaches lp's input at a frame ~150 ms after t0
        time.sleep(0.6)
        stop_ns = next(ts for ts, d in lp.read() if d == b"\xfc")
        assert t0 + 60_000_000 < stop_ns < t0 + 400_000_000
        assert perf.write(perf.now_ns(), b"\xfb")  # Continue: what is due after it plays again
        time.sleep(0.1)
        t1 = lp.now_ns()
        assert lp.write(t1 + 30_000_000, b"\x91\x43\x5a") and lp.write(t1 + 50_000_000, b"\x81\x43\x00")
        heard = _notes(hear, 4)
    assert heard == [b"\x91\x3c\x5a", b"\x81\x3c\x00", b"\x91\x43\x5a", b"\x81\x43\x00"], heard
    c = lp.counters()
    assert c["hushed"] == 2 and c["swallowed_offs"] == 2, c


def test_every_note_off_goes_once_more_unless_its_pitch_sounds_again(pair):
    """``repeat_offs``: a receiver that lost a cycle's MIDI still gets the note-off, 25 ms later; a pitch struck
    again in between is not cut by the repeat."""
    sender, listener = pair
    sender.repeat_offs(25)
    t = sender.now_ns() + 20_000_000
    for due_ms, data in ((0, b"\x90\x3c\x50"), (5, b"\x80\x3c\x00"), (10, b"\x90\x3c\x50"),
                         (40, b"\x80\x3c\x00"), (45, b"\x90\x40\x50"), (50, b"\x80\x40\x00")):
        assert sender.write(t + due_ms * 1_000_000, data)
    heard = _notes(listener, 8)
    assert heard == [b"\x90\x3c\x50", b"\x80\x3c\x00", b"\x90\x3c\x50", b"\x80\x3c\x00",
                     b"\x90\x40\x50", b"\x80\x40\x00", b"\x80\x3c\x00", b"\x80\x40\x00"], heard
    assert sender.counters()["resent_offs"] == 2  # the first note-off's repeat found 0x3c sounding again
