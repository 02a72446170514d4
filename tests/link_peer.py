"""A second Ableton Link peer for the tests: plain aalink on asyncio, in its own process, driven by JSON lines.

Run it only inside the tests' private network namespace (``tests/timing/test_link_session.py``): Link's discovery
multicasts on every interface. stdin: {"cmd": "state"} | {"cmd": "tempo", "bpm": x} | {"cmd": "play", "value": b}
| {"cmd": "quit"}; stdout: {"ready": true} once, then one JSON object per command. ``state`` gives the peer's beat
with the ``time.monotonic_ns`` stamp it was read at (the midpoint of two reads), its tempo, transport and peers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aalink import Link


def state(link: Link) -> dict:
    t0 = time.monotonic_ns()
    beat = link.beat
    t1 = time.monotonic_ns()
    return {"peers": link.num_peers, "tempo": link.tempo, "playing": link.playing, "beat": beat,
            "at_ns": (t0 + t1) // 2, "quantum": link.quantum}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--quantum", type=float, default=4.0)
    args = ap.parse_args()
    link = Link(args.bpm)
    link.quantum = args.quantum
    link.start_stop_sync_enabled = True
    link.enabled = True

    def reply(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:  # the test went away
            break
        msg = json.loads(line)
        if msg["cmd"] == "state":
            reply(state(link))
        elif msg["cmd"] == "tempo":
            link.tempo = float(msg["bpm"])
            reply({"ok": True})
        elif msg["cmd"] == "play":
            link.playing = bool(msg["value"])
            reply({"ok": True})
        elif msg["cmd"] == "quit":
            reply({"ok": True})
            break
        else:
            reply({"error": f"unknown command {msg['cmd']!r}"})
    link.enabled = False


if __name__ == "__main__":
    asyncio.run(main())
