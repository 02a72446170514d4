"""An outside JACK client that listens to liveperf's output and checks the stage invariants on the wire.

``WireMonitor`` is its own JACK client (python-rtmidi, ``API_UNIX_JACK``), as a synth or a DAW would be: it opens
a virtual input port, you connect liveperf's output to it, and its own poll thread stamps every message with
``time.monotonic_ns()`` on arrival (sysex, clock and active sensing included). ``check()`` then reads the stream:

- per (channel, pitch): every note-on is followed by a note-off (note-off, or note-on with velocity 0);
  a note still sounding at the end is *stuck*;
- a note-off for a note that is not sounding is counted (``unmatched_offs``) — harmless to a synth, but a sign
  that the sender lost track;
- a note-on for a note already sounding is counted (``duplicate_ons``): a synth may start a second voice that one
  note-off does not end;
- optionally (``grid=(start_ns, step_ns)``) each note message's arrival minus the nearest grid step (ns).

Used by the fault tests and the soak benchmarks. Times are integer ns on CLOCK_MONOTONIC, the clock liveperf uses,
so they compare with liveperf's own ``start_ns`` in its JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import rtmidi


@dataclass
class WireSummary:
    messages: int = 0
    note_ons: int = 0
    note_offs: int = 0
    unmatched_offs: int = 0
    stuck: list[tuple[int, int]] = field(default_factory=list)  # (channel, pitch) sounding at the end
    longest_note_ns: int = 0
    duplicate_ons: int = 0  # note-ons for a (channel, pitch) already sounding
    note_lengths_ns: list[int] = field(default_factory=list)  # every ended note's note-on to note-off
    other: int = 0  # clock, CC, anything not a note message
    grid_errors_ns: list[int] = field(default_factory=list)  # arrival minus the nearest step, if a grid was given

    def line(self) -> str:
        return (f"wire: {self.messages} messages, {self.note_ons} note-ons, {self.note_offs} note-offs, "
                f"{len(self.stuck)} stuck {self.stuck[:8]}, {self.unmatched_offs} unmatched note-offs, "
                f"{self.duplicate_ons} duplicate note-ons, longest note {self.longest_note_ns / 1e6:.0f} ms")


def check_stream(events: list[tuple[int, bytes]], grid: tuple[int, float] | None = None) -> WireSummary:
    """The invariants of a stream of ``(arrival_ns, bytes)`` in arrival order; see the module docstring."""
    s = WireSummary(messages=len(events))
    sounding: dict[tuple[int, int], int] = {}  # key -> arrival of its (first) note-on
    for ts, data in events:
        kind = data[0] & 0xF0 if data else 0
        if len(data) != 3 or kind not in (0x80, 0x90) or data[0] >= 0xF0:
            s.other += 1
            continue
        key = (data[0] & 0x0F, data[1])
        if grid is not None:
            start_ns, step_ns = grid
            s.grid_errors_ns.append(int(ts - (start_ns + round((ts - start_ns) / step_ns) * step_ns)))
        if kind == 0x90 and data[2] > 0:
            s.note_ons += 1
            if key in sounding:
                s.duplicate_ons += 1
            sounding.setdefault(key, ts)
        else:
            s.note_offs += 1
            began = sounding.pop(key, None)
            if began is None:
                s.unmatched_offs += 1
            else:
                s.longest_note_ns = max(s.longest_note_ns, ts - began)
                s.note_lengths_ns.append(ts - began)
    s.stuck = sorted(sounding)
    return s


@dataclass
class Witnesses:
    """Two listeners' streams of the same output compared (``compare_witnesses``): messages only one of them heard,
    and each one's duplicate note-ons split into those the other listener explains (it heard a note-off for that
    channel and pitch, between the two note-ons, that this listener missed: this listener lost a message, the
    wire had none) and those it does not (a duplicate on the wire, or lost by both)."""

    only_first: int = 0
    only_second: int = 0
    first_duplicates: int = 0
    first_explained: int = 0
    second_duplicates: int = 0
    second_explained: int = 0

    @property
    def unexplained(self) -> int:
        return self.first_duplicates - self.first_explained + self.second_duplicates - self.second_explained


def _note_messages(events: list[tuple[int, bytes]]) -> list[bytes]:
    return [d for _, d in events if len(d) == 3 and d[0] < 0xF0 and d[0] & 0xF0 in (0x80, 0x90)]


def _duplicates(notes: list[bytes]) -> list[tuple[int, int]]:
    """(index of the note-on that began the sounding note, index of the duplicate note-on), as ``check_stream``."""
    sounding: dict[tuple[int, int], int] = {}
    out = []
    for i, d in enumerate(notes):
        key = (d[0] & 0x0F, d[1])
        if d[0] & 0xF0 == 0x90 and d[2] > 0:
            if key in sounding:
                out.append((sounding[key], i))
            else:
                sounding[key] = i
        else:
            sounding.pop(key, None)
    return out


def compare_witnesses(first: list[tuple[int, bytes]], second: list[tuple[int, bytes]]) -> Witnesses:
    """Align two listeners' note messages by content (both hear each JACK cycle's events in the same order; a
    listener late in its cycle on JACK's asynchronous server loses that cycle's MIDI) and explain each duplicate
    note-on (``Witnesses``). Stamps are ignored: the two clocks differ."""
    import difflib

    a, b = _note_messages(first), _note_messages(second)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    only_a, only_b = [], []  # indices heard by one listener only
    pos_a, pos_b = [0] * (len(a) + 1), [0] * (len(b) + 1)  # each index's place in the other stream
    for tag, i1, i2, j1, j2 in ops:
        for i in range(i1, i2):
            pos_a[i] = j1 + (i - i1) if tag == "equal" else j1
        for j in range(j1, j2):
            pos_b[j] = i1 + (j - j1) if tag == "equal" else i1
        if tag != "equal":
            only_a.extend(range(i1, i2))
            only_b.extend(range(j1, j2))

    def explained(mine: list[bytes], other: list[bytes], other_only: list[int], pos: list[int]) -> tuple[int, int]:
        dups = _duplicates(mine)
        hits = 0
        for began, dup in dups:
            key = (mine[dup][0] & 0x0F, mine[dup][1])
            lo, hi = pos[began], pos[dup]
            hits += any(lo <= j <= hi and (other[j][0] & 0x0F, other[j][1]) == key
                        and not (other[j][0] & 0xF0 == 0x90 and other[j][2] > 0) for j in other_only)
        return len(dups), hits

    w = Witnesses(only_first=len(only_a), only_second=len(only_b))
    w.first_duplicates, w.first_explained = explained(a, b, only_b, pos_a)
    w.second_duplicates, w.second_explained = explained(b, a, only_a, pos_b)
    return w


def repair_offs(report: dict | None) -> int:
    """Note-offs the jack-native port added on its own (``jack_native_callback``, "Repairs"): every note-off once
    more, a reconnected peer's missed ones, and the note-off before a re-struck pitch (which ends the first note, so
    the engine's own note-off for it then finds nothing sounding). Each may reach the monitor as an unmatched
    note-off the show's own bookkeeping did not cause. 0 on rtmidi."""
    port = (report or {}).get("port") or {}
    return sum(int(port.get(k, 0)) for k in ("resent_offs", "missed_offs", "restruck"))


