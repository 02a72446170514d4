"""The whole product on a real MIDI transport: `liveperf play` as its own process on a JACK (dummy) server.

A second JACK client plays a phrase into liveperf's input port, and a frame listener (liveperf's compiled JACK
client: no Python in JACK's thread, every message stamped with the JACK frame it arrived on) hears its output.
Asserts on the wire: the partner answers after each of two phrases, in the song's key and range, its onsets on
the song's 16th grid, and after SIGTERM every note-on has its note-off and the process exits cleanly with its recording
written.

Both backends. The grid, measured in JACK frames on a synchronous server: ``jack-native`` puts every note on the
frame of its due time, so intervals between onsets are whole 16ths to frame rounding (a note handed to the JACK
thread after its cycle began goes out at the next cycle's start: at most a period). The rtmidi backend (``jack``)
sends each note on the wall clock and JACK writes it at the start of the next cycle, and this VM's non-real-time
dummy server slips against the wall clock (errors of 8 and 16 ms were seen on an idle machine, in frames), so for
it the test asserts only that every onset is nearer its own 16th than any other. It used to stamp arrivals with a
Python poll thread's wall clock and allow 12 ms: a fresh-clone CI run saw 14.5 ms. The rtmidi figures are the
benchmark's business (``bench.timing_jack``); the exact grid is also asserted in virtual time
(``test_call_response``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import rtmidi

import jack_server as jack
from liveperf.models.onnx_model import shipped_models_dir
from liveperf.music.scales import parse_key
from frame_listener import FrameListener
from wire_monitor import Output, wait_for

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
response_bars = 2
temperature = 0.8
seed = 5
channel = 3
"""
PHRASE = [62, 64, 65, 67, 69, 67, 65, 64]  # D dorian


@pytest.mark.parametrize("backend", ["jack", "jack-rtmidi"])
def test_partner_answers_through_jack(jack_server_sync, tmp_path, backend):
    (tmp_path / "set.toml").write_text(SETLIST)
    rec = tmp_path / "rec.mid"
    ins, outs = ("lpt:in", "lpt:out") if backend != "jack-rtmidi" else ("lpt-in:in", "lpt-out:out")
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "set.toml"), "--backend", backend,
         "--client-name", "lpt", "--duration", "60", "--record", str(rec)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    output = Output(proc)
    listener = performer = None
    try:
        wait_for(lambda: {ins, outs} <= set(jack.jack_ports()), 20, "liveperf's JACK ports")
        # The ports open before the models load: a phrase played before the song starts is heard by nobody (a
        # loaded CI machine took over 10 s here once). The song's first line says it has started.
        wait_for(output.started, 60, "the song to start")
        listener = FrameListener()
        performer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="test-performer")
        performer.open_virtual_port("out")
        wait_for(lambda: {"test-notes:in", "test-performer:out"} <= set(jack.jack_ports()), 10, "test ports")
        jack.jack_connect(outs, "test-notes:in")
        jack.jack_connect("test-performer:out", ins)
        jack.jack_connect("test-performer:out", "test-clock:in")  # the performer's notes in frames too
        # The performer, twice: 8 eighth-notes (2 steps each), slightly detached, at the test's own timing, so
        # they land anywhere in a step and the call (and its answer) differs from run to run: an answer of one
        # note was seen (a fresh-clone run with a core busy), so two calls make sure of two onsets to measure.
        def answers() -> int:
            return sum(1 for _, m in listener.events["notes"] if m[0] & 0xF0 == 0x90 and m[2])

        for call in range(2):
            heard = answers()
            t0 = time.monotonic_ns()
            for i, pitch in enumerate(PHRASE):
                while time.monotonic_ns() < t0 + i * 2 * STEP_NS:
                    time.sleep(0.001)
                performer.send_message([0x90, pitch, 90])
                time.sleep(0.15)
                performer.send_message([0x80, pitch, 0])
            # The answer: 4 silent steps, then two bars (32 steps, 3.2 s); wait for it to finish.
            wait_for(lambda: answers() > heard, 10, f"answer {call + 1}")
            time.sleep(3.6)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        out = output.text()
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
    rate = listener.sample_rate
    step_frames = STEP_NS * rate / 1e9
    events = [(f, m) for f, m in listener.events["notes"] if m[0] & 0xF0 in (0x80, 0x90)]
    assert all(m[0] & 0x0F == 2 for _, m in events), "partner plays on the song's channel 3"
    ons = [(ts, m[1]) for ts, m in events if m[0] & 0xF0 == 0x90 and m[2] > 0]
    key = parse_key("D dorian")
    assert ons and all(key.contains(p) and 57 <= p <= 81 for _, p in ons), ons
    # Each answer begins after its call (about 4 steps after the call's last note-off), not before it ends; the
    # first answer ends before the second call begins.
    performer_offs = [f for f, m in listener.events["clock"] if m[0] & 0xF0 == 0x80]
    assert len(performer_offs) == 2 * len(PHRASE), performer_offs
    first_end, second_start, second_end = (performer_offs[len(PHRASE) - 1], performer_offs[len(PHRASE)],
                                           performer_offs[-1])
    assert ons[0][0] > first_end, (performer_offs, ons[:2])
    assert not [f for f, _ in ons if second_start <= f <= second_end], (performer_offs, ons)
    assert ons[-1][0] > second_end, (performer_offs, ons)
    # On the grid (module docstring): intervals between onsets are whole 16ths.
    errors_ms = []
    for (a, _), (b, _) in zip(ons, ons[1:]):
        steps = (b - a) / step_frames
        assert round(steps) >= 1, (a, b, steps)
        errors_ms.append(abs(steps - round(steps)) * STEP_NS / 1e6)
    assert errors_ms, (ons, out)
    print(f"{backend}: onset interval minus whole 16ths (ms): {sorted(errors_ms)}")
    if backend != "jack-rtmidi":
        # Each note goes out on the frame of its due time (frame rounding: 0.02 ms); one handed to the JACK thread
        # after its cycle began goes out at the next cycle's start, at most a period (5.3 ms) late.
        period_ms = 256 / rate * 1e3
        assert sorted(errors_ms)[len(errors_ms) // 2] <= 0.05 and max(errors_ms) <= period_ms + 0.05, errors_ms
    else:
        # Nearer its own 16th than any other (module docstring: this VM's server slips; 16 ms was seen).
        assert max(errors_ms) < STEP_NS / 2e6, errors_ms
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
