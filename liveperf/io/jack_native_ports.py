"""The ``jack-native`` backend: liveperf's MIDI input and output ports on one ``JackMidiClient`` (see
``liveperf.io.jack_native`` for the compiled process callback and why).

- ``NativeOutPort`` is a *timed* output: the scheduler hands each message over ``lead_ns`` ahead of its due time
  (``send_at``) and JACK's thread sends it at its frame; ``send`` (a note-off on panic or close) goes out in the
  next cycle. ``revoke`` and ``emitted`` let the scheduler cancel what it handed over and learn the true send times.
- ``NativeInPort`` has ``MidiInPort``'s contract (``start(on_message)``, the same counters and filters): a reader
  thread blocks on the callback's semaphore, so a message reaches ``on_message`` as soon as the JACK cycle that
  carried it has run, stamped at its frame (not when a Python thread got to it).

Times (stamps, due times) are on the client's frame clock: a show on these ports runs on ``NativeOutPort.now_ns``.
Ports are ``<client>:in`` and ``<client>:out``. Not supervised by ``port_watch``: a JACK restart ends the show's
MIDI (the client's ``lost`` is set and the show says so; it plays on silently until stopped), where the rtmidi
backend ``jack`` reconnects.
"""

from __future__ import annotations

import logging
import threading
import time

from liveperf.io.jack_native import JackMidiClient
from liveperf.io.midi_ports import NOT_USED, InputFilter, OnMessage, PortNotFound, _find_port
from liveperf.modes.reflex import PortReflex

log = logging.getLogger(__name__)

# How long before its due time a message is handed to JACK's thread: a cycle's messages must be there before the
# cycle is processed (up to one period before its last frame), plus slack for a late scheduler thread.
MIN_LEAD_NS = 4_000_000


class NativeOutPort:
    """Output side of a ``JackMidiClient``. ``send``/``send_at``/``revoke``/``emitted``: ONE thread (the
    scheduler's); ``close`` closes the client when the input side is closed too."""

    backend = "jack-native"

    def __init__(self, client: JackMidiClient, connected_to: str | None = None) -> None:
        self.client = client
        self.full_name = client.out_name
        self.connected_to = connected_to
        period_ns = client.period_frames * 1_000_000_000 // max(1, client.sample_rate)
        self.lead_ns = max(MIN_LEAD_NS, period_ns + 2_000_000)
        self.reflex: PortReflex | None = None  # set by ``open_ports`` when the client has an input
        # The show's clock: every time this port takes or gives is on the client's frame clock (``jack_native``).
        self.now_ns = client.now_ns

    def send(self, data: bytes) -> bool:
        """Out in the next JACK cycle (after everything handed over before). False: not queued (ring full, closed
        or not a 1-3 byte message)."""
        return self.client.write(self.client.now_ns(), bytes(data))

    def send_at(self, due_ns: int, data: bytes) -> bool:
        """Out at the frame of ``due_ns`` (or the next cycle if that has passed). False: not queued."""
        return self.client.write(due_ns, bytes(data))

    def revoke(self, channel: int | None, from_ns: int) -> None:
        self.client.revoke(channel, from_ns)

    def emitted(self) -> list[tuple[int, int]]:
        return self.client.emitted()

    def pending(self) -> int:
        """Messages handed over that JACK's thread has not taken yet."""
        return self.client.pending()

    def counters(self) -> dict[str, int]:
        """The JACK thread's counters (``JackMidiClient.counters``), for the show's report."""
        return self.client.counters()

    def silence_wire(self) -> int:
        """A note-off, next cycle, for every note the port has sounding (the scheduler's last net on close);
        returns how many. Call once ``pending()`` is 0."""
        now = self.client.now_ns()
        offs = [bytes((0x80 | ch, pitch, 0)) for ch, pitch in self.client.sounding()]
        for data in offs:
            self.client.write(now, data)
        return len(offs)

    def close(self) -> None:
        watch = getattr(self, "link_watch", None)
        if watch is not None:
            watch.stop()
        _release(self.client, "out")


