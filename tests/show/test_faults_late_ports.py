"""A controller and a synth named in ``[show] midi_in`` / ``midi_out`` that are not plugged in when the show starts:
a warning, not a refusal to start (exit 2, as it was); liveperf connects each when it appears and plays through it.
Both JACK backends (the rtmidi one through ``PortWatch``, jack-native through its ``NativeWatch``); a synchronous
server (``conftest.jack_server_sync``) so the wire monitor never loses a cycle. Its own module: a second
module-scoped server in tests/show/test_faults_reconnect.py would take over ``JACK_DEFAULT_SERVER`` there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jack_server import jack_ports
from tests.show.test_faults_reconnect import SHOW, Output, Performer, _answers, _finish, connections, needs_model
from wire_monitor import REPO, WireMonitor, wait_for

pytestmark = pytest.mark.jack


@needs_model
@pytest.mark.parametrize("backend", ["jack", "jack-rtmidi"])
def test_a_named_controller_and_synth_plugged_in_after_the_start_are_connected(jack_server_sync, tmp_path, backend):
    """Not there at start: a warning, not exit 2; liveperf connects each when it appears and plays through it."""
    name = "lplate" + ("r" if backend == "jack-rtmidi" else "n")
    ours_in, ours_out = (f"{name}:in", f"{name}:out") if backend != "jack-rtmidi" else (f"{name}-in:in",
                                                                                          f"{name}-out:out")
    extra = f'midi_out = "{name}-mon:in"\nmidi_in = "{name}-perf:out"'
    (tmp_path / "show.toml").write_text(SHOW.format(extra=extra))
    report_path = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "show.toml"), "--backend", backend,
         "--client-name", name, "--duration", "8", "--report-json", str(report_path),
         "--record-dir", str(tmp_path / "rec")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=os.environ.copy())
    output = Output(proc)
    monitor = performer = None
    try:
        wait_for(lambda: proc.poll() is not None or {ours_in, ours_out} <= set(jack_ports()), 30, "liveperf's ports")
        # Plug in once the song has started (its models loaded): a phrase read only when the engine begins has
        # answers due in the past, dropped as late (test_faults_reconnect, with a core busy).
        wait_for(lambda: proc.poll() is not None or output.started(), 30, "the first song to start")
        assert proc.poll() is None, output.text()
        monitor, performer = WireMonitor(f"{name}-mon"), Performer(f"{name}-perf")
        wait_for(lambda: connections(ours_out) == {monitor.port} and connections(ours_in) == {performer.port}, 10,
                 "liveperf connected to the synth and the controller that came late")
        _answers(monitor, performer.send, "the partner, through the late synth")
        code, out, report = _finish(proc, output, report_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        if monitor is not None:
            monitor.close()
        if performer is not None:
            performer.close()
    assert code == 0, out
    assert f"[show] midi_in = '{name}-perf:out': no such MIDI port yet" in out, out
    assert f"[show] midi_out = '{name}-mon:in': no such MIDI port yet" in out, out
    assert monitor.check().stuck == [] and "Traceback" not in out
