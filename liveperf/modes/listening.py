"""What duet, harmonize and phrase modes share about hearing the performer: the notes reduced to grid tokens
(``PerformerGrid``) and the dynamics (``liveperf.music.dynamics``: the performer's level and accents, unless the song
fixes the velocity). Engine thread only."""

from __future__ import annotations

from liveperf.music.dynamics import Dynamics
from liveperf.music.feel import Feel
from liveperf.music.performer_grid import PerformerGrid


class ListensToPerformer:
    """Mixin: needs ``self.clock`` and ``self.s`` (ModeSettings); call ``_listen_from(step)`` in ``begin``. The
    performer's notes are placed on the grid through ``self.feel`` (``liveperf.music.feel``: a swung off-beat is the
    beat's second eighth), which also hears every note-on."""

    def _feel_for(self, feel: Feel | None) -> Feel:
        """The song's shared ``Feel``, or this mode's own (settings' swing) when built alone."""
        return feel if feel is not None else Feel(self.clock, self.clock.steps_per_beat, self.s.swing)

    def _listen_from(self, step: int) -> None:
        self.grid = PerformerGrid(step)
        if getattr(self, "dynamics", None) is None:  # kept across a mode switch: the performer's touch is the same
            self.dynamics = Dynamics(self.s.steps_per_bar, self.clock.steps_per_beat)

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        self.feel.heard(ts_ns)
        step = self.grid.note_on(self.feel.nearest_step(ts_ns), pitch, velocity)
        self.dynamics.heard(step, velocity)

    def note_off(self, ts_ns: int, pitch: int) -> None:
        self.grid.note_off(self.feel.nearest_step(ts_ns), pitch)

    def release_performer(self, ts_ns: int) -> None:
        self.grid.release_all(self.feel.nearest_step(ts_ns))

    def trigger(self) -> None:
        pass  # only call-and-response has a phrase to end on a trigger

    def _velocity(self, step: int) -> int:
        """The partner's velocity for a note at song ``step``: the song's number, or the performer's dynamics."""
        return self.s.velocity if self.s.velocity is not None else self.dynamics.velocity(step)
