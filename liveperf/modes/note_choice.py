"""Greedy and narrow sampling settings that still play: the likeliest note when one is due.

A step model's likeliest single token is almost always ``HOLD`` (nothing new happens), so settings that keep only
the likeliest token or tokens — ``temperature = 0`` (greedy), ``top_k = 1``, a small ``top_p``, a temperature so
small that every note's weight underflows, a narrow ``pitch_range`` that leaves the rests on top — would keep the
partner silent for as long as a rest is likelier than any single note: in practice for whole answers. Here such
settings mean "the likeliest *note* when the model expects a note now". Measured with the shipped melody model,
call and response over the first 200 steps of the demo takes (2-bar answers): the reel at temperature 0 (or top_k
1) answered 3 phrases with 1 note before, 34 now; the jig 36 before, 48 now; at temperature 0.8 nothing changes.

Policy (``NoteChoice.choose``), for the modes that sample one token per step (call and response, duet):

1. The sampler draws as always (``liveperf.music.sampler.sample``: exactly one draw from the mode's RNG), so random
   streams, and every setting that leaves notes to draw, behave exactly as before.
2. A note drawn is played. A rest drawn (HOLD, OFF) stands when the settings left at least one note the sampler
   could have drawn at this step: the rest was the luck of the draw.
3. When they left none (``notes_cut``: the tokens the sampler kept after temperature, top-k and top-p are all
   rests), the model's own distribution decides whether a note is due (``note_due``): at temperature 1, over all
   130 tokens, is the mass of the note-ons (every pitch) at least that of HOLD and at least that of OFF? If so, or
   if the mode needs a note now (``need_note``: the first step of a call-and-response answer), the likeliest note
   the mask allows is played (``likeliest_note``: the highest logit among allowed note-ons, the lower pitch on
   ties, as the sampler's greedy rule). Otherwise the sampler's rest stands.

Why the note mass counts every pitch and HOLD / OFF count unmasked: the mask says which tokens may be *played*,
not whether the model expects an onset. A narrow ``pitch_range`` holds a small share of the model's note mass, so
counting only allowed pitches would keep a narrow-range song nearly silent again (the demo reel at temperature 0,
range 60-64: 4 notes in 3 answers that way, 33 this way). Duet masks HOLD while its voice is silent
(``Duet._mask``); the model's HOLD mass still says "no onset expected here".

Which modes: call and response (``_play``) and duet (``on_step``). Harmonize samples among consonant note-ons only
(its mask holds no HOLD / OFF), so greedy is already the likeliest consonant note. Phrase mode samples whole phrases
from the GAN / VAE, which are far less rest-heavy step to step (measured: 2 to 21 notes per 2-bar phrase at
temperature 0, as at 0.6). A mask with no note-on at all is a setting no choice can help: ``liveperf check`` and
``liveperf play`` warn about it (``liveperf.setlist.lint``).

Cost: only steps where a rest was drawn do more than the draw: scalar math on three logits and a few numpy passes
over at most 130 floats in the object's own scratch arrays (the allowed note-ons of the last two masks are cached by
identity: a mode's masks are not changed in place). Measured on the 2-core dev machine under load: a drawn rest
costs ~9 us more at temperature 1, ~19 us greedy, ~43 us with top_p (the sampler alone: 1-3 us); a drawn note
nothing. One ``NoteChoice`` per mode; engine thread only.
At an exact tie between a rest prefix's mass and the top-p target, rounding here may differ from the sampler's
(``notes_cut``); either answer is one the settings allow.
"""

from __future__ import annotations

import math

import numpy as np

from liveperf.music.melody import HOLD, NUM_CLASSES, OFF, PITCH_OFFSET
from liveperf.music.sampler import sample


