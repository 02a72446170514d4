"""Faults mid-show on JACK: the server dies and comes back, the synth's client and the controller's client go and
come back. `liveperf play` runs as a subprocess (as on stage) with a performer and a wire monitor of our own.

What python-rtmidi does when the server dies is in ``liveperf.io.port_watch``'s docstring; the in-process tests
here pin the parts we rely on: sends while the server is stopped never reach RtMidi (whose full ring buffer would
freeze the process with the GIL held), and the wire bookkeeping (missed note-offs after a broken link).
The server restart test kills a server of its own (the module's stays up for the other tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mido
import pytest
import rtmidi

from jack_server import jack_connect, jack_ports, start_jack_server
from liveperf.io.midi_ports import MidiOutPort
from liveperf.io.port_watch import PortWatch
from liveperf.models.onnx_model import shipped_models_dir
from wire_monitor import REPO, LivePlay, Output, WireMonitor, wait_for

pytestmark = pytest.mark.jack
needs_model = pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")

SONG = """
[[song]]
title = "Faults"
tempo_bpm = 150
key = "D dorian"
mode = "harmonize"
pitch_range = [50, 84]
seed = 4
channel = 3
"""
SHOW = "[show]\nstage_view = false\n{extra}\n[show.osc]\nenabled = false\n" + SONG
PHRASE = (62, 65, 69)
BACKENDS = ["jack", "jack-rtmidi"]


def our_ports(name: str, backend: str) -> tuple[str, str]:
    """liveperf's (input, output) port names: rtmidi opens a client per port, jack-native one client with both."""
    return (f"{name}:in", f"{name}:out") if backend != "jack-rtmidi" else (f"{name}-in:in", f"{name}-out:out")


def connections(port: str) -> set[str]:
    """The ports connected to ``port`` now (``jack_lsp -c``)."""
    out = subprocess.run(["jack_lsp", "-c", port], capture_output=True, text=True, timeout=10).stdout
    return {line.strip() for line in out.splitlines()[1:] if line.startswith((" ", "\t"))}


class Performer:
    """A controller: its own JACK client with one output port ``NAME:out``."""

    def __init__(self, name: str) -> None:
        self.midi = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        self.midi.open_virtual_port("out")
        self.port = f"{name}:out"

    def send(self, data) -> None:
        self.midi.send_message(list(data))

    def close(self) -> None:
        if self.midi is not None:
            self.midi.close_port()
            self.midi.delete()
            self.midi = None


def _finish(proc: subprocess.Popen, output: Output, report_path, timeout_s: float = 30) -> tuple[int, str, dict]:
    try:
        proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode, output.text(), json.loads(report_path.read_text()) if report_path.exists() else {}


def _answers(monitor: WireMonitor, send, what: str) -> None:
    """Play the phrase with ``send`` and wait for the partner's answer on ``monitor``."""
    since = time.monotonic_ns()
    for p in PHRASE:
        send((0x90, p, 90))
        time.sleep(0.08)
        send((0x80, p, 0))
    wait_for(lambda: monitor.note_ons_since(since) >= 1, 10, what)


# ---- in process: the output never feeds a stopped server, and the wire bookkeeping --------------------------------


class FakeMidi:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_message(self, data) -> None:
        self.sent.append(bytes(data))


def test_missed_note_offs_go_out_once_when_a_synth_is_back():
    fake = FakeMidi()
    watch = PortWatch(MidiOutPort(fake, "jack", "lp-out:out", None))  # not started: no JACK needed
    out = watch.output
    assert out.send(b"\x92\x3c\x50") and out.send(b"\x92\x40\x50")
    with out.lock:
        out.link_broken(all_notes=False)  # the synth's port vanished; our port still up
    assert out.send(b"\x82\x3c\x00")  # goes out to nobody: the synth missed it
    with out.lock:
        out.link_broken(all_notes=True)  # then the server went: 0x40 is missed too, nothing is on the wire
        out.up = False
    assert not out.send(b"\x92\x43\x50")  # dropped while down
    out.up = True
    assert not out.send(b"\x82\x40\x00") and not out.send(b"\x82\x43\x00")  # not on the wire: filtered
    with out.lock:
        out.flush_missed()
        out.flush_missed()  # once only
    assert out.send(b"\x92\x3c\x50") and out.send(b"\x82\x3c\x00")
    assert fake.sent == [b"\x92\x3c\x50", b"\x92\x40\x50", b"\x82\x3c\x00", b"\x82\x3c\x00", b"\x82\x40\x00",
                         b"\x92\x3c\x50", b"\x82\x3c\x00"]
    assert (watch.stats.dropped, watch.stats.offs_filtered, watch.stats.missed_offs_sent) == (1, 2, 2)


