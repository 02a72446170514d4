"""OSC feedback out over real sockets on 127.0.0.1: liblo's oscdump (UDP and TCP) and python-osc servers receive
what ``OscFeedback`` sends, as plain messages; a target that is gone never raises into the engine thread.

Every wait is a poll or an event with a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import os
import queue
import shlex
import socket
import subprocess
import threading
import time

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.osc_tcp_server import MODE_1_0, ThreadingOSCTCPServer

from liveperf.io import osc
from liveperf.io.osc import OscFeedback
from tests.osc_helpers import TIMEOUT_S, need_tools, wait_until


def play_feedback(fb: OscFeedback) -> None:
    fb.beat(3, 1)
    fb.beat(3, 2)
    fb.note_on(60, 100)
    fb.note_off(60)
    fb.song(2, "Blue Moon")
    fb.mode("duet")
    fb.state("playing")
    fb.counts(1, 2, 3, 4)
    fb.tempo(121.5)
    fb.chord("Am7/C", 9, "minor")
    fb.key("E dorian", 0.75)


FEEDBACK = [
    ("/liveperf/beat", "ii", [3, 1]), ("/liveperf/bar", "i", [3]), ("/liveperf/downbeat", "i", [1]),
    ("/liveperf/beat", "ii", [3, 2]), ("/liveperf/note/on", "ii", [60, 100]), ("/liveperf/note/off", "i", [60]),
    ("/liveperf/song", "is", [2, "Blue Moon"]), ("/liveperf/mode", "s", ["duet"]),
    ("/liveperf/state", "s", ["playing"]), ("/liveperf/stats", "iiii", [1, 2, 3, 4]), ("/liveperf/tempo", "f", [121.5]),
    ("/liveperf/chord", "sis", ["Am7/C", 9, "minor"]), ("/liveperf/key", "sf", ["E dorian", 0.75]),
]


def _bound_port(pid: int, proto: str) -> int:
    """The port a child process has bound (oscdump is started on port 0 and does not print it): /proc lookup."""
    def find():
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        for table in (f"/proc/{pid}/net/{proto}", f"/proc/{pid}/net/{proto}6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[9] in inodes and (proto == "udp" or parts[3] == "0A"):  # 0A: LISTEN
                        return int(parts[1].rsplit(":", 1)[1], 16)
        return None

    return wait_until(find, what=f"oscdump to bind its {proto} port")


class OscDump:
    """liblo's ``oscdump -L`` on an ephemeral port (UDP or TCP); its stdout parsed into (address, types, args)."""

    def __init__(self, proto: str) -> None:
        url = "0" if proto == "udp" else "osc.tcp://:0"
        self.proc = subprocess.Popen(["oscdump", "-L", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = _bound_port(self.proc.pid, proto)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def messages(self, n: int) -> list[tuple[str, str, list]]:
        out = []
        for _ in range(n):
            tokens = shlex.split(self.lines.get(timeout=TIMEOUT_S))
            i = next(k for k, t in enumerate(tokens) if t.startswith("/"))  # skip the timetag oscdump prints
            address, types, values = tokens[i], (tokens[i + 1:i + 2] or [""])[0], tokens[i + 2:]
            conv = {"i": int, "h": int, "f": float, "d": float, "s": str}
            out.append((address, types, [conv[t](v) for t, v in zip(types, values)]))
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT_S)


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_feedback_received_by_liblo_oscdump(protocol):
    need_tools("oscdump")
    dump = OscDump(protocol)
    try:
        fb = OscFeedback([("127.0.0.1", dump.port)], protocol=protocol)
        play_feedback(fb)
        assert dump.messages(len(FEEDBACK)) == FEEDBACK
        assert (fb.sent, fb.dropped, fb.errors) == (len(FEEDBACK), 0, 0)
        fb.close()
    finally:
        dump.close()


def test_feedback_received_by_python_osc_udp_server_as_plain_messages():
    got: queue.Queue = queue.Queue()
    dispatcher = Dispatcher(strict_timing=False)
    dispatcher.set_default_handler(lambda address, *args: got.put((address, list(args))))
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a second target that sees the datagrams themselves
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(TIMEOUT_S)
    srv = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        fb = OscFeedback([("127.0.0.1", srv.server_address[1]), ("127.0.0.1", raw.getsockname()[1])])
        play_feedback(fb)
        assert [got.get(timeout=TIMEOUT_S) for _ in FEEDBACK] == [(a, v) for a, _, v in FEEDBACK]
        datagrams = [raw.recv(65536) for _ in FEEDBACK]
        assert all(d.startswith(b"/liveperf/") for d in datagrams)  # plain messages, never "#bundle"
        assert fb.sent == 2 * len(FEEDBACK)
        fb.close()
    finally:
        srv.shutdown()
        srv.server_close()
        raw.close()


def test_feedback_over_tcp_to_python_osc_mode_1_0_and_reconnect(monkeypatch):
    monkeypatch.setattr(osc._TcpTarget, "RETRY_NS", 0)
    got: queue.Queue = queue.Queue()
    dispatcher = Dispatcher(strict_timing=False)
    dispatcher.set_default_handler(lambda address, *args: got.put((address, list(args))))
    # Nobody listens yet: sends are counted, never raised, never blocking.
    placeholder = socket.socket()
    placeholder.bind(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    placeholder.close()
    fb = OscFeedback([("127.0.0.1", port)], protocol="tcp")
    t0 = time.monotonic()
    for _ in range(200):
        fb.tempo(120)
    assert time.monotonic() - t0 < 0.5
    assert fb.sent == 0 and fb.dropped + fb.errors == 200
    # A desk comes up on that port: the next sends connect and arrive.
    srv = ThreadingOSCTCPServer(("127.0.0.1", port), dispatcher, mode=MODE_1_0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: (fb.note_on(61, 90), fb.sent)[1] > 0, what="the TCP feedback to connect")
        assert got.get(timeout=TIMEOUT_S) == ("/liveperf/note/on", [61, 90])
    finally:
        fb.close()  # first: python-osc's server_close() waits for its connection threads
        srv.shutdown()
        srv.server_close()


def test_feedback_targets_are_resolved_once_and_checked():
    fb = OscFeedback([("127.0.0.1", 9000), ("127.0.0.1", 9000)])
    assert fb.targets == [("127.0.0.1", 9000)]
    fb.add_target("localhost", 9001)
    assert fb.targets[1][0] in ("127.0.0.1", "::1") and fb.targets[1][1] == 9001
    with pytest.raises(ValueError, match="port must be 1..65535"):
        fb.add_target("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="protocol"):
        OscFeedback([], protocol="slip")
    fb.close()


def test_feedback_to_a_closed_udp_port_never_raises():
    fb = OscFeedback([("127.0.0.1", 9)])  # discard port: nobody listens
    for _ in range(100):
        fb.beat(1, 1)
    assert fb.sent + fb.dropped + fb.errors == 300
    fb.close()
