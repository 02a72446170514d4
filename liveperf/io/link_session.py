"""An Ableton Link session, read and written from plain threads (the optional ``link`` extra: PyPI ``aalink``).

aalink is asyncio-based: ``aalink.Link(bpm)`` must be created inside a running event loop. ``LinkSession`` owns one
daemon thread (``liveperf-link``) that runs a private loop, creates the Link object there and destroys it on
``close()``. Everything the show needs (peer count, tempo, beat, transport) is a short, thread-safe call into
Link's session state and does not need the loop, so the engine thread calls ``read()`` directly; a lock keeps those
calls off a Link object that ``close()`` is destroying.

Time: aalink gives the beat *now*, not at a given time, so ``read()`` samples it between two reads of the show's
clock (``now_ns``: ``time.monotonic_ns`` or the jack-native port's frame clock) and stamps it with their midpoint,
keeping the tightest of up to three tries (a read preempted mid-way would carry its delay into the stamp). Link's
timeline is linear between tempo changes, so ``liveperf.timing.link_clock.LinkClock`` extrapolates from one read.

Threads: ``start``/``close`` on the show's thread; ``read``, ``set_tempo``, ``set_playing``, ``set_quantum`` on
any thread (the engine's). ``close`` is idempotent and also runs at interpreter exit.

Discovery multicasts on every network interface: tests run Link only inside a private network namespace with
loopback alone (``tests/timing/test_link_session.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from typing import Callable

from liveperf.timing.link_clock import LinkState

INSTALL_HINT = "clock = \"link\" needs the link extra: pip install 'liveperf[link]' (aalink)"


class LinkUnavailable(RuntimeError):
    """aalink is not installed, or the session could not be started."""


class LinkSession:
    """One Link peer for the show. ``start`` joins (or makes) the session; ``close`` leaves it."""

    def __init__(self, now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.now_ns = now_ns
        self._lock = threading.Lock()
        self._link = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, tempo_bpm: float, quantum_beats: float, *, start_stop: bool = True,
              timeout_s: float = 5.0) -> LinkSession:
        """Enable Link at ``tempo_bpm`` (a session already running keeps its own tempo) with the quantum of one
        bar; raise ``LinkUnavailable`` (with the reason) when aalink is missing or the peer does not start."""
        try:
            import aalink
        except ImportError as exc:
            raise LinkUnavailable(f"{INSTALL_HINT} ({exc})") from None
        ready, failed = threading.Event(), []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def create():
                link = aalink.Link(float(tempo_bpm))  # needs the running loop
                link.quantum = float(quantum_beats)
                link.start_stop_sync_enabled = bool(start_stop)
                link.enabled = True  # discovery starts
                return link

            try:
                link = loop.run_until_complete(create())
            except Exception as exc:  # reported by start()
                failed.append(exc)
                ready.set()
                loop.close()
                return
            with self._lock:
                self._link, self._loop = link, loop
            del link
            ready.set()
            try:
                loop.run_forever()
            finally:
                with self._lock:
                    link, self._link = self._link, None
                    if link is not None:
                        link.enabled = False  # tells the peers we leave
                        del link
                loop.close()

        self._thread = threading.Thread(target=run, name="liveperf-link", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or failed:
            self.close()
            raise LinkUnavailable(f"Link did not start: {failed[0] if failed else 'timed out'}")
        ref = weakref.ref(self)
        atexit.register(lambda: (s := ref()) is not None and s.close())
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # the loop already ended
                pass
        thread.join(timeout_s)
        self._thread = self._loop = None

    def read(self) -> LinkState:
        """The session now, stamped on ``now_ns`` (a few µs)."""
        with self._lock:
            link = self._require()
            peers, tempo, playing = link.num_peers, link.tempo, link.playing
            best = None
            for _ in range(3):
                t0 = self.now_ns()
                beat = link.beat
                t1 = self.now_ns()
                if best is None or t1 - t0 < best[0]:
                    best = (t1 - t0, beat, (t0 + t1) // 2)
                if t1 - t0 < 20_000:
                    break
        return LinkState(beat=best[1], at_ns=best[2], tempo_bpm=tempo, playing=bool(playing), peers=peers)

    def set_tempo(self, tempo_bpm: float) -> None:
        with self._lock:
            self._require().tempo = float(tempo_bpm)

    def set_playing(self, playing: bool) -> None:
        with self._lock:
            self._require().playing = bool(playing)

    def set_quantum(self, quantum_beats: float) -> None:
        with self._lock:
            self._require().quantum = float(quantum_beats)

    def _require(self):
        if self._link is None:
            raise LinkUnavailable("the Link session is closed")
        return self._link
