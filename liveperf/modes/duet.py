"""Duet: every step, the partner voice (the duet DNN) plays beside the performer, conditioned on both histories.

The duet model was trained to predict the partner's token at step t from the performer's token at t. Live, step t
is computed ``lookahead`` before it is due, when the performer's token at t is not known yet; the model is fed the
performer's token of step t - 1 instead (one step of latency on the performer's side, the price of never being
late). The partner's previous token is what the partner really played (after masks and the note-length cap).
Sampling uses the song's key/range mask, temperature and top-k/top-p; velocity follows the performer (mean of the
last 8 note-ons) unless the song fixes it. A failed model step silences the partner, resets the model and the next
step carries on: the clock never waits for the model.

Engine thread only.
"""

from __future__ import annotations


import numpy as np

from liveperf import melody
from liveperf.clock import InternalClock
from liveperf.models.step_model import StepError
from liveperf.modes.listening import ListensToPerformer
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats
from liveperf.sampler import NO_CANDIDATE, sample
from liveperf.scheduler import OutputSink


class Duet(ListensToPerformer):
    name = "duet"

    def __init__(self, settings: ModeSettings, stepper, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray) -> None:
        self.s = settings
        self.stepper = stepper  # a DuetStepper (or a fake with the same feed/reset)
        self.clock = clock
        self.sink = sink
        self.rng = rng_state
        self.stats = ModeStats()
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density)
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
        self.stepper.reset()

    def on_step(self, step: int) -> None:
        performer = self.grid.finalize(step - 1) if step > self._first else melody.HOLD
        due = self.clock.ns_at_step(step)
        try:
            logits = self.stepper.feed(performer, self._partner_prev, self.s.voice, step)
        except StepError as exc:
            self.stats.model_errors += 1
            self.stats.last_error = str(exc)
            self.voice.silence(due, cancel=False)
            self.stepper.reset()
            self._partner_prev = melody.HOLD
            return
        token = int(sample(logits, self._mask(), self.s.temperature, self.s.top_k, self.s.top_p, self.rng,
                           NO_CANDIDATE))
        if token == NO_CANDIDATE:
            self.stats.no_candidate += 1
            token = melody.HOLD
        self.stats.tokens += 1
        self._partner_prev = self.voice.play(step, due, token, self._velocity())

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
        self._partner_prev = melody.HOLD
