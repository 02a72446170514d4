"""Idle OSC TCP connections against a genuine client: can a tablet still reach liveperf?

    python -m bench.osc_tcp_idle [--idle 16] [--hold-s 60]

An ``OscServer`` with the show's defaults (TCP on 127.0.0.1, any free port) gets ``--idle`` connections that never
send anything (a crashed tablet's, a scanner's), held for ``--hold-s`` seconds; then a genuine client (python-osc,
OSC 1.0 framing) connects and pings. Prints how many idle connections the server held, how long the pong took, and
the server's counters (``too_many_clients`` refused, ``tcp_evicted``). Exit 1 if no pong came within 1 s.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

from pythonosc.osc_message import OscMessage
from pythonosc.osc_tcp_server import MODE_1_0
from pythonosc.tcp_client import SimpleTCPClient

from liveperf.io.osc import OscServer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=16)
    ap.add_argument("--hold-s", type=float, default=60.0)
    args = ap.parse_args(argv)
    with OscServer(lambda ts, cmd: None, tcp_port=0) as server:
        idle = [socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) for _ in range(args.idle)]
        time.sleep(args.hold_s)
        held = sum(1 for s in idle if _open(s))
        t0 = time.perf_counter()
        client = SimpleTCPClient("127.0.0.1", server.tcp_port, mode=MODE_1_0, timeout=5)
        client.send_message("/liveperf/ping", [])
        got = [OscMessage(d).address for d in client.receive(5)]
        pong_ms = (time.perf_counter() - t0) * 1e3
        client.close()
        stats = server.stats
        for s in idle:
            s.close()
    ok = got == ["/liveperf/pong"] and pong_ms < 1000
    print(f"{args.idle} idle TCP connections from 127.0.0.1 held {args.hold_s:g} s ({held} still open on the server "
          f"side before the genuine client); genuine client: {got} in {pong_ms:.1f} ms; refused as too many: "
          f"{stats.errors_by_kind.get('too_many_clients', 0)}, idle ones replaced: {stats.tcp_evicted}")
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def _open(sock: socket.socket) -> bool:
    """True while the server has not closed ``sock`` (a closed one reads EOF at once)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


if __name__ == "__main__":
    sys.exit(main())
