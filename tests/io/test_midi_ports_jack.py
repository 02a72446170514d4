"""MidiInPort / MidiOutPort against a real JACK server (dummy driver), with a second rtmidi client as the peer."""

from __future__ import annotations

import queue
import time

import pytest
import rtmidi

from jack_server import jack_connect, jack_ports, until_data_crosses
from liveperf.io.midi_ports import MidiInPort, MidiOutPort, available_backends, detect_backend, list_ports

pytestmark = pytest.mark.jack

DEADLINE_S = 3.0
SYNC = bytes([0xBF, 119, 1])  # never part of a test sequence: proves the connection carries data before we start
SEQUENCE = [
    bytes([0x90, 60, 100]),  # note on
    bytes([0xB0, 7, 90]),  # CC 7
    bytes([0x80, 60, 0]),  # note off
    bytes([0xC3, 12]),  # program change: 2 bytes
    bytes([0xE0, 0x00, 0x40]),  # pitch bend centre
    bytes([0x91, 64, 1]),
    bytes([0x81, 64, 64]),
]


def _until(condition, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.001)


def _collect(get, count: int, what: str) -> list:
    """``count`` items from ``get()`` (None when nothing yet), polling with a deadline; SYNC messages are skipped."""
    items: list = []

    def more() -> bool:
        while (item := get()) is not None:
            if item[1] != SYNC:
                items.append(item)
        return len(items) >= count

    _until(more, what)
    return items


def _sync(send, received) -> None:
    """Send SYNC until the receiving side has seen one (see ``jack_server.until_data_crosses``)."""
    until_data_crosses(lambda: send(SYNC), received, DEADLINE_S)


def _peer_out(target: str) -> rtmidi.MidiOut:
    peer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "peer")
    ports = peer.get_ports()
    peer.open_port(ports.index(target), "out")
    return peer


def _queue_get(q: queue.Queue):
    try:
        return q.get_nowait()
    except queue.Empty:
        return None


def test_auto_detects_jack_quickly(jack_server):
    started = time.monotonic()
    assert detect_backend("auto") == "jack"
    assert detect_backend("jack") == "jack"
    assert time.monotonic() - started < 1.0
    assert available_backends()[0] == "jack"


def test_same_client_name_twice_reports_the_renamed_client(jack_server):
    first = MidiInPort.open_virtual("lp-twice", "in")
    second = MidiInPort.open_virtual("lp-twice", "in")
    try:
        assert first.full_name == "lp-twice:in"
        assert second.full_name == "lp-twice-01:in"
        assert {first.full_name, second.full_name} <= set(jack_ports(jack_server.name))
        assert {first.full_name, second.full_name} <= set(list_ports("jack")["outputs"])
    finally:
        first.close()
        second.close()


def test_input_delivers_exact_bytes_in_order_with_timestamps(jack_server):
    port = MidiInPort.open_virtual("lp-in", "in")
    received: queue.Queue = queue.Queue()
    port.start(lambda ts_ns, data: received.put((ts_ns, data)))
    peer = _peer_out(port.full_name)
    try:
        seen_sync: list = []
        _sync(peer.send_message, lambda: _drain_sync(received, seen_sync))
        before_ns = time.monotonic_ns()
        for message in SEQUENCE:
            peer.send_message(message)
        items = _collect(lambda: _queue_get(received), len(SEQUENCE), "the sequence on our input")
        after_ns = time.monotonic_ns()
    finally:
        peer.delete()
        port.close()
    assert [data for _, data in items] == SEQUENCE
    stamps = [ts for ts, _ in items]
    assert stamps == sorted(stamps)
    assert before_ns <= stamps[0] and stamps[-1] <= after_ns
    assert (port.received, port.dropped, port.malformed) == (len(SEQUENCE) + len(seen_sync), 0, 0)
    assert not port.running


def _drain_sync(q: queue.Queue, seen: list) -> bool:
    while (item := _queue_get(q)) is not None:
        assert item[1] == SYNC, f"unexpected message before the test sequence: {item}"
        seen.append(item)
    return bool(seen)


