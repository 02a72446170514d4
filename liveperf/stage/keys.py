"""Stage keys: single key presses on the show's terminal -> show-control commands (the same ``Command`` as OSC).

=======================  ==========================================  ===========================================
Key                      Command (kind, value)                       Notes
=======================  ==========================================  ===========================================
right arrow, ``n``       ("song_next", None)                         at the next bar line (the engine's rule)
left arrow, ``p``        ("song_prev", None)
digits, then Enter       ("song_select", number)                     1-based; Backspace edits; any other key
                                                                     cancels; digits older than 5 s are dropped
``!``, or Esc Esc        ("panic", None)                             Esc twice within 1 s
``q`` ``q``              ("stop", None)                              twice within 2 s: one stray q never stops
space                    ("tap", None)                               ``ts_ns`` is when the key was read
``m``                    ("param", ("mode", next mode))              cycles through the modes the callable gives;
                                                                     m again within 2 s goes on from the last ask
``?``                    (none)                                      a help line, as a notice
=======================  ==========================================  ===========================================

``map_keys`` is the key map: a pure function from (state, bytes read, time) to (new state, commands, notices), so
escape sequences split across reads, the q-q confirmation and digit entry are tested without a terminal.
``KeyReader`` is the thin adapter: a thread that puts a TTY stdin in cbreak mode (no echo, no line buffering,
Ctrl-S/Ctrl-Q flow control off so a stray Ctrl-S cannot freeze the stage view; Ctrl-C still interrupts), reads
bytes, and calls back. It restores the terminal on ``close()`` and at interpreter exit, and does nothing when stdin
is not a TTY (CI, a rig started by systemd) or the process runs in the background of its shell.
"""

from __future__ import annotations

import atexit
import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from liveperf.io.osc_protocol import Command

ESC = 0x1B
ESC_PAIR_NS = 1_000_000_000  # Esc, Esc within this = panic
STOP_CONFIRM_NS = 2_000_000_000  # q, q within this = stop
DIGITS_TIMEOUT_NS = 5_000_000_000  # a song number being typed is forgotten after this long without a key
MODE_REPEAT_NS = 2_000_000_000  # m again within this advances from the mode asked for last, not from modes()
MAX_DIGITS = 4
_MAX_ESCAPE_BYTES = 16  # a longer "escape sequence" is garbage: dropped

HELP = ("keys: right/n next song | left/p previous | number + Enter select | space tap | m mode | "
        "! or Esc Esc panic | q q stop")

ModeChoices = Callable[[], tuple[str, Sequence[str]]]
"""Returns (the mode the next ``m`` should advance from -- the pending mode if one waits for the bar line, else the
current one --, the modes this song can play, in cycling order). Called on the key thread: it must only read
thread-safe data (e.g. the newest ``StageState``)."""


@dataclass(frozen=True)
class KeyState:
    """What the key map remembers between reads (all times in ns on the caller's monotonic clock)."""

    escape: bytes = b""  # an escape sequence begun but not finished; may continue in the next read
    escape_ns: int = 0  # when its ESC byte was read
    digits: str = ""  # a song number being typed
    digits_ns: int = 0  # when its last digit was typed
    stop_armed_ns: int | None = None  # when a first q was pressed
    mode_asked: str | None = None  # the mode the last m asked for (the engine may not have it yet) ...
    mode_asked_ns: int = 0  # ... and when


@dataclass(frozen=True)
class KeyResult:
    """``map_keys``'s answer: the state for the next read, the commands in key order, and notices (one-line texts
    for the performer: what is being typed, "press q again", the help line)."""

    state: KeyState
    commands: tuple[Command, ...] = ()
    notices: tuple[str, ...] = ()


