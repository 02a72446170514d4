"""Link scenarios, run by ``test_link_session.py`` inside a private network namespace that has only loopback
(``python link_scenarios.py SCENARIO OUT_DIR``; prints one JSON object). Not a test module: it refuses to run where
any interface but ``lo`` exists, so Link's discovery never reaches a real network.

- ``session``: ``LinkSession`` + ``LinkClock`` against a second peer (``tests/link_peer.py``): discovery, the grid's
  phase against the peer's, a tempo change by the peer, start and stop by the peer, our tempo when leading.
- ``show``: ``liveperf play`` (file mode, phrase mode, clock = "link") beside the peer, which changes the tempo
  mid-song; OSC feedback is received on 127.0.0.1; returns the report and the feedback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEER = REPO / "tests" / "link_peer.py"


def loopback_only() -> None:
    names = sorted(name for _, name in socket.if_nameindex())  # this network namespace's (sysfs may be the host's)
    if names != ["lo"]:
        raise SystemExit(f"refusing to run Link outside a loopback-only network namespace (interfaces: {names})")


class Peer:
    """The second Link peer, a process of its own."""

    def __init__(self, bpm: float, quantum: float = 4.0) -> None:
        self.proc = subprocess.Popen([sys.executable, str(PEER), "--bpm", str(bpm), "--quantum", str(quantum)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        try:
            self.ask(cmd="quit")
        finally:
            self.proc.wait(5)


def until(cond, timeout_s: float = 5.0, every_s: float = 0.01):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(every_s)
    return cond()


def phase_error_ms(clock, peer_state: dict, quantum: float) -> float:
    """Where our grid puts the peer's beat: (our beat - the peer's beat) at the peer's stamp, folded into one
    quantum (only the phase is shared), in ms."""
    at = peer_state["at_ns"]
    s = clock.step_at(at)
    ours = (s + (at - clock.ns_at_step(s)) / clock.step_ns) / clock.steps_per_beat
    d = (ours - peer_state["beat"]) % quantum
    d = d - quantum if d >= quantum / 2 else d
    return d * 60_000.0 / clock.tempo_bpm


def session_scenario(out: Path) -> dict:
    from liveperf.io.link_session import LinkSession
    from liveperf.timing.link_clock import LeadingLinkClock, LinkClock

    result: dict = {}
    peer = Peer(100.0)
    time.sleep(1.5)  # the band's session, there first: Link keeps the older session (by more than 0.5 s)
    session = LinkSession().start(120.0, 4.0, start_stop=True)
    try:
        result["peers"] = until(lambda: session.read().peers) or 0
        clock = LinkClock(session.read, 4, 4.0, start_stop=True)
        events: list = []

        def polled() -> None:
            events.extend(clock.poll(time.monotonic_ns()))

        result["tempo_joined"] = until(lambda: (polled(), abs(clock.tempo_bpm - 100) < 1e-3)[1]) and clock.tempo_bpm
        result["tempo_peer"] = peer.ask(cmd="state")["tempo"]
        errors = []
        for _ in range(20):
            polled()
            errors.append(phase_error_ms(clock, peer.ask(cmd="state"), 4.0))
            time.sleep(0.02)
        result["phase_ms"] = errors
        peer.ask(cmd="tempo", bpm=133.0)
        t0 = time.monotonic()
        until(lambda: (polled(), abs(clock.tempo_bpm - 133) < 1e-3)[1])
        result["tempo_followed_s"] = time.monotonic() - t0
        result["tempo_after"] = clock.tempo_bpm
        result["phase_after_ms"] = [(polled(), phase_error_ms(clock, peer.ask(cmd="state"), 4.0))[1]
                                    for _ in range(5)]

        def transport(kind: str) -> bool:
            polled()
            return any(e.kind == kind for e in events)

        peer.ask(cmd="play", value=True)
        result["started"] = until(lambda: transport("continue"))
        start = next((e for e in events if e.kind == "continue"), None)
        result["start_step"] = None if start is None else start.step
        result["start_late_ns"] = None if start is None else clock.ns_at_step(start.step) - start.ts_ns
        peer.ask(cmd="play", value=False)
        result["stopped"] = until(lambda: transport("stop"))
        result["events"] = [e.kind for e in events]
        lead = LeadingLinkClock(session.read, session.set_tempo, 4, 4.0, start_stop=True)
        lead.set_tempo(90.0, lead.step_at(time.monotonic_ns()) + 1)
        result["peer_tempo_led"] = until(lambda: abs(peer.ask(cmd="state")["tempo"] - 90) < 1e-3 and 90)
        result["stats"] = clock.stats.__dict__
    finally:
        session.close()
        peer.close()
    return result


def show_scenario(out: Path) -> dict:
    setlist = out / "link.toml"
    setlist.write_text(
        '[show]\nname = "Link"\nclock = "link"\nstage_view = false\nmax_copy_bars = 0\n'
        '[show.osc]\nudp_port = 0\ntcp_port = -1\nfeedback = ["127.0.0.1:%d"]\n'
        '[[song]]\ntitle = "Reel on Link"\ntempo_bpm = 104\nkey = "A dorian"\nmeter = "4/4"\nmode = "phrase"\n'
        'model = "melody_dnn"\nchannel = 1\npitch_range = [57, 81]\nseed = 3\ntake = "demo_reel_a"\n'
        % _feedback_port(out))
    peer = Peer(100.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int((out / "feedback_port").read_text())))
    sock.settimeout(0.2)
    report = out / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "liveperf.cli", "play", str(setlist), "--backend", "file",
                             "--duration", "9", "--no-stage-view", "--report-json", str(report),
                             "--record-dir", str(out / "rec")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    feedback: list = []
    changed_at = None
    start = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - start < 60:
            try:
                feedback.append(_osc_address_and_ints(sock.recv(2048)))
            except socket.timeout:
                pass
            if changed_at is None and any(a == "/liveperf/beat" for a, _ in feedback) and \
                    sum(a == "/liveperf/beat" for a, _ in feedback) >= 8:
                peer.ask(cmd="tempo", bpm=125.0)  # two bars in: the other peer speeds up
                changed_at = time.monotonic() - start
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        peer.close()
    return {"rc": proc.returncode, "output": output[-3000:], "feedback": feedback, "changed_at_s": changed_at,
            "report": json.loads(report.read_text()) if report.exists() else None}


def _feedback_port(out: Path) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (out / "feedback_port").write_text(str(port))
    return port


def _osc_address_and_ints(packet: bytes) -> tuple[str, list]:
    """The address and the int/float arguments of a plain OSC message (enough for these tests)."""
    from pythonosc.osc_message import OscMessage

    m = OscMessage(packet)
    return m.address, [a for a in m.params if isinstance(a, (int, float))]


if __name__ == "__main__":
    loopback_only()
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    fn = {"session": session_scenario, "show": show_scenario}[scenario]
    print(json.dumps(fn(out_dir)))
