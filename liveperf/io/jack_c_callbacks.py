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
import functools

import numba
import numpy as np
from numba import types

MESSAGE_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
SHUTDOWN_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)  # jack_info_shutdown_callback


def _drop(msg):  # pragma: no cover (compiled) -- void(const char *)
    return


def _mark(code, reason, arg):  # pragma: no cover (compiled) -- void(int, const char *, void *flag)
    numba.carray(arg, 1, dtype=np.int64)[0] = 1


# Each made once per process (cached, the pointer kept alive for good: libjack may call it at any time).
@functools.cache
def drop_message() -> ctypes._CFuncPtr:
    """The compiled handler that drops libjack's message (for ``jack_set_error_function``)."""
    return MESSAGE_FN(numba.cfunc(types.void(types.voidptr), cache=True)(_drop).address)


@functools.cache
def shutdown_marker() -> ctypes._CFuncPtr:
    """The compiled server-gone callback: stores 1 in the int64 its ``arg`` points at."""
    return SHUTDOWN_FN(numba.cfunc(types.void(types.int32, types.voidptr, types.voidptr), cache=True)(_mark).address)


def message_sink() -> int:
    """The address of ``drop_message``'s compiled code."""
    return ctypes.cast(drop_message(), ctypes.c_void_p).value


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


def watch_shutdown(lib: ctypes.CDLL, handle: int) -> LostFlag:
    """Register the compiled server-gone callback on client ``handle`` (``lib.jack_on_info_shutdown``, with its
    argtypes set by the caller) and return the flag it sets."""
    flag = LostFlag()
    lib.jack_on_info_shutdown(handle, shutdown_marker(), ctypes.c_void_p(flag.address))
    return flag
