"""The ``jack-native`` backend: liveperf's MIDI input and output ports on one ``JackMidiClient`` (see
``liveperf.io.jack_native`` for the compiled process callback and why).

- ``NativeOutPort`` is a *timed* output: the scheduler hands each message over ``lead_ns`` ahead of its due time
  (``send_at``) and JACK's thread sends it at its frame; ``send`` (a note-off on panic or close) goes out in the
  next cycle. ``revoke`` and ``emitted`` let the scheduler cancel what it handed over and learn the true send times.
- ``NativeInPort`` has ``MidiInPort``'s contract (``start(on_message)``, the same counters and filters): a reader
  thread blocks on the callback's semaphore, so a message reaches ``on_message`` as soon as the JACK cycle that
  carried it has run, stamped at its frame (not when a Python thread got to it).

Both run on a ``LiveClient``: the client of now, which ``liveperf.io.jack_native_watch`` replaces by a new one when
the JACK server restarts. Times (stamps, due times, ``now_ns``) are on the *show's* clock: the first client's frame
clock, carried over each restart without a jump (each new client's frame clock plus an offset fixed at the swap).
Ports are ``<client>:in`` and ``<client>:out``, with the rtmidi backend's names (``<client>-in:in``,
``<client>-out:out``) as JACK aliases, so a patchbay script written for either connects to both.
"""

from __future__ import annotations

import logging
import threading

from liveperf.io.jack_native import JackMidiClient
from liveperf.io.jack_native_callback import C_BASE0, C_CYCLES, C_EXT_FRAME, C_RATE, RESEND_MS
from liveperf.io.midi_ports import NOT_USED, InputFilter, OnMessage, PortNotFound, _find_port
from liveperf.modes.reflex import PortReflex
from liveperf.io.port_watch import HeldKeys
from liveperf.music.notes import note_off

log = logging.getLogger(__name__)

# How long before its due time a message is handed to JACK's thread: a cycle's messages must be there before the
# cycle is processed (up to one period before its last frame), plus slack for a late scheduler thread.
MIN_LEAD_NS = 4_000_000
HEARD_STALL_NS = 1_000_000_000  # no JACK cycle for this long: judge input on now_ns (``heard_through_ns``)
# Counters that add up over the clients of one show (the rest, the frame clock's, are the client of now's).
_CLOCK_COUNTERS = ("frame0", "base0_ns", "sample_rate", "slip_ns")


class LiveClient:
    """The ``JackMidiClient`` a show's ports use now, with ``offset_ns``: show time = that client's time + offset.

    ``current`` is the pair ``(client, offset_ns)``, replaced whole by ``swap`` (the watch's thread) and read once
    per call by the ports' threads, so a call never mixes one client with another's offset. The first client's
    offset is 0: its frame clock is the show's clock."""

    def __init__(self, client: JackMidiClient) -> None:
        self.current: tuple[JackMidiClient, int] = (client, 0)
        self.retired: list[JackMidiClient] = []  # clients of servers that went away (closed), oldest first
        self.reflex_on = False  # re-applied to a new client (the engine says it only when it changes)
        self.closed = False  # both sides closed: the show is over (the watch stops reopening)
        self._last_ns = 0

    @property
    def client(self) -> JackMidiClient:
        return self.current[0]

    def now_ns(self) -> int:
        """The show's clock: the client of now's frame clock plus its offset; never less than it returned before."""
        client, offset = self.current
        now = max(client.now_ns() + offset, self._last_ns)
        self._last_ns = now
        return now

    def heard_through_ns(self) -> int:
        """The show's time up to which the input has arrived: the first frame of the last cycle JACK ran for the
        client (every earlier frame's input is in its ring), plus the offset; at most ``now_ns()``, which runs up to
        a few hundred ms ahead of frames that fall behind (a server running slower than real time), and at least
        ``now_ns() - HEARD_STALL_NS`` (no cycle for that long: the server stalled or went away, the show goes on)."""
        client, offset = self.current
        now = self.now_ns()
        ctl = client.ctl
        if ctl[C_CYCLES] <= 0:
            return now
        frames_ns = int(ctl[C_BASE0]) + int(ctl[C_EXT_FRAME]) * 1_000_000_000 // max(1, int(ctl[C_RATE]))
        return min(now, max(frames_ns + offset, now - HEARD_STALL_NS))

    def swap(self, new: JackMidiClient) -> int:
        """Run on ``new`` from now on (the old client is closed by the caller); returns the new offset (ns). The
        show's clock goes on from where the old client's left it (it runs on the monotonic clock while the server is
        away), so nothing the show planned jumps."""
        old, _ = self.current
        offset = self.now_ns() - new.now_ns()
        if self.reflex_on:
            new.reflex_enable(True)
        self.retired.append(old)
        self.current = (new, offset)
        return offset

    def counters(self) -> dict[str, int]:
        total = self.client.counters()
        for old in self.retired:
            for key, value in old.counters().items():
                if key not in _CLOCK_COUNTERS:
                    total[key] += value
        return total