class WireMonitor:
    """Listens on its own JACK client ``name``, port ``in`` (full name ``self.port``). Any thread may read
    ``events`` (append-only; take ``snapshot()`` for a stable copy). ``close()`` before the JACK server stops."""

    def __init__(self, name: str = "wire-monitor", poll_s: float = 0.0002) -> None:
        self.midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name, queue_size_limit=65536)
        self.midi.ignore_types(sysex=False, timing=False, active_sense=False)
        self.midi.open_virtual_port("in")
        self.port = f"{name}:in"
        self.events: list[tuple[int, bytes]] = []
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wire-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.midi.get_message()
            if msg is None:
                time.sleep(self._poll_s)
                continue
            self.events.append((time.monotonic_ns(), bytes(msg[0])))

    def snapshot(self) -> list[tuple[int, bytes]]:
        return list(self.events)

    def note_ons_since(self, since_ns: int) -> int:
        return sum(1 for ts, d in self.snapshot() if ts >= since_ns and len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2])

    def check(self, grid: tuple[int, float] | None = None) -> WireSummary:
        return check_stream(self.snapshot(), grid)

    def close(self) -> None:
        """Stop polling (after draining what has arrived) and close the JACK client. Idempotent."""
        if self._stop.is_set():
            return
        time.sleep(0.05)  # one JACK period or more: let the last messages land
        self._stop.set()
        self._thread.join(2)
        while (msg := self.midi.get_message()) is not None:
            self.events.append((time.monotonic_ns(), bytes(msg[0])))
        self.midi.close_port()
        self.midi.delete()


