"""MIDI backends: which MIDI system (JACK, ALSA sequencer, CoreMIDI) can be opened now, what ports it has, and a
JACK client that watches the server and its port graph (``JackWatchClient``).

Split from ``liveperf.io.midi_ports``, which re-exports the detection and listing names. Those run on any thread,
are fast (well under a second; at most 5 s for a JACK server that does not answer) and silent, and never start a
JACK server. ``detect_backend('auto')`` prefers a running JACK server, then the ALSA sequencer,
then CoreMIDI, and raises ``MidiUnavailable`` (an actionable message) when none can be opened.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import rtmidi

from liveperf.io.jack_c_callbacks import SHUTDOWN_FN, watch_shutdown
from liveperf.io.jack_probe import _libjack, _quiet

BACKENDS = ("jack", "alsa", "coremidi")
_RTMIDI_API = {"jack": rtmidi.API_UNIX_JACK, "alsa": rtmidi.API_LINUX_ALSA, "coremidi": rtmidi.API_MACOSX_CORE}
ALSA_SEQ_DEVICE = "/dev/snd/seq"
JACK_PROBE_TIMEOUT_S = 5.0  # a live JACK server on a loaded 2-core machine was seen to need more than 2 s
# Said wherever no MIDI system is found (``liveperf ports``, ``check``, ``play --backend jack``): what still works.
FILE_MODE_HINT = ("Without one, `liveperf play` can still run in file mode (`--backend file`): each song's "
                  "performer take (`take` in the setlist), or your own MIDI file with --input FILE.mid, plays the "
                  "performer's part.")


class MidiUnavailable(RuntimeError):
    """No MIDI system (or not the one asked for) can be opened; the message says what to start or use instead.

    ``reason``: the message without the closing hint (``hint``), for a caller that says itself what happens next
    (``liveperf play`` with ``--backend auto`` goes on in file mode)."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(f"{reason} {hint}" if hint else reason)
        self.reason, self.hint = reason, hint


class PortNotFound(MidiUnavailable):
    """No port of the other side matches a name asked for (a controller or synth not plugged in yet)."""


def _unavailable_reason(backend: str) -> str | None:
    """None if ``backend`` can be opened now, else a short reason. Fast (a hung JACK server: 5 s), silent; starts
    nothing."""
    if _RTMIDI_API[backend] not in rtmidi.get_compiled_api():
        return f"python-rtmidi was built without {backend}"
    if backend == "jack":
        if _libjack is not None:
            return _libjack.server_running(JACK_PROBE_TIMEOUT_S)
    elif backend == "alsa" and not os.path.exists(ALSA_SEQ_DEVICE):
        return f"ALSA sequencer {ALSA_SEQ_DEVICE} missing"
    elif backend == "alsa" and not os.access(ALSA_SEQ_DEVICE, os.R_OK | os.W_OK):
        return f"no permission to use the ALSA sequencer {ALSA_SEQ_DEVICE} (join the 'audio' group?)"
    elif backend == "coremidi" and sys.platform != "darwin":
        return "CoreMIDI exists only on macOS"
    try:  # rtmidi opens with JackNoStartServer; reached for JACK only when libjack is out of ctypes' reach
        with _quiet():
            rtmidi.MidiOut(_RTMIDI_API[backend], "liveperf-probe").delete()
    except rtmidi.RtMidiError as exc:
        return f"{backend} failed to open ({exc})"
    return None


def _explain(reasons: dict[str, str], auto: bool) -> str:
    parts = []
    for backend, reason in reasons.items():
        if backend == "coremidi" and auto and sys.platform != "darwin":
            continue  # not worth mentioning off macOS
        if backend == "jack" and reason.endswith("not running"):
            name = os.environ.get("JACK_DEFAULT_SERVER")
            start = f"jackd -n {name} -d dummy" if name else "jackd -d dummy"
            reason += f" (start one: `{start}` or with your audio interface)"
        parts.append(reason)
    return "No MIDI system found: " + " and ".join(parts) + "."


def available_backends() -> list[str]:
    """The backends that can be opened right now, in preference order (jack, alsa, coremidi). Any thread."""
    return [b for b in BACKENDS if _unavailable_reason(b) is None]


def detect_backend(preferred: str = "auto") -> str:
    """Resolve ``preferred`` ('auto', 'jack', 'alsa', 'coremidi') to a backend that opens now.

    'auto': JACK if a server is running, else ALSA if /dev/snd/seq works, else CoreMIDI on macOS. Raises
    ``MidiUnavailable`` naming what is missing and what to do; ``ValueError`` for an unknown name. Takes < 6 s,
    prints nothing, never starts a JACK server. Any thread.
    """
    if preferred != "auto" and preferred not in BACKENDS:
        raise ValueError(f"unknown MIDI backend {preferred!r}; choose one of: auto, {', '.join(BACKENDS)}")
    reasons: dict[str, str] = {}
    for backend in BACKENDS if preferred == "auto" else (preferred,):
        reason = _unavailable_reason(backend)
        if reason is None:
            return backend
        reasons[backend] = reason
    raise MidiUnavailable(_explain(reasons, auto=preferred == "auto"), FILE_MODE_HINT)