def test_a_stopped_server_pauses_the_output_instead_of_freezing_it(jack_server):
    monitor = WireMonitor("pw-mon")
    port = MidiOutPort.open_virtual("pw-out", "out", "jack")
    events: list[str] = []
    watch = PortWatch(port, interval_s=0.05, stall_s=0.3, on_event=events.append).start()
    try:
        jack_connect(port.full_name, monitor.port)
        assert watch.output.send(b"\x90\x3c\x40")
        os.kill(jack_server.process.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: not watch.up, 5, "the stall to be seen")
            began = time.monotonic()
            # More than RtMidi's ring buffer holds (~2300): sent to RtMidi, this would spin forever with the GIL.
            results = [watch.output.send(b"\x90\x3d\x40") for _ in range(5000)]
            assert time.monotonic() - began < 2.0 and not any(results)
        finally:
            os.kill(jack_server.process.pid, signal.SIGCONT)
        wait_for(lambda: watch.up, 5, "the output to resume")
        assert watch.output.send(b"\x90\x3e\x40") and watch.output.send(b"\x80\x3e\x00")
        wait_for(lambda: any(d == b"\x80\x3e\x00" for _, d in monitor.snapshot()), 5, "the note after the stall")
    finally:
        watch.close()
        monitor.close()
    got = [d for _, d in monitor.snapshot()]
    assert b"\x90\x3d\x40" not in got
    assert got.index(b"\x80\x3c\x00") < got.index(b"\x90\x3e\x40")  # the note held across the stall was ended
    assert watch.stats.stalls == 1 and watch.stats.dropped == 5000 and watch.stats.missed_offs_sent == 1, events


# ---- liveperf play: the synth and the controller go and come back (named in [show]) ------------------------------