# ---- `liveperf play` as its own process, wired to a monitor and a performer ---------------------------------------

REPO = Path(__file__).resolve().parent.parent


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Output:
    """A subprocess's output, read by a thread as it comes (the pipe never fills, and the test can see the show
    start)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def started(self) -> bool:
        """The first song has started: its models are loaded and the engine runs (the show prints "[1. ...")."""
        return any(line.startswith("[1. ") for line in list(self.lines))

    def text(self) -> str:
        self._thread.join(5)
        return "".join(self.lines)


class LivePlay:
    """``liveperf play SETLIST --backend jack`` in a subprocess on the JACK server named by ``JACK_DEFAULT_SERVER``,
    its output connected to a ``WireMonitor`` and its input fed by ``self.performer`` (an rtmidi JACK output).
    ``finish()`` waits for the exit and returns (exit code, output, report dict or None). Owner's thread only."""

    def __init__(self, tmp: Path, setlist: str, name: str, extra: list[str] = (), duration_s: float = 10.0,
                 preexec_fn=None, backend: str = "jack") -> None:
        try:
            from jack_server import jack_connect, jack_ports
        except ImportError:  # run from bench/ as tests.jack_server
            from tests.jack_server import jack_connect, jack_ports

        (tmp / f"{name}.toml").write_text(setlist)
        self.report_path = tmp / f"{name}-report.json"
        self.record_dir = tmp / f"{name}-rec"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liveperf.cli", "play", str(tmp / f"{name}.toml"), "--backend", backend,
             "--client-name", name, "--duration", str(duration_s), "--report-json", str(self.report_path),
             "--record-dir", str(self.record_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=os.environ.copy(),
            preexec_fn=preexec_fn)
        self.output = Output(self.proc)  # its output so far, read by a thread (the pipe never fills)
        self.monitor: WireMonitor | None = None
        self.performer = None
        # rtmidi opens a client per port; jack-native one client with both ports
        self.backend = backend
        in_port, out_port = (f"{name}:in", f"{name}:out") if backend != "jack-rtmidi" else (f"{name}-in:in",
                                                                                             f"{name}-out:out")
        try:
            wait_for(lambda: self.proc.poll() is not None or {in_port, out_port} <= set(jack_ports()),
                     30, "liveperf's JACK ports")
            # Connect once the song has started (models loaded): the loading burst of CPU beside a busy core
            # stalled a synchronous server's graph past jack_connect's 10 s once.
            self.wait_started()
            if self.proc.poll() is not None:
                raise AssertionError(f"liveperf exited early:\n{self.output.text()}")
            self.monitor = WireMonitor(f"{name}-mon")
            self.performer = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{name}-perf")
            self.performer.open_virtual_port("out")
            jack_connect(out_port, self.monitor.port)
            jack_connect(f"{name}-perf:out", in_port)
        except BaseException:
            self.kill()
            raise

    def send(self, data) -> None:
        """As the performer. Refused (AssertionError) once liveperf has exited: a CI run hung for good when a flood
        went on after liveperf's --duration ran out mid-flood. The server stopped running the performer's client
        (thousands of "lpf-perf was not finished" xruns), its rtmidi ring filled, and rtmidi's send spins while
        holding the GIL once the ring is full."""
        if self.proc.poll() is not None:
            raise AssertionError(f"liveperf exited (status {self.proc.returncode}) while the test still played")
        self.performer.send_message(list(data))

    @property
    def lines(self) -> list[str]:
        """Its output so far, a line each."""
        return self.output.lines

    def wait_started(self, timeout_s: float = 30.0) -> None:
        """Until the first song has started (its models loaded: the show prints "[1. <title>] ...")."""
        wait_for(lambda: self.proc.poll() is not None or self.output.started(), timeout_s, "the first song to start")

    def finish(self, timeout_s: float = 30.0) -> tuple[int, str, dict | None]:
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            self.kill()
        report = json.loads(self.report_path.read_text()) if self.report_path.exists() else None
        return self.proc.returncode, self.output.text(), report

    def kill(self) -> None:
        """Close our JACK clients; kill the process if it is still running (the test failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.monitor is not None:
            self.monitor.close()
        if self.performer is not None:
            self.performer.close_port()
            self.performer.delete()
            self.performer = None
