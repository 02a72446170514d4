"""The wire monitor (tests/wire_monitor.py) itself: its checks on known streams, and one pass through JACK."""

from __future__ import annotations

import time

import pytest
import rtmidi

import jack_server as jack
from wire_monitor import WireMonitor, check_stream, compare_witnesses, wait_for


def test_check_stream_finds_stuck_notes_and_unmatched_offs():
    s = check_stream([(0, b"\x90\x3c\x40"), (5, b"\x91\x3c\x40"), (10, b"\x80\x3c\x00"), (12, b"\x90\x3e\x00"),
                      (20, b"\xf8"), (30, b"\x91\x3c\x00")])
    assert (s.note_ons, s.note_offs, s.unmatched_offs, s.stuck, s.other) == (2, 3, 1, [], 1)
    assert s.longest_note_ns == 25
    s = check_stream([(0, b"\x90\x51\x40"), (1, b"\x90\x51\x40"), (2, b"\x80\x51\x00"), (3, b"\x92\x40\x10")])
    assert s.stuck == [(2, 0x40)] and s.unmatched_offs == 0


def test_check_stream_grid_errors():
    s = check_stream([(1_000 + 3, b"\x90\x3c\x40"), (1_000 + 2 * 100 - 4, b"\x80\x3c\x00")], grid=(1_000, 100.0))
    assert s.grid_errors_ns == [3, -4]


def _stamped(*messages: bytes) -> list[tuple[int, bytes]]:
    return [(i, m) for i, m in enumerate(messages)]


ON60, OFF60, ON62, OFF62, CLOCK = b"\x90\x3c\x40", b"\x80\x3c\x00", b"\x90\x3e\x40", b"\x80\x3e\x00", b"\xf8"


def test_a_duplicate_from_a_note_off_one_listener_lost_is_explained_by_the_other():
    wire = _stamped(ON60, ON62, OFF60, CLOCK, ON60, OFF62, OFF60)
    lossy = _stamped(ON60, ON62, ON60, OFF62, OFF60)  # lost a cycle: OFF60 (and the clock, not a note message)
    w = compare_witnesses(lossy, wire)
    assert (w.only_first, w.only_second) == (0, 1)
    assert (w.first_duplicates, w.first_explained, w.second_duplicates, w.second_explained) == (1, 1, 0, 0)
    assert w.unexplained == 0
    w = compare_witnesses(wire, lossy)  # either order
    assert (w.only_first, w.only_second, w.second_duplicates, w.second_explained, w.unexplained) == (1, 0, 1, 1, 0)


def test_a_duplicate_both_listeners_heard_is_not_explained():
    both = _stamped(ON60, ON62, ON60, OFF62, OFF60)
    w = compare_witnesses(both, list(both))
    assert (w.only_first, w.only_second, w.first_duplicates, w.second_duplicates, w.unexplained) == (0, 0, 1, 1, 2)


def test_a_lost_note_off_of_another_pitch_does_not_explain_a_duplicate():
    lossy = _stamped(ON60, ON62, ON60, OFF60)  # the duplicate ON60 is on the wire too; the loss was OFF62
    wire = _stamped(ON60, ON62, OFF62, ON60, OFF60)
    w = compare_witnesses(lossy, wire)
    assert (w.only_second, w.first_duplicates, w.first_explained, w.second_duplicates) == (1, 1, 0, 1)
    assert w.unexplained == 2
    # A note-off the other heard after the duplicate explains nothing either.
    w = compare_witnesses(_stamped(ON60, ON60, OFF60), _stamped(ON60, ON60, OFF60, OFF60))
    assert (w.first_duplicates, w.first_explained, w.unexplained) == (1, 0, 2)


@pytest.mark.jack
def test_monitor_hears_a_jack_client(jack_server):
    monitor = WireMonitor("wm-test")
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="wm-sender")
    out.open_virtual_port("out")
    try:
        jack.jack_connect("wm-sender:out", monitor.port)
        probe = b"\xbf\x77\x01"  # sent until one arrives: the new connection carries data (see until_data_crosses)
        jack.until_data_crosses(lambda: out.send_message(list(probe)),
                                lambda: any(d == probe for _, d in monitor.events))
        for msg in ([0x90, 60, 100], [0xF8], [0xF0, 1, 2, 0xF7], [0x80, 60, 0], [0x90, 61, 100]):
            out.send_message(msg)
            time.sleep(0.01)
        wait_for(lambda: any(d == b"\x90\x3d\x64" for _, d in monitor.events), 5, "the last message")
    finally:
        out.close_port()
        out.delete()
        monitor.close()
    assert [d for _, d in monitor.events if d != probe] == [b"\x90\x3c\x64", b"\xf8", b"\xf0\x01\x02\xf7",
                                                            b"\x80\x3c\x00", b"\x90\x3d\x64"]
    assert monitor.check().stuck == [(0, 61)]
