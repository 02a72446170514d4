"""Several faults at once on one live show, checked on the wire by an outside JACK client: garbage and floods on the
OSC port (python-osc and liblo's ``oscsend``), a recording disk that fills up (the process's file-size limit), a
second song whose duet model returns NaN for most inputs, a performer playing throughout, mode and song changes
asked for mid-stream, then SIGTERM. The show must play on, count what it refused, never leave a note sounding, and
exit cleanly."""

from __future__ import annotations

import json
import random
import resource
import shutil
import socket
import subprocess
import threading
import time

import pytest
from pythonosc.udp_client import SimpleUDPClient

from liveperf.models.onnx_model import shipped_models_dir
from wire_monitor import LivePlay, repair_offs

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="no shipped model")]

SETLIST = """\
[show]
stage_view = false
lookahead_ms = 8
[show.osc]
udp_port = {udp}
tcp_port = -1
rate_limit_per_s = 500

[[song]]
title = "Under fire"
tempo_bpm = 160
key = "G major"
mode = "harmonize"
channel = 2
pitch_range = [40, 80]
seed = 9

[[song]]
title = "Still standing"
tempo_bpm = 140
key = "E minor"
mode = "duet"
duet_model = "nan_duet.onnx"   # NaN logits whenever the performer's token is below 70 (most of the time)
channel = 2
pitch_range = [36, 72]
seed = 10
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nan_duet(dst) -> None:
    """The shipped duet model with ``logits + log(performer_token - 70)`` on its output: NaN (or -inf) for every
    performer token below 70 -- HOLD, OFF and pitches below 68 -- and the real logits above."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(shipped_models_dir() / "duet_dnn.onnx"))
    g = m.graph
    for node in g.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    g.initializer.extend([numpy_helper.from_array(np.array(70.0, np.float32), "nan_k"),
                          numpy_helper.from_array(np.array([1], np.int64), "nan_axes")])
    g.node.extend([helper.make_node("Cast", ["performer_token"], ["nan_pt"], to=TensorProto.FLOAT),
                   helper.make_node("Sub", ["nan_pt", "nan_k"], ["nan_d"]),
                   helper.make_node("Log", ["nan_d"], ["nan_ld"]),
                   helper.make_node("Unsqueeze", ["nan_ld", "nan_axes"], ["nan_u"]),
                   helper.make_node("Add", ["logits_raw", "nan_u"], ["logits"])])
    onnx.save(m, str(dst))


def small_disk() -> None:  # in the child: every file may hold 1 KB, then writes fail (EFBIG), as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, 1_000))


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools not installed")
def test_one_show_under_many_faults_keeps_the_wire_clean(jack_server_sync, tmp_path, monkeypatch):
    # Synchronous (``conftest.jack_server_sync``): an asynchronous server loses a late client's cycle of MIDI, which
    # the monitor would read as a stuck or unmatched note.
    udp = free_udp_port()
    nan_duet(tmp_path / "nan_duet.onnx")
    # The recordings that cannot be written at the end go to a fallback folder: this test's, not the machine's.
    monkeypatch.setenv("LIVEPERF_FALLBACK_DIR", str(tmp_path / "fallback"))
    # The report goes to stdout (a pipe: no file-size limit) as the last line.
    play = LivePlay(tmp_path, SETLIST.format(udp=udp), "lpg", duration_s=60, preexec_fn=small_disk,
                    extra=["--report-json", "/dev/stdout"])
    rng = random.Random(5)
    stop = threading.Event()
    lock = threading.Lock()

    def send(data) -> None:
        with lock:
            play.send(data)

    def keyboardist() -> None:
        while not stop.is_set():
            p = rng.choice([55, 57, 59, 60, 62, 64, 66, 67, 69, 71])
            send([0x90, p, rng.randrange(50, 120)])
            stop.wait(rng.uniform(0.05, 0.25))
            send([0x80, p, 0])
            stop.wait(rng.uniform(0.0, 0.1))

    player = threading.Thread(target=keyboardist, daemon=True)
    player.start()
    client = SimpleUDPClient("127.0.0.1", udp)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        time.sleep(1.0)
        for _ in range(300):  # garbage and wrong input of many kinds, fast
            kind = rng.randrange(6)
            if kind == 0:
                raw.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), ("127.0.0.1", udp))
            elif kind == 1:
                client.send_message("/liveperf/param/temperature", "hot")
            elif kind == 2:
                client.send_message("/liveperf/nope", [1, 2, 3])
            elif kind == 3:
                client.send_message("/liveperf/param/density", 7.5)
            elif kind == 4:
                raw.sendto(b"liveperf/stop\x00\x00\x00", ("127.0.0.1", udp))  # no leading '/'
            else:
                raw.sendto(b"/" + b"x" * 9000, ("127.0.0.1", udp))  # too large
        subprocess.run(["oscsend", "localhost", str(udp), "/liveperf/mode", "i", "3"], check=True, timeout=10)
        subprocess.run(["oscsend", "localhost", str(udp), "/liveperf/param/density", "f", "0.7"], check=True,
                       timeout=10)
        time.sleep(1.5)
        subprocess.run(["oscsend", "localhost", str(udp), "/liveperf/song/next"], check=True, timeout=10)
        time.sleep(3.5)  # the change waits for the next bar line (1.5 s at 160 BPM); then the second song plays
        assert play.proc.poll() is None, "liveperf died under the faults"
        stop.set()
        player.join(2)
        send([0xB0, 123, 0])  # let go of anything the keyboardist left down
        time.sleep(0.3)
        play.proc.terminate()
        code, out, _ = play.finish(30)
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        stop.set()
        raw.close()
        play.kill()
    wire = play.monitor.check()
    assert code == 130, out
    assert not wire.stuck and wire.unmatched_offs <= repair_offs(report), (wire.line(), report["port"])
    assert wire.note_ons >= 8, wire.line()  # the partner played (the harmonies of song 1, a few duet notes)
    assert [s["title"] for s in report["songs"]] == ["Under fire", "Still standing"]
    assert all(s["error"] == "" for s in report["songs"])
    assert report["songs"][1]["model_errors"] > 10  # NaN answered by silence and a reset, step after step
    errors = report["osc_in"]["errors_by_kind"]
    assert sum(errors.values()) >= 250 and errors.get("bad_type") and errors.get("out_of_range"), errors
    assert report["control"]["params_set"] >= 1  # the good density after all the bad ones
    assert report["record_errors"] > 0 or "recorder" in out, out  # the disk filled up, and it was said
    assert "Traceback" not in out, out

