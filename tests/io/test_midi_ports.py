"""MIDI port adapters without a MIDI system: the no-backend error, message validation, the poll loop on a fake."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from liveperf.io import midi_ports
from liveperf.io.midi_ports import MidiInPort, MidiUnavailable, detect_backend, is_well_formed

ALSA_WORKS = os.access(midi_ports.ALSA_SEQ_DEVICE, os.R_OK | os.W_OK)


@pytest.fixture
def no_jack_server(monkeypatch, tmp_path):
    """Point JACK clients at a server name nobody runs, and plant a ~/.jackdrc that WOULD start it if anything
    asked libjack to auto-start a server (JACK_NO_START_SERVER removed so that the trap is live)."""
    name = f"lp-none-{uuid.uuid4().hex[:8]}"
    (tmp_path / ".jackdrc").write_text("/usr/bin/jackd --no-realtime -d dummy -r 48000 -p 256\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.delenv("JACK_NO_START_SERVER", raising=False)
    return name


def _child_jackds() -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    comm_end = (text := stat.read()).rindex(")")
                if int(text[comm_end + 2:].split()[1]) == os.getpid() and "jack" in text[:comm_end]:
                    children.append(int(entry))
            except (OSError, ValueError):
                continue
    return children


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="JACK/ALSA probing as on the Linux CI machine")
def test_jack_without_server_fails_fast_silently_and_starts_nothing(no_jack_server, capfd):
    started = time.monotonic()
    with pytest.raises(MidiUnavailable) as raised:
        detect_backend("jack")
    assert time.monotonic() - started < 3.0
    message = str(raised.value)
    assert f"JACK server '{no_jack_server}' not running" in message
    assert f"jackd -n {no_jack_server} -d dummy" in message
    assert "--input FILE.mid" in message
    assert capfd.readouterr().err == ""  # libjack's "Cannot connect to server socket ..." is kept off stderr
    assert _child_jackds() == []
    assert midi_ports._unavailable_reason("jack") is not None  # still no server under that name


@pytest.mark.skipif(ALSA_WORKS or sys.platform == "darwin", reason="another MIDI system is available here")
def test_auto_without_any_midi_system_explains_what_to_do(no_jack_server):
    started = time.monotonic()
    with pytest.raises(MidiUnavailable) as raised:
        detect_backend("auto")
    assert time.monotonic() - started < 3.0
    assert str(raised.value) == (
        f"No MIDI system found: JACK server '{no_jack_server}' not running (start one: "
        f"`jackd -n {no_jack_server} -d dummy` or with your audio interface) and ALSA sequencer /dev/snd/seq "
        "missing. Without one, `liveperf play` can still run in file mode (`--backend file`): each song's performer "
        "take (`take` in the setlist), or your own MIDI file with --input FILE.mid, plays the performer's part."
    )
    assert midi_ports.available_backends() == []


def test_unknown_backend_name_is_a_value_error():
    with pytest.raises(ValueError, match="auto, jack, alsa, coremidi"):
        detect_backend("pulse")


@pytest.mark.parametrize(
    "data, ok",
    [
        (b"\x90\x3c\x64", True),
        (b"\xc0\x05", True),
        (b"\xd0\x40", True),
        (b"\xf8", True),
        (b"\xf2\x10\x20", True),
        (b"\xf0\x7e\x7f\x09\x01\xf7", True),
        (b"", False),
        (b"\x3c\x64", False),  # running status / no status byte
        (b"\x90\x3c", False),  # short
        (b"\x90\x3c\x64\x00", False),  # long
        (b"\x90\x80\x64", False),  # data byte with the top bit set
        (b"\xf0\x7e\x7f", False),  # unterminated sysex
    ],
)
def test_is_well_formed(data, ok):
    assert is_well_formed(data) is ok


class FakeRtMidiIn:
    """Stands in for rtmidi.MidiIn: hands out scripted ``(values, delta_s)`` items, then None."""

    def __init__(self, items):
        self.items = list(items)
        self.closed = False

    def get_message(self):
        return self.items.pop(0) if self.items else None

    def close_port(self):
        self.closed = True

    def delete(self):
        pass


def _run_fake(items, on_message):
    fake = FakeRtMidiIn(items)
    port = MidiInPort(fake, "fake", "fake:in", None, poll_interval_ns=200_000)
    start_ns = time.monotonic_ns()
    port.start(on_message)
    deadline = time.monotonic() + 3
    while fake.items and time.monotonic() < deadline:
        time.sleep(0.001)
    port.close()
    assert fake.closed and not port.running
    return port, start_ns


def test_poll_loop_timestamps_never_run_ahead_or_backwards():
    delivered = []
    items = [([0x90, 60, 1], 0.0), ([0x90, 61, 1], 1000.0), ([0x90, 62, 1], 0.0), ([0x90, 63, 1], 0.002)]
    port, start_ns = _run_fake(items, lambda ts, data: delivered.append((ts, time.monotonic_ns(), data)))
    assert [d for _, _, d in delivered] == [bytes(v) for v, _ in items]
    stamps = [ts for ts, _, _ in delivered]
    assert stamps == sorted(stamps) and stamps[0] >= start_ns
    assert all(ts <= seen_ns for ts, seen_ns, _ in delivered)  # a 1000 s delta is clamped to "now"
    assert stamps[3] - stamps[2] <= 2_000_000  # the driver's delta is kept where it fits


def test_poll_loop_counts_malformed_and_failed_deliveries():
    def on_message(ts_ns, data):
        if data[1] == 61:
            raise RuntimeError("consumer broke")

    items = [([0x90, 60, 1], 0.0), ([0x90, 61, 1], 0.0), ([0x90, 62], 0.0), ([0x90, 63, 1], 0.0)]
    port, _ = _run_fake(items, on_message)
    assert (port.received, port.dropped, port.malformed, port.error) == (2, 1, 1, None)
