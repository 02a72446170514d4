"""Patchbay clicks and JACK restarts mid-note, counted on the wire (issue 14's goal: 0 stuck notes after each).

    python -m bench.faults_jack [--cycles 20] [--restarts 5] [--backend jack|jack-rtmidi] [--busy] [--json F]

A private JACK dummy server (48 kHz, 256 frames, JACK's default asynchronous mode) and ``liveperf play`` in
``harmonize`` (a held key holds its harmony) as its own process, fed by a performer client and heard by a wire
monitor (tests/wire_monitor.py), both in this process.

- **A patchbay click**, ``--cycles`` times: the performer holds a key; once its harmony sounds on the monitor, the
  output is unplugged (``jack_disconnect``); the key is released (the harmony's note-off goes to nobody); the output
  is plugged back (``jack_connect``). After each cycle, once the partner has had 0.3 s, the monitor must have
  nothing sounding.
- **A JACK restart**, ``--restarts`` times: the performer holds a key; once its harmony sounds the server is killed
  and a new one started under the same name. liveperf reopens its ports and connects the clients that come back
  (ours: a new monitor and a new performer under the old names). The monitor stands for a hardware synth behind a
  USB interface, which outlives the server: its stream is the old monitor's followed by the new one's, and after
  each restart nothing may be left sounding in it.

Figures: stuck notes after each cycle and restart, the time from the new server to liveperf's ports and to its
links, liveperf's report (``ports``: outages, reconnects; ``port``: the jack-native counters of the repairs). Exit 1
if any note stayed stuck or liveperf did not end cleanly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.proc import busy_core, stop_busy  # noqa: E402
from jack_server import jack_connect, jack_ports, start_jack_server, use_server  # noqa: E402
from wire_monitor import LivePlay, WireMonitor, check_stream, wait_for  # noqa: E402

import rtmidi  # noqa: E402

SETLIST = """
[show]
stage_view = false
[show.osc]
enabled = false
[[song]]
title = "Faults"
tempo_bpm = 120
key = "D dorian"
mode = "harmonize"
pitch_range = [50, 84]
seed = 4
channel = 3
"""
NAME = "lpflt"
KEYS = (62, 65, 69, 67, 64)
PARTNER_CH = 2  # the song's channel 3


def _ports(backend: str) -> tuple[str, str]:
    return (f"{NAME}-in:in", f"{NAME}-out:out") if backend == "jack-rtmidi" else (f"{NAME}:in", f"{NAME}:out")


def _sounding(events) -> list:
    return check_stream(events).stuck


def _hold_until_heard(play: LivePlay, stream, key: int, timeout_s: float = 5.0) -> bool:
    """Press ``key``; True once a partner note sounds on the monitor."""
    play.send((0x90, key, 90))
    try:
        wait_for(lambda: any(ch == PARTNER_CH for ch, _ in _sounding(stream())), timeout_s, "the harmony")
        return True
    except AssertionError:
        return False


def run(cycles: int = 20, restarts: int = 5, backend: str = "jack", busy: bool = False, log=print) -> dict:
    backend = "jack-native" if backend == "jack" else backend
    ours_in, ours_out = _ports(backend)
    first = start_jack_server(period=256)
    server_done = use_server(first)
    servers = [first]
    hog = busy_core(busy)
    tmp = Path(tempfile.mkdtemp(prefix="liveperf-faults-"))
    clicks, restart_rows, play, old_events = [], [], None, []
    try:
        play = LivePlay(tmp, SETLIST, NAME, duration_s=600, backend=backend)
        for i in range(cycles):
            key = KEYS[i % len(KEYS)]
            heard = _hold_until_heard(play, play.monitor.snapshot, key)
            subprocess.run(["jack_disconnect", ours_out, play.monitor.port], check=True, timeout=10)
            time.sleep(0.1)
            play.send((0x80, key, 0))  # the harmony's note-off goes to nobody
            time.sleep(0.2)
            jack_connect(ours_out, play.monitor.port)
            time.sleep(0.3)
            stuck = _sounding(play.monitor.snapshot())
            clicks.append({"heard": heard, "stuck": stuck})
            log(f"  click {i + 1}: harmony heard {heard}, stuck after {stuck}")
        for i in range(restarts):
            key = KEYS[i % len(KEYS)]
            heard = _hold_until_heard(play, lambda: old_events + play.monitor.snapshot(), key)
            servers[-1].process.kill()  # a crash; the same name takes the new server
            servers[-1].process.wait(5)
            old_events += play.monitor.snapshot()
            # our own clients are zombies now: delete them before this process opens a new JACK client
            play.monitor.close()
            play.performer.close_port()
            play.performer.delete()
            play.monitor = play.performer = None
            servers.append(start_jack_server(first.name, period=256))
            began = time.monotonic()
            wait_for(lambda: {ours_in, ours_out} <= set(jack_ports()), 15, "liveperf's ports on the new server")
            ports_s = time.monotonic() - began
            play.monitor = WireMonitor(f"{NAME}-mon")
            play.performer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{NAME}-perf")
            play.performer.open_virtual_port("out")
            wait_for(lambda: ours_out in _connections(play.monitor.port), 10, "liveperf to connect the monitor again")
            wait_for(lambda: f"{NAME}-perf:out" in _connections(ours_in), 10, "liveperf to connect the performer")
            links_s = time.monotonic() - began
            play.send((0x80, key, 0))
            time.sleep(0.5)
            stuck = _sounding(old_events + play.monitor.snapshot())
            restart_rows.append({"heard": heard, "stuck": stuck, "ports_s": round(ports_s, 3),
                                 "links_s": round(links_s, 3)})
            log(f"  restart {i + 1}: harmony heard {heard}, ports back {ports_s * 1e3:.0f} ms, linked "
                f"{links_s * 1e3:.0f} ms, stuck on the synth after {stuck}")
        play.proc.send_signal(2)
        code, out, report = play.finish(timeout_s=30)
    finally:
        if play is not None:
            play.kill()
        stop_busy(hog)
        for server in servers[1:]:
            server.stop()
        server_done()
    return {"backend": backend, "busy_core": busy, "cycles": clicks, "restarts": restart_rows, "exit_code": code,
            "ports": (report or {}).get("ports"), "port": (report or {}).get("port"),
            "stuck_after_clicks": sum(len(c["stuck"]) for c in clicks),
            "stuck_after_restarts": sum(len(r["stuck"]) for r in restart_rows),
            "harmonies_heard": sum(c["heard"] for c in clicks) + sum(r["heard"] for r in restart_rows),
            "output_tail": out[-1500:]}


def _connections(port: str) -> set[str]:
    out = subprocess.run(["jack_lsp", "-c", port], capture_output=True, text=True, timeout=10).stdout
    return {line.strip() for line in out.splitlines()[1:] if line.startswith((" ", "\t"))}


def ok(r: dict) -> bool:
    return r["stuck_after_clicks"] == 0 and r["stuck_after_restarts"] == 0 and r["exit_code"] == 130


def format_result(r: dict) -> str:
    port = r["port"] or {}
    ports = r["ports"] or {}
    restarts = r["restarts"]
    return "\n".join([
        f"JACK faults on {r['backend']} (one core busy: {r['busy_core']}): {len(r['cycles'])} patchbay "
        f"unplug/replug cycles mid-note, {len(restarts)} server restarts mid-note; {r['harmonies_heard']} of "
        f"{len(r['cycles']) + len(restarts)} held harmonies were sounding when the fault came",
        f"stuck on the wire after a click: {r['stuck_after_clicks']}; after a restart (the synth outlives the "
        f"server): {r['stuck_after_restarts']}",
        (f"restart: ports back in {', '.join(str(round(x['ports_s'] * 1e3)) for x in restarts)} ms, linked in "
         f"{', '.join(str(round(x['links_s'] * 1e3)) for x in restarts)} ms") if restarts else "no restarts",
        f"liveperf: exit {r['exit_code']}; ports: outages {ports.get('outages')}, reconnects "
        f"{ports.get('reconnects')}, peer connections made {ports.get('peer_connected')}; port: peer drops "
        f"{port.get('peer_drops')}, missed note-offs sent {port.get('missed_offs')}, resent {port.get('resent_offs')}",
        "RESULT: " + ("PASS" if ok(r) else "FAIL"),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--backend", choices=("jack", "jack-native", "jack-rtmidi"), default="jack")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a second process")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    r = run(args.cycles, args.restarts, args.backend, args.busy)
    print(format_result(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2, default=str))
    return 0 if ok(r) else 1


if __name__ == "__main__":
    sys.exit(main())
