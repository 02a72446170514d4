"""Dynamics: how loud the partner plays a note, following the performer musically.

``Dynamics`` hears every performer note-on (song step, velocity) and answers ``velocity(step)`` for a partner note
at a step: the performer's current *level* plus the performer's own *accent* for that place in the bar.

- Positions: the bar's first beat, its other beats, and the steps between beats.
- Accent per position: the running mean of (velocity - level) of the performer's notes there, shrunk towards 0
  while few notes were heard (weight n / (n + ``ACCENT_PRIOR_NOTES``)). A performer who leans on the downbeat gets
  a partner who does too; one who plays evenly gets an even partner.
- Level: the performer's de-accented velocities smoothed with a trend (Holt's linear method: weight
  ``LEVEL_ALPHA`` per note for the level, ``TREND_BETA`` for its slope per note), so through a crescendo or a
  decrescendo it stays with the performer instead of lagging two bars behind (the mean of the last 8 note-ons it
  replaces; measured in ``python -m export.dynamics_eval``, README). The slope is bounded (``MAX_TREND`` per note).
- Before the first note: ``DEFAULT_VELOCITY``. Always 1..127.

A song that fixes ``velocity`` plays that number (``fixed``). Pure arithmetic per note; engine thread only.
"""

from __future__ import annotations

DEFAULT_VELOCITY = 90  # before the performer has played anything
LEVEL_ALPHA = 0.35  # the weight of each new note in the level
TREND_BETA = 0.15  # the weight of each new note's change of level in the trend
MAX_TREND = 8.0  # velocity per note: a slope steeper than this is an accent or a slip, not a crescendo
ACCENT_ALPHA = 0.15  # the weight of each new note in its position's accent
ACCENT_PRIOR_NOTES = 4.0  # notes at a position before its accent counts in full
DOWNBEAT, BEAT, BETWEEN = 0, 1, 2


class Dynamics:
    def __init__(self, steps_per_bar: int, steps_per_beat: int, fixed: int | None = None) -> None:
        self.steps_per_bar = max(1, int(steps_per_bar))
        self.steps_per_beat = max(1, int(steps_per_beat))
        self.fixed = fixed
        self.level: float | None = None
        self.trend = 0.0  # change of level per note
        self._accent = [0.0, 0.0, 0.0]
        self._heard = [0, 0, 0]

    def position(self, step: int) -> int:
        in_bar = step % self.steps_per_bar
        return DOWNBEAT if in_bar == 0 else BEAT if in_bar % self.steps_per_beat == 0 else BETWEEN

    def accent(self, step: int) -> float:
        p = self.position(step)
        n = self._heard[p]
        return self._accent[p] * n / (n + ACCENT_PRIOR_NOTES)

    def heard(self, step: int, velocity: int) -> None:
        """A performer note-on at song ``step`` (its nearest step)."""
        v = float(velocity)
        if self.level is None:
            self.level = v
            return
        p = self.position(step)
        self._accent[p] += ACCENT_ALPHA * ((v - self.level) - self._accent[p])
        self._heard[p] += 1
        before = self.level
        self.level += self.trend + LEVEL_ALPHA * ((v - self.accent(step)) - (self.level + self.trend))
        change = self.level - before
        self.trend += TREND_BETA * (change - self.trend)
        self.trend = max(-MAX_TREND, min(MAX_TREND, self.trend))

    def velocity(self, step: int) -> int:
        """The partner's velocity for a note at song ``step``."""
        if self.fixed is not None:
            return self.fixed
        if self.level is None:
            return DEFAULT_VELOCITY
        return max(1, min(127, int(round(self.level + self.accent(step)))))
