"""Phrase: every N bars the partner plays a 2-bar phrase from the GAN (candidates ranked by its critic) or the VAE.

Policy:
- Phrases start on bar lines: the first at the first bar line at or after the mode begins, then every
  ``phrase_every_steps`` steps (whole bars). A phrase is ``phrase_steps`` tokens long (32 = 2 bars of 4/4 16ths);
  it ends with the note-off of its last note at the phrase's end (or earlier by the note-length cap).
- The phrase is generated one step before its first step is due, from a ``PhraseSource`` (below), as a job for
  the song's planner (``liveperf.modes.planner``): in a show on the planner's thread, so the generation (GAN
  best-of-12, a VAE phrase with the knobs turned: 2-3 ms p50, p99 18 ms with a core busy) never delays a note of
  this or another partner; the engine collects it at a later step. One not done when its first step is computed
  plays from the step it comes in (counted: ``phrases_late``). A phrase due at the very step the mode began
  (on a bar line) is made at once. The job owns what it touches: the performer's history and the partner's
  recent line copied, the settings as they are; the source (its walk, its interpolation) and the mode's RNG
  stream belong to the job while it runs (the engine draws from neither meanwhile; an interpolation position set
  by OSC meanwhile applies to this phrase or the next). Sources: ``GanPhrases`` (K candidates, the critic's best) or ``VaePhrases`` with a latent source:
  ``random`` (z ~ N(0, I)), ``walk`` (z <- sqrt(1 - a^2) z + a n, an AR(1) walk that stays N(0, I), a =
  ``walk_step``), ``interpolate`` (between the two anchor latents named by seeds in the setlist; t moves by
  ``walk_step`` per phrase and turns at the ends), ``variation`` (encode the performer's last 2 bars, decode near
  them with spread ``sigma``; falls back to ``walk`` when the performer played nothing, counted), ``restyle``
  (the performer's last 2 bars encoded and decoded with no noise: with the style knobs turned, their phrase played
  back denser, higher, darker ...; the same fallback).
- Style knobs on the GAN: they choose among its candidates (the one nearest the critic's choice moved as they ask);
  register moves the chosen line along the scale as far as the range lets it (``style.shift_within``).
- Style knobs (``settings.style``, ``liveperf.music.style``) apply to every VAE phrase: the latent ones move the code,
  ``range`` and ``mood`` steer the decoder's logits in the song's key, and a turned knob draws several candidates
  (from codes near the steered one) and keeps the one nearest what the knobs ask (``style.choose``; restyle: near
  the performer's phrase moved, and their contour). All at 0: one phrase, decoded as before.
- The performer's notes are reduced to grid tokens all along (for ``variation``); they do not interrupt a phrase.
- The copy guard (``guard``, ``liveperf.music.copy_guard``; the show's ``max_copy_bars``): a phrase that, joined to what
  the partner just played, replays a training passage that long is drawn again (``MAX_REDRAWS``), then cut short of
  the copy; both counted (``copies_redrawn``, ``copies_cut``).
- A generation error (model raised, non-finite output) counts, skips this phrase, and the clock goes on.
Engine thread only.
"""

from __future__ import annotations

import copy
import functools
import time
from collections import deque
from concurrent.futures import Future
from typing import Protocol

import numpy as np

from liveperf.music import melody, style
from liveperf.music.style import STYLE_KNOBS
from liveperf.timing.clock import InternalClock
from liveperf.music.copy_guard import CopyGuard
from liveperf.models.phrase_models import GanModel, VaeModel, noise_generator, sample_phrases
from liveperf.models.step_model import StepError
from liveperf.modes.listening import ListensToPerformer
from liveperf.modes.planner import INLINE
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats
from liveperf.timing.scheduler import OutputSink


MAX_REDRAWS = 4  # a phrase that copies is drawn again this often before it is cut
MAX_GUARD_PAST = 64  # steps of the partner's own line kept for the copy guard's join (its longest window - 1)


