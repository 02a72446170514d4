"""Show control end to end: `liveperf play` on a JACK (dummy) server, driven like a lighting desk and a keyboard
player would: liblo's ``oscsend`` (UDP and TCP) for tempo, song select, MIDI learn and stop; a JACK client sending
Program Change and a knob; liblo's ``oscdump`` receiving the feedback. Asserts: songs change at bar lines in the
order asked, each song's synth patch goes out, no stuck note on the wire, the learned mapping lands in the setlist,
feedback carries beats, songs, tempo and every partner note-on, and an OSC stop ends the show cleanly (exit 0).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import tomllib

import pytest

from liveperf.models.onnx_model import shipped_models_dir
from wire_monitor import LivePlay, wait_for

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")]

SETLIST = """\
# Show-control test set (MIDI learn must keep this comment)
[show]
lookahead_ms = 8
late_tolerance_ms = 4
stage_view = false

[show.osc]
udp_port = {udp}
tcp_port = {tcp}
feedback = ["127.0.0.1:{fb}"]

[[song]]
title = "One"
tempo_bpm = 240
key = "C major"
mode = "duet"
channel = 2
seed = 1

[[song]]
title = "Two"
tempo_bpm = 200
key = "A minor"
mode = "duet"
channel = 2
program = 12
bank = 130
seed = 2

