"""Processes for the benchmarks: resident memory from /proc (Linux) for the memory-growth figures, and a second
process that keeps one core busy (``--busy``: the load a stage laptop's other software puts on it)."""

from __future__ import annotations

import subprocess
import sys


def rss_kib(pid: int | str = "self") -> int | None:
    """VmRSS of ``pid`` in KiB; None when the process is gone (or not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def busy_core(on: bool = True) -> subprocess.Popen | None:
    """A Python process spinning on one core (``while True: pass``) when ``on``, else None. ``stop_busy`` ends it."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None


def stop_busy(hog: subprocess.Popen | None) -> None:
    """End a ``busy_core`` process and reap it (nothing when None)."""
    if hog is not None:
        hog.kill()
        hog.wait()
