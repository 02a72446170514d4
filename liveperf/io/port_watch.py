"""Keep a show's JACK ports alive: the server dies and comes back, the synth or the controller goes and returns.

What python-rtmidi 1.5.8 (RtMidi 5.0.0) does on JACK when the server goes away, measured on the dummy server
(see tests/show/test_faults_reconnect.py and the issue note):
- nothing is reported: no exception, no error callback; ``send_message`` keeps writing into the client's ring
  buffer, and once ~2300 messages fill it, RtMidi spins in ``sched_yield`` *holding the GIL*: the whole process
  freezes for good. A server stopped (not dead) does the same. So we must stop sending ourselves.
- the client is a zombie; opening a new JACK client in the process makes libjack free the zombies, and touching
  an rtmidi object afterwards (even deleting it) segfaults. Zombies must be deleted before anything new opens.
  Deleting the output takes 1 s (RtMidi waits for a process cycle that never comes) with the GIL held.
- a new server under the same name takes new clients at once (~40 ms per port); nothing reconnects by itself.

So a ``PortWatch`` keeps its own port-less JACK client (libjack through ctypes, the copy rtmidi loaded) whose
shutdown callback marks the output down at once (sends are dropped and counted, never queued), and a watcher
thread that every ``interval_s``: after a loss deletes the zombies and tries a new client every ``retry_s``; when
the server answers, reopens both ports under the same names (``swap_midi``: the port objects, the input's poll
thread and its counters live on) and re-makes the connections; when the server runs, checks that its cycle
advances (``jack_last_frame_time``; stopped for ``stall_s``: sends are dropped until it moves again) and keeps
the links: a port named by ``[show] midi_out`` / ``midi_in`` (a name substring), or the peers connected by hand,
is connected again whenever it (re)appears. A peer disconnected by hand while it still exists is left alone.

No stuck note. The output keeps the notes on the wire (note-on sent, note-off not yet). A note that was
sounding when the link broke (server lost, stalled, or the synth's port gone) and whose note-off could not reach
the synth is *missed*; when a synth is connected again it gets a note-off for every missed note first (a
hardware synth behind a USB interface survives a JACK restart still sounding). A note-off for a note that is not
on the wire (its note-on was dropped while down, or its off already went out) is not sent (``offs_filtered``).
The input keeps the performer's held notes; when the controller's link breaks it delivers note-offs for them
(stamped then), so the engine does not hold a harmony for a key nobody can release.
``send`` returns False for a message that did not go out; the scheduler may use it (see the issue note).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from liveperf.io.jack_probe import _quiet
from liveperf.io.midi_backends import IS_INPUT, IS_OUTPUT, JackWatchClient
from liveperf.io.midi_ports import MidiInPort, MidiOutPort, MidiUnavailable, OnMessage
from liveperf.music.notes import is_note_off, is_note_on, note_off

log = logging.getLogger(__name__)

@dataclass
class WatchStats:
    """Counters of a ``PortWatch`` (plain ints written by the watcher or the scheduler thread; read anywhere)."""

    outages: int = 0  # JACK server lost
    stalls: int = 0  # server cycle stopped for stall_s
    reconnects: int = 0  # ports reopened on a server that came back
    reconnect_ms: list[float] = field(default_factory=list)  # per reconnect: the server answered -> ports open, linked
    outage_ms: list[float] = field(default_factory=list)  # per reconnect: server lost -> ports open, linked
    dropped: int = 0  # messages not sent: the output was down (or busy being swapped)
    offs_filtered: int = 0  # note-offs not sent: their note was not on the wire
    missed_offs_sent: int = 0  # note-offs sent on reconnect for notes sounding when the link broke
    peer_lost: dict[str, int] = field(default_factory=lambda: {"out": 0, "in": 0})  # a connected peer port vanished
    peer_connected: dict[str, int] = field(default_factory=lambda: {"out": 0, "in": 0})  # links (re)made by us
    performer_offs: int = 0  # note-offs delivered for the performer's held keys when the controller's link broke
    errors: int = 0  # watcher turns that raised (logged)


class HeldKeys:
    """The performer's keys down on one input, (channel, pitch) -> presses: ``note(data)`` from the input's reader
    thread for every message it delivers, ``take()`` from any thread (the watcher, when the controller's link breaks)
    empties it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[int, int], int] = {}

    def note(self, data: bytes) -> None:
        if len(data) == 3 and data[0] < 0xA0:
            key = (data[0] & 0x0F, data[1])
            with self._lock:
                if is_note_on(data):
                    self._held[key] = self._held.get(key, 0) + 1
                elif is_note_off(data) and key in self._held:
                    self._held[key] -= 1
                    if not self._held[key]:
                        del self._held[key]

    def take(self) -> list[tuple[int, int]]:
        """The keys down, sorted, forgotten from now on."""
        with self._lock:
            keys, self._held = sorted(self._held), {}
        return keys