class PhraseSource(Protocol):
    phrase_steps: int

    def next_phrase(self, settings: ModeSettings, history: np.ndarray, rng_state: np.ndarray) -> np.ndarray:
        """Tokens int64 [phrase_steps]; ``history`` = the performer's last ``phrase_steps`` grid tokens."""


class GanPhrases:
    """The GAN's best of ``settings.candidates`` phrases by the critic (argmax per step at temperature 0)."""

    def __init__(self, gan: GanModel) -> None:
        self.gan = gan
        self.phrase_steps = gan.phrase_steps
        self.fallbacks = 0

    def next_phrase(self, settings: ModeSettings, history: np.ndarray, rng_state: np.ndarray) -> np.ndarray:
        # The generator writes in any key (it was trained on phrases in random keys): each candidate is drawn
        # unmasked and moved into the song's key and range whole (``in_key``), not note by note by the mask, which
        # left a sharp generator's out-of-key phrases empty.
        drawn = self.gan.sample(settings.candidates, rng_state,
                                settings.temperature if settings.temperature < 0.5 else 0.0)
        phrases = in_key_rows(drawn, settings)
        knobs = list(settings.style)
        register = STYLE_KNOBS.index("register")
        steps = round(knobs[register] * style.RESTYLE_REGISTER_STEPS)
        knobs[register] = 0.0
        best = phrases[int(np.argmax(self.gan.score(phrases)))]
        if any(knobs):  # the style knobs choose among the candidates: away from the critic's choice, as they ask
            spb = self.gan.steps_per_beat
            reference = style.standardised(best[None], spb)[0]
            best = phrases[style.choose(phrases, knobs, reference, style.TARGET_SPAN_SD, spb)]
        # register moves the chosen line along the key's scale, whole, as far as the range lets it
        return style.shift_within(best, steps, settings.key_allowed, settings.allowed) if steps else best


SHIFTS = np.array(sorted(range(-6, 6), key=abs))  # the smallest shift first: it wins a tie


def in_key(phrase: np.ndarray, settings: ModeSettings) -> np.ndarray:
    """``phrase`` transposed by the shift (-6..+5 semitones, the smallest on a tie) that puts most of its notes in
    the song's key, then every note still outside the key or range taken to the key's nearest pitch (the lower of two
    as near), octaves into the range (``style.reshape_line``'s snap). One phrase of ``in_key_rows``."""
    return in_key_rows(np.asarray(phrase, dtype=np.int64)[None, :], settings)[0]


def in_key_rows(phrases: np.ndarray, settings: ModeSettings) -> np.ndarray:
    """``in_key`` of every row of int64 [K, T] at once: a GAN's candidates in array operations (one at a time took
    ~1 ms of a best-of-12 phrase); the snap is a table of the 128 pitches (``style.snap_table``)."""
    out = np.array(phrases, dtype=np.int64)
    is_note = out >= melody.PITCH_OFFSET
    if settings.key_allowed is not None and is_note.any():
        moved = (out - melody.PITCH_OFFSET)[:, None, :] + SHIFTS[None, :, None]  # [K, shifts, T]
        inside = (moved >= 0) & (moved < melody.NUM_PITCHES)
        key = settings.key_allowed[melody.PITCH_OFFSET:]
        notes = is_note[:, None, :]
        fit = (key[np.clip(moved, 0, melody.NUM_PITCHES - 1)] & inside & notes).sum(axis=2)
        fit = np.where((inside | ~notes).all(axis=2), fit, -1)
        shift = SHIFTS[np.argmax(fit, axis=1)]
        out = np.where(is_note, out + shift[:, None], out)
    table = _snap_table(settings.key_allowed.tobytes() if settings.key_allowed is not None else b"",
                        settings.allowed.tobytes())
    out[is_note] = table[out[is_note] - melody.PITCH_OFFSET] + melody.PITCH_OFFSET
    return melody.canonical_rows(out)


