"""Following an Ableton Link session: the step grid on the session's beat timeline.

``LinkClock`` mirrors ``InternalClock`` (``steps_per_beat``, ``tempo_bpm``, ``step_ns``, ``start_ns``,
``ns_at_step``, ``step_at``, ``nearest_step``, ``ns_at_tick``, ``running``, ``on_message``, ``poll``,
``dropout_deadline_ns``), so the engine and ``run_loop`` run from it unchanged. It is pure and deterministic: the
session is read through an injected ``read()`` that returns a ``LinkState`` (``liveperf.io.link_session`` reads
the real one; tests script them), and nothing here touches a thread or the wall clock. Owned and called by the
engine thread only.

The map. Step ``s`` is the session's beat ``s / steps_per_beat`` on this peer's Link timeline: Link shares the
phase of the beat within a quantum among peers, so with the quantum set to one bar of the song (``bar_beats``),
every peer's bar line falls on a step that is a multiple of the bar (``steps_per_bar``), as the engine counts bars.
The map is kept in integers: an anchor (a step and its time in ns) and the step length as ``us_per_beat * 1000 /
steps_per_beat`` ns. Link itself keeps tempo as whole microseconds per beat, so this ratio is the session's own,
not a rounding of it.

``poll(now_ns)`` (the loop calls it before every step) reads the session once and:

- re-anchors the map when the tempo changed (a tempo change by any peer: from that moment on; earlier steps move
  with it, as a MIDI clock follower's fit moves: ask a step's time when you schedule it), or when the session's
  beat at the read's stamp lies more than ``tolerance_ns`` from the map (a stalled read is ignored: the map only
  moves for a real disagreement, so the grid is exact between changes, not re-rounded on every read);
- emits "locate" (running) when the timeline jumped by half a step or more (a peer joined and the phases were
  aligned, or the session was re-timed): the engine relocates to the first whole step after ``now + margin_ns``;
- with start/stop sync (``start_stop``), follows the session's transport: playing -> "continue" at the next bar
  line at least ``margin_ns`` ahead (Link's convention: a start lands on the quantum), stopped -> "stop" at the step
  that holds ``now``. Without it the clock always runs.

``LeadingLinkClock`` adds ``set_tempo`` (tap, OSC, a song's setlist tempo): the tempo is proposed to the session
through ``write_tempo`` and the map re-anchored at the step it applies from, so the step keeps its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from liveperf.timing.clock import StepMap
from liveperf.timing.midi_clock import ClockEvent

NS_PER_US = 1_000
US_PER_MINUTE = 60_000_000


@dataclass(frozen=True)
class LinkState:
    """One read of a Link session: ``beat`` (this peer's timeline, quarter-note beats) at ``at_ns`` (the show's
    clock), ``tempo_bpm``, whether the session's transport is ``playing``, and how many ``peers`` are connected."""

    beat: float
    at_ns: int
    tempo_bpm: float
    playing: bool = True
    peers: int = 0


@dataclass
class LinkStats:
    """Counts since construction."""

    reads: int = 0
    tempo_changes: int = 0  # re-anchors for a new tempo
    reanchors: int = 0  # re-anchors for a beat that left the map (same tempo)
    locates: int = 0  # jumps of half a step or more while running
    starts: int = 0
    stops: int = 0
    peers_max: int = 0


def us_per_beat(tempo_bpm: float) -> int:
    """Link's own tempo unit: whole microseconds per beat."""
    return max(1, round(US_PER_MINUTE / tempo_bpm))


