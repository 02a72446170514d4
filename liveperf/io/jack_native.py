"""A JACK MIDI client whose process callback is machine code compiled by numba: frame-exact in and out, no GIL.

Why not rtmidi here. rtmidi (and the JACK-Client package) hand JACK's events to Python: the input is stamped
when a Python thread gets to it, and an output goes into the *next* JACK cycle after a Python thread sends it, at
offset 0. On this 2-core VM that puts the tail of the send - due error above 1 ms (README, grid timing). A
process callback written in Python would run JACK's real-time thread under the GIL, and one busy Python thread
would then stall the whole audio graph. So the callback here is a ``numba.cfunc``: JACK calls native code that
touches only preallocated numpy arrays and a handful of libjack/libc functions (called through ctypes function
pointers that numba compiles to direct calls). It never allocates, locks or waits.

What the callback does each cycle (JACK's process thread):
- **Input**: every event of the input port is stamped at its *frame* (the frame clock below) and copied into the
  input ring; a POSIX semaphore is posted once, so the reading thread wakes at once instead of polling.
- **Output**: messages handed over *ahead* of their due time (``write(due_ns, data)``) wait in the output ring,
  in the order they were written. Each goes out in the cycle that contains its due frame, at that frame's offset
  inside the cycle. JACK needs non-decreasing offsets, and the order written is the order sent, so a message is
  never sent before one written ahead of it (a note-off never overtakes its note-on). A message whose due frame
  has already passed goes out at the cycle's first frame, and counts as ``late``; one later than
  ``drop_late_ns`` plus one period (what JACK itself adds to a message due "now": it can only go in the next
  cycle) is not sent when it is a note-on (``late_dropped``), and the note-off written for that note
  later is swallowed too, so the wire never shows an off without its on. ``revoke(channel, from_ns)`` does the same
  for note-ons handed over and then cancelled (a transport Stop, a panic) before their cycle came.
- Each message sent (or dropped) is reported in the emitted ring as ``(due_ns, sent_ns)`` (``sent_ns`` -1: dropped),
  so the owner can keep the true send - due error, measured on JACK's frame clock.
- **Reflex** (harmonize): a performer note-on is answered in the same cycle, at its own frame, from a table the
  engine publishes every step (``publish_reflex``, ``reflex_enable``); each answer is reported (``reflex_answers``)
  before its note-on is readable. The rules for when the callback answers are in ``jack_native_callback``.
- ``sounding()``: what the wire has sounding now, from everything the callback sent (the last safety net on close).

Threads: the JACK thread owns the ``_W`` counters of the input, emitted and reflex rings and the ``_R`` counter of
the output ring; ONE writer thread owns the output ring's ``_W`` (``write``), ONE reader thread owns the input ring's
``_R`` (``read``) and the emitted ring's ``_R`` (``emitted``), ONE engine thread the reflex table and ring.
Each ring is single-producer/single-consumer:
the producer fills a slot, then publishes it by storing the new ``_W`` (x86 keeps stores in order; both sides go
through memory for every access, numpy on one side and pointer loads/stores on the other).
Times are on the client's **frame clock**: frame n (counted from the first cycle, so it never wraps) is at
``base0 + n / rate`` ns. Input stamps, due times, send times and the reflex windows all use it, so a due time
computed from input stamps (a beat of the band's MIDI clock) lands on the frame it means whatever the wall clock
did meanwhile. ``now_ns()`` is now on that clock: ``time.monotonic_ns()`` less how far the frames have fallen behind
it since the first cycle. Where the frames are on the monotonic clock (``wall_base + n / rate``) is estimated each
cycle: ``wall_base`` is the lowest ``entry - n / rate`` of the last 0.25-0.5 s, where ``entry`` is
``CLOCK_MONOTONIC`` as the callback starts (a cycle is never processed before its time); ``base0`` is its first
value. With a sound card the two clocks agree to a few ppm; a server that stalls or runs slow (the dummy driver on
a busy machine: 24-114 ms behind in 20 s at 64-frame periods) moves ``wall_base``, and with it ``now_ns``, but no
stamp or due time: a show that mapped frames with the moving base put notes up to 40 ms off the band's grid.
Measured here (JACK dummy driver, 48 kHz / 256 frames, 2.4 s windows): callback entry minus the frame clock
min 0.0, median 0.03-0.08 ms. JACK's own ``jack_frames_to_time`` wandered 1.6 ms against the callback's start on
the same server (its DLL), so it is not used. At 64-frame periods this VM's dummy server fell behind real time
(20 ms in 3 s): ``now_ns`` then waits for the frames, and what is computed from input still lands on its frame.
"""

