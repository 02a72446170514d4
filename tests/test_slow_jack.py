"""``tests/slow_jack.py``, the flake hunt's tool: while its command runs, the test JACK servers are stopped for part of
every period; when it ends, every one runs again."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from liveperf.io.jack_native import JackMidiClient
from tests import slow_jack

pytestmark = pytest.mark.jack


def state(pid: int) -> str:
    """The process's state letter (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def stopped_share(pids: list[int], seconds: float) -> float:
    """The share of samples (one every ~2 ms) in which the servers were stopped: how much of the time the tool holds
    them, whatever speed the machine runs them at."""
    samples = stopped = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stopped += sum(state(pid) == "T" for pid in pids)
        samples += len(pids)
        time.sleep(0.002)
    return stopped / samples


def test_the_servers_are_held_while_the_command_runs_and_run_again_after(jack_server_sync):
    pids = slow_jack.running_servers()
    assert pids
    codes = []
    tool = threading.Thread(target=lambda: codes.append(slow_jack.main(
        ["--stop-ms", "15", "--every-ms", "20", "--", sys.executable, "-c", "import time; time.sleep(3)"])))
    tool.start()
    time.sleep(1.2)  # the tool finds the servers within a second
    during = stopped_share(pids, 1.0)
    tool.join(10)
    after = stopped_share(pids, 0.3)
    client = JackMidiClient.open("test-slow", inputs=True, outputs=False)  # the server answers and runs cycles
    try:
        c0 = client.counters()["cycles"]
        time.sleep(0.3)
        ran = client.counters()["cycles"] - c0
    finally:
        client.close()
    assert codes == [0]
    assert 0.4 < during < 0.99 and after == 0.0, (during, after)  # 15 of every 20 ms: about three quarters
    assert ran > 0


def test_it_needs_a_command_and_a_stop_shorter_than_the_period():
    with pytest.raises(SystemExit):
        slow_jack.main(["--stop-ms", "20", "--every-ms", "20", "--", "true"])
    with pytest.raises(SystemExit):
        slow_jack.main([])
