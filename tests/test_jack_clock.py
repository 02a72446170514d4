"""Following Debian's `jack_midi_clock` through a real JACK server (dummy driver, 64-frame periods, real-time).

`liveperf play` runs as its own process in phrase mode with ``clock = "midi"``; `jack_midi_clock` drives its input
and `jack_transport` starts, stops and locates the transport. Two tempi that are not round numbers: 123.4 BPM
(jack_midi_clock's own tempo; Start, Stop, Continue) and 97.3 BPM (jack_transport as timebase master, which also
makes jack_midi_clock send Song Position Pointer on a locate).

The reference is the transport itself, in JACK frames. An outside client (``FrameListener``) keeps every event of
the clock and of our output with its absolute frame. jack_midi_clock puts tick k of a run at the frame
``first + round(k * interval)``, so every received tick has an exact index whatever was lost on the way (a client
that misses a process cycle never sees its events: liveperf's input, and this listener, lose ticks on a busy
machine; counting them would shift either side by a tick). On the wire: every partner note-on lands on a 16th of
the transport's grid (median within 3 ms, 90 % within 10 ms, all within half a 16th), every running stretch has
notes, none starts while the transport is stopped, and every note-on the listener saw has its note-off.

The server runs real-time (``jackd -R``, as on stage): with the non-real-time dummy driver the whole graph stalls
whenever the machine is busy and its transport slips against the wall clock by up to a tick, so it is no steady
reference (measured: gaps of 1.4 to 2 periods between consecutive ticks with no tick lost).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import jack_server as jack
from liveperf.models.onnx_model import shipped_models_dir
from test_jack_show import wait_for

# Opt-in (LIVEPERF_JACK_CLOCK_TESTS=1; ~35 s, needs jackd2 and jack-midi-clock): on a quiet machine both pass with
# the median note within 1 ms of the transport's grid, but when other work loads the 2 cores even the real-time
# dummy server stalls its graph by a good part of a tick while ticks are lost, and wall-clock stamps cannot tell
# the two apart (issue 4: follow the clock in JACK frames).
pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not (shipped_models_dir() / "melody_gan_generator.onnx").exists(),
                                 reason="no shipped model"),
              pytest.mark.skipif(os.environ.get("LIVEPERF_JACK_CLOCK_TESTS") != "1",
                                 reason="load-sensitive real-JACK clock tests; set LIVEPERF_JACK_CLOCK_TESTS=1")]

SETLIST = """
[show]
clock = "midi"
[[song]]
title = "Clock test"
tempo_bpm = 120
key = "C major"
mode = "phrase"
phrase_model = "gan"
phrase_every_bars = 2
pitch_range = [55, 84]
channel = 3
velocity = 90
seed = 4
"""
PERIOD = 64
NEAR_S = 0.010  # after a Stop, the sounding note ends within this (JACK periods, polling, a busy machine)


# ----------------------------------------------------------------------------------------------------------------
# A real-time JACK server and a listener that keeps JACK frames


def realtime_threads(pid: int) -> int:
    """How many threads of process ``pid`` run SCHED_FIFO or SCHED_RR (0 if none or unreadable)."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            count += os.sched_getscheduler(int(tid)) in (os.SCHED_FIFO, os.SCHED_RR)
        except OSError:
            pass
    return count


@pytest.fixture
def jack_rt():
    """``jackd -R -P 70 -d dummy -p 64`` under a pool name, one per test (a transport left rolling or located by a
    test would change how jack_midi_clock starts the next); skipped where real-time scheduling is refused."""
    if jack.missing_tools() or not shutil.which("jack_midi_clock"):
        msg = "JACK tools or jack_midi_clock missing (apt-get install jackd2 jack-midi-clock)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(msg)
        pytest.skip(msg)
    name, slot_fd = jack._take_slot()
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    log_fd, log_name = tempfile.mkstemp(prefix=f"jackd-{name}-", suffix=".log")
    with os.fdopen(log_fd, "w") as log_file:
        process = subprocess.Popen(["jackd", "-n", name, "-R", "-P", "70", "-d", "dummy", "-r", "48000", "-p",
                                    str(PERIOD)], stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, restore_signals=False)
    server = jack.JackServer(name, process, Path(log_name), env, slot_fd)
    try:
        up = subprocess.run(["jack_wait", "-w", "-t", "5"], env=env, capture_output=True, timeout=10).returncode == 0
        if not up or process.poll() is not None:
            raise RuntimeError(f"real-time JACK server did not start:\n{server.log_tail()}")
        if not realtime_threads(process.pid):
            pytest.skip("no real-time scheduling for jackd here (needs root or an rtprio limit)")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("JACK_DEFAULT_SERVER", name)
            mp.setenv("JACK_NO_START_SERVER", "1")
            yield server
    finally:
        server.stop()