def map_keys(state: KeyState, data: bytes, now_ns: int, modes: ModeChoices) -> KeyResult:
    """Map the bytes of one read (``data``, read at ``now_ns``) to commands. Pure apart from calling ``modes``
    (only when ``m`` is pressed). Bytes that are no key of ours are ignored; unknown escape sequences too."""
    m = _Mapper(state, now_ns, modes)
    i = 0
    while i < len(data):
        b = data[i]
        i += 1
        esc = m.s.escape
        if esc == b"\x1b":  # a lone ESC so far: a second ESC, the start of a sequence, or Alt+key
            if b == ESC:
                starts_sequence = i < len(data) and data[i] in b"[O"  # Alt+arrow sends ESC ESC [ C
                if not starts_sequence and now_ns - m.s.escape_ns <= ESC_PAIR_NS:
                    m.s = replace(m.s, escape=b"")
                    m.key("panic")
                else:
                    m.s = replace(m.s, escape=b"\x1b", escape_ns=now_ns)
            elif b in b"[O":
                m.s = replace(m.s, escape=esc + bytes([b]))
            else:
                m.s = replace(m.s, escape=b"")
                m.plain(b)  # Alt+key: the key
        elif esc.startswith(b"\x1bO"):  # SS3: one final byte (arrows in application cursor mode)
            m.s = replace(m.s, escape=b"")
            m.sequence(bytes([b]))
        elif esc:  # CSI: parameter and intermediate bytes 0x20..0x3F, then one final byte 0x40..0x7E
            if 0x40 <= b <= 0x7E:
                m.s = replace(m.s, escape=b"")
                m.sequence(esc[2:] + bytes([b]))
            elif 0x20 <= b <= 0x3F and len(esc) < _MAX_ESCAPE_BYTES:
                m.s = replace(m.s, escape=esc + bytes([b]))
            else:  # not a sequence after all: drop it, read the byte afresh
                m.s = replace(m.s, escape=b"")
                i -= 1
        elif b == ESC:
            m.s = replace(m.s, escape=b"\x1b", escape_ns=now_ns)
        else:
            m.plain(b)
    return KeyResult(m.s, tuple(m.commands), tuple(m.notices))


_PLAIN = {ord("n"): "song_next", ord("p"): "song_prev", ord(" "): "tap", ord("!"): "panic"}


class _Mapper:
    """The working state of one ``map_keys`` call."""

    def __init__(self, state: KeyState, now_ns: int, modes: ModeChoices) -> None:
        self.s = state
        self.now_ns = now_ns
        self.modes = modes
        self.commands: list[Command] = []
        self.notices: list[str] = []
        if state.digits and now_ns - state.digits_ns > DIGITS_TIMEOUT_NS:
            self.s = replace(self.s, digits="")

    def key(self, kind: str, value: object = None) -> None:
        """A key that is neither a digit, Enter, Backspace nor q: it cancels digit entry and a first q."""
        if self.s.digits:
            self.notices.append(f"song {self.s.digits}: cancelled")
        self.s = replace(self.s, digits="", stop_armed_ns=None)
        if kind:
            self.commands.append(Command(kind, value))

    def sequence(self, body: bytes) -> None:
        """A finished escape sequence, without its ESC [ / ESC O: arrows end in C (right) and D (left)."""
        final = body[-1:]
        self.key({b"C": "song_next", b"D": "song_prev"}.get(final, ""))

    def plain(self, b: int) -> None:
        now = self.now_ns
        if 0x30 <= b <= 0x39:
            if len(self.s.digits) < MAX_DIGITS:
                digits = self.s.digits + chr(b)
                self.s = replace(self.s, digits=digits, digits_ns=now, stop_armed_ns=None)
            self.notices.append(f"song {self.s.digits}_ (Enter selects)")
        elif b in (0x0D, 0x0A):  # Enter: CR, or LF after the terminal's CR -> NL translation
            digits, self.s = self.s.digits, replace(self.s, digits="", stop_armed_ns=None)
            if digits and int(digits) >= 1:
                self.commands.append(Command("song_select", int(digits)))
            elif digits:
                self.notices.append("songs are numbered from 1")
        elif b in (0x7F, 0x08):  # Backspace / Delete
            self.s = replace(self.s, digits=self.s.digits[:-1], digits_ns=now, stop_armed_ns=None)
            if self.s.digits:
                self.notices.append(f"song {self.s.digits}_ (Enter selects)")
        elif b == ord("q"):
            armed = self.s.stop_armed_ns
            self.key("")
            if armed is not None and now - armed <= STOP_CONFIRM_NS:
                self.commands.append(Command("stop"))
            else:
                self.s = replace(self.s, stop_armed_ns=now)
                self.notices.append(f"press q again within {STOP_CONFIRM_NS // 1_000_000_000} s to stop the show")
        elif b == ord("m"):
            self._next_mode()
        elif b == ord("?"):
            self.key("")
            self.notices.append(HELP)
        else:
            self.key(_PLAIN.get(b, ""))

    def _next_mode(self) -> None:
        current, available = self.modes()
        available = list(available)
        # Quick presses cycle on from the mode asked for last: the engine may not have taken it up yet.
        recent = self.s.mode_asked is not None and self.now_ns - self.s.mode_asked_ns <= MODE_REPEAT_NS
        base = self.s.mode_asked if recent else current
        if not available:
            self.key("")
            self.notices.append("no modes to switch to")
            return
        nxt = available[(available.index(base) + 1) % len(available)] if base in available else available[0]
        self.key("param", ("mode", nxt))
        self.s = replace(self.s, mode_asked=nxt, mode_asked_ns=self.now_ns)
        self.notices.append(f"mode {nxt} at the next bar")


