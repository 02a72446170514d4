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

Live, the duet also *listens* (``liveperf.modes.duet``): where the predictor expects a new performer note, it
waits a few ms for it and answers the note it heard (``partner_logits(..., given=on(pitch))``: the duet model's
row for exactly that token, weighted by the consonance it really has); with no note, it plays its answer to the
performer holding on (``given=STILL``).

Cost per step: one predictor step and one batched peek of at most ``MAX_CANDIDATES`` + 1 rows (the likely
performer tokens, and ``HOLD``). The peek's states are kept: when the performer's real token of a step was one of
the rows, ``hear`` takes that row's state instead of running the duet model again (measured: a step took 3 model
calls, 515 µs p50, before). Engine thread only; deterministic (no sampling here: the mode samples from the result).
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
_CONSONANT_F = _CONSONANT.astype(np.float64)
_FLOOR = 1e-3  # a dissonant note keeps this much of its weight: rare, never impossible


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


STILL = -1  # ``partner_logits(given=STILL)``: the performer strikes no new note at the step (holds on, or lets go)


class Anticipation:
    """Owns the duet stepper's and the predictor's states; ``partner_logits`` is called once per step (and again,
    with ``given``, when the duet listened)."""

    def __init__(self, duet, predictor, voice: int) -> None:
        self.duet = duet  # DuetStepper over a same-step model (performer_lag_steps 0)
        self.predictor = predictor  # OnnxStepper over the melody model
        self.voice = voice
        self._pitches = np.arange(melody.NUM_PITCHES)
        self.state_reused = self.state_fed = 0  # how ``hear`` advanced the duet model (reuse saves a model call)
        self.reset()

    def reset(self) -> None:
        self.duet.reset()
        self.predictor.reset()
        self._predicted: np.ndarray | None = None  # predictor log-probabilities for the next performer token
        self._sounding: int | None = None  # the performer's pitch sounding after the last fed step
        self._peek: dict | None = None  # the last step's peek: step, partner_prev, {token: row}, rows, states

    def hear(self, performer: int, partner_prev: int, step: int) -> None:
        """The real tokens of ``step`` (the performer's, and the partner's of step - 1): advance both models."""
        pk = self._peek
        row = pk["index"].get(performer) if pk is not None and pk["step"] == step and \
            pk["partner_prev"] == partner_prev else None
        if row is not None:
            self.duet.set_state(pk["states"][:, row:row + 1])
            self.state_reused += 1
        else:
            self.duet.feed(performer, partner_prev, self.voice, step)
            self.state_fed += 1
        self._peek = None
        self._predicted = _log_softmax(self.predictor.feed(performer, step))
        if melody.is_on(performer):
            self._sounding = melody.pitch_of(performer)
        elif performer == melody.OFF:
            self._sounding = None

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """(performer tokens, weights summing to 1) likely at the next step."""
        if self._predicted is None:
            return np.array([melody.HOLD], dtype=np.int64), np.ones(1)
        p = np.exp(self._predicted)
        order = np.argsort(-p, kind="stable")[:MAX_CANDIDATES]
        keep = int(np.searchsorted(np.cumsum(p[order]), CANDIDATE_MASS)) + 1
        order = order[:keep]
        return order.astype(np.int64), p[order] / p[order].sum()

    def strike_probability(self) -> float:
        """The predictor's probability that the performer strikes a new note at the next step."""
        if self._predicted is None:
            return 0.0
        return float(np.exp(self._predicted[melody.PITCH_OFFSET:]).sum())

    def _rows(self, tokens: np.ndarray, partner_prev: int, step: int) -> np.ndarray:
        """Log-softmax rows of the duet model's answer to each performer token at ``step`` (peeked once per step;
        a token not peeked yet gets its own peek, kept for ``hear`` too)."""
        pk = self._peek
        if pk is None or pk["step"] != step or pk["partner_prev"] != partner_prev:
            pk = self._peek = {"step": step, "partner_prev": partner_prev, "index": {}, "rows": None, "states": None}
        missing = [t for t in dict.fromkeys(tokens.tolist()) if t not in pk["index"]]
        if missing:
            logits, states = self.duet.peek_many(np.array(missing, dtype=np.int64), partner_prev, self.voice,
                                                 np.full(len(missing), step), with_states=True)
            base = 0 if pk["rows"] is None else len(pk["rows"])
            pk["rows"] = _log_softmax(logits) if pk["rows"] is None else np.vstack([pk["rows"], _log_softmax(logits)])
            pk["states"] = states if pk["states"] is None else np.concatenate([pk["states"], states], axis=1)
            for i, t in enumerate(missing):
                pk["index"][t] = base + i
        return pk["rows"][[pk["index"][t] for t in tokens.tolist()]]

    def partner_logits(self, partner_prev: int, step: int, partner_sounding: int | None = None,
                       given: int | None = None) -> np.ndarray:
        """Log-probabilities (float32 [130]) of the partner's token at ``step``: the duet model's answer to each
        likely performer token, mixed by likelihood and weighted by expected consonance (a new note by its pitch;
        ``HOLD`` by the partner's note still sounding, ``partner_sounding``; a rest is neutral).

        ``given``: None, the likely tokens; ``STILL``, only the tokens that strike no new note (``HOLD``, ``OFF``);
        a token, exactly that one (the performer played it: its consonance is known, not expected)."""
        tokens, weights = self.candidates()
        # HOLD is always peeked: the answer to "no new note" is there when the duet listens and hears none.
        peek = tokens if melody.HOLD in tokens else np.append(tokens, melody.HOLD)
        rows = self._rows(peek, partner_prev, step)
        if given is not None:
            if given == STILL:
                still = tokens < melody.PITCH_OFFSET
                tokens, weights = (tokens[still], weights[still]) if still.any() and weights[still].sum() > 0 else \
                    (np.array([melody.HOLD], dtype=np.int64), np.ones(1))
                weights = weights / weights.sum()
            else:
                tokens, weights = np.array([given], dtype=np.int64), np.ones(1)
            rows = self._rows(tokens, partner_prev, step)
        else:
            rows = rows[:len(tokens)]
        mix = np.log(np.exp(rows + np.log(weights)[:, None]).sum(axis=0))
        weight = self._agreement(tokens, weights, partner_sounding)
        mix[melody.PITCH_OFFSET:] += weight
        # A rest dodges every clash but leaves the performer alone (Bach's basses rest on 1 % of steps): it
        # weighs as a note that agrees half the time.
        mix[melody.OFF] += CONSONANCE_POWER * np.log(_FLOOR + REST_AGREEMENT)
        if partner_sounding is not None:
            mix[melody.HOLD] += weight[partner_sounding]
        return mix.astype(np.float32)

    def _agreement(self, tokens: np.ndarray, weights: np.ndarray, partner_sounding: int | None) -> np.ndarray:
        """Per partner pitch: ``CONSONANCE_POWER`` x log expected consonance with the performer's pitch under each
        token, plus ``PARALLEL_POWER`` x log expected share of *no* parallel 5th / octave (both voices moving the
        same way into the same perfect interval they left)."""
        sounding = self._sounding
        pitch = np.where(tokens >= melody.PITCH_OFFSET, tokens - melody.PITCH_OFFSET,
                         sounding if (sounding is not None) else -1)
        pitch = np.where(tokens == melody.OFF, -1, pitch)
        sounds = pitch >= 0
        agree = np.full(melody.NUM_PITCHES, weights[~sounds].sum())
        if sounds.any():
            p, w = pitch[sounds], weights[sounds]
            agree += w @ _CONSONANT_F[(p[:, None] - self._pitches[None, :]) % 12]
        parallel = np.zeros(melody.NUM_PITCHES)
        if sounding is not None and partner_sounding is not None and (sounding - partner_sounding) % 12 in (0, 7):
            before = (sounding - partner_sounding) % 12
            moved = sounds & (pitch != sounding)
            for q, w in zip(pitch[moved].tolist(), weights[moved].tolist()):
                moves = (self._pitches > partner_sounding) if q > sounding else (self._pitches < partner_sounding)
                parallel += w * (moves & ((q - self._pitches) % 12 == before))
        return CONSONANCE_POWER * np.log(_FLOOR + agree) + PARALLEL_POWER * np.log(_FLOOR + 1.0 - parallel)