class NoteChoice:
    """The token a sampling mode plays at a step (module docstring). Owns scratch arrays; engine thread only."""

    def __init__(self) -> None:
        self._x32 = np.empty(NUM_CLASSES, dtype=np.float32)
        self._x = np.empty(NUM_CLASSES, dtype=np.float64)
        self._b = np.empty(NUM_CLASSES, dtype=np.bool_)
        self._masks: list[tuple[np.ndarray, np.ndarray]] = []  # (mask, its note-on tokens), newest first
        self.notes_chosen = 0  # notes played because the settings left none to draw (for reports and tests)

    def choose(self, logits: np.ndarray, allowed: np.ndarray, settings, rng_state: np.ndarray, fallback: int,
               need_note: bool = False) -> int:
        """One token for this step: ``logits`` float32 (130,), ``allowed`` bool (130,), ``settings`` a
        ``ModeSettings`` (temperature, top_k, top_p), ``rng_state`` advanced by exactly one draw; ``fallback`` as for
        ``sample`` (returned when no token is a candidate). ``need_note``: the mode needs a note now (played when the
        settings left none to draw and the mask allows one)."""
        token = int(sample(logits, allowed, settings.temperature, settings.top_k, settings.top_p, rng_state,
                           fallback))
        if token >= PITCH_OFFSET:
            return token
        note = self.likeliest_note(logits, allowed)
        if note < 0 or not self.notes_cut(logits, allowed, settings.temperature, settings.top_k, settings.top_p,
                                          note):
            return token
        if need_note or self.note_due(logits):
            self.notes_chosen += 1
            return note
        return token

    def _note_tokens(self, allowed: np.ndarray) -> np.ndarray:
        """The note-on tokens ``allowed`` allows (int64, ascending); the last two masks are remembered."""
        for mask, tokens in self._masks:
            if mask is allowed:
                return tokens
        tokens = np.flatnonzero(allowed[PITCH_OFFSET:]) + PITCH_OFFSET
        self._masks = [(allowed, tokens)] + self._masks[:1]
        return tokens

    def _note_logits(self, logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        x = self._x32[:tokens.size]
        np.take(logits, tokens, out=x)
        return x

    def likeliest_note(self, logits: np.ndarray, allowed: np.ndarray) -> int:
        """The allowed note-on token with the highest finite logit (the lowest token on ties); -1 if none."""
        tokens = self._note_tokens(allowed)
        if tokens.size == 0:
            return -1
        x = self._note_logits(logits, tokens)
        i = int(np.argmax(x))
        if math.isfinite(float(x[i])):
            return int(tokens[i])
        finite = np.isfinite(x)  # a NaN or +inf came first (never drawn): look among the finite ones (rare)
        if not finite.any():
            return -1
        return int(tokens[finite][int(np.argmax(x[finite]))])

    def notes_cut(self, logits: np.ndarray, allowed: np.ndarray, temperature: float, top_k: int, top_p: float,
                  note: int) -> bool:
        """Whether the sampler's settings kept no note-on at this step (``liveperf.music.sampler``'s semantics, steps
        4-8), given ``note`` = ``likeliest_note``: greedy (``not temperature > 0``) or ``top_k == 1`` (a rest was
        drawn, so a rest was the likeliest); ``note`` weighs 0 at this temperature; or top-k / top-p stopped
        before ``note``, behind the rests that outweigh it (a rest ties before it: the lower token comes first)."""
        if not temperature > 0.0 or top_k == 1:
            return True
        l_note = float(logits[note])
        rests = [float(logits[t]) for t in (HOLD, OFF) if allowed[t] and math.isfinite(float(logits[t]))]
        m = max([l_note] + rests)  # the note is the likeliest note candidate: m is the max over all candidates
        w_note = math.exp((l_note - m) / temperature)
        if w_note == 0.0:
            return True
        w_rests = [math.exp((v - m) / temperature) for v in rests]
        ahead = [w for w in w_rests if w >= w_note]
        if not ahead:
            return False
        if 0 < top_k <= len(ahead):  # the top-k tokens are rests: the note comes after them
            return True
        if not 0.0 < top_p < 1.0:
            return False
        w = self._note_weights(logits, allowed, m, temperature)
        # Notes weighing 0 are candidates to the sampler too, but last in its order: they change no top-k mass.
        if 0 < top_k < int(np.count_nonzero(w)) + len(rests):
            total = float(np.sort(np.concatenate((w, w_rests)))[-top_k:].sum())
        else:
            total = float(w.sum()) + sum(w_rests)
        return sum(ahead) >= top_p * total

    def _note_weights(self, logits: np.ndarray, allowed: np.ndarray, m: float, temperature: float) -> np.ndarray:
        """The sampler's weights w = exp((logit - m) / temperature) of the allowed note-ons (0 for non-finite)."""
        tokens = self._note_tokens(allowed)
        x32 = self._note_logits(logits, tokens)
        w, b = self._x[:tokens.size], self._b[:tokens.size]
        np.isfinite(x32, out=b)
        np.subtract(x32, np.float64(m), out=w)
        with np.errstate(over="ignore", invalid="ignore"):  # a tiny temperature: -inf, weight 0, as the sampler's
            w /= temperature
        np.exp(w, out=w)
        np.logical_not(b, out=b)
        np.copyto(w, 0.0, where=b)
        return w

    def note_due(self, logits: np.ndarray) -> bool:
        """Whether the model expects a note now: at temperature 1 over all 130 tokens (no mask; non-finite logits
        weigh nothing), the note-on mass is at least HOLD's and at least OFF's."""
        x = self._x
        np.copyto(x, logits)
        m = float(x.max())
        if not math.isfinite(m):  # a NaN or +inf somewhere, or nothing finite (rare)
            b = np.isfinite(x, out=self._b)
            if not b.any():
                return False
            np.logical_not(b, out=b)
            np.copyto(x, -np.inf, where=b)
            m = float(x.max())
        x -= m
        np.exp(x, out=x)
        onset = float(x[PITCH_OFFSET:].sum())
        return onset >= x[HOLD] and onset >= x[OFF]