# -- The adapter -----------------------------------------------------------------------------------------------

class KeyReader:
    """Reads keys from a terminal on its own thread ("stage-keys") and calls ``on_command(ts_ns, Command)``.

    ``ts_ns`` is ``clock_ns()`` (default ``time.monotonic_ns``) right after the read returned. ``on_command`` and
    ``on_notice(text)`` run on the key thread: they must only enqueue (the engine applies commands at its bar
    lines). If one raises, it is counted in ``errors`` (kept in ``error``) and reading goes on. ``fd`` defaults
    to stdin. When it is not a TTY, or the process is in the background of its shell (reading would stop it with
    SIGTTIN), ``start`` returns False and nothing happens. ``start``/``close`` are idempotent; the terminal's
    attributes are put back by ``close``, by ``__exit__`` (also after an exception) and at interpreter exit.
    """

    def __init__(self, on_command: Callable[[int, Command], None], *, modes: ModeChoices,
                 on_notice: Callable[[str], None] | None = None, fd: int | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._on_command = on_command
        self._on_notice = on_notice
        self._modes = modes
        self._fd = fd
        self._clock_ns = clock_ns
        self._saved: list | None = None  # the terminal's attributes before cbreak
        self._wake: tuple[int, int] | None = None  # a pipe that wakes the thread's select() on close
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors = 0
        self.error: BaseException | None = None

    @property
    def active(self) -> bool:
        """True while the key thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Put the terminal in cbreak mode and start reading; returns False (and does nothing) without a TTY."""
        with self._lock:
            if self._thread is not None:
                return self.active
            fd = self._fd if self._fd is not None else _stdin_fd()
            if fd is None or not os.isatty(fd) or _in_background(fd):
                return False
            self._fd = fd
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd, termios.TCSANOW)
            attrs = termios.tcgetattr(fd)
            attrs[0] &= ~termios.IXON  # Ctrl-S would otherwise pause all output, stage view included
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            atexit.register(self._restore)
            self._wake = os.pipe()
            self._thread = threading.Thread(target=self._run, args=(fd, self._wake[0]), name="stage-keys",
                                            daemon=True)
            self._thread.start()
            return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop reading and put the terminal back as it was. Any thread but the key thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            wake, self._wake = self._wake, None
        os.write(wake[1], b"x")
        thread.join(timeout_s)
        self._restore()
        for end in wake:
            os.close(end)

    def __enter__(self) -> KeyReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _restore(self) -> None:
        with self._lock:
            saved, self._saved = self._saved, None
        if saved is None:
            return
        atexit.unregister(self._restore)
        try:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
        except termios.error as e:  # the terminal is gone (hang-up): nothing left to restore
            self.error = self.error or e

    def _run(self, fd: int, wake_fd: int) -> None:
        state = KeyState()
        while True:
            try:
                ready, _, _ = select.select([fd, wake_fd], [], [])
                if wake_fd in ready:
                    return
                data = os.read(fd, 64)
            except OSError as e:  # EIO: the terminal hung up; the show goes on without keys
                self.error = e
                return
            if not data:  # end of file
                return
            now_ns = self._clock_ns()
            try:
                result = map_keys(state, data, now_ns, self._modes)
                state = result.state
                for command in result.commands:
                    self._on_command(now_ns, command)
                if self._on_notice is not None:
                    for notice in result.notices:
                        self._on_notice(notice)
            except Exception as e:  # a bug in a callback: count it, keep the keys working
                self.errors += 1
                self.error = e


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):  # replaced by an object without a descriptor (pytest's capture), or closed
        return None


def _in_background(fd: int) -> bool:
    """True when ``fd`` is our controlling terminal and another process group has it in the foreground."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:  # not our controlling terminal (a pty we opened): no job control applies
        return False
