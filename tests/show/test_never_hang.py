"""A signal ends ``liveperf play`` within ``SHUTDOWN_LIMIT_S`` even when a library call hangs on the way out holding
the GIL (rtmidi's ``jack_client_close`` once did, waiting on libjack's own lock: SIGTERM did nothing, only kill -9).
The hang is made real: the output port's ``close`` calls C ``sleep(60)`` through ``ctypes.PyDLL``, which keeps
the GIL, so no Python thread can run; only faulthandler's C thread can end the process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liveperf.cli import SHUTDOWN_LIMIT_S
from liveperf.models.onnx_model import shipped_models_dir

REPO = Path(__file__).resolve().parents[2]
HANGING_CLOSE = """
import ctypes, sys
from liveperf.show import run as show
from liveperf.cli import main
show.NullPort.close = lambda self: ctypes.PyDLL(None).sleep(60)  # a stuck C call that holds the GIL
sys.exit(main(["play", "setlists/demo.toml", "--no-stage-view", "--duration", "60", "--record-dir", sys.argv[1]]))
"""


@pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(), reason="no shipped model")
def test_a_signal_ends_the_show_even_when_closing_a_port_hangs_holding_the_gil(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HANGING_CLOSE, str(tmp_path / "rec")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:  # until the first song has started
            if line.startswith("[1. "):
                break
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out
    assert SHUTDOWN_LIMIT_S <= took < SHUTDOWN_LIMIT_S + 2.0, took  # generous: a loaded machine starts slowly
    assert "Timeout (0:00:02)!" in out and "in <lambda>" in out  # faulthandler's dump names where it hung