@functools.lru_cache(maxsize=16)
def _snap_table(key_allowed: bytes, allowed: bytes) -> np.ndarray:
    """The snap table of a key and range (masks as bytes: the cache key; a song's key changes now and then)."""
    key = np.frombuffer(key_allowed, dtype=bool) if key_allowed else None
    return style.snap_table(key, np.frombuffer(allowed, dtype=bool))


class VaePhrases:
    """The VAE decoder from a latent source (module docstring); keeps the walk / interpolation position."""

    def __init__(self, vae: VaeModel) -> None:
        self.vae = vae
        self.phrase_steps = vae.phrase_steps
        self.fallbacks = 0
        self._z: np.ndarray | None = None
        self._t = 0.0
        self._dir = 1.0

    def set_position(self, t: float) -> None:
        """Interpolation: the next phrase is decoded at ``t`` (0 = first anchor, 1 = second), moving on from there."""
        self._t = min(1.0, max(0.0, t))

    def _walk(self, settings: ModeSettings, rng_state: np.ndarray) -> np.ndarray:
        n = noise_generator(rng_state).standard_normal(self.vae.latent_dim).astype(np.float32)
        if self._z is None:
            self._z = n
        else:
            a = np.float32(settings.walk_step)
            self._z = np.sqrt(np.float32(1.0) - a * a) * self._z + a * n
        return self._z

    def latent(self, settings: ModeSettings, history: np.ndarray, rng_state: np.ndarray) -> np.ndarray:
        kind = settings.latent
        if kind in ("variation", "restyle"):
            if not any(melody.is_on(int(t)) for t in history):
                self.fallbacks += 1
                return self._walk(settings, rng_state)
            mu, _ = self.vae.encode(melody.canonical(history))
            if kind == "restyle":
                return mu[0]
            n = noise_generator(rng_state).standard_normal(mu.shape[1]).astype(np.float32)
            return mu[0] + np.float32(settings.sigma) * n
        if kind == "interpolate":
            za, zb = (np.random.default_rng(seed).standard_normal(self.vae.latent_dim).astype(np.float32)
                      for seed in settings.anchors)
            z = self.vae.interpolate(za, zb, self._t)
            self._t += self._dir * settings.walk_step
            if not 0.0 <= self._t <= 1.0:  # turn at the anchors
                self._dir = -self._dir
                self._t = min(1.0, max(0.0, self._t))
            return z
        if kind == "walk":
            return self._walk(settings, rng_state)
        return noise_generator(rng_state).standard_normal(self.vae.latent_dim).astype(np.float32)

    def next_phrase(self, settings: ModeSettings, history: np.ndarray, rng_state: np.ndarray) -> np.ndarray:
        z = self.latent(settings, history, rng_state)
        knobs = list(settings.style)
        if settings.latent != "restyle" or not any(melody.is_on(int(t)) for t in history):
            return self.decode(z, style.controls(knobs, self.vae.mix), settings, rng_state, knobs=knobs)
        # Restyle: register and range reshape the performer's own line (moving the code along their directions
        # wrote a new line: contour correlation with the performer's 0.18 and 0.43 at +-1, export.style_eval);
        # the other knobs move the code, and the decoder is held near the performer's line.
        register, spread = STYLE_KNOBS.index("register"), STYLE_KNOBS.index("range")
        steps = round(knobs[register] * style.RESTYLE_REGISTER_STEPS)
        factor = style.RESTYLE_RANGE_FACTOR ** knobs[spread]
        knobs[register] = knobs[spread] = 0.0
        reference = style.standardised(history[None], self.vae.steps_per_beat)[0]
        phrase = self.decode(z, style.controls(knobs, self.vae.mix), settings, rng_state, anchor=history,
                             knobs=knobs, reference=reference, span_sd=style.RESTYLE_SPAN_SD)
        return style.reshape_line(phrase, steps, factor, settings.key_allowed, settings.allowed)

    def decode(self, z: np.ndarray, u: np.ndarray, settings: ModeSettings, rng_state: np.ndarray,
               anchor: np.ndarray | None = None, knobs=None, reference: np.ndarray | None = None,
               span_sd: float | None = None) -> np.ndarray:
        """One phrase from code ``z`` with style controls ``u`` (``liveperf.music.style.controls``), sampled with the
        song's settings; ``anchor``: a line (tokens) the notes are held near (``liveperf.music.style.anchor``)."""
        offset = style.attribute_offset(self.vae.directions, u)
        if offset is not None:
            z = z + offset  # a new array: the walk's own position stays where it was
        n = style.candidates_for(knobs) if knobs is not None else 1
        codes = z[None]
        if n > 1:  # candidates from codes near this one (the first is the code itself), several drawn from each
            near = min(n, style.SELECT_CODES if anchor is None else style.RESTYLE_CODES)
            jitter = noise_generator(rng_state).standard_normal((near - 1, z.shape[-1])).astype(np.float32)
            codes = np.concatenate([codes, z[None] + np.float32(style.CODE_JITTER) * jitter])
        logits = style.steer(self.vae.decode_logits(codes), u, settings.tonic_pcs)
        if anchor is not None:
            logits = style.anchor(logits, anchor)
        drawn = sample_phrases(logits, settings.allowed, settings.temperature, settings.top_k, settings.top_p,
                               rng_state, repeat=-(-n // len(codes)))
        if n == 1:
            return drawn[0]
        span = style.TARGET_SPAN_SD if span_sd is None else span_sd
        return drawn[style.choose(drawn, knobs, reference, span, self.vae.steps_per_beat, line=anchor)]


class PhraseMode(ListensToPerformer):
    name = "phrase"

    def __init__(self, settings: ModeSettings, source: PhraseSource, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray, feel=None, guard: CopyGuard | None = None, planner=INLINE) -> None:
        self.s = settings
        self.planner = planner  # where phrases are made (``liveperf.modes.planner``)
        self.guard = guard
        self.source = source
        self.clock = clock
        self.feel = self._feel_for(feel)
        self.sink = sink
        self.rng = rng_state
        self.stats = ModeStats()
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density)
        self.phrase_ns: list[int] = []  # wall time of each phrase made (benches; not read on the hot path)
        self._stopped_job: Future | None = None  # a job that was running when the mode stopped (it still owns
        # the source and the RNG until it is done)
        self.begin(0)

    @property
    def idle(self) -> bool:
        return self.voice.held is None and self._tokens is None and self._pending is None and self._making is None

    def begin(self, step: int) -> None:
        self._listen_from(step)
        self._first = step
        n = self.source.phrase_steps
        self._history: deque[int] = deque([melody.HOLD] * n, maxlen=n)
        bar = self.s.steps_per_bar
        self._next_start = -(-step // bar) * bar  # the first bar line at or after ``step``
        self._tokens: np.ndarray | None = None  # the phrase playing, from step ``_start``
        self._start = 0
        self._fresh = False  # the next token played is the phrase's first: a HOLD there does not tie over
        self._pending: tuple[int, np.ndarray] | None = None  # the next phrase (start step, tokens), made ahead
        self._making: tuple[int, Future] | None = None  # (start step, job) of the next phrase being made
        self._played: deque[int] = deque(maxlen=MAX_GUARD_PAST)  # what the partner played, a token per step

    def on_step(self, step: int) -> None:
        if step > self._first:
            self._history.append(self.grid.finalize(step - 1))
        if self._making is not None and self._making[1].done():
            self._collect(step)
        if self._pending is None and self._making is None and step >= self._next_start:
            # A phrase that starts at this very step (the mode began on a bar line): made at once, first; but
            # not while a job stopped earlier still runs with the source and RNG (then it queues behind it).
            running = self._stopped_job is not None and not self._stopped_job.done()
            self._make_next(self.planner if running else INLINE)
            if self._making[1].done():
                self._collect(step)
        if self._pending is not None and step >= self._pending[0]:
            self._start, self._tokens = self._pending
            self._pending, self._fresh = None, True
        self._played.append(self._play(step))
        if self._pending is None and self._making is None and step >= self._next_start - 1:
            self._make_next(self.planner)  # after this step's own note is scheduled; a whole step ahead

    def _make_next(self, planner) -> None:
        history = np.asarray(self._history, dtype=np.int64)
        past = (np.asarray(self._played, dtype=np.int64)[len(self._played) - self.guard.window_steps + 1:]
                if self.guard is not None and self.guard.window_steps else None)
        job = planner.submit(phrase_job, self.source, copy.copy(self.s), history, self.rng, self.guard, past)
        self._making = (self._next_start, job)
        self._next_start += self.s.phrase_every_steps

    def _collect(self, step: int) -> None:
        """Take the finished phrase job's phrase (engine thread; the job is done)."""
        (start, job), self._making = self._making, None
        try:
            tokens, redrawn, cut, ns = job.result()
        except (StepError, ValueError) as exc:
            self.stats.model_errors += 1
            self.stats.last_error = str(exc)
            return
        self.stats.copies_redrawn += redrawn
        self.stats.copies_cut += cut
        self.stats.phrases += 1
        self.stats.tokens += len(tokens)
        self.stats.fallbacks = getattr(self.source, "fallbacks", 0)
        self.stats.phrases_late += start < step
        self.phrase_ns.append(ns)
        self._pending = (start, tokens)

    def _play(self, step: int) -> int:
        """Play this step of the phrase; returns the token played (HOLD between phrases)."""
        if self._tokens is None or step < self._start:
            return melody.HOLD
        due = self.feel.due_ns(step)
        i = step - self._start
        if i >= len(self._tokens):  # the phrase is over: end its last note
            self._tokens = None
            return self.voice.play(step, due, melody.OFF, 0)
        token = int(self._tokens[i])
        if self._fresh and token == melody.HOLD:
            token = melody.OFF  # a new phrase does not continue the last phrase's note
        self._fresh = False
        return self.voice.play(step, due, token, self._velocity(step))

    def stop(self, now_ns: int) -> None:
        self.voice.silence(now_ns, cancel=True)
        self._tokens = None
        self._pending = None
        if self._making is not None:
            job, self._making = self._making[1], None
            if not job.cancel():  # already running: it ends by itself, its phrase is never read
                self._stopped_job = job


def phrase_job(source: PhraseSource, settings: ModeSettings, history: np.ndarray, rng_state: np.ndarray,
               guard: CopyGuard | None, past: np.ndarray | None) -> tuple[np.ndarray, int, int, int]:
    """The next phrase from ``source`` (``next_phrase``), through the copy guard: (tokens, redraws, cut (0/1), wall
    time in ns), on whichever thread the planner runs it. ``past``: the partner's last ``window_steps - 1`` tokens,
    so a copy across the join is caught too. A phrase that copies a training passage is drawn again up to
    ``MAX_REDRAWS`` times, then cut where the copy would complete (``CopyGuard.cut``)."""
    t0 = time.perf_counter_ns()

    def draw() -> np.ndarray:
        return np.asarray(source.next_phrase(settings, history, rng_state), dtype=np.int64)

    tokens, redrawn, cut = draw(), 0, 0
    if past is not None:
        for _ in range(MAX_REDRAWS):
            if guard.first_copy(np.concatenate([past, tokens]), past.size) is None:
                break
            redrawn += 1
            tokens = draw()
        else:
            line, cuts = guard.cut(np.concatenate([past, tokens]), past.size)
            tokens, cut = line[past.size:], int(cuts > 0)
    return tokens, redrawn, cut, time.perf_counter_ns() - t0
