"""Callbacks that libjack calls on its own threads, compiled: no Python, so no GIL, runs there.

Why: ``jack_client_close`` stops a client's notification thread, cancelling it (``pthread_cancel``) when it does not
stop in time, as it need not on a slow or stalled server. A thread cancelled while it waits for the GIL (a ctypes
callback into Python: libjack printing an error while the client closes) dies holding the GIL's mutex, and every
Python thread of the process then waits forever: a show that cannot end. Seen on 2026-12-08 with the test JACK
servers slowed down (``tests/slow_jack.py``): the test process hung with the GIL's mutex owned by a thread that no
longer existed (3 of 6 runs of tests/io/test_midi_ports_jack.py; 0 of 14 with the handler below).

- ``drop_message``: libjack's error and info handler while liveperf opens, probes and closes clients
  (``liveperf.io.jack_probe``): it drops the message (libjack's default prints it to stderr).
- ``watch_shutdown(lib, handle)``: the server-gone callback of a client; it only sets the returned ``LostFlag``,
  which the owner polls (``is_set``), so nothing runs in libjack's thread but one store.

Both are compiled once per process (numba, cached on disk) when libjack is found (``jack_probe``), so that no open
waits for a compiler.
"""

from __future__ import annotations

import ctypes
import threading

import numba
import numpy as np
from numba import types

_compiled: dict[str, int] = {}
_lock = threading.Lock()


def _drop(msg):  # pragma: no cover (compiled) -- void(const char *)
    return


def message_sink() -> int:
    """The address of the compiled ``drop_message`` handler (``void (*)(const char *)``; compiled once per process,
    cached on disk by numba)."""
    with _lock:
        if "drop" not in _compiled:
            _compiled["drop"] = numba.cfunc(types.void(types.voidptr), cache=True)(_drop).address
        return _compiled["drop"]


MESSAGE_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


def drop_message() -> ctypes._CFuncPtr:
    """``message_sink`` as a ctypes function pointer (for ``jack_set_error_function``)."""
    return MESSAGE_FN(message_sink())


def _mark(code, reason, arg):  # pragma: no cover (compiled) -- void(int, const char *, void *flag)
    numba.carray(arg, 1, dtype=np.int64)[0] = 1


SHUTDOWN_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)  # jack_info_shutdown_callback


def shutdown_marker() -> ctypes._CFuncPtr:
    """The compiled server-gone callback: stores 1 in the int64 its ``arg`` points at."""
    with _lock:
        if "mark" not in _compiled:
            _compiled["mark"] = numba.cfunc(types.void(types.int32, types.voidptr, types.voidptr), cache=True)(
                _mark).address
        return SHUTDOWN_FN(_compiled["mark"])


class LostFlag:
    """Set (from libjack's thread, by ``shutdown_marker``) when a client's server is gone; read by the owner.

    Its memory lives as long as the process: a zombie client's libjack may still call the callback after the owner
    let go of the client."""

    _cells: list[np.ndarray] = []  # never freed (see above): one int64 per client ever opened

    def __init__(self) -> None:
        self._cell = np.zeros(1, dtype=np.int64)
        LostFlag._cells.append(self._cell)

    @property
    def address(self) -> int:
        return self._cell.ctypes.data

    def is_set(self) -> bool:
        return bool(self._cell[0])

    def set(self) -> None:
        self._cell[0] = 1


_callbacks: list = []  # the ctypes pointers handed to libjack, kept alive with the process


def watch_shutdown(lib: ctypes.CDLL, handle: int) -> LostFlag:
    """Register the compiled server-gone callback on client ``handle`` (``lib.jack_on_info_shutdown``, with its
    argtypes set by the caller) and return the flag it sets."""
    flag, callback = LostFlag(), shutdown_marker()
    _callbacks.append(callback)
    lib.jack_on_info_shutdown(handle, callback, ctypes.c_void_p(flag.address))
    return flag
