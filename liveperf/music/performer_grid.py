"""Reduce the performer's live notes to melody tokens on the step grid, one step at a time.

Same reduction as ``melody.notes_to_tokens`` (highest sounding note per step; a note shorter than a step lasts one
step; a re-struck pitch is a new note), but incremental: notes arrive as they are played, each quantised to the
nearest step, and ``finalize(step)`` emits the token for a step once its window has closed. An event that arrives
after its nearest step was finalised (a late delivery) is moved to the first open step, never rewriting the past.

Owned by the engine thread.
"""

from __future__ import annotations

from liveperf.music.melody import HOLD, OFF, PITCH_OFFSET


class PerformerGrid:
    def __init__(self, first_step: int = 0) -> None:
        """A grid whose first open step is ``first_step`` (a mode that begins mid-song starts its grid there)."""
        self._open: dict[int, tuple[int, int]] = {}  # pitch -> (start_step, velocity), still held
        self._closed: list[tuple[int, int, int]] = []  # (start_step, end_step, pitch), may still sound
        self._last_finalized = first_step - 1
        self._prev: tuple[int, int] = (-1, -1)  # (start, pitch) of the note on top at the last finalised step
        self.last_note_end_step = first_step - 1  # step at which the latest released note stopped sounding
        self.velocities: list[int] = []  # note-on velocities since the last ``clear_velocities``

    @property
    def sounding(self) -> bool:
        """True while the performer holds any note."""
        return bool(self._open)

    def note_on(self, step: int, pitch: int, velocity: int) -> int:
        """Record a note-on quantised to ``step``; returns the step actually used."""
        step = max(step, self._last_finalized + 1)
        if pitch in self._open:  # re-struck without a note-off: close the old one first
            self.note_off(step, pitch)
        self._open[pitch] = (step, velocity)
        self.velocities.append(velocity)
        return step

    def note_off(self, step: int, pitch: int) -> None:
        held = self._open.pop(pitch, None)
        if held is None:
            return  # note-off for a note we never saw (played before we started listening)
        start = held[0]
        end = max(step, start + 1, self._last_finalized + 1)
        self._closed.append((start, end, pitch))
        self.last_note_end_step = max(self.last_note_end_step, end)

    def struck_at(self, step: int) -> int | None:
        """The highest pitch whose note-on was quantised to ``step`` (heard so far), or None."""
        starts = [p for p, (start, _v) in self._open.items() if start == step]
        starts += [p for start, _end, p in self._closed if start == step]
        return max(starts) if starts else None

    @property
    def last_finalized(self) -> int:
        return self._last_finalized

    def finalize(self, step: int) -> int:
        """Token for ``step`` (must be the next unfinalised step or later; skipped steps are finalised too)."""
        token = HOLD
        for s in range(self._last_finalized + 1, step + 1):
            token = self._token_at(s)
        self._last_finalized = max(self._last_finalized, step)
        # Forget notes that ended before the next step.
        self._closed = [n for n in self._closed if n[1] > step]
        return token

    def peek(self, step: int) -> int:
        """The token ``finalize(step)`` would give now, finalising nothing (the comp decides a step before its
        window closes, and finalises it later)."""
        prev = self._prev
        token = HOLD
        for s in range(self._last_finalized + 1, step + 1):
            token = self._token_at(s)
        self._prev = prev
        return token

    def _token_at(self, s: int) -> int:
        top = (-1, -1)
        for start, _end, pitch in self._sounding_at(s):
            if pitch > top[1] or (pitch == top[1] and start > top[0]):
                top = (start, pitch)
        prev, self._prev = self._prev, top
        if top[1] < 0:
            return OFF if prev[1] >= 0 else HOLD
        return HOLD if top == prev else PITCH_OFFSET + top[1]

    def _sounding_at(self, s: int):
        for start, end, pitch in self._closed:
            if start <= s < end:
                yield start, end, pitch
        for pitch, (start, _vel) in self._open.items():
            if start <= s:
                yield start, s + 1, pitch

    def release_all(self, step: int) -> None:
        """Forget held notes (e.g. on song change), closing them at ``step``."""
        for pitch in list(self._open):
            self.note_off(step, pitch)