from __future__ import annotations

import ctypes
import threading
import time

import numpy as np

from liveperf.io.jack_native_callback import (  # noqa: F401  (C_* re-exported for tests and benches)
    C_CLIENT, C_DROP_LATE_NS, C_DROPPED_ON, C_EMIT_OVERFLOW, C_EMIT_R, C_EMIT_RING, C_EMIT_W, C_EVENT, C_CYCLES,
    C_BASE0, C_FRAME0, C_FRAME_JUMPS, C_WALL_BASE, C_MISSED, C_PEERS, C_PEER_DROPS, C_MISSED_OFFS, C_OFFQ, C_OFFQ_R,
    C_OFFQ_W,
    C_RESEND_FRAMES, C_RESENT_OFFS, C_RESTRUCK, OFFQ, C_FOLLOW_TRANSPORT, C_HUSH_FROM, C_HUSHED,
    C_IN_DATA, C_IN_META, C_IN_OVERFLOW, C_IN_PORT, C_IN_R, C_IN_TOO_LONG, C_IN_W, C_LATE, C_LATE_DROPPED,
    C_OUT_PORT, C_OUT_R, C_OUT_RING, C_OUT_W, C_RATE, C_REFLEX, C_REFLEXES, C_REVOKE_FROM, C_REVOKE_UPTO, C_REVOKED,
    C_RX_ACTIVE, C_RX_DECLINED, C_RX_HOLD, C_RX_ON, C_RX_RELEASED, C_RX_R, C_RX_RING, C_RX_STAGE, C_RX_W, C_SEM,
    C_SOUNDING, C_STAGE,
    C_SWALLOWED, C_TIMESPEC, C_WRITE_FAILED, IN_BYTES, N_CTL, REFLEX_WORDS, RING, RX_ANSWERS, RX_END, RX_INPUT_CH,
    RX_MID, RX_PARTNER, RX_PER_CYCLE, RX_T0, RX_VELOCITY, SENT_DROPPED, SENT_REVOKED, SENT_SWALLOWED,
    LATE_OK_MAX_US, LATE_OK_SHIFT, compile_process)
from liveperf.io.jack_c_callbacks import SHUTDOWN_FN as _SHUTDOWN, watch_shutdown

_U64, _U32, _I32 = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int32


def _bind(lib: ctypes.CDLL, libc: ctypes.CDLL) -> dict:
    """The C functions the callback calls, with every pointer passed as a 64-bit integer (same ABI on x86-64 and
    arm64), so numba needs no pointer types."""
    spec = {
        "jack_port_get_buffer": (lib, _U64, [_U64, _U32]),
        "jack_midi_get_event_count": (lib, _U32, [_U64]),
        "jack_midi_event_get": (lib, _I32, [_U64, _U64, _U32]),
        "jack_midi_clear_buffer": (lib, None, [_U64]),
        "jack_midi_event_write": (lib, _I32, [_U64, _U32, _U64, _U64]),
        "jack_last_frame_time": (lib, _U32, [_U64]),
        "clock_gettime": (libc, _I32, [_I32, _U64]),
        "sem_post": (libc, _I32, [_U64]),
        "jack_port_connected": (lib, _I32, [_U64]),
    }
    fns = {}
    for name, (owner, res, args) in spec.items():
        proto = ctypes.CFUNCTYPE(res, *args)
        fns[name] = proto((name, owner))
    return fns


class JackUnavailable(RuntimeError):
    """No JACK server answered, or libjack refused a port; the message says which."""


_PROCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p)
_compiled: dict = {}  # one compiled callback per process (compiling takes ~1 s), keyed by the libjack handle
_compile_lock = threading.Lock()


