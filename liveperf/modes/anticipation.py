"""Anticipation for the duet: what the partner plays at step t, when the performer's token at t is not known yet.

The duet model learned the partner's token at step t from the performer's token *at t* (a chorale's bass moves
with its soprano). Live, step t is computed ``lookahead`` before it is due, so the performer's token at t does not
exist yet. Feeding the token of t - 1 in its place (what the duet mode did) hears the performer a step late: the
bass then lands on the soprano's previous note (measured through the live path on held-out chorales: 54 % of
strong beats consonant, Bach 97 %), and it nearly stops moving (0.32 onsets per beat, Bach 1.2). Training the model
that way instead (the partner sees the performer up to t - 1) gave Bach's rhythm back but no better consonance
(55 %): a bass cannot agree with a soprano note it has not heard.

So the partner anticipates (the Anticipatory Music Transformer's route): a melody model predicts the performer's
token at t from the performer's line so far; the duet model, fed the real history, is asked for each likely
performer token (one batched peek), and the partner's distribution is the mixture, weighted by how likely each
performer token is. A note consonant with every likely soprano note gains: the mixture is then multiplied by the
expected consonance to the power ``CONSONANCE_POWER`` (a hedge a continuo player makes every beat). The duet model
still sees exactly what it was trained on: the performer's real tokens up to t - 1, and at t a token the performer
is likely to play.

Cost per step: one predictor step, one duet step (the real token of t - 1) and one batched peek of at most
``MAX_CANDIDATES`` rows. Engine thread only; deterministic (no sampling here: the mode samples from the result).
"""

from __future__ import annotations

import numpy as np

from liveperf import melody

MAX_CANDIDATES = 6  # performer tokens asked about per step, the likeliest first ...
CANDIDATE_MASS = 0.95  # ... until they hold this much of the predictor's probability
CONSONANCE_POWER = 10.0  # chosen on the validation chorales (export.quality --split valid), never the test ones
PARALLEL_POWER = 8.0  # the same for the expected share of parallel 5ths / octaves
REST_AGREEMENT = 0.5
_CONSONANT = np.zeros(12, dtype=bool)
_CONSONANT[[0, 3, 4, 7, 8, 9]] = True  # P1/P8, m3, M3, P5, m6, M6 (a 4th is dissonant against a bass)
_FLOOR = 1e-3  # a dissonant note keeps this much of its weight: rare, never impossible


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class Anticipation:
    """Owns the duet stepper's and the predictor's states; ``partner_logits`` is called once per step."""

    def __init__(self, duet, predictor, voice: int) -> None:
        self.duet = duet  # DuetStepper over a same-step model (performer_lag_steps 0)
        self.predictor = predictor  # OnnxStepper over the melody model
        self.voice = voice
        self._pitches = np.arange(melody.NUM_PITCHES)
        self.reset()

    def reset(self) -> None:
        self.duet.reset()
        self.predictor.reset()
        self._predicted: np.ndarray | None = None  # predictor logits for the next performer token
        self._sounding: int | None = None  # the performer's pitch sounding after the last fed step

    def hear(self, performer: int, partner_prev: int, step: int) -> None:
        """The real tokens of ``step`` (the performer's, and the partner's of step - 1): advance both models."""
        self.duet.feed(performer, partner_prev, self.voice, step)
        self._predicted = self.predictor.feed(performer, step)
        if melody.is_on(performer):
            self._sounding = melody.pitch_of(performer)
        elif performer == melody.OFF:
            self._sounding = None

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """(performer tokens, weights summing to 1) likely at the next step."""
        if self._predicted is None:
            return np.array([melody.HOLD], dtype=np.int64), np.ones(1)
        p = np.exp(_log_softmax(self._predicted))
        order = np.argsort(-p, kind="stable")[:MAX_CANDIDATES]
        keep = int(np.searchsorted(np.cumsum(p[order]), CANDIDATE_MASS)) + 1
        order = order[:keep]
        return order.astype(np.int64), p[order] / p[order].sum()

    def partner_logits(self, partner_prev: int, step: int, partner_sounding: int | None = None) -> np.ndarray:
        """Log-probabilities (float32 [130]) of the partner's token at ``step``: the duet model's answer to each
        likely performer token, mixed by likelihood and weighted by expected consonance (a new note by its pitch;
        ``HOLD`` by the partner's note still sounding, ``partner_sounding``; a rest is neutral)."""
        tokens, weights = self.candidates()
        rows = _log_softmax(self.duet.peek_many(tokens, partner_prev, self.voice, np.full(tokens.size, step)))
        mix = np.log(np.exp(rows + np.log(weights)[:, None]).sum(axis=0))
        # Expected consonance of each partner pitch with the performer's pitch under each candidate, and the
        # expected share of parallel 5ths / octaves (both voices move the same way into the same perfect interval).
        agree = np.zeros(melody.NUM_PITCHES)
        parallel = np.zeros(melody.NUM_PITCHES)
        before = None
        if self._sounding is not None and partner_sounding is not None:
            before = (self._sounding - partner_sounding) % 12
        for tok, w in zip(tokens.tolist(), weights.tolist()):
            pitch = melody.pitch_of(tok) if melody.is_on(tok) else (self._sounding if tok == melody.HOLD else None)
            if pitch is None:
                agree += w
                continue
            agree += w * _CONSONANT[(pitch - self._pitches) % 12]
            if before in (0, 7) and pitch != self._sounding:
                up = pitch > self._sounding
                moves = (self._pitches > partner_sounding) if up else (self._pitches < partner_sounding)
                parallel += w * (moves & ((pitch - self._pitches) % 12 == before))
        weight = CONSONANCE_POWER * np.log(_FLOOR + agree) + PARALLEL_POWER * np.log(_FLOOR + 1.0 - parallel)
        mix[melody.PITCH_OFFSET:] += weight
        # A rest dodges every clash but leaves the performer alone (Bach's basses rest on 1 % of steps): it
        # weighs as a note that agrees half the time.
        mix[melody.OFF] += CONSONANCE_POWER * np.log(_FLOOR + REST_AGREEMENT)
        if partner_sounding is not None:
            mix[melody.HOLD] += weight[partner_sounding]
        return mix.astype(np.float32)