class NativeOutPort:
    """Output side of a ``LiveClient``. ``send``/``send_at``/``revoke``/``emitted``: ONE thread (the
    scheduler's); ``close`` closes the client when the input side is closed too."""

    backend = "jack-native"

    def __init__(self, live: LiveClient, connected_to: str | None = None) -> None:
        self.live = live
        client = live.client
        self.full_name = client.out_name
        self.connected_to = connected_to
        period_ns = client.period_frames * 1_000_000_000 // max(1, client.sample_rate)
        self.lead_ns = max(MIN_LEAD_NS, period_ns + 2_000_000)
        self.reflex: PortReflex | None = None  # set by ``open_ports`` when the client has an input
        self.missing: dict[str, str] = {}  # side -> a [show] target not there at start (the watch connects it)
        # The show's clock: every time this port takes or gives is on it (``LiveClient``).
        self.now_ns = live.now_ns
        self.heard_through_ns = live.heard_through_ns

    @property
    def client(self) -> JackMidiClient:
        """The client of now (a new one after a server restart)."""
        return self.live.client

    def send(self, data: bytes) -> bool:
        """Out in the next JACK cycle (after everything handed over before). False: not queued (ring full, closed,
        server lost, or not a 1-3 byte message)."""
        client, _ = self.live.current
        return client.write(client.now_ns(), bytes(data))

    def send_at(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> bool:
        """Out at the frame of ``due_ns`` (or the next cycle if that has passed; a note-on later than the port's
        ``drop_late_ns``, or ``late_ok_ns``, is dropped). False: not queued."""
        client, offset = self.live.current
        return client.write(due_ns - offset, bytes(data), late_ok_ns)

    def revoke(self, channel: int | None, from_ns: int) -> None:
        client, offset = self.live.current
        client.revoke(channel, from_ns - offset)

    def emitted(self) -> list[tuple[int, int]]:
        client, offset = self.live.current
        return [(due + offset, sent + offset if sent >= 0 else sent) for due, sent in client.emitted()]

    def pending(self) -> int:
        """Messages handed over that JACK's thread has not taken yet (0 while the server is away: they are lost)."""
        client = self.live.client
        return 0 if client.lost.is_set() else client.pending()

    def counters(self) -> dict[str, int]:
        """The JACK thread's counters (``JackMidiClient.counters``), added up over the show's clients."""
        return self.live.counters()

    def silence_wire(self) -> int:
        """A note-off, next cycle, for every note the port has sounding (the scheduler's last net on close);
        returns how many. Call once ``pending()`` is 0."""
        client = self.live.client
        now = client.now_ns()
        offs = [bytes((0x80 | ch, pitch, 0)) for ch, pitch in client.sounding()]
        for data in offs:
            client.write(now, data)
        return len(offs)

    def close(self) -> None:
        _release(self.live, "out")


class NativeInPort(InputFilter):
    """Input side of a ``LiveClient`` with ``MidiInPort``'s contract (see there for the counters). It keeps the
    performer's keys down, so the watch can release them when the server goes (``release_held``)."""

    backend = "jack-native"

    def __init__(self, live: LiveClient, connected_to: str | None = None, *, sysex: bool = False,
                 timing: bool = False, active_sense: bool = False) -> None:
        super().__init__()
        self.live = live
        self.full_name = live.client.in_name
        self.connected_to = connected_to
        self._skip = NOT_USED | frozenset(([] if sysex else [0xF0]) + ([] if timing else [0xF8]) +
                                          ([] if active_sense else [0xFE]))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = HeldKeys()  # performer keys down (reader thread; the watch takes them)
        self._on_message: OnMessage | None = None
        self.error: BaseException | None = None

    @property
    def client(self) -> JackMidiClient:
        return self.live.client

    @property
    def overflow(self) -> int:
        """Events JACK delivered that did not fit (ring full, or longer than the slot): never delivered."""
        c = self.live.counters()
        return c["in_overflow"] + c["too_long"]

    def start(self, on_message: OnMessage) -> None:
        if self._thread is not None:
            raise RuntimeError(f"MIDI input {self.full_name} already started")
        self._on_message = on_message
        self._thread = threading.Thread(target=self._run, args=(self._keep_held,),
                                        name=f"midi-in {self.full_name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _keep_held(self, ts_ns: int, data: bytes) -> None:
        self._held.note(data)
        self._on_message(ts_ns, data)

    def release_held(self) -> list[tuple[int, int]]:
        """The watch's thread, the controller's link broken: a note-off for every performer key still down, stamped
        now on the show's clock; returns them ((channel, pitch))."""
        keys = self._held.take()
        if self._on_message is not None:
            for ch, pitch in keys:
                self._on_message(self.live.now_ns(), note_off(ch, pitch))
        return keys

    def _run(self, on_message: OnMessage) -> None:
        try:
            while not self._stop.is_set():
                client, offset = self.live.current
                client.wait(0.1)
                for ts_ns, data in client.read():
                    self.take(on_message, ts_ns + offset, data)
        except BaseException as exc:  # the edge of the thread: keep it for the owner, say it once
            self.error = exc
            log.exception("MIDI input %s stopped", self.full_name)

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self.live.client.post()
        if self._thread is not None:
            self._thread.join(timeout_s)
        _release(self.live, "in")


_open_sides: dict[int, set[str]] = {}
_sides_lock = threading.Lock()


def open_ports(client_name: str, *, in_target: str | None = None, out_target: str | None = None,
               inputs: bool = True, timing: bool = False, drop_late_ns: int = 2_000_000, reflex: bool = True,
               repeat_offs_ms: int = RESEND_MS) -> tuple[NativeOutPort, NativeInPort | None]:
    """One JACK client ``client_name`` with ports ``out`` (and ``in``), connected to the first port whose name
    contains ``out_target`` / ``in_target`` when given; a target not there yet is left in ``out.missing`` (the show's
    ``NativeWatch`` connects it when it appears). With an input and ``reflex``, the output port carries a
    ``reflex`` (``liveperf.modes.reflex.PortReflex``) for harmonize. Every note-off goes out once more
    ``repeat_offs_ms`` later (``JackMidiClient.repeat_offs``: what a receiver loses in a cycle). Raises ``JackUnavailable``, ``MidiUnavailable``
    (several ports match) or ``LookupError``."""
    from liveperf.io.midi_backends import JackWatchClient, IS_INPUT, IS_OUTPUT
    client = JackMidiClient.open(client_name, inputs=inputs, outputs=True, drop_late_ns=drop_late_ns)
    live = LiveClient(client)
    client.repeat_offs(repeat_offs_ms)
    if inputs and timing:  # a show that follows MIDI clock: a Stop silences the port at its frame
        client.follow_transport(True)
    with _sides_lock:
        _open_sides[id(live)] = {"out", "in"} if inputs else {"out"}
    missing: dict[str, str] = {}  # side -> target not there yet: watched for, connected when it appears
    try:
        out_to = in_from = None
        if out_target or in_target:
            watch = JackWatchClient.open(f"{client_name}-link", 5.0)
            if watch is None:
                raise LookupError("the JACK server stopped answering while liveperf connected its ports")
            try:
                # the rtmidi backend's rule: exactly one port of the other side matches (ours are left out)
                if out_target:
                    try:
                        _, out_to = _find_port(_others(watch.midi_ports(IS_INPUT), client_name), out_target, "out")
                        client.connect(client.out_name, out_to)
                    except PortNotFound:
                        missing["out"] = out_target
                if in_target and inputs:
                    try:
                        _, in_from = _find_port(_others(watch.midi_ports(IS_OUTPUT), client_name), in_target, "in")
                        client.connect(in_from, client.in_name)
                    except PortNotFound:
                        missing["in"] = in_target
            finally:
                watch.close()
    except BaseException:
        client.close()
        raise
    out = NativeOutPort(live, out_to)
    out.missing = missing
    if inputs and reflex:
        out.reflex = PortReflex(live)
    return out, (NativeInPort(live, in_from, timing=timing) if inputs else None)


def _others(names: list[str], own: str) -> list[str]:
    return [n for n in names if not n.startswith(f"{own}:")]


def _release(live: LiveClient, side: str) -> None:
    """Close the shared client once both its sides are closed (a watch stops itself when it sees that)."""
    with _sides_lock:
        sides = _open_sides.get(id(live), set())
        sides.discard(side)
        if sides:
            return
        _open_sides.pop(id(live), None)
    live.closed = True
    live.client.close()