def run_turns(watch, what: str) -> None:
    """A watch's thread (``PortWatch``, ``jack_native_watch.NativeWatch``): ``watch._turn()`` every
    ``watch.interval_s`` until ``watch._stop`` is set; a turn that raises is counted (``watch.stats.errors``), kept
    (``watch.error``) and logged, and the next turn comes as usual."""
    while not watch._stop.wait(watch.interval_s):
        try:
            watch._turn()
        except Exception as exc:  # noqa: BLE001 - the edge of one turn: count, say it, try again next turn
            watch.stats.errors += 1
            watch.error = f"{type(exc).__name__}: {exc}"
            log.exception(what)


class WatchedOutput:
    """The output as the scheduler sees it: ``send(data) -> bool`` from ONE thread (the scheduler); never raises
    and never blocks for more than ``lock_timeout_s`` (the watcher holds the lock only for swaps and a few sends).
    False: not sent (down, or a note-off for a note not on the wire), counted in the watch's stats."""

    def __init__(self, port: MidiOutPort, watch: PortWatch) -> None:
        self.port, self._watch, self.stats = port, watch, watch.stats
        self.lock = threading.Lock()
        self.up = True
        self.held: dict[tuple[int, int], int] = {}  # on the wire: note-ons sent, note-off not yet
        self.missed: set[tuple[int, int]] = set()  # sounding when the link broke; the synth never got the off
        self.deaf: set[tuple[int, int]] = set()  # held when the synth's port vanished (our port still up)
        # Note-offs sent lately: a loss is seen up to one watch interval late, and an off sent in between may
        # have gone to nobody; it is sent again when a synth is back (a second note-off is harmless).
        self.recent_offs: dict[tuple[int, int], float] = {}
        self.recent_s = 2 * watch.interval_s
        self.lock_timeout_s = 0.002

    full_name = property(lambda self: self.port.full_name)
    backend = property(lambda self: self.port.backend)
    connected_to = property(lambda self: self.port.connected_to)

    def send(self, data: bytes) -> bool:
        if not self.up or not self.lock.acquire(timeout=self.lock_timeout_s):
            self.stats.dropped += 1
            return False
        try:
            if not self.up or self.port._midi is None:
                self.stats.dropped += 1
                return False
            key = (data[0] & 0x0F, data[1]) if len(data) == 3 and data[0] < 0xA0 else None
            if key is not None and is_note_off(data):
                if key not in self.held:
                    self.stats.offs_filtered += 1
                    return False
                if key in self.deaf:  # the synth that had this note is gone: it gets the off when it is back
                    self.deaf.discard(key)
                    self.missed.add(key)
            try:
                self.port._midi.send_message(data)
            except Exception as exc:  # noqa: BLE001 - the edge of one send: count it, the show goes on
                self.stats.dropped += 1
                log.debug("send failed: %s", exc)
                return False
            if key is not None and is_note_on(data):
                self.held[key] = self.held.get(key, 0) + 1
            elif key is not None and is_note_off(data):
                self.held[key] -= 1
                if not self.held[key]:
                    del self.held[key]
                self.recent_offs[key] = time.monotonic()
            return True
        finally:
            self.lock.release()

    def link_broken(self, all_notes: bool) -> None:
        """Watcher: the synth stopped hearing us. ``all_notes``: the connection itself is gone (server lost or
        stalled), so every note on the wire is missed now; else (the synth's port vanished) notes still held
        become missed when their note-off goes out to nobody. Caller holds ``lock``."""
        since = time.monotonic() - self.recent_s
        self.missed |= {key for key, at in self.recent_offs.items() if at >= since and key not in self.held}
        self.recent_offs.clear()
        if all_notes:
            self.missed |= set(self.held)
            self.held.clear()
            self.deaf.clear()
        else:
            self.deaf |= set(self.held)

    def flush_missed(self) -> None:
        """Watcher, after a synth was connected: a note-off for every missed note. Caller holds ``lock``."""
        midi = self.port._midi
        for ch, pitch in sorted(self.missed):
            if midi is not None:
                midi.send_message(note_off(ch, pitch))
                self.stats.missed_offs_sent += 1
        self.missed.clear()
        self.deaf.clear()

    def close(self) -> None:
        """The show is over: stop the watch and close both ports (idempotent). Owner's thread."""
        self._watch.close()


