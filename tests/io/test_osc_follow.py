"""OSC feedback while following MIDI clock, received on a real UDP socket on 127.0.0.1: ``/liveperf/state`` follows
the band's transport (stopped until its Start, playing, stopped on Stop, playing again on Continue),
``/liveperf/tempo`` follows the band's tempo (once a beat at most, not for the fit's jitter), and the report's BPM
is the tempo followed.

The first test runs the engine loop in virtual time (exact ticks, exact expectations); the second a whole ``Show``
in real time, with MIDI clock fed through a live input port as a drum machine would send it.
"""

from __future__ import annotations

import socket
import threading
import time
from fractions import Fraction

import pytest
from pythonosc.osc_message import OscMessage

from liveperf.engine import Engine
from liveperf.io.osc_feedback import OscFeedback
from liveperf.io.timed_worker import TimedWorker
from liveperf.loop import ScriptedInput, run_loop
from liveperf.timing.midi_clock import MidiClockFollower
from liveperf.modes.call_response import CallAndResponse
from liveperf.models.onnx_model import shipped_models_dir
from liveperf.music.sampler import new_rng_state
from liveperf.setlist.schema import load_setlist
from liveperf.show.control import TEMPO_FEEDBACK_BPM, ShowController
from liveperf.timing.virtual_scheduler import VirtualScheduler
from tests.fakes import ScriptedStepper, settings
from tests.osc_helpers import wait_until

MS = 1_000_000
SETLIST = """
[show]
clock = "midi"
stage_view = false
lookahead_ms = 8

[show.osc]
udp_port = -1
tcp_port = -1
feedback = ["127.0.0.1:{port}"]

[[song]]
title = "Follow me"
tempo_bpm = 120
key = "C major"
mode = "{mode}"
seed = 1
"""


