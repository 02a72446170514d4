"""The stage view and stage keys, wired to a show: ``StageFeed`` builds a ``StageState`` on every beat from what
the engine thread owns (the controller, its engine and clock) and the counters other threads publish (scheduler,
OSC server), and hands it to the ``StageView``; the ``KeyReader``'s commands go into the engine's inbox like OSC.

While the view draws, the show must not print (lines would tear it): ``log`` keeps the last lines for the view
(and for the caller to print after the show). Headless (view off, or stdout not a terminal) everything is a no-op
except ``log``, which prints as before.
"""

from __future__ import annotations

import collections
import queue
from typing import Callable

from liveperf.params import PARAMS
from liveperf.stage.keys import KeyReader
from liveperf.stage.view import StageState, StageView
from liveperf.music.style import KNOB_PARAMS

SHOWN_PARAMS = ("temperature", "top_p", "density", "sigma", "velocity")  # and every style knob not at 0


class StageFeed:
    def __init__(self, enabled: bool, setlist, inbox: queue.SimpleQueue, log: Callable[[str], None] = print,
                 stamp: Callable[[int], int] = lambda ts: ts) -> None:
        self.setlist = setlist
        self._print = log
        self.view = StageView(enabled=enabled)
        # ``stamp``: a key's monotonic stamp on the show's clock
        self.keys = KeyReader(lambda ts, cmd: inbox.put((stamp(ts), cmd)), modes=self._modes, on_notice=self._notice)
        self.lines: collections.deque[str] = collections.deque(maxlen=200)  # everything logged while drawing
        self._recent: collections.deque[str] = collections.deque(maxlen=3)
        self._notice_text: str | None = None
        self._last: StageState | None = None
        self._step_ns: collections.deque[int] = collections.deque(maxlen=512)  # engine thread: recent steps

    @property
    def drawing(self) -> bool:
        return self.view.active

    def start(self) -> bool:
        """Start the view and the keys (only on a terminal); True when drawing."""
        if self.view.start():
            self.keys.start()
            return True
        return False

    def close(self) -> None:
        self.keys.close()
        self.view.close()

    def log(self, text: str) -> None:
        """The show's log: printed when headless; kept (and shown as the newest messages) while drawing."""
        if not self.view.active:
            self._print(text)
            return
        self.lines.append(text)
        if text.startswith(("warning", "recorder", "control", "worker", "MIDI learn")) or "error" in text:
            self._recent.append(text)

    def step_done(self, ns: int) -> None:
        """Engine thread: one step took ``ns`` of wall time."""
        self._step_ns.append(ns)

    def beat(self, ctl, bar: int, beat: int, scheduler, osc) -> None:
        """Engine thread, on every beat: a new snapshot for the view (latest wins; never blocks)."""
        if not self.view.enabled:
            return
        engine, clock, sl = ctl.engine, ctl.clock, self.setlist
        index = ctl.current if ctl.current is not None else 0
        nxt = ctl.next_index(index)
        pending = ctl.pending_song
        osc_stats = osc.stats if osc is not None else None
        recent = sorted(self._step_ns)
        p99_us = recent[min(len(recent) - 1, len(recent) * 99 // 100)] / 1e3 if recent else None
        self._last = StageState(
            setlist=sl.name, song_number=index + 1, song_title=sl.songs[index].title, song_count=len(sl.songs),
            next_song=sl.songs[nxt].title if nxt is not None else None, bar=bar, beat=beat,
            tempo_bpm=float(clock.tempo_bpm), clock_source=_clock_text(clock),
            transport="playing" if clock.running else "stopped", mode=engine.mode_name,
            partner_modes=tuple(engine.partner_modes()[1:]),
            pending_mode=engine.pending_mode,
            chord=engine.chords.current.name if engine.chords.current is not None else "",
            key=_key_text(engine.keys),
            pending_song=sl.songs[pending].title if pending is not None else None,
            params={**{name: ctl.params.target(name) for name in SHOWN_PARAMS},
                    **{name: v for name in KNOB_PARAMS if (v := ctl.params.target(name))}},  # knobs turned
            notes_in=engine.input_stats.note_ons, notes_out=scheduler.stats.sent, step_p99_us=p99_us,
            late_dropped=scheduler.stats.late_dropped,
            osc_in=osc_stats.accepted if osc_stats else 0,
            osc_errors=sum(osc_stats.errors_by_kind.values()) if osc_stats else 0,
            learn_armed=ctl.learn.armed, messages=tuple(self._recent), notice=self._notice_text)
        self.view.update(self._last)

    # ---- key thread ----
    def _modes(self) -> tuple[str, list[str]]:
        last = self._last
        modes = list(PARAMS["mode"].choices)
        if last is None:
            return modes[0], modes
        return (last.pending_mode or last.mode), modes

    def _notice(self, text: str) -> None:
        self._notice_text = text


def _clock_text(clock) -> str:
    if not hasattr(clock, "stats"):
        return "internal"
    if hasattr(clock, "peers"):  # an Ableton Link session
        return f"Link, {clock.peers} peer" + ("" if clock.peers == 1 else "s")
    return "MIDI clock" + (" (freewheel)" if getattr(clock, "freewheeling", False) else "")


def _key_text(follower) -> str:
    """The key the partner follows and its confidence ("G major 82 %"); "" when the song's key holds."""
    if follower is None or follower.key is None:
        return ""
    return f"{follower.key} {round(100 * follower.confidence)} %"
