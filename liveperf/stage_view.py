"""The stage view: a terminal status display for the performer, readable from a few metres.

Three pieces with one-way data flow, so the display can never slow the engine down:

- ``StageState``: a frozen snapshot of plain values (song, bar:beat, tempo, clock, mode, key parameters, note
  activity, latency and error counts, recent messages). The engine thread builds a new one and hands it over;
  ``__post_init__`` copies the parameter mapping and the message list, so the engine may keep mutating its own.
- ``render(state)``: a pure function from a state to a rich renderable. It adapts to the width it is rendered at
  (big block digits for bar:beat and tempo when they fit, plain text below ~40 columns, ASCII-only terminals).
- ``StageView``: owns the display thread. ``update(state)`` is one reference assignment (latest wins, never
  blocks); the thread redraws the newest state about 10 times a second with ``rich.live.Live``. When the view is
  switched off or the console is not a terminal (a headless rig, output piped to a log) it does nothing.

Keys (next / previous / select song, panic, stop, tap, mode) live in ``liveperf.stage_keys``.
Above the engine's floor: imports ``liveperf.params`` only (for units); ``show`` wires the pieces together.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rich.box import ASCII, ROUNDED
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
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
    ``last_pitch_in`` / ``last_pitch_out``: MIDI note numbers (0..127) or None. ``step_p99_us``: step latency p99
    in microseconds, None while unknown. ``late_dropped``: steps dropped or deferred because they would have been
    late. ``learn_armed``: the parameter waiting for a MIDI controller, or None. ``messages``: a few recent
    warnings, newest last (e.g. "recorder: disk full").
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
    "9": ("█▀█", "▀▀█", "▀▀▀"), ":": (" ", "▀", "▀"), " ": (" ", " ", " "),
}


def big_text(chars: str) -> list[str]:
    """Three lines of block digits for ``chars`` (digits, ':' and ' '); one blank column between glyphs."""
    rows = ["", "", ""]
    for i, ch in enumerate(chars):
        glyph = _BIG[ch]
        for r in range(3):
            rows[r] += (" " if i else "") + glyph[r]
    return rows


def _big_row(bar_beat: str, tempo: str) -> Text:
    """bar:beat (bold) and tempo (bold cyan) side by side in block digits, as one three-line Text."""
    text = Text(no_wrap=True, overflow="crop")
    for r, (left, right) in enumerate(zip(big_text(bar_beat), big_text(tempo))):
        text.append(("\n" if r else "") + left, style="bold")
        text.append("    " + right, style="bold cyan")
    return text


_TRANSPORT = {"playing": ("▶", ">", "bold green"), "stopped": ("■", "#", "bold yellow"),
              "waiting": ("…", "...", "bold yellow")}


class StageRenderable:
    """The rich renderable that ``render`` returns; lays itself out for the width it is given.

    If laying out raises (a bug, or a value of a type the view does not expect), it shows the error in red instead
    of the state and keeps it in ``error``, so the display thread can count it.
    """

    def __init__(self, state: StageState) -> None:
        self.state = state
        self.error: BaseException | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        try:
            body = self._build(options.max_width, options.ascii_only)
        except Exception as e:  # edge of one redraw: show it and let the view count it; the next state may be fine
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
        if not ascii_only and width - 4 >= _BIG_MIN_WIDTH:
            parts.append(Text(""))
            parts.append(_big_row(bar_beat, tempo_big))
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
        for message in s.messages:
            parts.append(Text(f"! {message}", style=WARN, overflow="fold"))

        title = s.setlist or "liveperf"
        subtitle = f"song {s.song_number}/{s.song_count}" if s.song_count else None
        return Panel(Group(*parts), title=title, subtitle=subtitle, box=ASCII if ascii_only else ROUNDED,
                     border_style="red" if s.warnings else "green", padding=(0, 1))


def render(state: StageState) -> StageRenderable:
    """The stage view of ``state`` as a rich renderable (pure: no I/O, no clocks; any thread)."""
    return StageRenderable(state)


# -- The display thread ----------------------------------------------------------------------------------------

class StageView:
    """The stage view on a terminal: a display thread that redraws the newest ``StageState`` ~10 times a second.

    ``enabled=False`` (headless rigs), or a console that is not a terminal (stdout piped or redirected), makes
    every method a cheap no-op: nothing is written. ``console`` defaults to rich's console on stdout.

    Threads: ``update`` may be called from any thread (the engine's): it stores one reference and returns, so it
    never blocks, and a newer state replaces one the display has not drawn yet. ``start`` and ``close`` are
    idempotent and are called by the thread that owns the show; the display thread is the only one that writes to
    the terminal. The thread starts and stops ``rich.live.Live`` itself, so the cursor is shown again and
    stdout/stderr are un-redirected when it ends -- after ``close()``, after an exception in a ``with`` block, and
    at interpreter exit (an ``atexit`` hook) if nobody closed it. A failing write (the terminal went away) ends the
    display, never the show: ``error`` says why. ``render_errors`` counts states that could not be laid out.
    """

    def __init__(self, *, enabled: bool = True, console: Console | None = None,
                 refresh_hz: float = REFRESH_HZ) -> None:
        self._console = console if console is not None else Console()
        self.enabled = bool(enabled) and self._console.is_terminal
        self._period_s = 1.0 / refresh_hz
        self._latest: StageState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # start/close against each other (and the atexit hook)
        self.render_errors = 0
        self.error: BaseException | None = None

    @property
    def active(self) -> bool:
        """True while the display thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def latest(self) -> StageState | None:
        """The newest state handed over (also when headless), or None."""
        return self._latest

    def update(self, state: StageState) -> None:
        """Hand over the newest state (any thread; never blocks; latest wins). A plain reference assignment,
        atomic in CPython: the display thread reads whichever state was stored last."""
        self._latest = state

    def start(self) -> bool:
        """Start the display thread; returns whether the view is live (False when headless or switched off)."""
        with self._lock:
            if not self.enabled or self._thread is not None:
                return self.active
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="stage-view", daemon=True)
            self._thread.start()
            atexit.register(self.close)
            return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the display thread and give the terminal back (cursor shown, stdout/stderr no longer redirected).
        Waits up to ``timeout_s`` for the thread (it may be stuck writing to a terminal that does not read)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stop.set()
            atexit.unregister(self.close)
        thread.join(timeout_s)

    def __enter__(self) -> StageView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        live = Live(console=self._console, auto_refresh=False, transient=False)
        try:
            live.start()
            drawn: StageState | None = None
            drawn_size = None
            while True:
                state = self._latest
                size = self._console.size  # a resized terminal is redrawn at its new width
                # Redraw only what changed: a redraw costs ~1-2 ms of the GIL (see the module docstring).
                if state is not None and (state is not drawn or size != drawn_size):
                    drawn_size = size
                    view = render(state)
                    live.update(view, refresh=True)
                    drawn = state
                    if view.error is not None:
                        self.render_errors += 1
                        self.error = view.error
                if self._stop.wait(self._period_s):
                    break
        except OSError as e:  # the terminal is gone (hang-up, closed pty): the show goes on without the view
            self.error = e
        finally:
            try:
                live.stop()
            except OSError as e:
                self.error = self.error or e