class _MidiEvent(ctypes.Structure):
    _fields_ = [("time", ctypes.c_uint32), ("size", ctypes.c_size_t), ("buffer", ctypes.POINTER(ctypes.c_ubyte))]


_PROCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p)


def _libjack() -> ctypes.CDLL:
    """The libjack python-rtmidi loaded (its wheel bundles one): one copy per process."""
    import rtmidi  # noqa: F401 - loads it

    with open("/proc/self/maps") as maps:
        path = next(line.split()[-1] for line in maps if "libjack" in line and line.split()[-1].startswith("/"))
    lib = ctypes.CDLL(path)
    sigs = {"jack_client_open": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
            "jack_port_register": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                                     ctypes.c_ulong, ctypes.c_ulong]),
            "jack_set_process_callback": (ctypes.c_int, [ctypes.c_void_p, _PROCESS, ctypes.c_void_p]),
            "jack_activate": (ctypes.c_int, [ctypes.c_void_p]),
            "jack_deactivate": (ctypes.c_int, [ctypes.c_void_p]),
            "jack_client_close": (ctypes.c_int, [ctypes.c_void_p]),
            "jack_port_get_buffer": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_uint32]),
            "jack_midi_get_event_count": (ctypes.c_uint32, [ctypes.c_void_p]),
            "jack_midi_event_get": (ctypes.c_int, [ctypes.POINTER(_MidiEvent), ctypes.c_void_p, ctypes.c_uint32]),
            "jack_last_frame_time": (ctypes.c_uint32, [ctypes.c_void_p]),
            "jack_get_sample_rate": (ctypes.c_uint32, [ctypes.c_void_p])}
    for fn, (restype, argtypes) in sigs.items():
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
    return lib


class FrameListener:
    """A JACK client ``test-frames`` with MIDI inputs ``clock`` and ``notes`` (libjack through ctypes).

    Its process callback (JACK's thread) keeps ``events[port]`` as (absolute frame, bytes): the cycle's
    ``jack_last_frame_time`` plus the event's offset in the cycle. ``missed`` holds the frame ranges of cycles it
    never ran (their events are lost to it). Read the lists after ``close``.
    """

    def __init__(self) -> None:
        self.lib = lib = _libjack()
        status = ctypes.c_int(0)
        self.client = lib.jack_client_open(b"test-frames", 0x01, ctypes.byref(status))  # JackNoStartServer
        if not self.client:
            raise RuntimeError(f"jack_client_open failed (status {status.value:#x})")
        self.names = ("clock", "notes")
        self.ports = [lib.jack_port_register(self.client, p.encode(), b"8 bit raw midi", 0x1, 0) for p in self.names]
        self.events: dict[str, list[tuple[int, bytes]]] = {p: [] for p in self.names}
        self.missed: list[tuple[int, int]] = []
        self.sample_rate = lib.jack_get_sample_rate(self.client)
        self._last: int | None = None
        self._event = _MidiEvent()
        self._callback = _PROCESS(self._process)  # kept alive as long as the client
        lib.jack_set_process_callback(self.client, self._callback, None)
        if lib.jack_activate(self.client):
            raise RuntimeError("jack_activate failed")

    def _process(self, nframes: int, _arg) -> int:
        lib, ev = self.lib, self._event
        frame = lib.jack_last_frame_time(self.client)
        if self._last is not None and frame - self._last > nframes:
            self.missed.append((self._last + nframes, frame))
        self._last = frame
        for name, port in zip(self.names, self.ports):
            buf = lib.jack_port_get_buffer(port, nframes)
            for i in range(lib.jack_midi_get_event_count(buf)):
                if lib.jack_midi_event_get(ctypes.byref(ev), buf, i) == 0:
                    self.events[name].append((frame + ev.time, ctypes.string_at(ev.buffer, ev.size)))
        return 0

    def close(self) -> None:
        if self.client:
            self.lib.jack_deactivate(self.client)
            self.lib.jack_client_close(self.client)
            self.client = None


