"""The machine's own timing floor, measured in the same run as liveperf: a bare Python thread that sleeps to
absolute deadlines every 10 ms exactly like the scheduler (sleep to 0.3 ms before, then yield-spin), with the same
SCHED_FIFO request, doing nothing else. Whatever lateness it sees is the OS / hypervisor, not liveperf. Also reads
the hypervisor's steal time from /proc/stat over the same interval.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from liveperf.timing.scheduler import try_realtime


def _steal_ticks() -> int | None:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8])  # cpu user nice system idle iowait irq softirq steal
    except (OSError, IndexError, ValueError):
        return None


def run(seconds: float = 60.0, period_ns: int = 10_000_000) -> dict:
    lat: list[int] = []
    got: list[str] = []

    def timer() -> None:
        got.append(try_realtime(70))
        t0 = time.monotonic_ns()
        k = 1
        while time.monotonic_ns() - t0 < seconds * 1e9:
            due = t0 + k * period_ns
            left = due - time.monotonic_ns() - 300_000
            if left > 0:
                time.sleep(left / 1e9)
            while time.monotonic_ns() < due:
                time.sleep(0)
            lat.append(time.monotonic_ns() - due)
            k += 1

    steal0, wall0 = _steal_ticks(), time.monotonic()
    t = threading.Thread(target=timer)
    t.start()
    t.join()
    steal1, wall1 = _steal_ticks(), time.monotonic()
    a = np.asarray(lat, dtype=np.float64) / 1e3
    steal_pct = None
    if steal0 is not None and steal1 is not None:
        steal_pct = 100.0 * (steal1 - steal0) / 100.0 / (wall1 - wall0)  # USER_HZ = 100; % of one CPU
    return {"seconds": seconds, "scheduling": got[0] if got else "", "n": int(a.size),
            "p50_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)), "max_us": float(a.max()),
            "late_over_2ms": int((a > 2000).sum()), "steal_pct_of_one_cpu": steal_pct}
