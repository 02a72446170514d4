"""Real-time MIDI ports: thin adapters over python-rtmidi (JACK, ALSA, CoreMIDI).

Nothing else in liveperf imports rtmidi. The engine sees only two narrow edges:

- ``MidiOutPort.send(data)``: raw bytes out, called from ONE thread (the scheduler);
- ``MidiInPort.start(on_message)``: ``on_message(ts_ns, data)`` called from the port's own poll thread.

Times are integer nanoseconds on ``time.monotonic_ns()``. MIDI data are raw bytes, status byte first.

Backends (``detect_backend``, ``list_ports``, ``MidiUnavailable``) live in ``liveperf.io.midi_backends`` and are
re-exported here. Keeping ports alive through a JACK restart is ``liveperf.io.port_watch``'s job: it swaps a new
rtmidi object into an open port (``swap_midi``), so the port object, its poll thread and its counters live on.

Client names: every rtmidi object is its own JACK client, and JACK renames a second client of the same name to
``name-01``; each port therefore reports its real ``full_name`` (``client:port``) for ``jack_connect`` and tests.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable, Sequence

import rtmidi

from liveperf.io.jack_probe import _quiet
from liveperf.io.midi_backends import (  # noqa: F401 - re-exported: the backend names were first defined here
    _RTMIDI_API, ALSA_SEQ_DEVICE, BACKENDS, FILE_MODE_HINT, JACK_PROBE_TIMEOUT_S, MidiUnavailable, PortNotFound,
    _explain,
    _port_names, _unavailable_reason, available_backends, detect_backend, list_ports)

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 0.25  # MidiOutPort.close waits this long after the last send (see there)
DEFAULT_POLL_INTERVAL_NS = 500_000  # 0.5 ms: see MidiInPort and the measurement in its docstring

OnMessage = Callable[[int, bytes], None]
# System messages liveperf never uses, never delivered (counted in ``MidiInPort.filtered``): MTC quarter frame,
# the undefined F4/F5/F9/FD, tune request, system reset. Real-time ones among them cannot be written to a MIDI
# file, so a stray FF must not reach the recorder either.
NOT_USED = frozenset((0xF1, 0xF4, 0xF5, 0xF6, 0xF9, 0xFD, 0xFF))


# ----------------------------------------------------------------------------------------------------------------
# Opening ports (shared by MidiInPort and MidiOutPort)


def _open(side: str, backend: str, client_name: str, port_name: str, target: str | None, **kw):
    """Open an rtmidi port; return ``(midi, backend, full_name, connected_to)``.

    ``target`` None: a virtual port others connect to; else a name substring of an existing port we connect to.
    Our full name is found by listing the other side's ports before and after opening (JACK may have renamed the
    client to ``client-01``; rtmidi cannot tell us).
    """
    backend = detect_backend(backend)
    cls = rtmidi.MidiIn if side == "in" else rtmidi.MidiOut
    watch = "out" if side == "in" else "in"  # our input port shows up in output-side listings and vice versa
    midi = None
    try:
        with _quiet():
            midi = cls(_RTMIDI_API[backend], client_name, **kw)
        before = set(_port_names(backend, watch))
        connected_to = None
        with _quiet():
            if target is None:
                midi.open_virtual_port(port_name)
            else:
                index, connected_to = _find_port(midi.get_ports(), target, side)
                midi.open_port(index, port_name)
        new = [p for p in _port_names(backend, watch) if p not in before]
    except BaseException as exc:
        if midi is not None:
            midi.delete()
        if isinstance(exc, rtmidi.RtMidiError):
            raise MidiUnavailable(f"cannot open MIDI {side}put {client_name}:{port_name} on {backend}: {exc}") from exc
        raise
    return midi, backend, _own_name(new, client_name, port_name), connected_to


def _find_port(names: Sequence[str], target: str, side: str) -> tuple[int, str]:
    hits = [(i, n) for i, n in enumerate(names) if target in n]
    if len(hits) != 1:
        what = "no" if not hits else "more than one"
        raise (PortNotFound if not hits else MidiUnavailable)(
            f"{what} MIDI {'source' if side == 'in' else 'destination'} matches {target!r}; "
            f"available: {', '.join(names) or '(none)'}"
        )
    return hits[0]


def _own_name(new: list[str], client_name: str, port_name: str) -> str:
    exact = re.compile(rf"{re.escape(client_name)}(-\d+)?:{re.escape(port_name)}\b")
    matches = [n for n in new if exact.match(n)] or [n for n in new if port_name in n]
    if len(matches) != 1:
        log.warning("cannot tell which port is ours among %s; assuming %s:%s", new, client_name, port_name)
        return matches[0] if matches else f"{client_name}:{port_name}"
    return matches[0]


# ----------------------------------------------------------------------------------------------------------------
# Output


class MidiOutPort:
    """A MIDI output. ``send`` is called from ONE thread (the scheduler); open/close from the owner's thread.

    Records nothing itself. ``full_name`` is our port as other clients see it (JACK: ``client:port``).
    """

    def __init__(self, midi: rtmidi.MidiOut, backend: str, full_name: str, connected_to: str | None) -> None:
        self._midi: rtmidi.MidiOut | None = midi
        self.backend = backend
        self.full_name = full_name
        self.connected_to = connected_to
        self.names = (full_name.partition(":")[0], full_name.partition(":")[2])  # (client, port) it was opened as
        self._last_send_s = 0.0  # time.monotonic() of the last send, for close's grace

    @classmethod
    def open_virtual(cls, client_name: str = "liveperf-out", port_name: str = "out",
                     backend: str = "auto") -> MidiOutPort:
        """A virtual output port that synths/DAWs connect to (e.g. ``jack_connect liveperf-out:out synth:in``)."""
        port = cls(*_open("out", backend, client_name, port_name, None))
        port.names = (client_name, port_name)
        return port

    @classmethod
    def open_existing(cls, name_contains: str, client_name: str = "liveperf-out", port_name: str = "out",
                      backend: str = "auto") -> MidiOutPort:
        """Open our port and connect it to the one existing input whose name contains ``name_contains``."""
        port = cls(*_open("out", backend, client_name, port_name, name_contains))
        port.names = (client_name, port_name)
        return port

    def reopen_midi(self) -> tuple[rtmidi.MidiOut, str]:
        """A new rtmidi output as a virtual port under the same (client, port) names, and its full name; for
        ``liveperf.io.port_watch`` after a JACK restart (connections are its business). Raises MidiUnavailable."""
        midi, _, full_name, _ = _open("out", self.backend, *self.names, None)
        return midi, full_name

    def swap_midi(self, midi: rtmidi.MidiOut | None, full_name: str | None = None) -> rtmidi.MidiOut | None:
        """Put ``midi`` (None: no port) in place of the current rtmidi object and return the old one, which the
        caller deletes. Not thread-safe against ``send``: ``port_watch`` serialises the two with its own lock."""
        old, self._midi = self._midi, midi
        if full_name is not None:
            self.full_name = full_name
        return old

    def send(self, data: bytes | Sequence[int]) -> None:
        """Send one complete MIDI message (status byte first). Scheduler thread only; returns at once.

        JACK queues it for the next process cycle (up to one period later). Raises RuntimeError after close().
        """
        if self._midi is None:
            raise RuntimeError(f"MIDI output {self.full_name} is closed")
        self._midi.send_message(data)
        self._last_send_s = time.monotonic()

    def close(self) -> None:
        """Close the port; what was sent goes out first. Idempotent.

        rtmidi's JACK output queues messages for its process callback, and closing right after a send lost the
        queue now and then on a loaded machine (the final note-offs of a show). So a close within
        ``CLOSE_GRACE_S`` of the last send waits out the rest of it. It was 50 ms (dozens of JACK periods) until a
        fresh-clone CI run lost one note-off of a short soak on the wire (not reproduced; that it was one of the
        final ones is the likeliest cause, not a proven one); rtmidi does not say when its queue is empty, so the
        wait is a generous fixed one, paid once at the end of a show."""
        midi, self._midi = self._midi, None
        if midi is not None:
            left = self._last_send_s + CLOSE_GRACE_S - time.monotonic()
            if left > 0:
                time.sleep(left)
            with _quiet():
                midi.close_port()
                midi.delete()


# ----------------------------------------------------------------------------------------------------------------
# Input


# Length of each message by status byte (0 = variable: sysex), for the validity check at the boundary.
def _expected_length(status: int) -> int:
    if status < 0xF0:
        return 2 if status & 0xE0 == 0xC0 else 3  # program change and channel pressure carry one data byte
    return {0xF0: 0, 0xF1: 2, 0xF2: 3, 0xF3: 2}.get(status, 1)


def is_well_formed(data: bytes) -> bool:
    """True for one complete MIDI message: a status byte, then data bytes < 0x80 of the length it calls for.
    A lone F7 (end of a sysex that never began) is not a message."""
    if not data or data[0] < 0x80 or data[0] == 0xF7:
        return False
    expected = _expected_length(data[0])
    if expected == 0:
        return len(data) >= 2 and data[-1] == 0xF7 and all(b < 0x80 for b in data[1:-1])
    return len(data) == expected and all(b < 0x80 for b in data[1:])


def split_messages(data: bytes) -> tuple[list[bytes], int]:
    """Parse one received event as a MIDI byte stream: ``(complete messages, malformed pieces)``.

    Why: RtMidi's JACK input glues every event that follows an unterminated sysex (``F0 ...`` not ending in
    ``F7``) onto it until some event ends in ``F7`` (measured: ``F0 01``, ``90 3C 40``, ``F8``, ``80 3C 00``,
    ``F7`` arrive as ONE message). A sysex ends at any status byte by the MIDI spec, so the notes inside such a
    blob are recovered here (late, but a lost note-off would leave the performer's note held for ever).
    Rules: real-time bytes (F8-FF) stand alone wherever they are; a status byte ends an incomplete message (one
    malformed piece); a run of data bytes with no status is one malformed piece; a stray ``F7`` is one. No running
    status (JACK MIDI events are complete messages). Pure; any thread.
    """
    out: list[bytes] = []
    bad = 0
    cur = bytearray()
    need = 0  # 0 while in a sysex
    stray = False
    for b in data:
        if b >= 0xF8:
            out.append(bytes((b,)))
            continue
        if b >= 0x80:
            stray = False
            if cur and cur[0] == 0xF0 and b == 0xF7:
                cur.append(b)
                out.append(bytes(cur))
                cur.clear()
                continue
            if cur:
                bad += 1
                cur.clear()
            if b == 0xF7:
                bad += 1
                continue
            cur.append(b)
            need = _expected_length(b)
            if need == 1:
                out.append(bytes(cur))
                cur.clear()
            continue
        if not cur:
            bad += 0 if stray else 1
            stray = True
            continue
        cur.append(b)
        if need and len(cur) == need:
            out.append(bytes(cur))
            cur.clear()
    return out, bad + (1 if cur else 0)


class InputFilter:
    """Counters, filters and delivery shared by the MIDI inputs (``MidiInPort``, the ``jack-native`` input): one
    received event in, complete wanted messages out to ``on_message`` (see ``MidiInPort`` for the counters).
    Subclasses set ``_skip`` and ``full_name``; only their reader thread calls ``take``."""

    full_name = ""

    def __init__(self) -> None:
        self.received = 0  # delivered to on_message
        self.dropped = 0  # on_message raised
        self.malformed = 0  # pieces of received events that were not complete MIDI messages: not delivered
        self.salvaged = 0  # complete messages recovered from a malformed or glued event (delivered or filtered)
        self.filtered = 0  # sysex / clock / active sensing not asked for, and ``NOT_USED``: not delivered
        self._skip: frozenset[int] = frozenset()  # first bytes not to deliver

    def take(self, on_message: OnMessage, ts_ns: int, data: bytes) -> None:
        """One received event: deliver what is complete and wanted, count the rest."""
        if is_well_formed(data):
            if data[0] in self._skip:
                self.filtered += 1
            else:
                self._deliver(on_message, ts_ns, data)
            return
        messages, bad = split_messages(data)
        self.malformed += bad
        self.salvaged += len(messages)
        for msg in messages:
            if msg[0] in self._skip:
                self.filtered += 1
            else:
                self._deliver(on_message, ts_ns, msg)

    def _deliver(self, on_message: OnMessage, ts_ns: int, data: bytes) -> None:
        try:
            on_message(ts_ns, data)
        except Exception:  # noqa: BLE001 - a failing consumer must not stop the input: count, say once
            self.dropped += 1
            if self.dropped == 1:
                log.exception("MIDI input %s: on_message failed (counting further failures)", self.full_name)
        else:
            self.received += 1


class MidiInPort(InputFilter):
    """A MIDI input polled from a thread the port owns; never rtmidi's callback.

    Under JACK, rtmidi's callback runs in JACK's real-time thread, so a busy Python main thread (GIL) caused
    ~1800 xruns in 8 s where polling ``get_message()`` caused 2 (DESIGN.md). Our poll thread calls
    ``get_message()`` in a loop and sleeps ``poll_interval_ns`` when the queue is empty. Measured here (2 cores,
    JACK dummy 48 kHz / 256 frames, 400 notes): idle CPU of the poll thread 31 % of a core spinning, 13 % at
    0.1 ms, 7 % at 0.25 ms, 4.3 % at 0.5 ms, 2.3 % at 1 ms, 1.3 % at 2 ms; delivery after the stamped time
    averages 0.13 / 0.13 / 0.21 / 0.35 / 0.61 / 1.1 ms. The stamps themselves do not depend on the interval (see
    ``_poll``); JACK's own period (5.3 ms) dominates send-to-arrival (2.7 ms on average).

    Each message goes to ``on_message(ts_ns, data)`` on the poll thread, in arrival order: ``ts_ns`` is absolute
    ``time.monotonic_ns()`` time, ``data`` the raw bytes. ``on_message`` must be quick (e.g. ``queue.put``); if it
    raises, the message is counted in ``dropped`` and polling goes on. An event that is not one complete message
    is parsed as a byte stream (``split_messages``): what is complete inside is delivered (``salvaged``), the rest
    counted in ``malformed``. Sysex, MIDI clock/timing and active sensing are not delivered unless asked for
    (``sysex=``, ``timing=``, ``active_sense=`` True), nor the system messages in ``NOT_USED``; what rtmidi does not
    filter itself of these is counted in ``filtered``. Sysex is always taken from rtmidi and filtered here: with rtmidi's own sysex filter, the notes
    glued to an unterminated sysex (see ``split_messages``) would be thrown away with it. Counters are written by
    the poll thread only; read them from any thread (plain ints).
    """

    def __init__(self, midi: rtmidi.MidiIn, backend: str, full_name: str, connected_to: str | None,
                 poll_interval_ns: int = DEFAULT_POLL_INTERVAL_NS) -> None:
        super().__init__()
        self._midi: rtmidi.MidiIn | None = midi
        self.backend = backend
        self.full_name = full_name
        self.connected_to = connected_to
        self.poll_interval_ns = poll_interval_ns
        self.error: BaseException | None = None  # what stopped the poll thread, if anything did
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.names = (full_name.partition(":")[0], full_name.partition(":")[2])  # (client, port) it was opened as
        self._open_kw: dict = {}  # rtmidi options it was opened with (queue size), for ``reopen_midi``
        self._ignore = dict(sysex=False, timing=True, active_sense=True)  # rtmidi's own filters (``_filters``)
        # Held by the poll thread around each ``get_message`` and by ``swap_midi``: an rtmidi object is never
        # deleted while the poll thread is inside it.
        self._midi_lock = threading.Lock()
        self._swapped = False  # set by swap_midi: the next message starts a new timestamp chain

    @classmethod
    def open_virtual(cls, client_name: str = "liveperf-in", port_name: str = "in", backend: str = "auto", *,
                     sysex: bool = False, timing: bool = False, active_sense: bool = False,
                     poll_interval_ns: int = DEFAULT_POLL_INTERVAL_NS, queue_size: int = 4096) -> MidiInPort:
        """A virtual input port that controllers connect to (``jack_connect keyboard:out liveperf-in:in``)."""
        midi, *rest = _open("in", backend, client_name, port_name, None, queue_size_limit=queue_size)
        port = cls(midi, *rest, poll_interval_ns=poll_interval_ns)
        port.names, port._open_kw = (client_name, port_name), dict(queue_size_limit=queue_size)
        return port._filters(sysex, timing, active_sense)

    @classmethod
    def open_existing(cls, name_contains: str, client_name: str = "liveperf-in", port_name: str = "in",
                      backend: str = "auto", *, sysex: bool = False, timing: bool = False,
                      active_sense: bool = False, poll_interval_ns: int = DEFAULT_POLL_INTERVAL_NS,
                      queue_size: int = 4096) -> MidiInPort:
        """Open our port and connect it to the one existing output whose name contains ``name_contains``."""
        midi, *rest = _open("in", backend, client_name, port_name, name_contains, queue_size_limit=queue_size)
        port = cls(midi, *rest, poll_interval_ns=poll_interval_ns)
        port.names, port._open_kw = (client_name, port_name), dict(queue_size_limit=queue_size)
        return port._filters(sysex, timing, active_sense)

    def reopen_midi(self) -> tuple[rtmidi.MidiIn, str]:
        """A new rtmidi input as a virtual port under the same names and filters, and its full name (see
        ``MidiOutPort.reopen_midi``). Raises MidiUnavailable."""
        midi, _, full_name, _ = _open("in", self.backend, *self.names, None, **self._open_kw)
        midi.ignore_types(**self._ignore)
        return midi, full_name

    def swap_midi(self, midi: rtmidi.MidiIn | None, full_name: str | None = None) -> rtmidi.MidiIn | None:
        """Put ``midi`` (None: no port; the poll thread idles) in place of the current rtmidi object and return
        the old one for the caller to delete. The poll thread and the counters go on. Any thread but the poll
        thread; waits at most one ``get_message`` call."""
        with self._midi_lock:
            old, self._midi = self._midi, midi
            self._swapped = True
        if full_name is not None:
            self.full_name = full_name
        return old

    def _filters(self, sysex: bool, timing: bool, active_sense: bool) -> MidiInPort:
        assert self._midi is not None
        self._ignore = dict(sysex=False, timing=not timing, active_sense=not active_sense)
        self._midi.ignore_types(**self._ignore)
        self._skip = NOT_USED | frozenset(([] if sysex else [0xF0]) + ([] if timing else [0xF8]) +
                                          ([] if active_sense else [0xFE]))
        return self

    def start(self, on_message: OnMessage) -> None:
        """Start the poll thread delivering ``on_message(ts_ns, data)``. Call once, from the owner's thread."""
        if self._midi is None or self._thread is not None:
            raise RuntimeError(f"MIDI input {self.full_name} is closed or already started")
        self._thread = threading.Thread(target=self._run, args=(on_message,), name=f"midi-in {self.full_name}",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop and join the poll thread, then close the port. Owner's thread; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"poll thread of {self.full_name} did not stop in {timeout_s} s")
        midi = self.swap_midi(None)
        if midi is not None:
            with _quiet():
                midi.close_port()
                midi.delete()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, on_message: OnMessage) -> None:
        try:
            self._poll(on_message)
        except BaseException as exc:  # the edge of the thread: keep it for the owner, say it once
            self.error = exc
            log.exception("MIDI input %s stopped", self.full_name)

    def _poll(self, on_message: OnMessage) -> None:
        # Timestamps. rtmidi gives each message the driver's time since the previous one (JACK: jack_get_time()
        # in the process cycle that received it, so several messages of one cycle share a time). Chaining those
        # deltas from the previous timestamp is more accurate than our poll time whenever this thread was late
        # (GIL, scheduling: messages wait in rtmidi's queue). But JACK's clock is not CLOCK_MONOTONIC (here it is
        # MONOTONIC_RAW, which drifts by NTP's correction) and the chain starts from a poll time; so we clamp the
        # chained time into what we know for sure: the message was not there when the last empty poll began
        # (``not_before``) and it is here now (``now``). Never ahead of now, never before the previous
        # message; the error is bounded by the poll bracket and cannot accumulate. A swapped-in rtmidi object
        # (``swap_midi``: a JACK restart) starts a new chain: its first delta means nothing.
        sleep_s = self.poll_interval_ns / 1e9
        prev_ns = not_before = time.monotonic_ns()
        first = True
        lock = self._midi_lock
        while not self._stop.is_set():
            polled_at = time.monotonic_ns()
            with lock:
                item = self._midi.get_message() if self._midi is not None else None
                if self._swapped:
                    self._swapped, first = False, True
            if item is None:
                not_before = polled_at
                time.sleep(sleep_s)
                continue
            now = time.monotonic_ns()
            values, delta_s = item
            chained = now if first else prev_ns + round(delta_s * 1e9)
            ts_ns = min(max(chained, not_before, prev_ns), now)
            prev_ns, first = ts_ns, False
            self.take(on_message, ts_ns, bytes(values))
