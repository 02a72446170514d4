"""Comp: three voices (bass, tenor, alto) under the performer's melody, in block chords or the chorales' rhythm.

The comp model (``liveperf.models.comp_model``, trained on the Bach chorales) is fed once per step: the melody's
token at that step (the performer's top line, ``PerformerGrid``) and what the three voices played the step before.
The voicing chooser (``liveperf.modes.voicing``) turns its three distributions into one chord with no crossing, no
unison, few parallels and the melody's note consonant on the beat. Each voice keeps its own range
(``VOICE_RANGES``, Bach's, within the song's key; the song's ``pitch_range`` is for the melodic modes), and all
three play on the song's channel.

**When the chord moves** (``comp_rhythm``): "beat" strikes a block chord on every beat, "half_bar" every two
beats from the bar line, "bar" on each bar line; "model" lets each voice move or hold on any step, as the model
says (the chorales' own rhythm). Between moves the voices hold (the note-length cap still ends them), and so they
do once the performer has played nothing for a bar: a comp follows a melody, it does not go on alone.

**Hearing the melody note of the chord.** A chord is consonant with a melody note only if it knows that note, and
live the note of step t arrives at t's time, after the step was computed (``lookahead`` ahead). So at a move step
where the performer has been striking (this bar position's onset rate, learnt as they play, at least
``LISTEN_RATE``; beats count as struck until heard otherwise) the comp *listens*: it plays nothing at the step's
time and decides when the note-on comes (at once, on that note), or at the end of the window (``LISTEN_NS``, at
most a third of a step: the performer holds on, and the chord goes out that late). Elsewhere it decides on time,
assuming the melody holds. A melody note that comes after its step was decided is a *surprise*: the model is fed
that step again with the right token (from the state before it) when the next step is computed, so its memory is
what was really played. ``listened`` / ``reactions`` / ``fallbacks`` / ``refed`` count these.

Velocity follows the performer's level and accents (``liveperf.music.dynamics``) at ``COMP_LEVEL`` of it, unless the song
fixes it. A failed model step silences the comp and resets the model; the clock never waits. Engine thread only.
"""

from __future__ import annotations

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.modes.listening import ListensToPerformer
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats
from liveperf.modes.voicing import choose
from liveperf.models.step_model import StepError
from liveperf.music.sampler import next_uniform
from liveperf.timing.scheduler import OutputSink

VOICE_RANGES = ((36, 62), (48, 69), (53, 76))  # bass, tenor, alto: MIDI, about Bach's (C2-D4, C3-A4, F3-E5)
LISTEN_RATE = 0.3  # listen at a move step whose bar position the performer strikes at least this often
RATE_MEMORY = 0.7  # each bar's onset at a position moves its rate by 1 - this
LISTEN_NS = 30_000_000  # the longest the comp waits for the performer's note at a move step (ms: 30)
COMP_LEVEL = 0.85  # the comp's velocity: this share of the performer's (an accompaniment sits under the melody)
RHYTHM_BEATS = {"beat": 1, "half_bar": 2}  # move every N beats from the bar line; "bar": bar lines; "model": always


class ChordVoices:
    """The comp's three ``PartnerVoice`` s on one channel, sharing one note-off table (a pitch one voice lets go of
    and another strikes at the same time goes out off-then-on, never on-then-off), with the interface the engine
    uses on a mode's voice (``set_channel``, ``density``, ``silence``)."""

    def __init__(self, channel: int, sink: OutputSink, max_note_steps: int, density: float) -> None:
        self.parts = [PartnerVoice(channel, sink, max_note_steps, density, seed=v) for v in range(3)]
        shared: dict[int, int] = {}
        for part in self.parts:
            part._off_due = shared

    @property
    def held(self):
        """The sounding notes (pitch, onset step, onset ns) of the voices that sound, or None when none does."""
        held = [p.held for p in self.parts if p.held is not None]
        return held or None

    @property
    def channel(self) -> int:
        return self.parts[0].channel

    @property
    def density(self) -> float:
        return self.parts[0].density

    @density.setter
    def density(self, value: float) -> None:
        for part in self.parts:
            part.density = value

    def pitches(self, out: np.ndarray) -> np.ndarray:
        for v, part in enumerate(self.parts):
            out[v] = part.held[0] if part.held is not None else -1
        return out

    def set_channel(self, channel: int, at_ns: int) -> None:
        for part in self.parts:
            part.set_channel(channel, at_ns)

    def silence(self, at_ns: int, cancel: bool) -> None:
        for part in self.parts:
            part.silence(at_ns, cancel)

    def play(self, step: int, due_ns: int, tokens: np.ndarray, velocity: int, out: np.ndarray,
             reaction: bool = False) -> None:
        """Every voice's token at ``step``: first the notes that end, then the ones that start; ``out`` gets the
        tokens as played (a note past the length cap ends: OFF; a density rest: OFF). ``reaction``: due the moment
        it was computed (``PartnerVoice.start``)."""
        for v, part in enumerate(self.parts):
            tok = int(tokens[v])
            if part.held is not None and tok == melody.HOLD and step - part.held[1] >= part.max_note_steps:
                tok = melody.OFF
            if tok != melody.HOLD:
                part.end(due_ns, reaction)
            out[v] = tok
        for v, part in enumerate(self.parts):
            if melody.is_on(int(out[v])) and not part.start(melody.pitch_of(int(out[v])), velocity, step, due_ns,
                                                            reaction=reaction):
                out[v] = melody.OFF


