"""Keep a jack-native show's MIDI alive: the JACK server dies and comes back, the synth or the controller goes and
returns (``liveperf.io.port_watch`` does the same for the rtmidi backend, whose troubles are different).

A ``NativeWatch`` has its own port-less JACK client (``JackWatchClient``) and a thread that every ``interval_s``:
- **server lost** (the show's client's ``lost``, set by libjack's shutdown callback): the client is a zombie and
  takes no more writes (the scheduler's sends return False and are counted). The watch releases the performer's
  keys down (note-offs delivered to the show, so no harmony hangs on a key nobody can lift), remembers what the
  wire had sounding, and closes both zombie clients *before* anything new opens (libjack frees zombies when a new
  client opens in the process). Then every ``retry_s`` it tries a new client under the same name.
- **server back**: the new client gets the old one's sounding notes as *missed* (``JackMidiClient.seed_missed``):
  the callback sends their note-offs the moment a synth is connected (a hardware synth behind a USB interface
  outlives a JACK restart still sounding). The ports swap onto it (``LiveClient.swap``): the show's clock goes on
  without a jump, every due time and stamp is translated by the new offset, and the harmonize reflex is re-armed.
  The links are made again.
- **links**: a port named by ``[show] midi_out`` / ``midi_in`` (a name substring) or the peers connected by hand are
  connected again whenever they (re)appear (``port_watch._Link``: the same rule as the rtmidi backend). A synth
  unplugged by hand is not plugged back; when it is, the callback sends it the note-offs it missed
  (``jack_native_callback``, "Repairs"). A controller that vanishes has its held keys released.

Threads: the watcher owns its JACK client and the links; it swaps the ports' ``LiveClient`` (one attribute store)
and calls the input's ``release_held`` (which only enqueues). Counters are ``port_watch.WatchStats`` (the report's
``ports``), with ``stalls`` unused: a stopped server only fills the client's ring, whose writes then fail.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from liveperf.io.jack_native import JackMidiClient, JackUnavailable
from liveperf.io.jack_native_ports import NativeInPort, NativeOutPort
from liveperf.io.midi_backends import JackWatchClient
from liveperf.io.midi_ports import MidiUnavailable
from liveperf.io.port_watch import WatchStats, _Link, run_turns

log = logging.getLogger(__name__)


class NativeWatch:
    """Supervises a jack-native show's client (module docstring). ``start()`` after ``open_ports``, ``close()``
    at the end (before closing the ports). ``on_event(text)`` hears every loss and reconnect, on the watcher
    thread. Times: ``interval_s`` between checks, ``retry_s`` between attempts to open a new client."""

    def __init__(self, out: NativeOutPort, inp: NativeInPort | None = None, *, out_target: str = "",
                 in_target: str = "", interval_s: float = 0.1, retry_s: float = 0.5,
                 on_event: Callable[[str], None] = log.warning) -> None:
        self.out, self.inp, self.live = out, inp, out.live
        self.name = self.live.client.name
        self.stats = WatchStats()
        self.interval_s, self.retry_s = interval_s, retry_s
        self.on_event = on_event
        self._links = {"out": _Link("out", out_target)} | ({"in": _Link("in", in_target)} if inp is not None else {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: JackWatchClient | None = None
        self._down_since: float | None = None  # monotonic s of the loss, while the server is away
        self._next_try = 0.0
        self._missed: set[tuple[int, int]] = set()  # sounding on the wire when the server went
        self.error = ""

    @property
    def up(self) -> bool:
        return self._down_since is None

    def start(self) -> NativeWatch:
        """Open the watch's client and start the thread. Raises MidiUnavailable if the server does not answer."""
        self._watch = JackWatchClient.open(f"{self.name}-watch", 2.0)
        if self._watch is None:
            raise MidiUnavailable("JACK server did not answer the port watch")
        self._thread = threading.Thread(target=self._run, name="jack-native-watch", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the thread and close the watch's client (idempotent). The ports are the owner's to close. A thread
        stuck in a libjack call (a wedged server) is left behind (a daemon, holding no lock the show needs) with its
        client, so shutdown stays within its 2 s."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("jack-native watch: still in a JACK call after %.1f s; left behind", timeout_s)
                return
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    # ---- watcher thread ----
    def _run(self) -> None:
        run_turns(self, "jack-native watch")

    def _turn(self) -> None:
        if self.live.closed:
            return
        now = time.monotonic()
        if self._down_since is None and (self.live.client.lost.is_set()
                                         or (self._watch is not None and self._watch.lost.is_set())):
            self._go_down(now)
        if self._down_since is not None:
            if now >= self._next_try:
                self._next_try = now + self.retry_s
                self._try_reopen()
            return
        self._poll_links(fresh=False)

    def _go_down(self, now: float) -> None:
        """The server is gone: both our clients are zombies. Close them before anything new opens."""
        self.stats.outages += 1
        self._down_since = now
        old = self.live.client
        self._missed |= set(old.sounding()) | {(int(k) >> 7, int(k) & 0x7F) for k in np.flatnonzero(old.missed)}
        keys = self.inp.release_held() if self.inp is not None else []
        self.stats.performer_offs += len(keys)
        self.on_event(f"JACK server lost: MIDI output and input down, {len(self._missed)} partner note(s) and "
                      f"{len(keys)} performer key(s) were sounding; retrying every {self.retry_s:g} s")
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        old.close()

    def _try_reopen(self) -> None:
        watch = JackWatchClient.open(f"{self.name}-watch", 1.0)
        if watch is None:
            return
        began = time.monotonic()
        old = self.live.client
        try:
            new = JackMidiClient.open(self.name, inputs=bool(old.in_name), outputs=True,
                                      drop_late_ns=old.drop_late_ns, timeout_s=1.0)
        except JackUnavailable as exc:  # the server went again, or is still starting: next try
            log.debug("reopen failed: %s", exc)
            watch.close()
            return
        new.follow_transport(old.follows_transport)
        new.repeat_offs(old.repeat_offs_ms)
        new.seed_missed(sorted(self._missed))  # their note-offs go out when a synth is connected (the callback)
        self.stats.missed_offs_sent += len(self._missed)
        self._missed = set()
        self._watch = watch
        offset = self.live.swap(new)
        for link in self._links.values():
            link.present, link.connected = set(), set()
        made = self._poll_links(fresh=True)
        done = time.monotonic()
        self.stats.reconnects += 1
        self.stats.reconnect_ms.append(round((done - began) * 1e3, 1))
        self.stats.outage_ms.append(round((done - (self._down_since or began)) * 1e3, 1))
        self._down_since = None
        self.on_event(f"JACK server back: client {self.name} reopened in {self.stats.reconnect_ms[-1]:.0f} ms "
                      f"(down {self.stats.outage_ms[-1] / 1e3:.1f} s; show clock carried over, offset "
                      f"{offset / 1e6:+.1f} ms)"
                      + (f", connected to {', '.join(made)}" if made else ", nothing to connect to yet"))

    def _poll_links(self, fresh: bool) -> list[str]:
        """Keep both links; returns the peers connected by us now."""
        client = self.live.client
        all_made: list[str] = []
        for side, link in self._links.items():
            own = client.out_name if side == "out" else client.in_name
            vanished, made = link.poll(self._watch, own, fresh)
            self.stats.peer_lost[side] += len(vanished)
            self.stats.peer_connected[side] += len(made)
            if vanished:
                self.on_event(f"MIDI {side}put: {', '.join(sorted(vanished))} went away")
                if side == "in":
                    keys = self.inp.release_held()
                    self.stats.performer_offs += len(keys)
                    if keys:
                        self.on_event(f"released the performer's keys {keys} (channel, pitch)")
            if made and not fresh:
                self.on_event(f"MIDI {side}put: connected to {', '.join(made)}")
            all_made += made
        return all_made
