"""What duet, harmonize and phrase modes share about hearing the performer: the notes reduced to grid tokens
(``PerformerGrid``) and the dynamics (mean velocity of the last 8 note-ons, unless the song fixes it).
Engine thread only."""

from __future__ import annotations

from collections import deque

from liveperf.performer_grid import PerformerGrid

DEFAULT_VELOCITY = 90  # before the performer has played anything


class ListensToPerformer:
    """Mixin: needs ``self.clock`` and ``self.s`` (ModeSettings); call ``_listen_from(step)`` in ``begin``."""

    def _listen_from(self, step: int) -> None:
        self.grid = PerformerGrid(step)
        self._velocities: deque[int] = deque(maxlen=8)

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        self.grid.note_on(self.clock.nearest_step(ts_ns), pitch, velocity)
        self._velocities.append(velocity)

    def note_off(self, ts_ns: int, pitch: int) -> None:
        self.grid.note_off(self.clock.nearest_step(ts_ns), pitch)

    def release_performer(self, ts_ns: int) -> None:
        self.grid.release_all(self.clock.nearest_step(ts_ns))

    def trigger(self) -> None:
        pass  # only call-and-response has a phrase to end on a trigger

    def _velocity(self) -> int:
        if self.s.velocity is not None:
            return self.s.velocity
        return int(round(sum(self._velocities) / len(self._velocities))) if self._velocities else DEFAULT_VELOCITY