class Comp(ListensToPerformer):
    name = "comp"

    def __init__(self, settings: ModeSettings, stepper, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray, now_fn=None, feel=None) -> None:
        self.s = settings
        self.stepper = stepper  # a CompStepper (or a fake with feed / reset / state / set_state)
        self.clock = clock
        self.feel = self._feel_for(feel)
        self.sink = sink
        self.rng = rng_state
        self.now_fn = now_fn
        self.stats = ModeStats()
        self.voice = ChordVoices(settings.channel, sink, settings.max_note_steps, settings.density)
        self.listened = self.reactions = self.fallbacks = self.refed = self.chords = 0
        self._masks_for: np.ndarray | None = None
        self._logp = np.empty((3, melody.NUM_CLASSES))
        self._tokens = np.zeros(3, np.int64)
        self._played = np.zeros(3, np.int64)
        self._pitches = np.zeros(3, np.int64)
        self._rate = np.zeros(melody.MAX_BAR_STEPS)
        for pos in range(0, melody.MAX_BAR_STEPS, clock.steps_per_beat):
            self._rate[pos] = 1.0  # beats count as struck until heard otherwise
        self.begin(0)

    # ---- the engine's interface -----------------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        return self.voice.held is None and not self.grid.sounding and self._listening is None

    @property
    def wake_ns(self) -> int | None:
        return self._listening["deadline_ns"] if self._listening is not None else None

    def begin(self, step: int) -> None:
        self._listen_from(step)
        self._first = step
        self._voices_prev = np.full(3, melody.HOLD, np.int64)
        self._melody_pitch = self._melody_before = self._melody_at_chord = -1
        self._last: tuple | None = None  # (step, state before it, melody token fed, voices' tokens before it)
        self._listening: dict | None = None
        self.stepper.reset()

    def on_step(self, step: int) -> None:
        if self._listening is not None:  # a window the engine did not wake us for: close it now
            self._decide(self._listening["step"], max(self._listening["deadline_ns"], self._now(
                self.feel.due_ns(step))), reaction=True)
            self._listening = None
        if step > self._first and not self._settle(step - 1):
            return
        due = self.feel.due_ns(step)
        early = self.grid.struck_at(step) is not None  # played before the step was computed: heard already
        if self._moves(step) and not early and self._rate[self._bar_pos(step)] >= LISTEN_RATE:
            self.listened += 1
            window = min(LISTEN_NS, max(0, self.feel.due_ns(step + 1) - due) // 3)
            self._listening = {"step": step, "due_ns": due, "deadline_ns": due + window}
            return
        self._decide(step, due)

    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        super().note_on(ts_ns, pitch, velocity)
        lis = self._listening
        if lis is None or ts_ns > lis["deadline_ns"] or self.feel.nearest_step(ts_ns) != lis["step"]:
            return
        self._listening = None
        self.reactions += 1
        self._decide(lis["step"], max(lis["due_ns"], self._now(ts_ns)), reaction=True)

    def on_wake(self, now_ns: int) -> None:
        """The engine's call at ``wake_ns``: no note came in the listening window."""
        lis = self._listening
        if lis is not None and now_ns >= lis["deadline_ns"]:
            self._listening = None
            self.fallbacks += 1
            self._decide(lis["step"], now_ns, reaction=True)

    def stop(self, now_ns: int) -> None:
        self._listening = None
        self.voice.silence(now_ns, cancel=True)
        self._voices_prev[:] = melody.HOLD

    # ---- the steps -----------------------------------------------------------------------------------------------
    def _bar_pos(self, step: int) -> int:
        return (step % self.s.steps_per_bar) % melody.MAX_BAR_STEPS

    def _moves(self, step: int) -> bool:
        """Whether the chord may move at ``step`` (``comp_rhythm``)."""
        rhythm, pos = self.s.comp_rhythm, self._bar_pos(step)
        if rhythm == "model":
            return True
        if rhythm == "bar":
            return pos == 0
        return pos % (RHYTHM_BEATS[rhythm] * self.clock.steps_per_beat) == 0

    def _settle(self, step: int) -> bool:
        """Close ``step`` on the grid: learn whether the performer struck there, and feed the model that step again
        if the melody token it was decided on was not the one played. False when the model failed."""
        token = self.grid.finalize(step)
        pos = self._bar_pos(step)
        self._rate[pos] = RATE_MEMORY * self._rate[pos] + (1 - RATE_MEMORY) * melody.is_on(token)
        last = self._last
        if last is None or last[0] != step or last[2] == token:
            return True
        self.refed += 1
        self._melody_pitch = self._melody_after(token, self._melody_before)
        self.stepper.set_state(last[1])
        try:
            self.stepper.feed(token, last[3], step)
        except StepError as exc:
            self._model_failed(exc, self.feel.due_ns(step + 1))
            return False
        return True

    def _melody_after(self, token: int, before: int) -> int:
        if melody.is_on(token):
            return melody.pitch_of(token)
        return -1 if token == melody.OFF else before

    def _decide(self, step: int, at_ns: int, reaction: bool = False) -> None:
        """Feed the model ``step`` with the melody as heard now, choose the chord, play it at ``at_ns``
        (``reaction``: the end of a listening window, due when computed)."""
        token = self.grid.peek(step)
        self._melody_before = self._melody_pitch
        melody_now = self._melody_after(token, self._melody_pitch)
        before = self.stepper.state
        try:
            logits = self.stepper.feed(token, self._voices_prev, step)
        except StepError as exc:
            self._model_failed(exc, at_ns)
            return
        self._last = (step, before, token, self._voices_prev.copy())
        self._melody_pitch = melody_now
        tokens = self._tokens
        tokens[:] = melody.HOLD
        # a rest in the melody keeps the comp going; a bar of silence stops it (what sounds holds, to the cap)
        playing = melody_now >= 0 or step - self.grid.last_note_end_step < self.s.steps_per_bar
        if self._moves(step) and playing:
            prev = self.voice.pitches(self._pitches)
            logp = self._masked_logp(logits, strike=self.s.comp_rhythm != "model")
            strong = self._bar_pos(step) % self.clock.steps_per_beat == 0
            # parallels are heard chord to chord and against the melody's last note: both "before" melodies
            if choose(logp, prev, melody_now, self._melody_at_chord, strong, self.s.temperature,
                      next_uniform(self.rng), tokens, melody_last=self._melody_before):
                self.chords += 1
                self.stats.tokens += 3
                self._melody_at_chord = melody_now
            else:
                self.stats.no_candidate += 1
                tokens[:] = melody.HOLD
        self.voice.play(step, at_ns, tokens, self._comp_velocity(step), self._played, reaction)
        self._voices_prev[:] = self._played

    def _masked_logp(self, logits: np.ndarray, strike: bool) -> np.ndarray:
        """Log-probabilities with -inf outside each voice's range and the key, and on OFF (the voices sound);
        ``strike``: on HOLD too (a block chord strikes every voice)."""
        if self._masks_for is not self.s.key_allowed:
            self._masks_for = self.s.key_allowed
            key = self.s.key_allowed if self.s.key_allowed is not None else np.ones(melody.NUM_CLASSES, bool)
            self._masks = np.zeros((3, melody.NUM_CLASSES), bool)
            for v, (low, high) in enumerate(VOICE_RANGES):
                self._masks[v, melody.PITCH_OFFSET + low:melody.PITCH_OFFSET + high + 1] = True
            self._masks &= key[None, :]
            self._masks[:, melody.HOLD] = True
        x = logits.astype(np.float64)
        x = x - x.max(axis=1, keepdims=True)
        logp = self._logp
        np.subtract(x, np.log(np.exp(x).sum(axis=1, keepdims=True)), out=logp)
        logp[~self._masks] = -np.inf
        logp[:, melody.OFF] = -np.inf
        if strike:
            logp[:, melody.HOLD] = -np.inf
        return logp

    def _comp_velocity(self, step: int) -> int:
        if self.s.velocity is not None:
            return self.s.velocity
        return max(1, round(self.dynamics.velocity(step) * COMP_LEVEL))

    def _now(self, default_ns: int) -> int:
        return self.now_fn() if self.now_fn is not None else default_ns

    def _model_failed(self, exc: StepError, at_ns: int) -> None:
        self.stats.model_errors += 1
        self.stats.last_error = str(exc)
        self.voice.silence(at_ns, cancel=False)
        self._first = self.grid.last_finalized + 1
        self._voices_prev[:] = melody.HOLD
        self._melody_pitch = self._melody_before = self._melody_at_chord = -1
        self._last = None
        self._listening = None
        self.stepper.reset()