[[song]]
title = "Three"
tempo_bpm = 180
key = "G major"
mode = "duet"
channel = 2
program = 5
seed = 3
"""


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OscDump:
    """liblo's ``oscdump -L PORT`` in a subprocess; keeps (arrival ns, line) of everything it prints."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, text=True)
        self.lines: list[tuple[int, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            # "<timetag> /address types args..." -> drop the timetag
            self.lines.append((time.monotonic_ns(), line.split(" ", 1)[1].strip() if " " in line else line.strip()))

    def has(self, prefix: str) -> bool:
        return any(text.startswith(prefix) for _, text in list(self.lines))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        self._thread.join(2)


def oscsend(*args: str) -> None:
    subprocess.run(["oscsend", *args], check=True, timeout=10)


@pytest.mark.skipif(shutil.which("oscdump") is None, reason="liblo-tools not installed")
def test_a_desk_and_a_keyboard_run_the_show(jack_server_sync, tmp_path):  # a lossless graph: see conftest
    udp, tcp, fb = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    dump = OscDump(fb)
    play = LivePlay(tmp_path, SETLIST.format(udp=udp, tcp=tcp, fb=fb), "lpc", duration_s=60)
    setlist_path = tmp_path / "lpc.toml"
    playing = threading.Event()
    lock = threading.Lock()

    def send(data) -> None:  # one rtmidi client, two threads: one at a time
        with lock:
            play.send(data)

    def keyboardist() -> None:  # eighth notes up and down a C major scale, while the show runs
        scale, i = [60, 62, 64, 65, 67, 69, 71, 72], 0
        while not playing.is_set():
            pitch = scale[i % 8 if (i // 8) % 2 == 0 else 7 - i % 8]
            send([0x90, pitch, 90])
            playing.wait(0.12)
            send([0x80, pitch, 0])
            playing.wait(0.005)
            i += 1

    player = threading.Thread(target=keyboardist, daemon=True)
    player.start()
    try:
        wait_for(lambda: dump.has("/liveperf/beat ii 2 1"), 20, "beat feedback from song 1, bar 2")
        send([0xC0, 1])  # Program Change 2 (wire value 1): song 2 at the next bar line
        wait_for(lambda: dump.has('/liveperf/song is 2 "Two"'), 10, "song 2 feedback")
        wait_for(lambda: dump.has("/liveperf/beat ii 2 1") and sum(
            1 for _, t in dump.lines if t == "/liveperf/beat ii 2 1") >= 2, 10, "song 2 bar 2")
        oscsend("localhost", str(udp), "/liveperf/song/select", "i", "3")
        wait_for(lambda: dump.has('/liveperf/song is 3 "Three"'), 10, "song 3 feedback")
        oscsend("localhost", str(udp), "/liveperf/tempo", "f", "150")
        wait_for(lambda: dump.has("/liveperf/tempo f 150.0"), 10, "tempo feedback")
        oscsend("localhost", str(udp), "/liveperf/learn", "s", "temperature")
        time.sleep(0.3)
        send([0xB3, 74, 20])  # the knob: channel 4, CC 74
        wait_for(lambda: "cc" in tomllib.loads(setlist_path.read_text()).get("show", {}), 10, "the stored mapping")
        oscsend("localhost", str(udp), "/liveperf/param/nope", "f", "1")  # wrong input: answered, counted
        time.sleep(0.6)
        playing.set()
        player.join(2)
        oscsend(f"osc.tcp://localhost:{tcp}", "/liveperf/stop")
        code, out, report = play.finish(30)
    finally:
        playing.set()
        play.kill()
        dump.close()
    assert code == 0, out
    assert report["stopped"] == "stop command"
    songs = report["songs"]
    assert [s["title"] for s in songs] == ["One", "Two", "Three"], out
    # Each change happened on a bar line of the old song's grid, and the new song began there (within a few ms).
    for old, new, bar_ns in ((songs[0], songs[1], 1e9), (songs[1], songs[2], 60e9 / 200 * 4)):
        bars = (old["end_ns"] - old["start_ns"]) / bar_ns
        assert bars >= 1 and abs(bars - round(bars)) < 1e-6, (old, bars)
        assert 0 <= new["start_ns"] - old["end_ns"] < 50_000_000
    wire = play.monitor.check()
    assert not wire.stuck, wire.line()
    msgs = [d for _, d in play.monitor.snapshot()]
    assert bytes([0xC1, 4]) in msgs  # song 3: program 5 on channel 2 (song 1 starts before the monitor may listen)
    assert [bytes([0xB1, 0, 1]), bytes([0xB1, 32, 2]), bytes([0xC1, 11])] == [
        m for m in msgs if m in (bytes([0xB1, 0, 1]), bytes([0xB1, 32, 2]), bytes([0xC1, 11]))]  # song 2: bank 130
    doc = tomllib.loads(setlist_path.read_text())
    assert doc["show"]["cc"] == [{"param": "temperature", "channel": 4, "cc": 74}]
    assert setlist_path.read_text().startswith("# Show-control test set (MIDI learn must keep this comment)")
    # Feedback: every partner note-on on the wire was reported, in order.
    wire_ons = [d[1] for _, d in play.monitor.snapshot() if len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2]]
    fb_ons = [int(t.split()[2]) for _, t in dump.lines if t.startswith("/liveperf/note/on ")]
    assert wire_ons and fb_ons == wire_ons
    assert report["osc_in"]["errors_by_kind"].get("unknown_param") == 1
    assert "errors: unknown_param 1;" in next(line for line in out.splitlines() if line.startswith("OSC in: "))
    assert dump.has("/liveperf/stats iiii ") and dump.has('/liveperf/mode s "duet"') and dump.has("/liveperf/bar i 2")
    assert report["control"]["program_changes"] == 1 and report["control"]["learned"] == 1


KILL_SET = """\
[show]
stage_view = false
[show.osc]
enabled = false

[[song]]
title = "Kill the show"
tempo_bpm = 240
key = "A dorian"
mode = "duet"
channel = 2
seed = 4
take = "demo_reel_a"
pitch_range = [36, 72]   # the duet model plays the bass voice
"""


def test_a_show_killed_with_sigkill_leaves_a_recoverable_recording(tmp_path):
    """`liveperf play` itself killed with SIGKILL in bar 4: `liveperf recover` gives back every performer and
    partner note of bars 1-3, the performer's at the exact ticks of its take."""
    import json
    import os
    import signal
    import sys

    from liveperf.timing.clock import InternalClock
    from liveperf.io.file_input import take_events
    from liveperf.io.midi_file import read_take
    from liveperf.show.load import shipped_takes_dir
    from tests.io.test_recorder import read_song_file

    (tmp_path / "set.toml").write_text(KILL_SET)
    rec = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "set.toml"), "--backend",
                             "file", "--record-dir", str(rec), "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or any(rec.glob("*.journal")), 60, "the song's journal")
        journal = next(rec.glob("*.journal"))
        header = json.loads(journal.read_text().split("\n", 1)[0].split(" ", 2)[2])
        bar_ns = 1_000_000_000  # 4/4 at 240 BPM
        kill_at = header["start_ns"] + 3 * bar_ns + 400_000_000  # in bar 4, well after bar 3's journal sync
        while time.monotonic_ns() < kill_at:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    out = subprocess.run([sys.executable, "-m", "liveperf.cli", "recover", str(rec)], capture_output=True, text=True,
                         timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stdout + out.stderr
    mid = rec / "01-kill-the-show.mid"
    assert mid.exists(), out.stdout
    tpb, conductor, tracks = read_song_file(mid)
    bar3 = 3 * 4 * tpb
    take = read_take(shipped_takes_dir() / "demo_reel_a.mid")
    clock = InternalClock(240, 4, header["start_ns"])
    expected = [(round((ts - header["start_ns"]) * tpb / (bar_ns // 4)), data) for ts, data in take_events(take, clock)]
    assert [e for e in tracks["performer"] if e[0] < bar3] == [e for e in expected if e[0] < bar3]
    partner = [e for e in tracks["partner"] if e[0] < bar3]
    assert partner and all(d[0] & 0x0F == 1 for _, d in partner)  # the duet partner on channel 2, bars 1-3
    assert conductor[0] == (0, "set_tempo", 240.0)
