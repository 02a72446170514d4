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
performer's level and accents (``liveperf.music.dynamics``) unless the song fixes it. A failed model step silences the
partner, resets the model and the next step carries on: the clock never waits for the model.

The partner *listens* on the steps where the performer is likely to play a new note (the predictor gives it at
least ``LISTEN_PROBABILITY``, anticipation only): it plays nothing at the step's time and waits up to
``LISTEN_NS`` (at most a third of a step) for the performer's note there. A note-on heard in that window (or
before the step was computed: a note played early) is answered at once with the duet model's answer to exactly that
note, the way the model was trained (the soprano and bass of a chorale move together); with no note by the end of
the window, the answer to "the performer holds on" was drawn ahead: a held partner note goes on (nothing to send),
a new note or a rest goes out then, ``LISTEN_NS`` late. The engine wakes the mode at the window's end
(``wake_ns``, ``on_wake``). Live, an answer goes out when the scheduler can send it after the note-on arrived (rtmidi:
the next JACK cycle; measured on the harness's wire as the partner's delay behind the performer, 0 in virtual
time). ``listened`` / ``reactions`` / ``fallbacks`` count the steps.

Engine thread only.
"""

from __future__ import annotations


import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.models.step_model import StepError
from liveperf.modes.anticipation import STILL
from liveperf.modes.listening import ListensToPerformer
from liveperf.modes.note_choice import NoteChoice
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats
from liveperf.music.sampler import NO_CANDIDATE
from liveperf.timing.scheduler import OutputSink


LISTEN_PROBABILITY = 0.5  # listen where the predictor expects a new performer note at least this likely
LISTEN_NS = 30_000_000  # how long after a step's time the partner waits for the performer's note (ms: 30)


class Duet(ListensToPerformer):
    name = "duet"

    def __init__(self, settings: ModeSettings, stepper, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray, anticipation=None, now_fn=None, feel=None) -> None:
        self.s = settings
        self.stepper = stepper  # a DuetStepper (or a fake with the same feed/reset)
        self.anticipation = anticipation  # an Anticipation over the same duet model, or None: feed step - 1
        self.clock = clock
        self.feel = self._feel_for(feel)
        self.sink = sink
        self.rng = rng_state
        self.stats = ModeStats()
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density)
        self.choice = NoteChoice()
        self._silent_for: np.ndarray | None = None  # the mask _silent_mask was made from
        self._silent_mask: np.ndarray | None = None
        self.now_fn = now_fn  # the engine's clock (a reaction is due when it is computed); None: the note's stamp
        self.listen_probability = LISTEN_PROBABILITY
        self.listened = self.reactions = self.fallbacks = 0
        self._listening: dict | None = None  # the step the partner is listening at (``on_step``), or None
        self.begin(0)

    @property
    def idle(self) -> bool:
        return self.voice.held is None and not self.grid.sounding and self._listening is None

    @property
    def wake_ns(self) -> int | None:
        """When the engine must call ``on_wake`` (the end of a listening window with a note to play), or None."""
        lis = self._listening
        return lis["deadline_ns"] if lis is not None and lis["fallback"] != melody.HOLD else None

    def begin(self, step: int) -> None:
        self._listen_from(step)
        self._first = step
        self._partner_prev = melody.HOLD
        self._partner_before = melody.HOLD  # the partner's token of the step before _partner_prev's
        self._listening = None
        self.stepper.reset()
        if self.anticipation is not None:
            self.anticipation.reset()

    def on_step(self, step: int) -> None:
        if self._listening is not None:  # a window the engine did not wake us for (no wake support): close it now
            self._end_listening(max(self._listening["deadline_ns"], self._now(self.feel.due_ns(step))))
        performer = self.grid.finalize(step - 1) if step > self._first else melody.HOLD
        due = self.feel.due_ns(step)  # swung off-beats later (liveperf.music.feel)
        listen, held = False, None
        try:
            if self.anticipation is not None:
                if step > self._first:
                    self.anticipation.hear(performer, self._partner_before, step - 1, self._partner_prev)
                held = self.voice.held[0] if self.voice.held is not None else None
                early = self.grid.struck_at(step)  # played before this step was computed: heard, not predicted
                if early is not None:
                    logits = self.anticipation.partner_logits(self._partner_prev, step, held, melody.on(early))
                elif self.anticipation.strike_probability() >= self.listen_probability:
                    logits = self.anticipation.partner_logits(self._partner_prev, step, held, STILL)
                    listen = True
                else:
                    logits = self.anticipation.partner_logits(self._partner_prev, step, held)
            else:
                logits = self.stepper.feed(performer, self._partner_prev, self.s.voice, step)
        except StepError as exc:
            self._model_failed(exc, due)
            return
        token = self._choose(logits)
        self._partner_before = self._partner_prev
        if listen:
            # Nothing at the step's time: wait for the performer's note (module docstring). ``token`` is the
            # answer to no new note; HOLD until then. A held note whose cap falls on this step ends at the step's
            # time, not at the window's end (nor, as before, a step later: a HOLD fallback needs no wake).
            self.listened += 1
            self.voice.cap(step, due)
            capped = held is not None and self.voice.held is None
            if capped:
                held = None
            self._partner_prev = melody.OFF if capped else melody.HOLD
            window = min(LISTEN_NS, max(0, self.feel.due_ns(step + 1) - due) // 3)
            self._listening = {"step": step, "due_ns": due, "deadline_ns": due + window, "fallback": token,
                               "partner_prev": self._partner_before, "held": held, "capped": capped}
            return
        self._partner_prev = self.voice.play(step, due, token, self._velocity(step))

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        super().note_on(ts_ns, pitch, velocity)
        lis = self._listening
        if lis is None or ts_ns > lis["deadline_ns"] or self.feel.nearest_step(ts_ns) != lis["step"]:
            return
        self._listening = None
        now = self._now(ts_ns)
        try:
            logits = self.anticipation.partner_logits(lis["partner_prev"], lis["step"], lis["held"], melody.on(pitch))
        except StepError as exc:
            self._model_failed(exc, now)
            return
        self.reactions += 1
        self._partner_prev = self.voice.play(lis["step"], max(lis["due_ns"], now), self._choose(logits),
                                             self._velocity(lis["step"]), reaction=True)

    def on_wake(self, now_ns: int) -> None:
        """The engine's call at ``wake_ns``: no note came in the listening window."""
        if self._listening is not None and now_ns >= self._listening["deadline_ns"]:
            self._end_listening(now_ns)

    def _end_listening(self, at_ns: int) -> None:
        lis, self._listening = self._listening, None
        self.fallbacks += 1
        played = self.voice.play(lis["step"], at_ns, lis["fallback"], self._velocity(lis["step"]), reaction=True)
        self._partner_prev = melody.OFF if lis["capped"] and played == melody.HOLD else played

    def _now(self, default_ns: int) -> int:
        return self.now_fn() if self.now_fn is not None else default_ns

    def _choose(self, logits: np.ndarray) -> int:
        token = self.choice.choose(logits, self._mask(), self.s, self.rng, NO_CANDIDATE)
        if token == NO_CANDIDATE:
            self.stats.no_candidate += 1
            token = melody.HOLD
        self.stats.tokens += 1
        return token

    def _model_failed(self, exc: StepError, at_ns: int) -> None:
        self.stats.model_errors += 1
        self.stats.last_error = str(exc)
        self.voice.silence(at_ns, cancel=False)
        self.begin_models()

    def begin_models(self) -> None:
        """After a failed step: models back to their start state (the grid keeps listening)."""
        self._first = self.grid.last_finalized + 1
        self._partner_prev = self._partner_before = melody.HOLD
        self._listening = None
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
        self._listening = None
        self.voice.silence(now_ns, cancel=True)
        self._partner_prev = self._partner_before = melody.HOLD