class WatchedInput:
    """The input as the show sees it: ``start(on_message)``, ``close()``, and the port's counters (delegated).
    ``on_message`` is called from the port's poll thread, and from the watcher for the performer's note-offs
    when the controller's link breaks (both only enqueue in the show)."""

    def __init__(self, port: MidiInPort, watch: PortWatch) -> None:
        self.port, self._watch = port, watch
        self._held = HeldKeys()
        self._on_message: OnMessage | None = None

    def __getattr__(self, name: str):
        return getattr(self.port, name)  # full_name, received, malformed, ... of the real port

    def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self.port.start(self._deliver)

    def _deliver(self, ts_ns: int, data: bytes) -> None:
        self._held.note(data)
        self._on_message(ts_ns, data)

    def release_held(self) -> list[tuple[int, int]]:
        """Watcher: deliver a note-off for every performer key still down; returns them ((channel, pitch))."""
        keys = self._held.take()
        if self._on_message is not None:
            for ch, pitch in keys:
                self._on_message(time.monotonic_ns(), note_off(ch, pitch))
        return keys

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the watch reopening this port, then stop its poll thread and close it. Owner's thread."""
        self._watch.input_closed()
        self.port.close(timeout_s)


class _Link:
    """Which peers one of our ports should be connected to, and (re)connecting them when they appear.

    ``target`` (a name substring, from ``[show] midi_out``/``midi_in``): the one MIDI port of the other direction
    whose name contains it. Else the peers seen connected (by hand), remembered until disconnected by hand while
    they still exist. A wanted peer is connected when it appears, or on ``fresh`` (our port was just reopened)."""

    def __init__(self, side: str, target: str) -> None:
        self.side, self.target = side, target
        self.remembered: set[str] = set()
        self.present: set[str] = set()  # wanted peers that existed at the last poll (to see them appear)
        self.connected: set[str] = set()
        self._warned = False

    def poll(self, client: JackWatchClient, own: str, fresh: bool) -> tuple[set[str], list[str]]:
        """(peers connected at the last poll that have vanished, peers connected now by us)."""
        conns = client.connections(own)
        peers = client.midi_ports(IS_INPUT if self.side == "out" else IS_OUTPUT)
        vanished = {p for p in self.connected - conns if p not in peers}
        if self.target:
            hits = [p for p in peers if self.target in p and p != own]
            if len(hits) > 1 and not self._warned:
                log.warning("MIDI %s: more than one port matches %r (%s); not reconnecting", self.side, self.target,
                            ", ".join(hits))
            self._warned = len(hits) > 1
            wanted = set(hits) if len(hits) == 1 else set()
        else:
            self.remembered |= conns
            self.remembered -= {p for p in self.connected - conns if p in peers and not fresh}  # unplugged by hand
            wanted = self.remembered & set(peers)
        made = []
        for peer in sorted(wanted - conns):
            if fresh or peer not in self.present:
                src, dst = (own, peer) if self.side == "out" else (peer, own)
                if client.connect(src, dst):
                    made.append(peer)
        self.present, self.connected = wanted, conns | set(made)
        return vanished, made