class Listener:
    """A UDP socket on 127.0.0.1 that keeps every OSC message it receives as (address, args)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.got: list[tuple[str, list]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            msg = OscMessage(data)
            self.got.append((msg.address, list(msg.params)))

    def values(self, address: str) -> list:
        return [args[0] for a, args in list(self.got) if a == address]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2.0)
        self.sock.close()


def tick_ns(bpm: float) -> Fraction:
    return Fraction(60_000_000_000) / (Fraction(str(bpm)) * 24)


def ticks(first_ns: int, bpm: float, count: int) -> list[tuple[int, bytes]]:
    t = tick_ns(bpm)
    return [(first_ns + int(i * t), b"\xf8") for i in range(count)]


@pytest.fixture
def listener():
    lis = Listener()
    yield lis
    lis.close()


def test_state_and_tempo_follow_the_band_in_virtual_time(tmp_path, listener):
    (tmp_path / "set.toml").write_text(SETLIST.format(port=listener.port, mode="call_response"))
    setlist = load_setlist(tmp_path / "set.toml")
    # 4 beats at 150 BPM, 8 at 100 BPM, Stop; Continue 200 ms later, 2 more beats, Stop.
    first = ticks(20 * MS, 150, 4 * 24)
    second = ticks(first[-1][0] + int(tick_ns(150)), 100, 8 * 24 + 1)
    stop_ns = second[-1][0] + MS
    again = ticks(stop_ns + 200 * MS, 100, 2 * 24 + 1)
    events = [(10 * MS, b"\xfa")] + first + second + [(stop_ns, b"\xfc"), (stop_ns + 190 * MS, b"\xfb")] + again \
        + [(again[-1][0] + MS, b"\xfc")]
    source = ScriptedInput(events)
    clock = MidiClockFollower(4, 120.0)
    sink = VirtualScheduler(now_fn=source.now_ns)
    engine = Engine(CallAndResponse(settings(), ScriptedStepper({}), clock, sink, new_rng_state(0)), clock=clock,
                    sink=sink)
    feedback = OscFeedback(setlist.osc.feedback)
    worker = TimedWorker(clock_ns=lambda: 1 << 62).start()  # virtual due times: every job runs as it comes
    ctl = ShowController(setlist, [0], worker=worker, feedback=feedback)
    ctl.bind(0, engine, clock, 0, 16)
    run_loop(engine, clock, source, lookahead_ns=8 * MS, on_step=ctl.on_step, on_transport=ctl.on_transport,
             on_control=ctl.on_command)
    worker.close()
    wait_until(lambda: len(listener.values("/liveperf/beat")) >= 14, what="the last beat's feedback")
    wait_until(lambda: len(listener.values("/liveperf/state")) >= 5, what="the last state")
    assert listener.values("/liveperf/state") == ["stopped", "playing", "stopped", "playing", "stopped"]
    tempos = listener.values("/liveperf/tempo")
    # The song's setlist tempo at bind, then the band's: 150 from the second beat, down to 100 over the 2-beat fit.
    assert tempos[0] == 120.0 and tempos[1] == pytest.approx(150.0, abs=0.01), tempos
    assert tempos[-1] == pytest.approx(100.0, abs=0.01), tempos
    assert all(b < a for a, b in zip(tempos[1:], tempos[2:])), tempos  # a ramp down, no jitter sent
    assert all(abs(b - a) >= TEMPO_FEEDBACK_BPM - 0.01 for a, b in zip(tempos, tempos[1:])), tempos
    assert len(tempos) - 1 <= 14  # at most once a beat
    assert ctl.played_tempo_bpm() == pytest.approx(100.0, abs=0.01)  # 10 beats of 100 against 4 of 150
    feedback.close()


class ClockInPort:
    """A live input port that the test plays MIDI clock into, stamped as a driver would (the show's clock)."""

    def __init__(self) -> None:
        self.on_message = None
        self.ready = threading.Event()
        self.closed = False

    def start(self, on_message) -> None:
        self.on_message = on_message
        self.ready.set()

    def send(self, data: bytes) -> None:
        self.on_message(time.monotonic_ns(), data)

    def close(self) -> None:
        self.closed = True


class NullOut:
    def send(self, data: bytes) -> None:
        pass


def _play_clock(port: ClockInPort, bpm: float, beats: int) -> None:
    """``beats`` beats of ticks at ``bpm``, each sent at its absolute deadline (no drift)."""
    t0, tick = time.monotonic_ns(), 60_000_000_000 / (bpm * 24)
    for i in range(beats * 24):
        due = t0 + int(i * tick)
        while (left := due - time.monotonic_ns()) > 0:
            time.sleep(min(left / 1e9, 0.002))
        port.send(b"\xf8")


@pytest.mark.skipif(not (shipped_models_dir() / "duet_dnn.onnx").exists(), reason="shipped model missing")
def test_a_show_following_midi_clock_reports_its_transport_and_tempo(tmp_path, listener):
    from liveperf.show.run import Show, ShowOptions

    (tmp_path / "set.toml").write_text(SETLIST.format(port=listener.port, mode="harmonize"))
    port = ClockInPort()
    show = Show(load_setlist(tmp_path / "set.toml"), ShowOptions(realtime=False), log=lambda *_: None)
    result = {}
    runner = threading.Thread(target=lambda: result.update(report=show.run([0], "fake", NullOut(), port)))
    runner.start()
    try:
        assert port.ready.wait(30), "the show never started its input"
        wait_until(lambda: listener.values("/liveperf/state"), 10, "the song's first state")
        port.send(b"\xfa")
        _play_clock(port, 240, 6)
        port.send(b"\xfc")
        wait_until(lambda: listener.values("/liveperf/state")[-1:] == ["stopped"], 5, "stopped on Stop")
        port.send(b"\xfb")
        _play_clock(port, 240, 4)
        wait_until(lambda: len(listener.values("/liveperf/beat")) >= 8, 5, "beats after Continue")
    finally:
        show.stop_event.set()
        runner.join(10)
    assert not runner.is_alive()
    wait_until(lambda: listener.values("/liveperf/state")[-1:] == ["stopped"], 5, "stopped at the end")
    assert listener.values("/liveperf/state") == ["stopped", "playing", "stopped", "playing", "stopped"]
    tempos = listener.values("/liveperf/tempo")
    assert tempos[0] == 120.0 and len(tempos) >= 2 and abs(tempos[-1] - 240) < 2, tempos
    song = result["report"].songs[0]
    assert song.setlist_tempo_bpm == 120 and abs(song.tempo_bpm - 240) < 2, (song.tempo_bpm, tempos)