class Transport:
    """jack_transport driven through its command line (stdin)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["jack_transport"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, text=True)

    def __call__(self, *commands: str) -> None:
        for c in commands:
            self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self("stop", "quit")
            self.proc.wait(3)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


# ----------------------------------------------------------------------------------------------------------------
# The transport's grid, in frames


def runs(clock: list[tuple[int, bytes]], interval: float, period: int, missed: list[tuple[int, int]]) -> list[dict]:
    """Running stretches of the transport: start/stop frames, the frame and index of their first tick heard.

    The position follows MIDI: Start -> 0, Song Position Pointer -> 6 ticks a unit, Stop keeps the position (one
    past the last tick, by frames). jack_midi_clock sends a run's first tick within one interval and two cycles of
    its Start/Continue; ticks the listener did not hear are counted where they fell in cycles it ``missed`` (a
    cycle it ran held no tick). Identical (frame, bytes) events are one event (a cycle read twice)."""

    def unheard(frame: float, step: float, limit: float) -> int:
        k = 0
        while (frame + (k + 1) * step - limit) * step <= 0 and any(
                a - 1 <= frame + (k + 1) * step < b + 1 for a, b in missed):
            k += 1
        return k

    out, pos, running = [], 0, None
    for f, m in dict.fromkeys(clock):
        if m[0] in (0xFA, 0xFB) and running is None:
            running = {"start": f, "stop": None, "pos0": 0 if m[0] == 0xFA else pos, "first": None, "last": None}
            out.append(running)
        elif m[0] == 0xF2 and len(m) == 3:
            pos = (m[1] | m[2] << 7) * 6
        elif m[0] == 0xFC and running is not None:
            running["stop"] = f
            if running["first"] is not None:
                pos = (running["pos0"] + round((running["last"] - running["first"]) / interval) + 1
                       + unheard(running["last"], interval, f))
            running = None
        elif m[0] == 0xF8 and running is not None:
            if running["first"] is None:
                before = unheard(f, -interval, running["start"])
                assert f - before * interval - running["start"] <= interval + 2 * period, f"no first tick: {running}"
                running["pos0"] += before
                running["first"] = f
            running["last"] = f
    return [r for r in out if r["first"] is not None]


def grid_errors_ms(notes, stretches, interval: float, rate: int) -> list[float]:
    """Each note-on minus the nearest 16th (6 ticks) of its running stretch, in ms."""
    errors = []
    for f, m in notes:
        if m[0] & 0xF0 != 0x90 or m[2] == 0:
            continue
        run = next((r for r in stretches if r["start"] <= f <= (r["stop"] or 1 << 62) + NEAR_S * rate), None)
        assert run is not None, f"a note-on at frame {f} outside every running stretch"
        pos = run["pos0"] + (f - run["first"]) / interval
        errors.append(round((pos - 6 * round(pos / 6)) * interval / rate * 1e3, 2))
    return errors


def check_wire(notes, stretches, missed, rate: int) -> None:
    """No note starts while stopped; every note-on the listener saw has a later note-off, unless the listener
    missed a cycle after it (the note-off may have been in it: reported, not asserted)."""
    near = int(NEAR_S * rate)
    for run, nxt in zip(stretches, stretches[1:] + [None]):
        if run["stop"] is not None:
            late = [f for f, m in notes if m[0] & 0xF0 == 0x90 and m[2] and run["stop"] + near < f
                    and (nxt is None or f < nxt["start"])]
            assert not late, f"note-ons while stopped at frames {late}"
    held: dict[int, int] = {}
    for f, m in notes:
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            held[m[1]] = f
        elif m[0] & 0xF0 in (0x80, 0x90):
            held.pop(m[1], None)
    unverified = {p: f for p, f in held.items() if any(end > f for _, end in missed)}
    print(f"note-ons whose note-off fell where the listener missed cycles: {unverified}")
    assert not set(held) - set(unverified), f"stuck notes (pitch: frame): {held}"


# ----------------------------------------------------------------------------------------------------------------
# The show


def run_show(tmp_path, clock_args, drive):
    """Run `liveperf play` following jack_midi_clock (``clock_args``) while ``drive(transport)`` runs; return the
    listener (closed) and liveperf's output."""
    (tmp_path / "set.toml").write_text(SETLIST)
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveperf.cli", "play", str(tmp_path / "set.toml"), "--backend", "jack",
         "--client-name", "lpc", "--duration", "120", "--record-dir", str(tmp_path / "rec")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    clock = subprocess.Popen(["jack_midi_clock", *clock_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener = transport = None
    try:
        wait_for(lambda: {"lpc-in:in", "lpc-out:out", "jack_midi_clock:mclk_out"} <= set(jack.jack_ports()), 20,
                 "the JACK ports of liveperf and jack_midi_clock")
        listener = FrameListener()
        for src, dst in (("lpc-out:out", "test-frames:notes"), ("jack_midi_clock:mclk_out", "lpc-in:in"),
                         ("jack_midi_clock:mclk_out", "test-frames:clock")):
            jack.jack_connect(src, dst)
        transport = Transport()
        drive(transport)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        time.sleep(0.3)  # the last note-offs reach the listener
    finally:
        if proc.poll() is None:
            proc.kill()
        if transport:
            transport.close()
        if listener:
            listener.close()
        clock.kill()
        clock.wait()
    assert proc.returncode == 130, out
    return listener, out


def check_follows(listener: FrameListener, out: str, bpm: float) -> tuple[list[dict], list[float]]:
    rate = listener.sample_rate
    interval = rate * 60 / bpm / 24  # frames per tick, as jack_midi_clock computes it
    clock, notes = listener.events["clock"], listener.events["notes"]
    stretches = runs(clock, interval, PERIOD, listener.missed)
    transport = [(f, m.hex()) for f, m in clock if m[0] != 0xF8]
    lost = re.search(r"'lost_ticks': (\d+)", out)
    print(f"transport (frame, message): {transport}; listener missed {len(listener.missed)} cycles; "
          f"liveperf recovered {lost.group(1) if lost else '?'} lost ticks")
    assert stretches, out
    assert all(m[0] & 0xF0 in (0x80, 0x90) and m[0] & 0x0F == 2 for _, m in notes), "partner notes on channel 3"
    errors = grid_errors_ms(notes, stretches, interval, rate)
    for r in stretches:  # every running stretch has partner notes in it
        assert any(r["start"] <= f <= (r["stop"] or 1 << 62) for f, m in notes if m[0] & 0xF0 == 0x90), (r, out)
    size = sorted(abs(e) for e in errors)
    median, p90 = size[len(size) // 2], size[int(0.9 * (len(size) - 1))]
    print(f"partner note-on minus its 16th on the transport's grid (ms): median {median}, p90 {p90}, "
          f"max {size[-1]} over {len(size)}: {errors}")
    # Half a 16th: a note on the wrong step would be a whole 16th (6 ticks) off. The median within 3 ms and 90 %
    # within 10 ms: a stalled JACK cycle (a busy 2-core machine) delays ticks now and then, and a note computed
    # before the stall showed cannot move.
    assert size[-1] < 3 * interval / rate * 1e3, errors
    assert median <= 3.0 and p90 <= 10.0, errors
    check_wire(notes, stretches, listener.missed, rate)
    return stretches, errors


def test_follows_jack_midi_clock_at_123_4_bpm_through_stop_and_continue(jack_rt, tmp_path):
    def drive(transport):
        transport("locate 0")
        time.sleep(0.3)
        transport("play")  # from frame 0: Start
        time.sleep(5.0)  # 2.6 bars at 123.4 BPM: phrases start at bars 1 and 3
        transport("stop")
        time.sleep(1.0)
        transport("play")  # Continue from where it stopped
        time.sleep(5.0)
        transport("stop")
        time.sleep(0.5)

    listener, out = run_show(tmp_path, ["-b", "123.4", "-B"], drive)
    stretches, errors = check_follows(listener, out, 123.4)
    assert len(stretches) == 2 and stretches[1]["pos0"] > 200 and len(errors) >= 4


def test_follows_jack_transport_master_at_97_3_bpm_through_locate(jack_rt, tmp_path):
    def drive(transport):
        transport("master", "tempo 97.3", "locate 0")
        time.sleep(0.5)  # the timebase master is in place (jack_midi_clock sends no tick without a tempo)
        transport("play")  # from frame 0: Start
        time.sleep(5.0)
        transport("stop")
        time.sleep(0.5)
        transport("locate 480000", "play")  # 10 s into the song: Song Position Pointer, then Continue
        time.sleep(6.0)
        transport("stop")
        time.sleep(0.5)

    listener, out = run_show(tmp_path, ["-d", "0.3"], drive)
    stretches, errors = check_follows(listener, out, 97.3)
    assert any(m[0] == 0xF2 for _, m in listener.events["clock"]), "jack_midi_clock sent a Song Position Pointer"
    assert len(stretches) == 2 and stretches[1]["pos0"] >= 6 * 64 and len(errors) >= 4