class PortWatch:
    """Supervises a show's output (and input) port on JACK; see the module docstring. ``start()`` the watcher
    thread after the ports are open, hand ``output`` to the scheduler and ``input`` to the show, ``close()`` at the
    end (``output.close()`` does it). ``on_event(text)`` hears every loss and reconnect, on the watcher thread.
    Times: ``interval_s`` between checks, ``retry_s`` between reopen attempts, ``stall_s`` of a stopped server
    cycle before sends are dropped."""

    def __init__(self, out_port: MidiOutPort, in_port: MidiInPort | None = None, *, out_target: str = "",
                 in_target: str = "", interval_s: float = 0.1, retry_s: float = 0.5, stall_s: float = 1.0,
                 on_event: Callable[[str], None] = log.warning) -> None:
        self.stats = WatchStats()
        self.interval_s, self.retry_s, self.stall_s = interval_s, retry_s, stall_s
        self.output = WatchedOutput(out_port, self)
        self.input = WatchedInput(in_port, self) if in_port is not None else None
        self._links = {"out": _Link("out", out_target)} | ({"in": _Link("in", in_target)} if in_port else {})
        self.on_event = on_event
        self._stop = threading.Event()
        self._input_closed = False
        self._thread: threading.Thread | None = None
        self._client: JackWatchClient | None = None
        self._down_since: float | None = None  # monotonic s of the loss while the server is gone
        self._next_try = 0.0
        self._frame, self._frame_at, self._stalled = -1, 0.0, False
        self.error = ""

    @property
    def up(self) -> bool:
        """True while the ports are open on a running server whose cycle advances."""
        return self._down_since is None and not self._stalled

    def start(self) -> PortWatch:
        """Open the watch client and start the watcher thread. Owner's thread; raises MidiUnavailable if the
        server does not answer (the ports were just opened on it)."""
        self._client = JackWatchClient.open(f"{self.output.port.names[0]}-watch", 2.0)
        if self._client is None:
            raise MidiUnavailable("JACK server did not answer the port watch")
        self._thread = threading.Thread(target=self._run, name="port-watch", daemon=True)
        self._thread.start()
        return self

    def input_closed(self) -> None:
        self._input_closed = True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the watcher, then close the output (and the input unless the show did) and the watch client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self.output.lock:
            self.output.up = False
        self.output.port.close()
        if self.input is not None and not self._input_closed:
            self.input.port.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- watcher thread ----
    def _run(self) -> None:
        run_turns(self, "port watch")

    def _turn(self) -> None:
        now = time.monotonic()
        if self._client is not None and self._client.lost.is_set():
            self._go_down(now)
        if self._client is None:
            if now >= self._next_try:
                self._next_try = now + self.retry_s
                self._try_reopen(now)
            return
        self._check_cycle(now)
        self._poll_links(fresh=False)

    def _go_down(self, now: float) -> None:
        """Server lost: the ports and the watch client are zombies. Delete them all before anything opens."""
        self.stats.outages += 1
        self._down_since = now
        out = self.output
        with out.lock:
            out.up = False
            out.link_broken(all_notes=True)
            old_out = out.port.swap_midi(None)
        old_in = self.input.port.swap_midi(None) if self.input is not None else None
        keys = self.input.release_held() if self.input is not None else []
        self.stats.performer_offs += len(keys)
        self.on_event(f"JACK server lost: MIDI output and input down, {len(out.missed)} partner note(s) and "
                      f"{len(keys)} performer key(s) were sounding; retrying every {self.retry_s:g} s")
        self._client.close()
        self._client = None
        with _quiet():  # the output's delete waits 1 s for a cycle that never comes (RtMidi), holding the GIL
            for midi in (old_in, old_out):
                if midi is not None:
                    midi.delete()

    def _try_reopen(self, now: float) -> None:
        client = JackWatchClient.open(f"{self.output.port.names[0]}-watch", 1.0)
        if client is None:
            return
        began = time.monotonic()
        opened = []
        try:
            opened.append(self.output.port.reopen_midi())
            if self.input is not None and not self._input_closed:
                opened.append(self.input.port.reopen_midi())
        except MidiUnavailable as exc:  # the server went again, or is still starting: next try
            log.debug("reopen failed: %s", exc)
            for midi, _ in opened:
                midi.delete()
            client.close()
            return
        self._client = client
        with self.output.lock:
            self.output.port.swap_midi(*opened[0])
        if len(opened) > 1:
            self.input.port.swap_midi(*opened[1])
        for link in self._links.values():
            link.present, link.connected = set(), set()
        self._frame, self._stalled = -1, False
        made = self._poll_links(fresh=True)
        with self.output.lock:
            self.output.up = True
        done = time.monotonic()
        self.stats.reconnects += 1
        self.stats.reconnect_ms.append(round((done - began) * 1e3, 1))
        self.stats.outage_ms.append(round((done - (self._down_since or began)) * 1e3, 1))
        self._down_since = None
        self.on_event(f"JACK server back: ports {self.output.full_name}"
                      + (f", {self.input.full_name}" if self.input is not None else "")
                      + f" reopened in {self.stats.reconnect_ms[-1]:.0f} ms (down {self.stats.outage_ms[-1] / 1e3:.1f} s)"
                      + (f", connected to {', '.join(made)}" if made else ", nothing to connect to yet"))

    def _check_cycle(self, now: float) -> None:
        """A server that stops cycling (hung, SIGSTOP) would let the ring buffer fill and freeze us: stop sending."""
        frame = self._client.frame()
        if frame != self._frame:
            self._frame, self._frame_at = frame, now
            if self._stalled:
                self._stalled = False
                with self.output.lock:
                    self.output.up = True
                self.on_event("JACK server cycling again: MIDI output resumed")
                self._poll_links(fresh=False, flush=True)
        elif not self._stalled and now - self._frame_at >= self.stall_s:
            self._stalled = True
            self.stats.stalls += 1
            with self.output.lock:
                self.output.up = False
                self.output.link_broken(all_notes=True)
            self.on_event(f"JACK server stalled ({now - self._frame_at:.1f} s without a cycle): MIDI output paused")

    def _poll_links(self, fresh: bool, flush: bool = False) -> list[str]:
        """Keep both links; returns the output peers connected by us now."""
        made_out: list[str] = []
        for side, link in self._links.items():
            if side == "in" and self._input_closed:
                continue
            port = self.output.port if side == "out" else self.input.port
            vanished, made = link.poll(self._client, port.full_name, fresh)
            self.stats.peer_lost[side] += len(vanished)
            self.stats.peer_connected[side] += len(made)
            if vanished:
                self.on_event(f"MIDI {side}put: {', '.join(sorted(vanished))} went away")
                if side == "out":
                    with self.output.lock:
                        self.output.link_broken(all_notes=False)
                else:
                    keys = self.input.release_held()
                    self.stats.performer_offs += len(keys)
                    self.on_event(f"released the performer's keys {keys} (channel, pitch)")
            if made and not fresh:
                self.on_event(f"MIDI {side}put: connected again to {', '.join(made)}")
            if side == "out":
                made_out = made
        if (made_out or flush) and self.output.missed:
            with self.output.lock:
                self.output.flush_missed()
        return made_out
