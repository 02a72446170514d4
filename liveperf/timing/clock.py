"""Clocks: the map between wall time (integer ns, monotonic) and musical time (integer steps).

``InternalClock`` runs at a tempo from the setlist, anchored at ``start_ns`` = step 0. A step's length is kept as an
exact ratio of two integers (made from the tempo where it is set, ``Fraction`` only there), so ``ns_at_step`` never
drifts, however long the show, and costs a few integer operations per call (``Fraction`` arithmetic per call took
~15 µs of a ~73 µs engine step). Owned and called by the engine thread only; the scheduler and input adapters see
plain ns values, never the clock.
"""

from __future__ import annotations

from fractions import Fraction

NS_PER_MINUTE = 60_000_000_000


class StepMap:
    """An exact step map: step ``_anchor_step`` starts at ``_anchor_ns`` and one step lasts ``_num / _den`` ns (two
    ints). Subclasses set the four fields; the methods below never round more than to whole ns (towards the anchor),
    however far from the anchor. Shared by ``InternalClock`` and ``liveperf.timing.link_clock.LinkClock``;
    ``MidiClockFollower`` keeps its own map (a fitted line) and shares ``step_at`` / ``nearest_step`` by overriding
    ``ns_at_step`` and ``_step_guess``."""

    _anchor_step: int
    _anchor_ns: int
    _num: int
    _den: int

    @property
    def start_ns(self) -> int:
        """Wall time of step 0 (only meaningful before any tempo change)."""
        return self.ns_at_step(0)

    @property
    def step_ns(self) -> float:
        """Length of one step in ns (for display and tolerances; use ``ns_at_step`` for times)."""
        return self._num / self._den

    def ns_at_step(self, step: int) -> int:
        """Wall time (ns) at which ``step`` starts: the offset from the anchor truncated to whole ns (towards the
        anchor)."""
        q = (step - self._anchor_step) * self._num
        return self._anchor_ns + (q // self._den if q >= 0 else -(-q // self._den))

    def _step_guess(self, ns: int) -> int:
        """A step at or next to the one that holds ``ns`` (``step_at`` settles it exactly)."""
        return self._anchor_step + (ns - self._anchor_ns) * self._den // self._num

    def step_at(self, ns: int) -> int:
        """The step whose interval [ns_at_step(s), ns_at_step(s+1)) contains ``ns``."""
        s = self._step_guess(ns)
        # Guard the int() floor of ns_at_step: make the contract hold exactly.
        while self.ns_at_step(s + 1) <= ns:
            s += 1
        while self.ns_at_step(s) > ns:
            s -= 1
        return s

    def nearest_step(self, ns: int) -> int:
        """The step whose start is nearest to ``ns`` (ties go to the later step)."""
        s = self.step_at(ns)
        return s + 1 if (ns - self.ns_at_step(s)) * 2 >= self.ns_at_step(s + 1) - self.ns_at_step(s) else s


class InternalClock(StepMap):
    """Steps at a fixed tempo from an anchor; ``set_tempo`` re-anchors at a step so earlier steps keep their times.

    ``tempo_bpm`` is quarter-note beats per minute; ``steps_per_beat`` steps per beat (4 = 16ths).
    """

    def __init__(self, tempo_bpm: float, steps_per_beat: int, start_ns: int) -> None:
        if steps_per_beat < 1:
            raise ValueError("steps_per_beat must be >= 1")
        self.steps_per_beat = steps_per_beat
        self._anchor_step = 0
        self._anchor_ns = int(start_ns)
        self._set_step_ns(tempo_bpm)

    def _set_step_ns(self, tempo_bpm: float) -> None:
        bpm = Fraction(str(tempo_bpm)) if not isinstance(tempo_bpm, Fraction) else tempo_bpm
        if bpm <= 0:
            raise ValueError(f"tempo must be > 0 BPM, got {tempo_bpm}")
        self.tempo_bpm = float(bpm)
        step = Fraction(NS_PER_MINUTE) / (bpm * self.steps_per_beat)
        self._num, self._den = step.numerator, step.denominator  # one step = _num / _den ns, exactly

    def ns_at_tick(self, tick: int, ticks_per_beat: int) -> int:
        """Wall time of a position given in file ticks (``ticks_per_beat`` per beat), e.g. a take's events."""
        q = (tick * self.steps_per_beat - self._anchor_step * ticks_per_beat) * self._num
        d = ticks_per_beat * self._den
        return self._anchor_ns + (q // d if q >= 0 else -(-q // d))

    # The transport interface shared with ``midi_clock.MidiClockFollower``: an internal clock always runs and
    # has no transport events; MIDI clock bytes that reach it are not ours to follow.
    running = True

    def on_message(self, ts_ns: int, data: bytes) -> list:
        return []

    def poll(self, now_ns: int) -> list:
        return []

    def dropout_deadline_ns(self) -> int | None:
        return None

    def set_tempo(self, tempo_bpm: float, at_step: int) -> None:
        """Change tempo from ``at_step`` on (steps before it keep their times)."""
        self._anchor_ns = self.ns_at_step(at_step)
        self._anchor_step = at_step
        self._set_step_ns(tempo_bpm)
