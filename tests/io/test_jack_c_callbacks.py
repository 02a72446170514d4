"""No Python in libjack's threads (``liveperf.io.jack_c_callbacks``): the handler that quiets libjack and the
server-gone callback are compiled, and the server-gone flag is set when a real server goes away."""

from __future__ import annotations

import ctypes
import time

import pytest

from liveperf.io import jack_probe
from liveperf.io.jack_c_callbacks import MESSAGE_FN, LostFlag, message_sink, shutdown_marker

needs_libjack = pytest.mark.skipif(jack_probe._libjack is None, reason="no libjack")


def test_the_compiled_shutdown_callback_sets_the_flag_it_is_given():
    flag, other = LostFlag(), LostFlag()
    assert not flag.is_set()
    shutdown_marker()(0, b"server gone", ctypes.c_void_p(flag.address))  # as libjack calls it
    assert flag.is_set() and not other.is_set()


def test_the_compiled_message_handler_takes_a_message_and_does_nothing():
    MESSAGE_FN(message_sink())(b"Cannot connect to server socket err = No such file or directory")


@needs_libjack
def test_quiet_installs_the_compiled_handler_and_restores_the_old_ones():
    lib = jack_probe._libjack
    before = [slot.value for slot in lib._slots]
    with jack_probe._quiet():
        assert [slot.value for slot in lib._slots] == [message_sink()] * 2  # C code, not a Python callback
    assert [slot.value for slot in lib._slots] == before


@pytest.mark.jack
def test_a_server_that_goes_away_sets_lost_on_the_clients(jack_server):
    """Both kinds of client (the jack-native ports' and the rtmidi fallback's watch) on a server of their own."""
    from jack_server import start_jack_server, use_server
    from liveperf.io.jack_native import JackMidiClient
    from liveperf.io.midi_backends import JackWatchClient

    done = use_server(start_jack_server())
    native = watch = None
    try:
        native = JackMidiClient.open("test-lost", inputs=True, outputs=True)
        watch = JackWatchClient.open("test-lost-watch", 5.0)
        assert watch is not None and not native.lost.is_set() and not watch.lost.is_set()
    finally:
        done()  # the server ends
    try:
        deadline = time.monotonic() + 10.0
        while not (native.lost.is_set() and watch.lost.is_set()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert native.lost.is_set() and watch.lost.is_set()
        assert not native.write(0, b"\x90\x3c\x40")  # a dead client refuses to send
    finally:
        native.close()
        watch.close()