def test_timing_messages_only_when_asked(jack_server):
    clock, note = bytes([0xF8]), bytes([0x90, 61, 80])
    for timing in (False, True):
        port = MidiInPort.open_virtual(f"lp-clock-{timing}", "in", timing=timing)
        received: queue.Queue = queue.Queue()
        port.start(lambda ts_ns, data: received.put((ts_ns, data)))
        peer = _peer_out(port.full_name)
        try:
            _sync(peer.send_message, lambda: _drain_sync(received, []))
            for message in (clock, note, clock, note):
                peer.send_message(message)
            expected = [clock, note, clock, note] if timing else [note, note]
            items = _collect(lambda: _queue_get(received), len(expected), "clock and notes")
        finally:
            peer.delete()
            port.close()
        assert [data for _, data in items] == expected


def test_failing_consumer_is_counted_and_polling_goes_on(jack_server):
    port = MidiInPort.open_virtual("lp-failing", "in")
    good: queue.Queue = queue.Queue()

    def on_message(ts_ns: int, data: bytes) -> None:
        if data[0] == 0x90:
            raise queue.Full  # what a bounded queue's put_nowait would raise
        good.put((ts_ns, data))

    port.start(on_message)
    peer = _peer_out(port.full_name)
    try:
        _sync(peer.send_message, lambda: _drain_sync(good, []))
        for message in SEQUENCE:
            peer.send_message(message)
        expected = [m for m in SEQUENCE if m[0] != 0x90]
        items = _collect(lambda: _queue_get(good), len(expected), "the messages the consumer accepts")
        _until(lambda: port.dropped == 1, "the dropped note-on to be counted")
        assert port.running and port.error is None
    finally:
        peer.delete()
        port.close()
    assert [data for _, data in items] == expected


def test_output_sends_exact_bytes_in_order_and_flushes_on_close(jack_server):
    peer = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "peer-in")
    peer.open_virtual_port("in")
    port = MidiOutPort.open_virtual("lp-out", "out")
    try:
        jack_connect(port.full_name, "peer-in:in", jack_server.name)
        _sync(port.send, lambda: _drain_peer_sync(peer))
        for message in SEQUENCE:
            port.send(message)
        port.send(list(SEQUENCE[0]))  # a sequence of ints works too
        port.close()  # straight away: what is queued still goes out
        items = _collect(lambda: _peer_get(peer), len(SEQUENCE) + 1, "the sequence at the peer")
    finally:
        port.close()
        peer.delete()
    assert [data for _, data in items] == SEQUENCE + [SEQUENCE[0]]
    with pytest.raises(RuntimeError, match="closed"):
        port.send(SEQUENCE[0])


def test_output_open_existing_connects_to_the_named_input(jack_server):
    peer = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "peer-existing")
    peer.open_virtual_port("in")
    port = MidiOutPort.open_existing("peer-existing", client_name="lp-out-existing")
    try:
        assert port.connected_to == "peer-existing:in"
        assert port.full_name == "lp-out-existing:out"
        _sync(port.send, lambda: _drain_peer_sync(peer))
        port.send(SEQUENCE[0])
        assert [d for _, d in _collect(lambda: _peer_get(peer), 1, "one note")] == [SEQUENCE[0]]
    finally:
        port.close()
        peer.delete()


def _peer_get(peer: rtmidi.MidiIn):
    item = peer.get_message()
    return None if item is None else (item[1], bytes(item[0]))


def _drain_peer_sync(peer: rtmidi.MidiIn) -> bool:
    seen = False
    while (item := _peer_get(peer)) is not None:
        assert item[1] == SYNC, f"unexpected message before the test sequence: {item}"
        seen = True
    return seen


def test_close_joins_the_poll_thread_and_is_idempotent(jack_server):
    port = MidiInPort.open_virtual("lp-close", "in")
    port.start(lambda ts_ns, data: None)
    thread = port._thread
    assert thread is not None and thread.is_alive()
    port.close()
    assert not thread.is_alive() and not port.running
    port.close()
    assert "lp-close:in" not in jack_ports(jack_server.name)
    with pytest.raises(RuntimeError):
        port.start(lambda ts_ns, data: None)
