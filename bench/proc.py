"""Resident memory of a process from /proc (Linux), for the benchmarks' memory-growth figures."""

from __future__ import annotations


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