class NativeInPort(InputFilter):
    """Input side of a ``JackMidiClient`` with ``MidiInPort``'s contract (see there for the counters)."""

    backend = "jack-native"

    def __init__(self, client: JackMidiClient, connected_to: str | None = None, *, sysex: bool = False,
                 timing: bool = False, active_sense: bool = False) -> None:
        super().__init__()
        self.client = client
        self.full_name = client.in_name
        self.connected_to = connected_to
        self._skip = NOT_USED | frozenset(([] if sysex else [0xF0]) + ([] if timing else [0xF8]) +
                                          ([] if active_sense else [0xFE]))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def overflow(self) -> int:
        """Events JACK delivered that did not fit (ring full, or longer than the slot): never delivered."""
        c = self.client.counters()
        return c["in_overflow"] + c["too_long"]

    def start(self, on_message: OnMessage) -> None:
        if self._thread is not None:
            raise RuntimeError(f"MIDI input {self.full_name} already started")
        self._thread = threading.Thread(target=self._run, args=(on_message,), name=f"midi-in {self.full_name}",
                                        daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, on_message: OnMessage) -> None:
        try:
            while not self._stop.is_set():
                self.client.wait(0.1)
                for ts_ns, data in self.client.read():
                    self.take(on_message, ts_ns, data)
        except BaseException as exc:  # the edge of the thread: keep it for the owner, say it once
            self.error = exc
            log.exception("MIDI input %s stopped", self.full_name)

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self.client.post()
        if self._thread is not None:
            self._thread.join(timeout_s)
        _release(self.client, "in")


_open_sides: dict[int, set[str]] = {}
_sides_lock = threading.Lock()


def open_ports(client_name: str, *, in_target: str | None = None, out_target: str | None = None,
               inputs: bool = True, timing: bool = False,
               drop_late_ns: int = 2_000_000, reflex: bool = True) -> tuple[NativeOutPort, NativeInPort | None]:
    """One JACK client ``client_name`` with ports ``out`` (and ``in``), connected to the first port whose name
    contains ``out_target`` / ``in_target`` when given. With an input and ``reflex``, the output port carries a
    ``reflex`` (``liveperf.modes.reflex.PortReflex``) for harmonize. Raises ``JackUnavailable``, ``MidiUnavailable`` (no
    or several ports match) or ``LookupError``."""
    from liveperf.io.midi_backends import JackWatchClient, IS_INPUT, IS_OUTPUT
    client = JackMidiClient.open(client_name, inputs=inputs, outputs=True, drop_late_ns=drop_late_ns)
    with _sides_lock:
        _open_sides[id(client)] = {"out", "in"} if inputs else {"out"}
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
    out = NativeOutPort(client, out_to)
    out.missing = missing
    if missing:
        out.link_watch = LinkWatch(client, client_name, missing).start()
    if inputs and reflex:
        out.reflex = PortReflex(client)
    return out, (NativeInPort(client, in_from, timing=timing) if inputs else None)


class LinkWatch:
    """Connects our ports to a controller or synth named in the setlist that was not there at start, when it
    appears (checked every ``interval_s`` on its own thread and JACK client, ``port_watch._Link``'s rule: exactly
    one port matches), and again whenever it comes back. ``connected`` counts the links made. Stops with the
    client (``stop``)."""

    def __init__(self, client: JackMidiClient, client_name: str, targets: dict[str, str],
                 interval_s: float = 0.5) -> None:
        from liveperf.io.port_watch import _Link
        self.client, self.name, self.interval_s = client, client_name, interval_s
        self.links = {side: _Link(side, target) for side, target in targets.items()}
        self.connected = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jack-native-links", daemon=True)

    def start(self) -> LinkWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        from liveperf.io.midi_backends import JackWatchClient
        watch = JackWatchClient.open(f"{self.name}-watch", 5.0)
        if watch is None:
            return
        try:
            while not self._stop.wait(self.interval_s):
                for side, link in self.links.items():
                    own = self.client.out_name if side == "out" else self.client.in_name
                    _, made = link.poll(watch, own, False)
                    self.connected += len(made)
                    for peer in made:
                        log.warning("MIDI %s: connected %s, which was not there at start", side, peer)
        finally:
            watch.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def _others(names: list[str], own: str) -> list[str]:
    return [n for n in names if not n.startswith(f"{own}:")]


def _release(client: JackMidiClient, side: str) -> None:
    """Close the shared client once both its sides are closed."""
    with _sides_lock:
        sides = _open_sides.get(id(client), set())
        sides.discard(side)
        if sides:
            return
        _open_sides.pop(id(client), None)
    client.close()