class LinkClock(StepMap):
    """The step grid on a Link session's timeline (see the module docstring). ``read`` is called at construction
    and on every ``poll``; ``bar_beats`` is the quantum the show set on the session (one bar of the song)."""

    def __init__(self, read: Callable[[], LinkState], steps_per_beat: int, bar_beats: float, *,
                 start_stop: bool = True, tolerance_ns: int = 200_000, margin_ns: int = 20_000_000) -> None:
        if steps_per_beat < 1:
            raise ValueError("steps_per_beat must be >= 1")
        self._read = read
        self.steps_per_beat = steps_per_beat
        self.steps_per_bar = max(1, round(bar_beats * steps_per_beat))
        self.start_stop = start_stop
        self.tolerance_ns = tolerance_ns
        self.margin_ns = margin_ns
        self.stats = LinkStats()
        state = self._take(read())
        self._anchor(state)
        self.running = state.playing or not start_stop

    # -- the map ---------------------------------------------------------------------------------------------------

    def _take(self, state: LinkState) -> LinkState:
        self.stats.reads += 1
        self.peers = state.peers
        self.stats.peers_max = max(self.stats.peers_max, state.peers)
        return state

    def _anchor(self, state: LinkState) -> None:
        """Put the map through ``state``: the step at or before its beat, at the time the beat says."""
        self._us_per_beat = us_per_beat(state.tempo_bpm)
        self._num, self._den = self._us_per_beat * NS_PER_US, self.steps_per_beat  # one step = num / den ns
        exact = state.beat * self.steps_per_beat
        step = int(exact // 1)
        self._anchor_step = step
        self._anchor_ns = state.at_ns - round((exact - step) * self._num / self._den)

    def _anchor_at_step(self, step: int, tempo_bpm: float) -> None:
        at = self.ns_at_step(step)
        self._us_per_beat = us_per_beat(tempo_bpm)
        self._num, self._den = self._us_per_beat * NS_PER_US, self.steps_per_beat
        self._anchor_step, self._anchor_ns = step, at

    @property
    def tempo_bpm(self) -> float:
        return US_PER_MINUTE / self._us_per_beat

    def ns_at_tick(self, tick: int, ticks_per_beat: int) -> int:
        """A take's file position (``ticks_per_beat`` per beat) counted from ``song_step`` (the song's first
        step, set by the show): takes start on the song's first bar line, wherever the session's beat count is."""
        q = (tick * self.steps_per_beat + (self.song_step - self._anchor_step) * ticks_per_beat) * self._num
        d = ticks_per_beat * self._den
        return self._anchor_ns + (q // d if q >= 0 else -(-q // d))

    song_step = 0

    def set_bar(self, bar_beats: float) -> None:
        """A new song's bar (the quantum the show set on the session)."""
        self.steps_per_bar = max(1, round(bar_beats * self.steps_per_beat))

    def next_bar_step(self, ns: int) -> int:
        """The first bar line (a multiple of ``steps_per_bar``) that starts at or after ``ns``."""
        s = self.step_at(ns)
        if self.ns_at_step(s) < ns:
            s += 1
        return -(-s // self.steps_per_bar) * self.steps_per_bar

    # -- the transport interface shared with InternalClock / MidiClockFollower --------------------------------------

    def on_message(self, ts_ns: int, data: bytes) -> list:
        return []  # MIDI clock bytes on the input are not ours to follow while Link leads the grid

    def dropout_deadline_ns(self) -> int | None:
        return None

    def poll(self, now_ns: int) -> list[ClockEvent]:
        state = self._take(self._read())
        events: list[ClockEvent] = []
        if us_per_beat(state.tempo_bpm) != self._us_per_beat:
            self.stats.tempo_changes += 1
            jump = self._moved_ns(state)
            self._anchor(state)
        else:
            jump = self._moved_ns(state)
            if abs(jump) > self.tolerance_ns:
                self.stats.reanchors += 1
                self._anchor(state)
        if self.start_stop and state.playing != self.running:
            self.running = state.playing
            if state.playing:
                self.stats.starts += 1
                events.append(ClockEvent("continue", now_ns, self.next_bar_step(now_ns + self.margin_ns)))
            else:
                self.stats.stops += 1
                events.append(ClockEvent("stop", now_ns, self.step_at(now_ns)))
        elif self.running and 2 * abs(jump) >= self.step_ns:
            self.stats.locates += 1
            events.append(ClockEvent("locate", now_ns, self.step_at(now_ns + self.margin_ns) + 1))
        return events

    def _moved_ns(self, state: LinkState) -> int:
        """How far (ns) the session's beat at ``state.at_ns`` lies from the map: > 0 when the session is ahead."""
        return self._time_of(state.beat * self.steps_per_beat) - state.at_ns

    def _time_of(self, exact_step: float) -> int:
        whole = int(exact_step // 1)
        return self.ns_at_step(whole) + round((exact_step - whole) * self._num / self._den)


class LeadingLinkClock(LinkClock):
    """A ``LinkClock`` that may set the session's tempo (``[show.link] tempo = "lead"``)."""

    def __init__(self, read: Callable[[], LinkState], write_tempo: Callable[[float], None], steps_per_beat: int,
                 bar_beats: float, **kw) -> None:
        super().__init__(read, steps_per_beat, bar_beats, **kw)
        self._write_tempo = write_tempo

    def set_tempo(self, tempo_bpm: float, at_step: int) -> None:
        """Propose ``tempo_bpm`` to the session from ``at_step`` on (the step keeps its time)."""
        if tempo_bpm <= 0:
            raise ValueError(f"tempo must be > 0 BPM, got {tempo_bpm}")
        self._write_tempo(float(tempo_bpm))
        self._anchor_at_step(at_step, tempo_bpm)
