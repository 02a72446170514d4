"""The whole product on a real MIDI transport: `liveperf play` as its own process on a JACK (dummy) server.

A second JACK client plays a phrase into liveperf's input port and listens on its output port. Asserts on the
wire: the partner answers after the phrase, in the song's key and range, its onsets on the song's 16th grid
(intervals are whole steps, within JACK's period and polling), and after SIGTERM every note-on has its note-off
and the process exits cleanly with its recording written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import rtmidi

import jack_server as jack
from liveperf.models.onnx_model import shipped_models_dir
from liveperf.scales import parse_key

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(), reason="no shipped model")]

TEMPO = 150  # a 16th = 100 ms
STEP_NS = 100_000_000
SETLIST = f"""
[[song]]
title = "JACK test"
tempo_bpm = {TEMPO}
key = "D dorian"
pitch_range = [57, 81]
silence_steps = 4
response_bars = 1
temperature = 0.8
seed = 5
channel = 3
"""
PHRASE = [62, 64, 65, 67, 69, 67, 65, 64]  # D dorian


class Listener:
    """A second JACK client reading liveperf's output; keeps (arrival ns, bytes) using the driver's deltas."""

    def __init__(self, port_name: str) -> None:
        self.midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="test-listener")
        self.midi.open_virtual_port("in")
        self.events: list[tuple[int, tuple[int, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.midi.get_message()
            if msg is None:
                time.sleep(0.0005)
                continue
            self.events.append((time.monotonic_ns(), tuple(msg[0])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.midi.close_port()
        self.midi.delete()  # close the JACK client now, before the fixture stops the server


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_partner_answers_through_jack(jack_server, tmp_path):
    (tmp_path / "set.toml").write_text(SETLIST)
    rec = tmp_path / "rec.mid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "set.toml"), "--backend", "jack",
         "--client-name", "lpt", "--duration", "60", "--record", str(rec)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    listener = performer = None
    try:
        wait_for(lambda: {"lpt-in:in", "lpt-out:out"} <= set(jack.jack_ports()), 20, "liveperf's JACK ports")
        listener = Listener("in")
        performer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="test-performer")
        performer.open_virtual_port("out")
        wait_for(lambda: {"test-listener:in", "test-performer:out"} <= set(jack.jack_ports()), 10, "test ports")
        jack.jack_connect("lpt-out:out", "test-listener:in")
        jack.jack_connect("test-performer:out", "lpt-in:in")
        # The performer: 8 eighth-notes (2 steps each), slightly detached, at the test's own timing.
        t0 = time.monotonic_ns()
        for i, pitch in enumerate(PHRASE):
            while time.monotonic_ns() < t0 + i * 2 * STEP_NS:
                time.sleep(0.001)
            performer.send_message([0x90, pitch, 90])
            time.sleep(0.15)
            performer.send_message([0x80, pitch, 0])
        phrase_end = time.monotonic_ns()
        # The answer: 4 silent steps, then one bar (16 steps); wait for it to finish.
        wait_for(lambda: sum(1 for _, m in listener.events if m[0] & 0xF0 == 0x90 and m[2]) >= 2, 10, "an answer")
        time.sleep(2.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
        if listener:
            listener.close()
        if performer:
            performer.close_port()
            performer.delete()
    assert proc.returncode == 130, out
    events = [(ts, m) for ts, m in listener.events if m[0] & 0xF0 in (0x80, 0x90)]
    assert all(m[0] & 0x0F == 2 for _, m in events), "partner plays on the song's channel 3"
    ons = [(ts, m[1]) for ts, m in events if m[0] & 0xF0 == 0x90 and m[2] > 0]
    key = parse_key("D dorian")
    assert ons and all(key.contains(p) and 57 <= p <= 81 for _, p in ons), ons
    # Answer begins about 4 steps after the phrase (the phrase's last note-off, quantised) and not before it ends.
    assert ons[0][0] > phrase_end - STEP_NS
    # On the grid: every interval between onsets is a whole number of 16ths, within JACK's period (5.3 ms)
    # and the two poll loops (a loose bound; the benchmark measures the real figure).
    for (a, _), (b, _) in zip(ons, ons[1:]):
        steps = (b - a) / STEP_NS
        assert abs(steps - round(steps)) * STEP_NS < 12_000_000, (a, b, steps)
    # Every note-on has its note-off on the wire.
    held: dict[int, int] = {}
    for _, m in events:
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            held[m[1]] = held.get(m[1], 0) + 1
        else:
            held.pop(m[1], None)
    assert not held, f"stuck notes: {held}"
    assert rec.exists() and rec.stat().st_size > 0
    assert "messages sent" in out