def _libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    from liveperf.io.jack_probe import _libjack
    if _libjack is None:
        raise JackUnavailable("libjack is not available (python-rtmidi was built without JACK, or no libjack)")
    lib = _libjack.lib
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (("jack_client_open", vp, [cp, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
                            ("jack_client_close", ctypes.c_int, [vp]),
                            ("jack_port_register", vp, [vp, cp, cp, ctypes.c_ulong, ctypes.c_ulong]),
                            ("jack_port_name", cp, [vp]), ("jack_port_set_alias", ctypes.c_int, [vp, cp]),
                            ("jack_set_process_callback", ctypes.c_int, [vp, _PROCESS, vp]),
                            ("jack_activate", ctypes.c_int, [vp]), ("jack_deactivate", ctypes.c_int, [vp]),
                            ("jack_connect", ctypes.c_int, [vp, cp, cp]), ("jack_get_sample_rate", ctypes.c_uint32, [vp]),
                            ("jack_get_buffer_size", ctypes.c_uint32, [vp]),
                            ("jack_on_info_shutdown", None, [vp, _SHUTDOWN, vp])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    libc = ctypes.CDLL(None, use_errno=True)
    return lib, libc


def _callback(lib: ctypes.CDLL, libc: ctypes.CDLL):
    with _compile_lock:
        key = lib._handle
        if key not in _compiled:
            _compiled[key] = compile_process(_bind(lib, libc))
        return _compiled[key]


def precompile() -> None:
    """Compile the process callback now (1-3 s on an idle 2-core machine, more under load; once per process), so
    that opening the ports later makes only libjack calls. Raises ``JackUnavailable`` without libjack."""
    _callback(*_libs())


class JackMidiClient:
    """One JACK client with a MIDI input port ``in`` and/or output port ``out``, run by the compiled callback.

    ``open`` registers the ports and activates the client; ``read``/``wait``/``emitted`` belong to ONE reader
    thread, ``write`` to ONE writer thread, ``close`` to the owner. Counters (``counters()``) may be read from any
    thread (plain int64 loads). ``lost`` (a ``jack_c_callbacks.LostFlag``: ``is_set()``) is set when the server goes
    away, by a compiled callback in libjack's thread (no Python there: ``jack_c_callbacks`` says why); the owner
    polls it. The client is dead for good then (``write`` returns False), only ``close`` is left to call.
    """

    def __init__(self, lib, libc, handle: int, name: str, inputs: bool, outputs: bool, drop_late_ns: int) -> None:
        self.lib, self.libc, self.handle = lib, libc, handle
        self.ctl = np.zeros(N_CTL, dtype=np.int64)
        self.in_meta = np.zeros((RING, 3), dtype=np.int64)
        self.in_data = np.zeros((RING, IN_BYTES), dtype=np.uint8)
        self.out_ring = np.zeros((RING, 2), dtype=np.int64)
        self.emit_ring = np.zeros((RING, 2), dtype=np.int64)
        self._event = np.zeros(3, dtype=np.int64)
        self._timespec = np.zeros(2, dtype=np.int64)
        self._stage = np.zeros(8, dtype=np.uint8)
        self._dropped_on = np.zeros(16 * 128, dtype=np.uint8)
        self._revoke_from = np.zeros(16, dtype=np.int64)
        self._revoke_upto = np.zeros(16, dtype=np.int64)
        self.reflex = np.full((2, REFLEX_WORDS), -1, dtype=np.int64)  # -1 everywhere: no window, no answer
        self.rx_ring = np.zeros((RING, 4), dtype=np.int64)
        self._sounding = np.zeros(16 * 128, dtype=np.uint8)
        self._rx_stage = np.zeros((RX_PER_CYCLE, 3), dtype=np.int64)
        self.missed = np.zeros(16 * 128, dtype=np.uint8)  # sounding when a peer went (the callback's repairs)
        self._offq = np.zeros((OFFQ, 2), dtype=np.int64)  # note-offs to send once more (the callback's repairs)
        self._sem = np.zeros(8, dtype=np.int64)  # a sem_t (32 bytes on glibc x86-64/arm64), room to spare
        if libc.sem_init(ctypes.c_void_p(self._sem.ctypes.data), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "sem_init failed")
        ctl = self.ctl
        ctl[C_CLIENT] = handle
        for index, arr in ((C_IN_META, self.in_meta), (C_IN_DATA, self.in_data), (C_OUT_RING, self.out_ring),
                           (C_EMIT_RING, self.emit_ring), (C_EVENT, self._event), (C_TIMESPEC, self._timespec),
                           (C_STAGE, self._stage), (C_DROPPED_ON, self._dropped_on), (C_SEM, self._sem),
                           (C_REVOKE_FROM, self._revoke_from), (C_REVOKE_UPTO, self._revoke_upto),
                           (C_REFLEX, self.reflex), (C_RX_RING, self.rx_ring), (C_SOUNDING, self._sounding),
                           (C_RX_STAGE, self._rx_stage), (C_MISSED, self.missed),
                           (C_OFFQ, self._offq)):
            ctl[index] = arr.ctypes.data
        ctl[C_DROP_LATE_NS] = drop_late_ns
        self.drop_late_ns = drop_late_ns
        self.follows_transport = False
        self.repeat_offs_ms = 0
        ctl[C_RX_HOLD] = -1  # no harmony to end at its cause's release
        ctl[C_HUSH_FROM] = -1  # no transport Stop heard
        ctl[C_RATE] = lib.jack_get_sample_rate(handle)
        self.name = name
        self.in_name = self._register(b"in", 0x1, C_IN_PORT) if inputs else ""
        self.out_name = self._register(b"out", 0x2, C_OUT_PORT) if outputs else ""
        self.sample_rate = lib.jack_get_sample_rate(handle)
        self.period_frames = lib.jack_get_buffer_size(handle)
        self._closed = False
        self._last_now = 0
        self._cb = _callback(lib, libc)  # compiled by ``open`` already: ports appear only when about to go live
        self._cb_ptr = _PROCESS(self._cb.address)  # kept alive with the client
        # The server going away (killed, crashed, stopped by the user): libjack's thread sets ``lost``, once.
        # Nothing here reconnects; writes are refused from then on and the owner's watch sees it.
        self.lost = watch_shutdown(lib, handle)
        if lib.jack_set_process_callback(handle, self._cb_ptr, ctypes.c_void_p(ctl.ctypes.data)) != 0:
            self._close_client()
            raise JackUnavailable(f"JACK refused the process callback of {name}")
        if lib.jack_activate(handle) != 0:
            self._close_client()
            raise JackUnavailable(f"JACK could not activate client {name}")

    @classmethod
    def open(cls, name: str, *, inputs: bool = True, outputs: bool = True, drop_late_ns: int = 2_000_000,
             timeout_s: float = 5.0) -> JackMidiClient:
        """A client called ``name`` on the server named by JACK_DEFAULT_SERVER (never starts a server). Raises
        ``JackUnavailable`` when none answers within ``timeout_s`` or the name is taken (no silent renaming:
        other clients connect to it by name)."""
        from liveperf.io.jack_probe import _quiet
        lib, libc = _libs()
        _callback(lib, libc)  # compile (~1-3 s, once per process) before the client and its ports exist
        got: list[int] = []

        def attempt() -> None:
            status = ctypes.c_int(0)
            got.append(lib.jack_client_open(name.encode(), 0x01 | 0x02, ctypes.byref(status)) or 0)  # NoStart|UseExact

        with _quiet():
            t = threading.Thread(target=attempt, name="jack-native-open", daemon=True)
            t.start()
            t.join(timeout_s)
        if not got or not got[0]:
            raise JackUnavailable(f"no JACK server answered client {name!r} within {timeout_s:.0f} s "
                                  f"(or the name is taken)")
        return cls(lib, libc, got[0], name, inputs, outputs, drop_late_ns)

    def _register(self, port: bytes, flags: int, index: int) -> str:
        handle = self.lib.jack_port_register(self.handle, port, b"8 bit raw midi", flags, 0)
        if not handle:
            self._close_client()
            raise JackUnavailable(f"JACK refused MIDI port {self.name}:{port.decode()}")
        self.ctl[index] = handle
        # The rtmidi backend's name as an alias (JACK connects by alias too): ``<client>-out:out``, ``<client>-in:in``
        self.lib.jack_port_set_alias(handle, f"{self.name}-{port.decode()}:{port.decode()}".encode())
        return self.lib.jack_port_name(handle).decode()

    # ---- the writer thread ----
    def write(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> bool:
        """Hand ``data`` (1-3 bytes, one message) over to go out at ``due_ns``; a note-on that cannot go out by
        ``drop_late_ns`` (or ``late_ok_ns``, up to ~16 s) plus a period after it is dropped. False (not queued)
        when the ring is full, the message is longer than 3 bytes, the client is closed or its server is lost."""
        n = len(data)
        if self._closed or not 0 < n <= 3 or self.lost.is_set():
            return False
        ctl = self.ctl
        w = int(ctl[C_OUT_W])
        if w - int(ctl[C_OUT_R]) >= RING:
            return False
        packed = n
        for k, b in enumerate(data):
            packed |= (b & 0xFF) << (8 * (k + 1))
        if late_ok_ns is not None:  # its own late drop, in µs above the bytes (0: the port's drop_late_ns)
            packed |= min(max(1, late_ok_ns // 1000), LATE_OK_MAX_US) << LATE_OK_SHIFT
        slot = w & (RING - 1)
        self.out_ring[slot, 0] = due_ns
        self.out_ring[slot, 1] = packed
        ctl[C_OUT_W] = w + 1  # publish after the slot is filled
        return True

    def revoke(self, channel: int | None, from_ns: int) -> None:
        """Note-ons on ``channel`` (None: all) handed over so far and due at or after ``from_ns`` are not sent
        (counted in ``revoked``); their note-offs, written later, are swallowed. Writer thread."""
        upto = int(self.ctl[C_OUT_W])
        for ch in range(16) if channel is None else (channel,):
            self._revoke_from[ch] = from_ns  # before ``upto``: the callback reads ``upto`` first (see module doc)
            self._revoke_upto[ch] = upto

    def repeat_offs(self, ms: int) -> None:
        """Send every note-off once more ``ms`` later (0: never), unless its pitch sounds again by then: a receiver
        that lost a cycle's MIDI does not hold the note for good (``jack_native_callback``, "Repairs"). Owner's
        thread; takes effect for the note-offs sent from the next cycle."""
        self.repeat_offs_ms = ms
        self.ctl[C_RESEND_FRAMES] = ms * self.sample_rate // 1000

    def follow_transport(self, on: bool = True) -> None:
        """Obey MIDI Stop / Start / Continue on the input at their frames (``jack_native_callback``, "Repairs"):
        for a show that follows MIDI clock. Owner's thread, before the transport runs."""
        self.follows_transport = on
        self.ctl[C_FOLLOW_TRANSPORT] = 1 if on else 0

    def seed_missed(self, keys) -> None:
        """Mark (channel, pitch) notes as missed: each gets a note-off when a peer is next connected (a new client
        after a server restart: what the old one had sounding, which a synth that outlived the server still holds).
        Call before connecting the output."""
        for ch, pitch in keys:
            self.missed[(ch << 7) | pitch] = 1

    def pending(self) -> int:
        """Messages handed over and not yet taken by the callback, and note-offs it is still to send once more (its
        repairs: a show that waits for 0 before it ends has every repeat on the wire and in its counters)."""
        ctl = self.ctl
        return int(ctl[C_OUT_W] - ctl[C_OUT_R]) + int(ctl[C_OFFQ_W] - ctl[C_OFFQ_R])

    def sounding(self) -> list[tuple[int, int]]:
        """(channel, pitch) of every note the callback sent and has not ended yet. Read it once the output ring is
        drained (``pending() == 0``), or it may miss what is on its way."""
        return [(int(k) >> 7, int(k) & 0x7F) for k in np.flatnonzero(self._sounding)]

    # ---- the engine thread: the reflex (jack_native_callback) ----
    def publish_reflex(self, t0_ns: int, mid_ns: int, end_ns: int, partner_channel: int, input_channel: int | None,
                       answers: np.ndarray, velocity: np.ndarray) -> None:
        """The answers ([2, 128]: pitch or -1) to note-ons stamped in [t0_ns, mid_ns) and [mid_ns, end_ns), on
        ``input_channel`` (None: any but the partner's), with ``velocity[v]`` for an input velocity v. Written into
        the table the callback is not using, then made live with one store: a cycle reads one table or the other,
        never half of each (a table is rewritten one publish later, a grid step, far longer than a cycle)."""
        t = self.reflex[1 - (int(self.ctl[C_RX_ACTIVE]) & 1)]
        t[RX_T0], t[RX_MID], t[RX_END] = t0_ns, mid_ns, end_ns
        t[RX_PARTNER] = partner_channel
        t[RX_INPUT_CH] = -1 if input_channel is None else input_channel
        t[RX_ANSWERS:RX_ANSWERS + 256] = np.asarray(answers, dtype=np.int64).reshape(256)
        t[RX_VELOCITY:RX_VELOCITY + 128] = velocity
        self.ctl[C_RX_ACTIVE] = 1 - (int(self.ctl[C_RX_ACTIVE]) & 1)

    def reflex_enable(self, on: bool) -> None:
        """Let the callback answer (a fresh table is published) or not."""
        self.ctl[C_RX_ON] = 1 if on else 0

    def reflex_hold(self, cause_pitch: int, channel: int, pitch: int) -> None:
        """The engine played (channel, pitch) as the harmony of performer pitch ``cause_pitch``: the callback ends
        it on the frame of that pitch's release, if it still sounds then (``jack_native_callback``)."""
        self.ctl[C_RX_HOLD] = (cause_pitch << 12) | (channel << 7) | pitch  # one store: the callback reads it whole

    def reflex_answers(self) -> list[tuple[int, bytes, bytes, int]]:
        """Answers the callback sent since the last call: ``(note-on stamp ns, note-on bytes, answer bytes,
        answer sent ns)``; sent ns -1: the cycle's buffer was full, nothing went out."""
        ctl = self.ctl
        r, w = int(ctl[C_RX_R]), int(ctl[C_RX_W])
        out = []
        for i in range(r, w):
            ts, cause, answer, sent = (int(x) for x in self.rx_ring[i & (RING - 1)])
            out.append((ts, bytes(((cause >> 8 * k) & 0xFF) for k in range(3)),
                        bytes(((answer >> 8 * (k + 1)) & 0xFF) for k in range(3)), sent))
        ctl[C_RX_R] = w
        return out

    # ---- the reader thread ----
    def wait(self, timeout_s: float) -> None:
        """Block (GIL released) until the callback has stored input, or ``timeout_s``."""
        deadline = time.clock_gettime(time.CLOCK_REALTIME) + timeout_s
        spec = (ctypes.c_long * 2)(int(deadline), int((deadline % 1) * 1e9))
        self.libc.sem_timedwait(ctypes.c_void_p(self._sem.ctypes.data), spec)

    def read(self) -> list[tuple[int, bytes]]:
        """Input stored so far: ``[(ts_ns, data)]`` in arrival order, ``ts_ns`` the event's frame on the frame
        clock (``now_ns``'s scale)."""
        return [(ts, data) for _, ts, data in self.read_frames()]

    def read_frames(self) -> list[tuple[int, int, bytes]]:
        """As ``read``, with each event's JACK frame first: ``[(frame, ts_ns, data)]``, ``frame`` on
        ``jack_last_frame_time``'s scale (modulo 2**32), the same for every client of the server."""
        ctl = self.ctl
        r, w = int(ctl[C_IN_R]), int(ctl[C_IN_W])
        out = []
        for i in range(r, w):
            slot = i & (RING - 1)
            ts, size, frame = (int(v) for v in self.in_meta[slot])
            out.append((frame, ts, self.in_data[slot, :size].tobytes()))
        ctl[C_IN_R] = w
        return out

    def emitted(self) -> list[tuple[int, int]]:
        """``[(due_ns, sent_ns)]`` of messages the callback has taken; ``sent_ns`` < 0 when it did not go out:
        ``SENT_DROPPED`` (late, or the cycle was full), ``SENT_REVOKED``, ``SENT_SWALLOWED`` (a note-off)."""
        ctl = self.ctl
        r, w = int(ctl[C_EMIT_R]), int(ctl[C_EMIT_W])
        out = [(int(self.emit_ring[i & (RING - 1), 0]), int(self.emit_ring[i & (RING - 1), 1])) for i in range(r, w)]
        ctl[C_EMIT_R] = w
        return out

    # ---- any thread ----
    def now_ns(self) -> int:
        """Now on the frame clock (module docstring): ``time.monotonic_ns()`` before the first cycle, then less how
        far the frames have fallen behind it since; never less than what it returned before."""
        ctl = self.ctl
        now = time.monotonic_ns()
        if ctl[C_CYCLES] > 0:  # the callback stored base0 and wall_base before counting its first cycle
            now -= int(ctl[C_WALL_BASE]) - int(ctl[C_BASE0])
        now = max(now, self._last_now)  # the frames fell behind: the frame clock waits for them
        self._last_now = now
        return now

    def jack_frame(self, t_ns: int) -> int:
        """The JACK frame (``read_frames``' scale, modulo 2**32, the same for every client of the server) of a time
        on this client's frame clock, e.g. an ``emitted()`` send time. Valid once the callback has run a cycle."""
        c = self.ctl
        frames = round((t_ns - int(c[C_BASE0])) * int(c[C_RATE]) / 1e9)  # the inverse of base0 + frames / rate
        return (int(c[C_FRAME0]) + frames) & 0xFFFFFFFF

    def counters(self) -> dict[str, int]:
        c = self.ctl
        return {"cycles": int(c[C_CYCLES]), "in_overflow": int(c[C_IN_OVERFLOW]), "too_long": int(c[C_IN_TOO_LONG]),
                "late": int(c[C_LATE]), "late_dropped": int(c[C_LATE_DROPPED]), "swallowed_offs": int(c[C_SWALLOWED]),
                "write_failed": int(c[C_WRITE_FAILED]), "revoked": int(c[C_REVOKED]),
                "emit_overflow": int(c[C_EMIT_OVERFLOW]),
                "reflexes": int(c[C_REFLEXES]), "reflex_declined": int(c[C_RX_DECLINED]),
                "reflex_released": int(c[C_RX_RELEASED]), "frame_jumps": int(c[C_FRAME_JUMPS]),
                # repairs (jack_native_callback): note-offs sent once more, output peers lost and the note-offs
                # sent when one came, note-ons that ended a sounding pitch first, note-ons hushed by a Stop
                "resent_offs": int(c[C_RESENT_OFFS]),
                "peer_drops": int(c[C_PEER_DROPS]), "missed_offs": int(c[C_MISSED_OFFS]),
                "restruck": int(c[C_RESTRUCK]), "hushed": int(c[C_HUSHED]),
                # the frame clock: JACK frame ``frame0`` (modulo 2**32) is at ``base0_ns``; ``slip_ns``: how far the
                # frames are behind the wall clock now, against the first cycle
                "frame0": int(c[C_FRAME0]), "base0_ns": int(c[C_BASE0]), "sample_rate": int(c[C_RATE]),
                "slip_ns": int(c[C_WALL_BASE]) - int(c[C_BASE0])}

    def connect(self, src: str, dst: str) -> bool:
        return self.lib.jack_connect(self.handle, src.encode(), dst.encode()) in (0, 17)  # 17: EEXIST

    def post(self) -> None:
        """Wake a thread blocked in ``wait`` (for shutting the reader down)."""
        self.libc.sem_post(ctypes.c_void_p(self._sem.ctypes.data))

    def _close_client(self) -> None:
        from liveperf.io.jack_probe import _quiet
        with _quiet():
            self.lib.jack_client_close(self.handle)

    def close(self) -> None:
        """Deactivate (the callback has returned for good after this) and close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        from liveperf.io.jack_probe import _quiet
        with _quiet():
            self.lib.jack_deactivate(self.handle)
        self._close_client()
        self.post()