def list_ports(backend: str = "auto") -> dict[str, object]:
    """``{'backend': name, 'inputs': [...], 'outputs': [...]}`` for ``liveperf ports``. Any thread.

    ``inputs`` are ports we can read from (other clients' outputs), ``outputs`` ports we can send to (their inputs),
    by their full backend names (JACK: ``client:port``).
    """
    backend = detect_backend(backend)
    return {"backend": backend, "inputs": _port_names(backend, "in"), "outputs": _port_names(backend, "out")}


def _port_names(backend: str, side: str) -> list[str]:
    cls = rtmidi.MidiIn if side == "in" else rtmidi.MidiOut
    with _quiet():
        probe = cls(_RTMIDI_API[backend], "liveperf-list")
    try:
        return list(probe.get_ports())
    finally:
        probe.delete()


# ----------------------------------------------------------------------------------------------------------------
# Watching a JACK server (for liveperf.io.port_watch)

MIDI_TYPE = b"8 bit raw midi"
IS_INPUT, IS_OUTPUT = 0x1, 0x2  # JackPortIsInput, JackPortIsOutput


def _setup(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (("jack_on_info_shutdown", None, [vp, SHUTDOWN_FN, vp]),
                            ("jack_last_frame_time", ctypes.c_uint32, [vp]), ("jack_port_by_name", vp, [vp, cp]),
                            ("jack_port_get_all_connections", vp, [vp, vp]), ("jack_get_ports", vp, [vp, cp, cp, ctypes.c_ulong]),
                            ("jack_free", None, [vp]), ("jack_connect", ctypes.c_int, [vp, cp, cp])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class JackWatchClient:
    """A port-less JACK client (libjack through ctypes, the copy rtmidi loaded) that watches the server for
    ``liveperf.io.port_watch``: ``lost`` (a ``jack_c_callbacks.LostFlag``) is set by a compiled callback in libjack's
    thread the moment the server goes away (no Python runs there: ``jack_c_callbacks`` says why); the rest reads
    JACK's port graph and makes connections. One thread uses it (the watcher), which polls ``lost``. After ``lost``
    it is a zombie: ``close()`` it before any new JACK client opens in the process."""

    def __init__(self, handle: int, lib: ctypes.CDLL) -> None:
        self.handle, self.lib = handle, lib
        self.lost = watch_shutdown(lib, handle)

    @classmethod
    def open(cls, name: str, timeout_s: float) -> JackWatchClient | None:
        """A client on the server named by JACK_DEFAULT_SERVER, or None (no server, or no answer in time: a hung
        server blocks ``jack_client_open``, so it runs in a daemon thread; ctypes releases the GIL)."""
        if _libjack is None:
            return None
        lib = _setup(_libjack.lib)
        got: list[int] = []

        def attempt() -> None:
            status = ctypes.c_int(0)
            got.append(lib.jack_client_open(name.encode(), 0x01, ctypes.byref(status)) or 0)  # JackNoStartServer

        with _quiet():
            t = threading.Thread(target=attempt, name="port-watch-open", daemon=True)
            t.start()
            t.join(timeout_s)
        return cls(got[0], lib) if got and got[0] else None

    def close(self) -> None:
        with _quiet():
            self.lib.jack_client_close(self.handle)

    def frame(self) -> int:
        return self.lib.jack_last_frame_time(self.handle)

    def _names(self, ptr: int | None) -> list[str]:
        if not ptr:
            return []
        arr = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_char_p))
        out, i = [], 0
        while arr[i]:
            out.append(arr[i].decode(errors="replace"))
            i += 1
        self.lib.jack_free(ptr)
        return out

    def exists(self, port: str) -> bool:
        return bool(self.lib.jack_port_by_name(self.handle, port.encode()))

    def connections(self, port: str) -> set[str]:
        handle = self.lib.jack_port_by_name(self.handle, port.encode())
        return set(self._names(self.lib.jack_port_get_all_connections(self.handle, handle))) if handle else set()

    def midi_ports(self, flags: int) -> list[str]:
        return self._names(self.lib.jack_get_ports(self.handle, None, MIDI_TYPE, flags))

    def connect(self, src: str, dst: str) -> bool:
        return self.lib.jack_connect(self.handle, src.encode(), dst.encode()) in (0, 17)  # 17: EEXIST
