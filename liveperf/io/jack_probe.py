"""libjack through ctypes: a silent, time-bounded probe for a running JACK server that never starts one.

Used by ``liveperf.io.midi_ports`` only. python-rtmidi's wheel bundles its own libjack; we reach the same copy to
(1) ask whether a server answers within a time limit (a hung server blocks ``jack_client_open`` forever, and
rtmidi's constructor would block holding the GIL) and (2) silence libjack's stderr noise around client opens.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from typing import Iterator

import rtmidi



class _LibJack:
    """The libjack that rtmidi loaded (the wheel bundles its own copy), for probing and for quieting its stderr.

    libjack prints every client-open failure ("Cannot connect to server socket ...") to stderr through a global
    error callback; while we open, probe and close clients we swap in a compiled handler that drops the message
    (``liveperf.io.jack_c_callbacks``). It must not be Python: libjack calls it on its own threads, and one it
    cancels while the handler waits for the GIL leaves the whole process hung (that module says how).
    """

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.jack_client_open.restype = ctypes.c_void_p
        lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.jack_client_close.argtypes = [ctypes.c_void_p]
        # The handlers are plain global function pointers: jack2 exports them (missing -> ValueError, no quieting).
        self._slots = [ctypes.c_void_p.in_dll(lib, n) for n in ("jack_error_callback", "jack_info_callback")]
        # The compiled handlers, made now rather than on first use: a first open must not wait for numba.
        from liveperf.io.jack_c_callbacks import drop_message, shutdown_marker
        self._sink = drop_message()
        shutdown_marker()
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Drop libjack's error/info output instead of printing it; restore the previous handlers after."""
        with self._lock:
            saved = [slot.value for slot in self._slots]
            self.lib.jack_set_error_function(self._sink)
            self.lib.jack_set_info_function(self._sink)
            try:
                yield
            finally:
                for slot, value in zip(self._slots, saved):
                    slot.value = value

    def server_running(self, timeout_s: float) -> str | None:
        """None if a client opens on the server named by JACK_DEFAULT_SERVER (or 'default'), else why not.

        Opens and closes a client with JackNoStartServer in a daemon thread (ctypes releases the GIL): a stopped or
        hung server blocks jack_client_open forever, and rtmidi's own constructor would block holding the GIL.
        """
        result: list[bool] = []

        def probe() -> None:
            status = ctypes.c_int(0)
            client = self.lib.jack_client_open(b"liveperf-probe", 0x01, ctypes.byref(status))  # JackNoStartServer
            if client:
                self.lib.jack_client_close(client)
            result.append(bool(client))

        with self.quiet():
            thread = threading.Thread(target=probe, name="jack-probe", daemon=True)
            thread.start()
            thread.join(timeout_s)
        if not result:
            return f"{_jack_server_label()} is not responding (no answer in {timeout_s:.1f} s; restart it)"
        return None if result[0] else f"{_jack_server_label()} not running"


def _find_libjack() -> _LibJack | None:
    paths = []
    with contextlib.suppress(OSError):  # Linux: the copy rtmidi actually loaded
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "libjack" in line and line.split()[-1].startswith("/")]
    paths.append(ctypes.util.find_library("jack") or "")
    for path in filter(None, paths):
        with contextlib.suppress(OSError, AttributeError, ValueError):
            return _LibJack(ctypes.CDLL(path))
    return None


_libjack: _LibJack | None = _find_libjack() if rtmidi.API_UNIX_JACK in rtmidi.get_compiled_api() else None


def _quiet() -> contextlib.AbstractContextManager[None]:
    return _libjack.quiet() if _libjack is not None else contextlib.nullcontext()


def _jack_server_label() -> str:
    name = os.environ.get("JACK_DEFAULT_SERVER")
    return f"JACK server {name!r}" if name else "JACK server"


def jack_server_priority(server_name: str | None = None) -> int | None:
    """The real-time priority of the running JACK server process (0: it runs without real-time scheduling),
    or None when no server process is found. ``server_name`` (default ``$JACK_DEFAULT_SERVER``) picks among
    several servers by their ``-n`` name. Reads /proc; Linux only (None elsewhere)."""
    name = server_name if server_name is not None else os.environ.get("JACK_DEFAULT_SERVER")
    found: list[int] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() not in ("jackd", "jackdbus"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        given = args[args.index(b"-n") + 1].decode() if b"-n" in args[:-1] else "default"
        if name is None or given == name:
            found.append(pid)
    for pid in found:
        # The highest of the server's threads: with ``jackd -R`` only its driver thread runs SCHED_FIFO, the main
        # thread stays normal (reading the process alone called a real-time server non-real-time).
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit()]
        except OSError:
            tids = [pid]
        best = None
        for tid in tids:
            try:
                rt = os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR)
                prio = os.sched_getparam(tid).sched_priority if rt else 0
            except (OSError, AttributeError):
                continue
            best = prio if best is None else max(best, prio)
        if best is not None:
            return best
    return None
