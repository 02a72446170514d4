"""Reading the JACK server's real-time priority from /proc: the highest of its threads (``jackd -R`` runs only its
driver thread SCHED_FIFO), 0 for a server without real-time threads, None for no server of that name."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from liveperf.io.jack_probe import jack_server_priority

FAKE_SERVER = r"""
import os, sys, threading, time
open("/proc/self/comm", "w").write("jackd")  # what the probe looks for; the -n NAME is in our argv
def driver():
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sys.argv[1])))
        print("fifo", flush=True)
    except PermissionError:
        print("refused", flush=True)
    time.sleep(60)
threading.Thread(target=driver, daemon=True).start()
time.sleep(60)
"""


def fake_server(prio: int, name: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(prio), "-n", name], stdout=subprocess.PIPE,
                            text=True)
    return proc, proc.stdout.readline().strip()


def test_the_driver_thread_decides_not_the_main_thread():
    proc, how = fake_server(42, "lp-probe-rt")
    try:
        if how != "fifo":
            pytest.skip("SCHED_FIFO refused here")
        time.sleep(0.05)
        assert jack_server_priority("lp-probe-rt") == 42  # the main thread is SCHED_OTHER
        assert jack_server_priority("lp-probe-none") is None
    finally:
        proc.kill()
        proc.wait()


def test_a_server_without_real_time_threads_is_zero(jack_server):
    assert jack_server_priority(jack_server.name) == 0
