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

Cost per step. With the fused graph of the shipped pair (``liveperf.models.fused_duet``: built by
``export/fuse_duet.py`` from exactly the song's duet model and predictor), one onnxruntime call does the predictor's
step, the duet model's step on the performer's real token and the batched peek of the ``MAX_CANDIDATES`` likeliest
tokens and ``HOLD`` (``hear``, given the partner's token of that step too). Otherwise: one predictor step and one
batched peek of at most ``MAX_CANDIDATES`` + 1 rows; the peek's states are kept, and when the performer's real
token was one of the rows, ``hear`` takes that row's state instead of running the duet model again. Choosing the
candidates and mixing run compiled (numba, ``_candidates`` / ``_mix``; the numpy specification they are tested
against: ``liveperf.modes.anticipation_reference``). Measured in ``liveperf check`` (README, the duet's per-step
cost). Engine thread only; deterministic (no sampling here: the mode samples from the result).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from liveperf.music import melody
from liveperf.models.step_model import StepError

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
_NONE = -2  # the kernels' ``given`` for None: the likely tokens

_JIT = dict(cache=True, nogil=True)
_F64, _I64, _F32 = types.float64[::1], types.int64[::1], types.float32[::1]


@numba.njit([types.int64(_F64, _I64, _F64), types.int64(_F32, _I64, _F64)], **_JIT)
def _candidates(predicted, tokens, weights):
    """The likeliest performer tokens (ties to the lower token), at most ``MAX_CANDIDATES``, until they hold
    ``CANDIDATE_MASS``, into ``tokens`` / ``weights`` (normalised); returns how many."""
    n = 0
    total = 0.0
    for k in range(MAX_CANDIDATES):
        best = -1
        for t in range(predicted.size):
            taken = False
            for j in range(k):
                if tokens[j] == t:
                    taken = True
                    break
            if not taken and (best < 0 or predicted[t] > predicted[best]):
                best = t
        tokens[k] = best
        weights[k] = np.exp(np.float64(predicted[best]))
        total += weights[k]
        n = k + 1
        if total >= CANDIDATE_MASS:
            break
    for k in range(n):
        weights[k] /= total
    return n


@numba.njit([types.float64(_F64), types.float64(_F32)], **_JIT)
def _strike(predicted):
    """The probability of a note-on under log-probabilities ``predicted``."""
    acc = 0.0
    for t in range(melody.PITCH_OFFSET, predicted.size):
        acc += np.exp(np.float64(predicted[t]))
    return acc


@numba.njit(types.int64(_I64, _F64, types.int64, types.int64, _I64, _F64), **_JIT)
def _select(tokens, weights, n, given, out_tokens, out_weights):
    """The performer tokens the partner answers (``partner_logits``' ``given``: ``_NONE``, ``STILL`` or a token)
    into ``out_*``; returns how many."""
    if given >= 0:
        out_tokens[0], out_weights[0] = given, 1.0
        return 1
    m = 0
    total = 0.0
    for k in range(n):
        if given == _NONE or tokens[k] < melody.PITCH_OFFSET:
            out_tokens[m], out_weights[m] = tokens[k], weights[k]
            total += weights[k]
            m += 1
    if m == 0 or total <= 0.0:
        out_tokens[0], out_weights[0] = melody.HOLD, 1.0
        return 1
    for k in range(m):
        out_weights[k] /= total
    return m


@numba.njit([types.void(types.float64[:, ::1], _I64, _I64, _F64, types.int64, types.int64, types.int64, _F32),
             types.void(types.float32[:, ::1], _I64, _I64, _F64, types.int64, types.int64, types.int64, _F32)],
            **_JIT)
def _mix(rows, row_of, tokens, weights, n, sounding, partner_sounding, out):
    """``out`` = log of the ``weights``-mixture of the duet model's answer to each of ``tokens[:n]`` (row
    ``row_of[token]`` of ``rows``), plus the agreement weight per partner pitch (the reference's ``agreement``;
    sounding / partner_sounding: a pitch, or -1 for none)."""
    for c in range(rows.shape[1]):
        acc = 0.0
        for k in range(n):
            acc += np.exp(np.float64(rows[row_of[tokens[k]], c]) + np.log(weights[k]))
        out[c] = np.log(acc)
    # The performer's pitch under each token: a note-on its own, HOLD the one sounding, OFF none (-1).
    pitch = np.empty(n, dtype=np.int64)
    silent = 0.0
    for k in range(n):
        t = tokens[k]
        pitch[k] = t - melody.PITCH_OFFSET if t >= melody.PITCH_OFFSET else (sounding if t == melody.HOLD else -1)
        if pitch[k] < 0:
            silent += weights[k]
    before = -1
    if sounding >= 0 and partner_sounding >= 0 and ((sounding - partner_sounding) % 12 == 0 or
                                                     (sounding - partner_sounding) % 12 == 7):
        before = (sounding - partner_sounding) % 12
    hold_weight = 0.0
    for q in range(melody.NUM_PITCHES):
        agree = silent
        parallel = 0.0
        for k in range(n):
            p = pitch[k]
            if p < 0:
                continue
            agree += weights[k] * _CONSONANT_F[(p - q) % 12]
            if before >= 0 and p != sounding:
                moves = q > partner_sounding if p > sounding else q < partner_sounding
                if moves and (p - q) % 12 == before:
                    parallel += weights[k]
        w = CONSONANCE_POWER * np.log(_FLOOR + agree) + PARALLEL_POWER * np.log(_FLOOR + 1.0 - parallel)
        out[melody.PITCH_OFFSET + q] += w
        if q == partner_sounding:
            hold_weight = w
    out[melody.OFF] += CONSONANCE_POWER * np.log(_FLOOR + REST_AGREEMENT)
    if partner_sounding >= 0:
        out[melody.HOLD] += hold_weight


class Anticipation:
    """Owns the duet stepper's and the predictor's states (or the fused graph's); ``partner_logits`` is called once
    per step (and again, with ``given``, when the duet listened)."""

    def __init__(self, duet, predictor, voice: int, fused=None) -> None:
        self.duet = duet  # DuetStepper over a same-step model (performer_lag_steps 0)
        self.predictor = predictor  # OnnxStepper over the melody model
        self.voice = voice
        self.fused = fused  # a FusedDuetStep built from exactly these two models, or None
        self._row_numbers = np.arange(fused.candidates + 1) if fused is not None else None
        self.state_reused = self.state_fed = 0  # how ``hear`` advanced the duet model (reuse saves a model call)
        self._tokens, self._weights = np.zeros(MAX_CANDIDATES, np.int64), np.zeros(MAX_CANDIDATES)
        self._sel_tokens, self._sel_weights = np.zeros(MAX_CANDIDATES, np.int64), np.zeros(MAX_CANDIDATES)
        self._first_tokens, self._first_weights = np.array([melody.HOLD], np.int64), np.ones(1)  # nothing heard
        self._strike = 0.0
        self._n = 0
        self.reset()

    def reset(self) -> None:
        self.duet.reset()
        self.predictor.reset()
        if self.fused is not None:
            self.fused.reset()
        self._predicted: np.ndarray | None = None  # predictor log-probabilities (float64) for the next token
        self._n = 0  # candidates of ``_predicted`` in ``_tokens`` / ``_weights``
        self._sounding = -1  # the performer's pitch sounding after the last fed step (-1: none)
        # The last peek: step, partner_prev, rows (log-softmax), row_of (token -> row, -1: not peeked), states
        # (per row, for ``hear``; None when not kept), covers (every candidate and HOLD peeked).
        self._peek: dict | None = None
        self._duet_synced = True  # the duet stepper holds the fused graph's duet state (its off-table peeks)

    def hear(self, performer: int, partner_prev: int, step: int, partner_now: int | None = None) -> None:
        """The real tokens of ``step`` (the performer's, and the partner's of step - 1): advance both models.
        ``partner_now``: the partner's token at ``step``; with it, the fused graph also peeks ``step + 1``."""
        if self.fused is not None and partner_now is not None:
            self._hear_fused(performer, partner_prev, step, partner_now)
        else:
            pk = self._peek
            row = int(pk["row_of"][performer]) if pk is not None and pk["step"] == step and \
                pk["partner_prev"] == partner_prev and pk["states"] is not None else -1
            self._sync_duet()
            if row >= 0:
                self.duet.set_state(pk["states"][:, row:row + 1])
                self.state_reused += 1
            else:
                self.duet.feed(performer, partner_prev, self.voice, step)
                self.state_fed += 1
            self._peek = None
            self._predict(_log_softmax(self.predictor.feed(performer, step)))
        if melody.is_on(performer):
            self._sounding = melody.pitch_of(performer)
        elif performer == melody.OFF:
            self._sounding = -1

    def _hear_fused(self, performer: int, partner_prev: int, step: int, partner_now: int) -> None:
        pos, back, undo = self.predictor.stage(performer, step)
        position = self.duet.position
        try:
            rows, tokens, predicted = self.fused.step(performer, pos, back, partner_prev, self.voice,
                                                      position(step), partner_now, position(step + 1))
        except StepError:
            self.predictor.unstage(undo)
            self._peek = None  # its rows are the fused step's buffer, which the failed call may have written
            raise
        self.predictor.commit()
        self._duet_synced = False
        self.state_fed += 1
        row_of = np.full(melody.NUM_CLASSES, -1, dtype=np.int64)
        row_of[tokens] = self._row_numbers  # HOLD is last; as a candidate too, the row is the same
        self._peek = {"step": step + 1, "partner_prev": partner_now, "rows": rows, "row_of": row_of,
                      "states": None, "covers": True}
        self._predict(predicted)

    def _predict(self, predicted: np.ndarray) -> None:
        self._predicted = predicted
        self._n = _candidates(predicted, self._tokens, self._weights)
        self._strike = _strike(predicted)

    def _sync_duet(self) -> None:
        if not self._duet_synced:
            state = self.fused.duet_state
            self.duet.set_state(state.reshape(1, 1, state.shape[-1]).copy())  # the fused step's buffer
            self._duet_synced = True

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """(performer tokens, weights summing to 1) likely at the next step."""
        if self._predicted is None:
            return np.array([melody.HOLD], dtype=np.int64), np.ones(1)
        return self._tokens[:self._n].copy(), self._weights[:self._n].copy()

    def strike_probability(self) -> float:
        """The predictor's probability that the performer strikes a new note at the next step."""
        return 0.0 if self._predicted is None else self._strike

    def _peeked(self, tokens: list[int], partner_prev: int, step: int) -> dict:
        """The step's peek, holding the duet model's answer to each of ``tokens`` at ``step`` (peeked once per
        step; a token not peeked yet gets its own peek, kept for ``hear`` too)."""
        pk = self._peek
        if pk is None or pk["step"] != step or pk["partner_prev"] != partner_prev:
            pk = self._peek = {"step": step, "partner_prev": partner_prev, "rows": None, "states": None,
                               "row_of": np.full(melody.NUM_CLASSES, -1, dtype=np.int64), "covers": False}
        row_of = pk["row_of"]
        missing = [t for t in dict.fromkeys(tokens) if row_of[t] < 0]
        if missing:
            self._sync_duet()
            logits, states = self.duet.peek_many(np.array(missing, dtype=np.int64), partner_prev, self.voice,
                                                 np.full(len(missing), step), with_states=True)
            base = 0 if pk["rows"] is None else len(pk["rows"])
            rows = _log_softmax(logits)
            pk["rows"] = rows if pk["rows"] is None else np.vstack([pk["rows"].astype(np.float64), rows])
            if base == 0 or pk["states"] is not None:  # kept only while every row has its state
                pk["states"] = states if pk["states"] is None else np.concatenate([pk["states"], states], axis=1)
            row_of[missing] = base + np.arange(len(missing))
        return pk

    def partner_logits(self, partner_prev: int, step: int, partner_sounding: int | None = None,
                       given: int | None = None) -> np.ndarray:
        """Log-probabilities (float32 [130]) of the partner's token at ``step``: the duet model's answer to each
        likely performer token, mixed by likelihood and weighted by expected consonance (a new note by its pitch;
        ``HOLD`` by the partner's note still sounding, ``partner_sounding``; a rest is neutral).

        ``given``: None, the likely tokens; ``STILL``, only the tokens that strike no new note (``HOLD``, ``OFF``);
        a token, exactly that one (the performer played it: its consonance is known, not expected)."""
        if self._predicted is None:
            tokens, weights, n = self._first_tokens, self._first_weights, 1
        else:
            tokens, weights, n = self._tokens, self._weights, self._n
        pk = self._peek
        if pk is None or pk["step"] != step or pk["partner_prev"] != partner_prev or not pk["covers"]:
            # One batched peek of every candidate and HOLD: the answer to "no new note" is there when the duet
            # listens and hears none.
            pk = self._peeked(tokens[:n].tolist() + [melody.HOLD], partner_prev, step)
            pk["covers"] = True
        m = _select(tokens, weights, n, _NONE if given is None else given, self._sel_tokens, self._sel_weights)
        if given is not None and given >= 0 and pk["row_of"][given] < 0:
            pk = self._peeked([given], partner_prev, step)
        out = np.empty(melody.NUM_CLASSES, dtype=np.float32)
        _mix(pk["rows"], pk["row_of"], self._sel_tokens, self._sel_weights, m, self._sounding,
             -1 if partner_sounding is None else partner_sounding, out)
        return out
