"""The stage view: a terminal status display for the performer, readable from a few metres.

Three pieces with one-way data flow, so the display can never slow the engine down:

- ``StageState``: a frozen snapshot of plain values (song, bar:beat, tempo, clock, mode, key parameters, note
  activity, latency and error counts, recent messages). The engine thread builds a new one and hands it over;
  ``__post_init__`` copies the parameter mapping and the message list, so the engine may keep mutating its own.
- ``render(state)``: a pure function from a state to a rich renderable. It adapts to the width it is rendered at
  (big block digits for bar:beat and tempo when they fit, plain text below ~40 columns, ASCII-only terminals).
- ``StageView``: ``update(state)`` is one reference assignment (latest wins, never blocks). A feeder thread sends
  the newest state, at most ~10 times a second, as one JSON line to a display process (``python -m
  liveperf.stage.display``) that draws it with ``rich.live.Live`` on the same terminal. When the view is switched off
  or stdout is not a terminal (a headless rig, output piped to a log) it does nothing.

Why a process: laying out one frame with rich is ~1.5 ms of pure Python, and a thread doing it holds the GIL that
long. Measured here (a timing thread waking every 1 ms, sleep to 0.2 ms before its deadline then spin, 5 s per
case, states every 62.5 ms, 3 rounds in one run on a noisy 2-core machine): lateness p99 0.008-1.0 ms without a
view, 1.7-2.2 ms with rich drawing on a thread of the same process, 0.02-0.13 ms with this display process.

Keys (next / previous / select song, panic, stop, tap, mode) live in ``liveperf.stage.keys``.
Above the engine's floor: imports ``liveperf.params`` only (for units); ``show`` wires the pieces together.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rich.box import ASCII, ROUNDED
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.text import Text

from liveperf.params import PARAMS

# The parameters a show would usually put on the stage view (in this order); any names from PARAMS may be used.
KEY_PARAMS = ("temperature", "top_p", "density", "velocity")

REFRESH_HZ = 10.0
_BIG_MIN_WIDTH = 40  # below this many columns the block digits are left out (the plain line still says it all)
WARN = "bold white on red"  # late/dropped notes, OSC errors, messages: what must catch the eye


@dataclass(frozen=True)
class StageState:
    """What the stage view shows, as plain values. Built by the engine thread, read by the display thread.

    Songs are numbered from 1 (``song_number`` 0: no song loaded). ``bar`` and ``beat`` are 1-based.
    ``clock_source`` and ``transport`` are display text ("internal", "MIDI clock", "MIDI clock (freewheel)";
    "playing", "stopped", "waiting"). ``pending_mode`` / ``pending_song`` say what happens at the next bar line.
    ``params``: parameter name -> value (units come from ``liveperf.params.PARAMS``; other names are shown as is).
    ``chord``: the name of the chord the performer holds ("Am7", "G/B"; "" before the first).
    ``key``: the key the partner follows and its confidence ("G major 82 %"; "" when the song's key holds).
    ``last_pitch_in`` / ``last_pitch_out``: MIDI note numbers (0..127) or None. ``step_p99_us``: step latency p99
    in microseconds, None while unknown. ``late_dropped``: steps dropped or deferred because they would have been
    late. ``learn_armed``: the parameter waiting for a MIDI controller, or None. ``messages``: a few recent
    warnings, newest last (e.g. "recorder: disk full"), shown in red. ``notice``: one line of feedback that is
    no warning (what the keys are doing: "song 12_ (Enter selects)", "press q again ...", the help line).
    """

    setlist: str = ""
    song_number: int = 0
    song_title: str = ""
    song_count: int = 0
    next_song: str | None = None
    bar: int = 1
    beat: int = 1
    tempo_bpm: float = 120.0
    clock_source: str = "internal"
    transport: str = "stopped"
    mode: str = ""
    pending_mode: str | None = None
    partner_modes: tuple[str, ...] = ()  # a song with several partners: partners 2.. (``mode`` is partner 1's)
    chord: str = ""  # the chord the performer holds (``liveperf.music.chords``), "" before the first
    key: str = ""  # the key the partner follows with its confidence ("G major 82 %"), "" when the song's key holds
    pending_song: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    notes_in: int = 0
    notes_out: int = 0
    last_pitch_in: int | None = None
    last_pitch_out: int | None = None
    step_p99_us: float | None = None
    late_dropped: int = 0
    osc_in: int = 0
    osc_errors: int = 0
    learn_armed: str | None = None
    messages: tuple[str, ...] = ()
    notice: str | None = None

    def __post_init__(self) -> None:
        # A snapshot: the engine's dict and list may change after the hand-over; ours must not.
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "messages", tuple(self.messages))

    @property
    def warnings(self) -> bool:
        """True when something needs the performer's or the technician's eye (shown in red)."""
        return self.late_dropped > 0 or self.osc_errors > 0 or bool(self.messages)


# -- Formatting (pure) ---------------------------------------------------------------------------------------

_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int | None) -> str:
    """``"E4 64"`` for MIDI note 64 (middle C = C4 = 60); ``"-"`` for None."""
    if pitch is None:
        return "-"
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1} {pitch}"


def format_param(name: str, value: Any) -> str:
    """``"temperature 0.90"``, ``"tempo_bpm 120.0 BPM"``, ``"silence_steps 4 steps"``; the unit is left out when
    the name already says it (``velocity 100``, ``response_bars 2``). Unknown names: ``name value``."""
    p = PARAMS.get(name)
    if p is None:
        return f"{name} {value}"
    if p.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = f"{value:.1f}" if p.unit == "BPM" else f"{value:.2f}"
    else:
        shown = str(value)
    unit = "" if not p.unit or p.unit in name else f" {p.unit}"
    return f"{name} {shown}{unit}"


def pack_items(items: list[str], width: int, sep: str) -> list[str]:
    """Greedy line packing: a narrow terminal breaks between items, never inside one (an item longer than the
    width gets a line of its own)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        else:
            lines.append(item)
    return lines


# Block digits, three rows high: readable from the back of a small stage. "▀" is the upper half of a cell.
_BIG = {
    "0": ("█▀█", "█ █", "▀▀▀"), "1": ("▀█ ", " █ ", "▀▀▀"), "2": ("▀▀█", "█▀▀", "▀▀▀"),
    "3": ("▀▀█", " ▀█", "▀▀▀"), "4": ("█ █", "▀▀█", "  ▀"), "5": ("█▀▀", "▀▀█", "▀▀▀"),
    "6": ("█▀▀", "█▀█", "▀▀▀"), "7": ("▀▀█", "  █", "  ▀"), "8": ("█▀█", "█▀█", "▀▀▀"),
    "9": ("█▀█", "▀▀█", "▀▀▀"), ":": (" ", "▀", "▀"), " ": (" ", " ", " "), "-": ("  ", "▀▀", "  "),
}


def big_text(chars: str) -> list[str]:
    """Three lines of block digits for ``chars`` (digits, ':', '-' and ' '); one blank column between glyphs."""
    rows = ["", "", ""]
    for i, ch in enumerate(chars):
        glyph = _BIG[ch]
        for r in range(3):
            rows[r] += (" " if i else "") + glyph[r]
    return rows


def _big_row(bar_beat: str, tempo: str, width: int) -> Text | None:
    """bar:beat (bold) and tempo (bold cyan) side by side in block digits, or None if they do not fit ``width``."""
    if not all(ch in _BIG for ch in bar_beat + tempo):
        return None
    rows = list(zip(big_text(bar_beat), big_text(tempo)))
    if len(rows[0][0]) + 4 + len(rows[0][1]) > width:
        return None
    text = Text(no_wrap=True)
    for r, (left, right) in enumerate(rows):
        text.append(("\n" if r else "") + left, style="bold")
        text.append("    " + right, style="bold cyan")
    return text


_TRANSPORT = {"playing": ("▶", ">", "bold green"), "stopped": ("■", "#", "bold yellow"),
              "waiting": ("…", "...", "bold yellow")}


class StageRenderable:
    """The rich renderable that ``render`` returns; lays itself out for the width it is given.

    If laying out raises (a bug, or a value of a type the view does not expect), it shows the error in red instead
    of the state and keeps it in ``error``: the next state may be fine, and the show goes on either way.
    """

    def __init__(self, state: StageState) -> None:
        self.state = state
        self.error: BaseException | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        try:
            body = self._build(options.max_width, options.ascii_only)
        except Exception as e:  # the edge of one redraw: say it on screen rather than end the display
            self.error = e
            body = Text(f"stage view cannot show this state: {e!r}", style=WARN)
        yield body

    def _build(self, width: int, ascii_only: bool) -> Panel:
        s = self.state
        dot = " | " if ascii_only else " · "
        arrow = "->" if ascii_only else "▸"
        parts: list[Any] = []

        song = f"{s.song_number}. {s.song_title}" if s.song_number else (s.song_title or "(no song)")
        parts.append(Text(song, style="bold reverse", justify="left", overflow="fold"))
        if s.next_song is not None:
            parts.append(Text(f"next {arrow} {s.next_song}", overflow="fold"))
        pending = []
        if s.pending_song is not None:
            pending.append(f"song {s.pending_song}")
        if s.pending_mode is not None:
            pending.append(f"mode {s.pending_mode}")
        if pending:
            parts.append(Text(f"at next bar {arrow} " + ", ".join(pending), style="bold yellow", overflow="fold"))

        bar_beat = f"{s.bar}:{s.beat}"
        tempo_big = f"{round(s.tempo_bpm)}"
        big = _big_row(bar_beat, tempo_big, width - 4) if not ascii_only and width >= _BIG_MIN_WIDTH else None
        if big is not None:
            parts += [Text(""), big]
        mark, ascii_mark, transport_style = _TRANSPORT.get(s.transport, ("", "", "bold"))
        line = Text()
        line.append(bar_beat, style="bold")
        line.append(dot)
        line.append(f"{s.tempo_bpm:.1f} BPM", style="bold cyan")
        line.append(dot + s.clock_source + dot)
        line.append(f"{ascii_mark if ascii_only else mark} {s.transport}".strip(), style=transport_style)
        parts.append(line)

        mode = Text()
        mode.append("mode ")
        mode.append(s.mode or "-", style="bold magenta")
        for k, name in enumerate(s.partner_modes, start=2):
            mode.append(f" p{k} ")
            mode.append(name, style="magenta")
        if s.chord:
            mode.append(dot + "chord ")
            mode.append(s.chord, style="bold green")
        if s.key:
            mode.append(dot + "key ")
            mode.append(s.key, style="bold cyan")
        parts.append(mode)
        if s.params:
            items = [format_param(k, v) for k, v in s.params.items()]
            parts.append(Text("\n".join(pack_items(items, width - 4, "   ")), overflow="fold"))

        parts.append(Text(f"notes in {s.notes_in} (last {pitch_name(s.last_pitch_in)}){dot}"
                          f"out {s.notes_out} (last {pitch_name(s.last_pitch_out)})", overflow="fold"))
        health = Text()
        micro = "us" if ascii_only else "µs"
        health.append("step p99 " + ("-" if s.step_p99_us is None else f"{s.step_p99_us:.0f} {micro}"))
        health.append(dot)
        health.append(f"late/dropped {s.late_dropped}", style=WARN if s.late_dropped > 0 else "")
        health.append(dot)
        health.append(f"OSC in {s.osc_in}, errors {s.osc_errors}", style=WARN if s.osc_errors > 0 else "")
        parts.append(health)

        if s.learn_armed is not None:
            parts.append(Text(f"MIDI learn: {s.learn_armed} {arrow} move a controller", style="bold black on yellow"))
        if s.notice:
            parts.append(Text(s.notice, style="bold yellow", overflow="fold"))
        for message in s.messages:
            parts.append(Text(f"! {message}", style=WARN, overflow="fold"))

        title = s.setlist or "liveperf"
        subtitle = f"song {s.song_number}/{s.song_count}" if s.song_count else None
        return Panel(Group(*parts), title=title, subtitle=subtitle, box=ASCII if ascii_only else ROUNDED,
                     border_style="red" if s.warnings else "green", padding=(0, 1))


def render(state: StageState) -> StageRenderable:
    """The stage view of ``state`` as a rich renderable (pure: no I/O, no clocks; any thread)."""
    return StageRenderable(state)


# -- The display: a feeder thread here, the drawing in a child process ------------------------------------------

def encode_state(state: StageState) -> bytes:
    """One JSON line for the display process (values that JSON cannot hold are sent as their ``str``)."""
    d = {f.name: getattr(state, f.name) for f in fields(state)}
    d["params"] = dict(state.params)
    d["messages"] = list(state.messages)
    return json.dumps(d, default=str, ensure_ascii=False).encode("utf-8") + b"\n"


def decode_state(line: bytes) -> StageState:
    """The inverse of ``encode_state``; raises ValueError / TypeError on a line that is not a state."""
    d = json.loads(line)
    if not isinstance(d, dict):
        raise ValueError("a stage state is a JSON object")
    for name in ("messages", "partner_modes"):  # JSON has lists; the state holds tuples
        if isinstance(d.get(name), list):
            d[name] = tuple(d[name])
    return StageState(**d)


def _is_tty(stream: Any) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (pytest's capture, StringIO) or closed
        return False


SHOW_CURSOR = "\x1b[?25h"


class StageView:
    """The stage view on a terminal, drawn by a child process so that laying it out never holds this process's GIL.

    ``enabled=False`` (headless rigs), or a ``stream`` (default ``sys.stdout``) that is not a TTY, makes every
    method a cheap no-op: nothing is started, nothing is written.

    Threads: ``update`` may be called from any thread (the engine's): it stores one reference and returns, so it
    never blocks, and a newer state replaces one that was not sent yet. The feeder thread ("stage-view") sends the
    newest state when it changed, at most ``refresh_hz`` times a second; only it writes to the pipe, so a display
    that stalls (a terminal paused with Ctrl-S) can block the feeder, never the engine. ``start`` and ``close`` are
    idempotent, called by the thread that owns the show.

    The terminal: the display process hides the cursor while it draws and shows it again when its input ends --
    on ``close()``, on ``__exit__`` (also after an exception), at interpreter exit (an ``atexit`` hook), and when
    this process dies without closing (the pipe closes). It ignores Ctrl-C (the show decides when to stop). If it
    had to be killed, ``close`` shows the cursor itself. The show must not print while the view runs (lines would
    tear it); its news goes into ``StageState.messages``. ``error`` keeps the last failure (display gone, ...);
    ``errors`` counts states that could not be encoded (skipped).
    """

    def __init__(self, *, enabled: bool = True, stream: Any = None, refresh_hz: float = REFRESH_HZ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.enabled = bool(enabled) and _is_tty(self._stream)
        self._refresh_hz = refresh_hz
        self._latest: StageState | None = None
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # start/close against each other (and the atexit hook)
        self.error: BaseException | str | None = None
        self.errors = 0  # states that could not be encoded

    @property
    def active(self) -> bool:
        """True while the display process runs and is being fed."""
        return self._feeder is not None and self._feeder.is_alive() and self._proc.poll() is None

    @property
    def latest(self) -> StageState | None:
        """The newest state handed over (also when headless), or None."""
        return self._latest

    def update(self, state: StageState) -> None:
        """Hand over the newest state (any thread; never blocks; latest wins). A plain reference assignment,
        atomic in CPython: the feeder sends whichever state was stored last."""
        self._latest = state

    def start(self) -> bool:
        """Start the display process and the feeder; returns whether the view is live (False when headless)."""
        with self._lock:
            if not self.enabled or self._proc is not None:
                return self.active
            self._stream.flush()  # what was printed before comes out above the view
            env = dict(os.environ)
            root = str(Path(__file__).resolve().parents[2])  # the same liveperf, installed or not
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "liveperf.stage.display", "--refresh-hz", str(self._refresh_hz)],
                stdin=subprocess.PIPE, stdout=self._stream, env=env, bufsize=0)
            self._stop.clear()
            self._feeder = threading.Thread(target=self._feed, name="stage-view", daemon=True)
            self._feeder.start()
            atexit.register(self.close)
            return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the display and give the terminal back (cursor shown). Waits up to about ``2 * timeout_s``."""
        with self._lock:
            proc, feeder, self._proc, self._feeder = self._proc, self._feeder, None, None
            if proc is None:
                return
            atexit.unregister(self.close)
        self._stop.set()
        feeder.join(timeout_s)
        if feeder.is_alive():  # blocked writing to a display that does not read: end the display
            proc.kill()
            feeder.join(timeout_s)
        try:
            proc.stdin.close()  # end of input: the display process stops Live (shows the cursor) and exits
        except OSError:
            pass
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if code != 0:
            self.error = self.error or f"display process ended with exit code {code}"
            try:  # it could not clean up after itself
                self._stream.write(SHOW_CURSOR)
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> StageView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _feed(self) -> None:
        period_s = 1.0 / self._refresh_hz
        fd = self._proc.stdin.fileno()
        sent: StageState | None = None
        while not self._stop.is_set():
            state = self._latest
            if state is not None and state is not sent:
                sent = state
                try:
                    data = encode_state(state)
                except Exception as e:  # a value whose str() fails: a bug upstream; count it, skip this state
                    self.errors += 1
                    self.error = e
                    continue
                try:
                    while data:  # a pipe may take part of a large write
                        data = data[os.write(fd, data):]
                except OSError as e:  # the display process is gone: the show goes on without it
                    self.error = e
                    return
            self._stop.wait(period_s)
