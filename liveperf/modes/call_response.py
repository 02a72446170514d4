"""Call and response: the performer plays a phrase; when it ends, the partner continues it for a few bars.

Policy, per song (``ModeSettings``):
- A phrase starts with the performer's first note after the partner was quiet; the model state is reset there, so
  the partner is primed with exactly this phrase (as the model was trained: tunes start at their first note).
- Every step, the model is fed the token of the step before (the performer's grid token, or the partner's own
  token while it answers) and returns logits for this step. One model step per grid step, whatever happens.
- The phrase ends when no performer note has sounded for ``silence_steps`` steps, or at an explicit trigger.
  The answer starts at that step and lasts ``response_bars`` bars, sampled in the song's key and range.
- A performer note-on during the answer stops it at once: pending partner notes are cancelled and the sounding
  one gets its note-off at the time of the performer's note.

Owned by the engine thread; it sees time only as steps and the clock's ``ns_at_step``.
"""

from __future__ import annotations

import numpy as np

from liveperf import melody
from liveperf.clock import InternalClock
from liveperf.models.step_model import StepError, StepModel
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats, settings_for  # noqa: F401  (re-exported)
from liveperf.performer_grid import PerformerGrid
from liveperf.sampler import sample
from liveperf.scheduler import OutputSink


class CallAndResponse:
    name = "call_response"

    def __init__(self, settings: ModeSettings, stepper: StepModel, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray) -> None:
        self.s = settings
        self.stepper = stepper
        self.clock = clock
        self.sink = sink
        self.rng = rng_state
        self.stats = ModeStats()
        self.spb = clock.steps_per_beat
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density)
        self.begin(0)

    def begin(self, step: int) -> None:
        """Start listening afresh at ``step`` (song start, a switch to this mode, a transport relocation)."""
        self.grid = PerformerGrid(step)
        self._begin_step = step
        self._phrase_start: int | None = None  # first step of the phrase being heard/answered
        self._fed_through = -1  # last step fed to the model
        self._logits: np.ndarray | None = None  # the model's prediction for step _fed_through + 1
        self._answer_start: int | None = None
        self._answer_end = -1
        self._answer_tokens: dict[int, int] = {}
        self._velocity = 100
        self._trigger = False
        self._finalized = step - 1

    # ---- state -----------------------------------------------------------------------------------------------
    @property
    def answering(self) -> bool:
        return self._answer_start is not None

    @property
    def idle(self) -> bool:
        """Nothing heard that still needs an answer, and no answer playing."""
        return self._phrase_start is None and not self.answering

    # ---- performer input (engine thread, in arrival order) -----------------------------------------------------
    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        if self.answering:
            self.stats.interrupted += 1
            self._stop_answer(ts_ns, cancel=True)
        step = self.grid.note_on(self.clock.nearest_step(ts_ns), pitch, velocity)
        if self._phrase_start is None:
            self._phrase_start = step
            self._fed_through = step - 1
            self._logits = None
            self.grid.velocities = [velocity]
            self.stepper.reset()

    def note_off(self, ts_ns: int, pitch: int) -> None:
        self.grid.note_off(self.clock.nearest_step(ts_ns), pitch)

    def release_performer(self, ts_ns: int) -> None:
        """Release every performer note still held (their note-offs will never come)."""
        self.grid.release_all(self.clock.nearest_step(ts_ns))

    def trigger(self) -> None:
        """End the phrase now (explicit trigger): the answer starts at the next step computed."""
        if self._phrase_start is not None and not self.answering:
            self._trigger = True

    # ---- the grid (engine thread, once per step, a little before the step is due) ------------------------------
    def on_step(self, step: int) -> None:
        self._feed_until(step - 1)
        if self.answering and step >= self._answer_end:
            self._stop_answer(self.clock.ns_at_step(step), cancel=False)
        if not self.answering and self._phrase_start is not None and step > self._phrase_start:
            silent_for = step - self.grid.last_note_end_step
            if self._trigger or (not self.grid.sounding and self.grid.last_note_end_step >= self._begin_step
                                 and silent_for >= self.s.silence_steps):
                self._start_answer(step)
        if self.answering:
            self._play(step)

    def _feed_until(self, last: int) -> None:
        """Finalise the performer's grid through ``last`` and feed the model every step of an open phrase."""
        for s in range(self._finalized + 1, last + 1):
            performer_token = self.grid.finalize(s)
            self._finalized = s
            if self._phrase_start is None or s < self._phrase_start or s <= self._fed_through:
                continue
            token = self._answer_tokens.get(s, performer_token)
            try:
                self._logits = self.stepper.feed(token, s % self.spb)
            except StepError as exc:
                self._model_failed(exc, self.clock.ns_at_step(s + 1))
                return
            self._fed_through = s

    def _start_answer(self, step: int) -> None:
        self._trigger = False
        self._answer_start = step
        self._answer_end = step + self.s.response_steps
        self._answer_tokens = {}
        vel = self.s.velocity
        if vel is None:
            heard = self.grid.velocities or [100]
            vel = int(round(sum(heard) / len(heard)))
        self._velocity = min(127, max(1, vel))
        self.stats.responses += 1

    def _play(self, step: int) -> None:
        if self._logits is None or self._fed_through != step - 1:
            return  # the model could not be fed up to here (error counted): stay silent this step
        token = int(sample(self._logits, self.s.allowed, self.s.temperature, self.s.top_k, self.s.top_p,
                           self.rng, melody.HOLD))
        if not self.s.allowed[token]:
            token = melody.HOLD
        self.stats.tokens += 1
        self._answer_tokens[step] = self.voice.play(step, self.clock.ns_at_step(step), token, self._velocity)

    def _stop_answer(self, at_ns: int, cancel: bool) -> None:
        """End the answer at ``at_ns``; ``cancel`` also drops what was computed ahead and is not yet due."""
        self.voice.silence(at_ns, cancel)
        self._answer_start = None
        self._answer_tokens = {}
        self._phrase_start = None
        self._logits = None

    def _model_failed(self, exc: Exception, at_ns: int) -> None:
        self.stats.model_errors += 1
        self.stats.last_error = str(exc)
        if self.answering:
            self._stop_answer(at_ns, cancel=True)
        self._phrase_start = None
        self._logits = None

    def stop(self, now_ns: int) -> None:
        """Silence the partner now (song end, mode switch, transport stop, panic, shutdown)."""
        if self.answering:
            self._stop_answer(now_ns, cancel=True)
        self._phrase_start = None