@needs_model
@pytest.mark.parametrize("backend", BACKENDS)
def test_named_synth_and_controller_that_go_and_come_back_are_reconnected(jack_server, tmp_path, backend):
    name = "lprc" + ("" if backend == "jack-rtmidi" else "n")
    ours_in, ours_out = our_ports(name, backend)
    monitor, performer = WireMonitor(f"{name}-mon"), Performer(f"{name}-perf")
    extra = f'midi_out = "{name}-mon:in"\nmidi_in = "{name}-perf:out"'
    (tmp_path / "show.toml").write_text(SHOW.format(extra=extra))
    report_path = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "show.toml"), "--backend", backend,
         "--client-name", name, "--duration", "6", "--report-json", str(report_path),
         "--record-dir", str(tmp_path / "rec")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=os.environ.copy())
    output = Output(proc)
    monitors = [monitor]
    try:
        wait_for(lambda: proc.poll() is not None or connections(ours_in) == {performer.port}, 30,
                 "liveperf connected to the named controller")
        # Play once the song has started. The ports open before the models load, and with a core busy the
        # loading took long enough that the phrase was read only when the engine began: its answers were due in
        # the past and were dropped as late (never played late), so nothing answered.
        wait_for(lambda: proc.poll() is not None or output.started(), 30, "the first song to start")
        _answers(monitor, performer.send, "the partner")
        # (b) the synth goes while the partner's note sounds, and comes back under the same name
        performer.send((0x90, 67, 90))
        wait_for(lambda: monitor.check().stuck, 5, "a sounding partner note")
        monitor.close()
        performer.send((0x80, 67, 0))  # the partner's note-off goes out to nobody: the synth misses it
        time.sleep(0.3)
        monitors.append(monitor := WireMonitor(f"{name}-mon"))
        began = time.monotonic()
        wait_for(lambda: connections(monitor.port) == {ours_out}, 5, "liveperf reconnected to the synth")
        synth_back_s = time.monotonic() - began
        wait_for(lambda: monitor.snapshot(), 2, "the missed note-off")
        _answers(monitor, performer.send, "the partner, on the synth that came back")
        # (c) the controller goes with a key down, and comes back
        performer.send((0x90, 64, 90))
        time.sleep(0.2)
        performer.close()
        time.sleep(0.3)
        performer = Performer(f"{name}-perf")
        began = time.monotonic()
        wait_for(lambda: connections(performer.port) == {ours_in}, 5, "liveperf reconnected the controller")
        controller_back_s = time.monotonic() - began
        _answers(monitor, performer.send, "the partner, answering the controller that came back")
        code, out, report = _finish(proc, output, report_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        for m in monitors:
            m.close()
        performer.close()
    print(f"synth reconnected {synth_back_s * 1e3:.0f} ms, controller {controller_back_s * 1e3:.0f} ms after they "
          f"came back (watch every 0.1 s); {report.get('ports')}")
    assert code == 0, out
    summary = monitor.check()
    assert summary.stuck == [] and summary.note_ons >= 2, summary.line()
    ports = report["ports"]
    assert ports["peer_lost"] == {"out": 1, "in": 1} and ports["peer_connected"] == {"out": 1, "in": 1}, ports
    assert ports["performer_offs"] >= 1 and ports["outages"] == 0, ports
    # the synth that came back got the note-off it missed: the rtmidi backend's watch sent it, jack-native's callback
    missed = ports["missed_offs_sent"] if backend == "jack-rtmidi" else report["port"]["missed_offs"]
    assert missed >= 1, (ports, report["port"])
    assert "Traceback" not in out


# ---- liveperf play: the JACK server dies mid-show and a new one starts under the same name ------------------------


@needs_model
@pytest.mark.parametrize("backend", BACKENDS)
def test_jack_server_killed_and_restarted_mid_show(jack_server, tmp_path, backend, monkeypatch):
    name = "lprs" + ("" if backend == "jack-rtmidi" else "n")
    ours_in, ours_out = our_ports(name, backend)
    first = start_jack_server()  # killed here; the same name then serves the new one
    monkeypatch.setenv("JACK_DEFAULT_SERVER", first.name)
    server = None
    try:
        play = LivePlay(tmp_path, SHOW.format(extra=""), name, duration_s=6, backend=backend)
    except BaseException:
        first.stop()
        raise
    old_monitor = play.monitor
    try:
        _answers(play.monitor, play.send, "the partner")
        play.send((0x90, 67, 90))  # held: the partner's note sounds when the server dies
        wait_for(lambda: play.monitor.check().stuck, 5, "a sounding partner note")
        first.process.kill()  # a crash; the same name reclaims its registry entry below
        first.process.wait(5)
        # Our own clients are zombies now; delete them before this process opens any new JACK client.
        play.monitor.close()
        play.performer.close_port()
        play.performer.delete()
        play.performer = play.monitor = None
        server = start_jack_server(first.name)
        ready = time.monotonic()
        wait_for(lambda: {ours_in, ours_out} <= set(jack_ports()), 10, "liveperf's ports on the new server")
        ports_back_s = time.monotonic() - ready
        assert play.proc.poll() is None, "liveperf died with the server"
        play.monitor = WireMonitor(f"{name}-mon")
        performer = Performer(f"{name}-perf")
        play.performer = performer.midi
        # liveperf connects what was connected before (by hand) as the clients come back
        wait_for(lambda: connections(ours_out) == {f"{name}-mon:in"}
                 and connections(ours_in) == {f"{name}-perf:out"}, 5, "the connections made again")
        links_back_s = time.monotonic() - ready
        _answers(play.monitor, performer.send, "the partner on the new server")
        code, out, report = play.finish()
    finally:
        play.kill()
        if server is not None:
            server.stop()
        first.stop()  # releases the name's slot
    assert code == 0 and report is not None, out  # the output says why, before anything reads the report
    print(f"ports back {ports_back_s * 1e3:.0f} ms and linked {links_back_s * 1e3:.0f} ms after the new server "
          f"was up; {report['ports']}")
    summary = play.monitor.check()
    assert summary.stuck == [] and summary.note_ons >= 1, summary.line()
    assert old_monitor.check().note_ons >= 1
    ports = report["ports"]
    assert ports["outages"] == 1 and ports["reconnects"] == 1 and ports["errors"] == 0, ports
    if backend != "jack-rtmidi":  # the note sounding when the server died was ended on the synth that came back
        assert report["port"]["missed_offs"] >= 1 and ports["missed_offs_sent"] >= 1, (ports, report["port"])
    assert "JACK server lost" in out and "JACK server back" in out and "Traceback" not in out, out
    files = sorted(play.record_dir.glob("*.mid"))
    assert len(files) == 1
    notes = [m for t in mido.MidiFile(files[0]).tracks for m in t if m.type == "note_on" and m.velocity]
    assert len(notes) >= 2 * len(PHRASE) + 2, notes  # the performer's phrases before and after, and answers
