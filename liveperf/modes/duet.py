"""Duet: every step, the partner voice (the duet DNN) plays beside the performer, conditioned on both histories.

The duet model was trained to predict the partner's token at step t from the performer's token at t. Live, step t
is computed ``lookahead`` before it is due, when the performer's token at t is not known yet. With a same-step
model (``performer_lag_steps`` 0, the shipped ``duet_dnn``) the partner *anticipates* (``liveperf.modes.
anticipation``): the melody model predicts the performer's token at t and the duet model's answers to the likely
tokens are mixed. A model trained to hear the performer a step late (``performer_lag_steps`` 1) is fed the
performer's token of t - 1 directly. The partner's previous token is what the partner really played (after masks
and the note-length cap).
Sampling uses the song's key/range mask, temperature and top-k/top-p (settings that leave no note to draw play the
likeliest allowed note where the model expects one: ``liveperf.modes.note_choice``); velocity follows the
performer (mean of the last 8 note-ons) unless the song fixes it. A failed model step silences the partner, resets
the model and the next step carries on: the clock never waits for the model.

Engine thread only.
"""

from __future__ import annotations


import numpy as np

from liveperf import melody
from liveperf.clock import InternalClock
from liveperf.models.step_model import StepError
from liveperf.modes.listening import ListensToPerformer
from liveperf.modes.note_choice import NoteChoice
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats
from liveperf.sampler import NO_CANDIDATE
from liveperf.scheduler import OutputSink


class Duet(ListensToPerformer):
    name = "duet"

    def __init__(self, settings: ModeSettings, stepper, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray, anticipation=None) -> None:
        self.s = settings
        self.stepper = stepper  # a DuetStepper (or a fake with the same feed/reset)
        self.anticipation = anticipation  # an Anticipation over the same duet model, or None: feed step - 1
        self.clock = clock
        self.sink = sink
        self.rng = rng_state
        self.stats = ModeStats()
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density)
        self.choice = NoteChoice()
        self._silent_for: np.ndarray | None = None  # the mask _silent_mask was made from
        self._silent_mask: np.ndarray | None = None
        self.begin(0)

    @property
    def idle(self) -> bool:
        return self.voice.held is None and not self.grid.sounding

    def begin(self, step: int) -> None:
        self._listen_from(step)
        self._first = step
        self._partner_prev = melody.HOLD
        self._partner_before = melody.HOLD  # the partner's token of the step before _partner_prev's
        self.stepper.reset()
        if self.anticipation is not None:
            self.anticipation.reset()

    def on_step(self, step: int) -> None:
        performer = self.grid.finalize(step - 1) if step > self._first else melody.HOLD
        due = self.clock.ns_at_step(step)
        try:
            if self.anticipation is not None:
                if step > self._first:
                    self.anticipation.hear(performer, self._partner_before, step - 1)
                held = self.voice.held[0] if self.voice.held is not None else None
                logits = self.anticipation.partner_logits(self._partner_prev, step, held)
            else:
                logits = self.stepper.feed(performer, self._partner_prev, self.s.voice, step)
        except StepError as exc:
            self.stats.model_errors += 1
            self.stats.last_error = str(exc)
            self.voice.silence(due, cancel=False)
            self.begin_models()
            return
        token = self.choice.choose(logits, self._mask(), self.s, self.rng, NO_CANDIDATE)
        if token == NO_CANDIDATE:
            self.stats.no_candidate += 1
            token = melody.HOLD
        self.stats.tokens += 1
        self._partner_before = self._partner_prev
        self._partner_prev = self.voice.play(step, due, token, self._velocity())

    def begin_models(self) -> None:
        """After a failed step: models back to their start state (the grid keeps listening)."""
        self._first = self.grid.last_finalized + 1
        self._partner_prev = self._partner_before = melody.HOLD
        self.stepper.reset()
        if self.anticipation is not None:
            self.anticipation.reset()

    def _mask(self) -> np.ndarray:
        """The key/range mask; while the voice is silent, without HOLD. The duet model learned from chorale voices,
        which rest rarely: after a rest (partner token HOLD) it mostly predicts HOLD again, so an unmasked partner
        that starts silent can stay silent for a whole song (measured: 64 of 64 steps HOLD on the modes tour's reel).
        Silent, the choice is a note or an explicit rest (OFF)."""
        if self.voice.held is not None:
            return self.s.allowed
        if self._silent_for is not self.s.allowed:
            self._silent_for = self.s.allowed
            self._silent_mask = self.s.allowed.copy()
            self._silent_mask[melody.HOLD] = False
        return self._silent_mask

    def stop(self, now_ns: int) -> None:
        self.voice.silence(now_ns, cancel=True)
        self._partner_prev = self._partner_before = melody.HOLD
