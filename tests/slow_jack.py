"""Run a command while every test JACK server runs slower than real time: a flake hunt for the JACK tests.

    python -m tests.slow_jack --stop-ms 10 --every-ms 20 -- .venv/bin/python -m pytest -m jack
    python -m tests.slow_jack --stop-ms 14 --every-ms 20 --busy -- .venv/bin/python -m pytest -m jack

Why: a loaded VM runs the dummy driver's cycles late; a synchronous server then runs its frames slower than the wall
clock (2026-12-07: 2.6 s of JACK frames in a 5 s stretch of a test), and a test that paces itself in wall time, or
code that judges input by the wall clock, fails there and nowhere else. This reproduces it on demand: every
``jackd -n <name>`` process the tests start (the fixtures' and the benches' servers, found anew each second) is
stopped (SIGSTOP) for ``--stop-ms`` of every ``--every-ms`` and continued (SIGCONT). The dummy driver makes up part
of each stop, so the server runs faster than ``1 - stop/every`` of real time; measured on the dev VM (a synchronous
server at 256 frames): 10 of 20 ms, 78 % of its cycles a second; 15 of 20, 53 %. Keep the time it runs
(``every - stop``) longer than a JACK period (5.3 ms at 256 frames): with 14 or 15 of 20 and a core busy, clients
time out before they can even connect (2026-12-08: about half the JACK tests failed that way; none hung).
``--busy`` also keeps one core busy (``python -c "while True: pass"``), as the suite's busy runs do.
Every server is continued when the command ends (or this is interrupted). Exit status: the command's.

Only servers whose command line is ``jackd -n ...`` are touched (the tests name theirs; a studio's own ``jackd``
without ``-n`` is left alone).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

PATTERN = "jackd -n "  # the tests' servers (tests/jack_server.start_jack_server names each one)


def running_servers() -> list[int]:
    """PIDs of the running ``jackd -n NAME`` processes."""
    out = subprocess.run(["pgrep", "-f", PATTERN], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:  # ended meanwhile
            pass


def throttle(stop_s: float, every_s: float, done: threading.Event) -> None:
    """Stop and continue the test servers until ``done`` is set; leaves every one running."""
    pids: list[int] = []
    next_scan = 0.0
    try:
        while not done.is_set():
            if time.monotonic() >= next_scan:
                pids, next_scan = running_servers(), time.monotonic() + 1.0
            _signal_all(pids, signal.SIGSTOP)
            time.sleep(stop_s)
            _signal_all(pids, signal.SIGCONT)
            done.wait(every_s - stop_s)
    finally:
        _signal_all(running_servers(), signal.SIGCONT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.slow_jack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stop-ms", type=float, default=10.0, help="each server stopped this long ...")
    ap.add_argument("--every-ms", type=float, default=20.0, help="... in every period this long")
    ap.add_argument("--busy", action="store_true", help="also keep one core busy")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not 0 < args.stop_ms < args.every_ms:
        ap.error("give a command after --, and 0 < --stop-ms < --every-ms")
    print(f"slow_jack: test JACK servers stopped {args.stop_ms:g} ms of every {args.every_ms:g}"
          f"{', one core busy' if args.busy else ''}: {' '.join(command)}", flush=True)
    done = threading.Event()
    worker = threading.Thread(target=throttle, args=(args.stop_ms / 1e3, args.every_ms / 1e3, done), daemon=True)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    worker.start()
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130
    finally:
        done.set()
        worker.join(5)
        if burner is not None:
            burner.kill()
            burner.wait()


if __name__ == "__main__":
    sys.exit(main())
