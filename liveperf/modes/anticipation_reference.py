"""The anticipating duet's choice of candidates and its mixing, in plain numpy: the specification the compiled
kernels in ``liveperf.modes.anticipation`` are tested against (``tests/modes/test_anticipation_kernels.py``), as
``liveperf.music.sampler_reference`` is for the sampler. Never on the hot path. Constants and contracts: the module
docstring of ``liveperf.modes.anticipation``."""

from __future__ import annotations

import numpy as np

from liveperf.music import melody
from liveperf.modes.anticipation import (CANDIDATE_MASS, CONSONANCE_POWER, MAX_CANDIDATES, PARALLEL_POWER,
                                         REST_AGREEMENT)
from liveperf.modes.anticipation import _CONSONANT_F as CONSONANT
from liveperf.modes.anticipation import _FLOOR as FLOOR

_PITCHES = np.arange(melody.NUM_PITCHES)


def candidates(predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(performer tokens, weights summing to 1) from the predictor's log-probabilities: the likeliest first (ties to
    the lower token), at most ``MAX_CANDIDATES``, until they hold ``CANDIDATE_MASS``."""
    p = np.exp(np.asarray(predicted, dtype=np.float64))
    order = np.argsort(-p, kind="stable")[:MAX_CANDIDATES]
    keep = int(np.searchsorted(np.cumsum(p[order]), CANDIDATE_MASS)) + 1
    order = order[:keep]
    return order.astype(np.int64), p[order] / p[order].sum()


def agreement(tokens: np.ndarray, weights: np.ndarray, sounding: int | None,
              partner_sounding: int | None) -> np.ndarray:
    """Per partner pitch: ``CONSONANCE_POWER`` x log expected consonance with the performer's pitch under each
    token, plus ``PARALLEL_POWER`` x log expected share of *no* parallel 5th / octave."""
    pitch = np.where(tokens >= melody.PITCH_OFFSET, tokens - melody.PITCH_OFFSET,
                     sounding if (sounding is not None) else -1)
    pitch = np.where(tokens == melody.OFF, -1, pitch)
    sounds = pitch >= 0
    agree = np.full(melody.NUM_PITCHES, weights[~sounds].sum())
    if sounds.any():
        p, w = pitch[sounds], weights[sounds]
        agree += w @ CONSONANT[(p[:, None] - _PITCHES[None, :]) % 12]
    parallel = np.zeros(melody.NUM_PITCHES)
    if sounding is not None and partner_sounding is not None and (sounding - partner_sounding) % 12 in (0, 7):
        before = (sounding - partner_sounding) % 12
        moved = sounds & (pitch != sounding)
        for q, w in zip(pitch[moved].tolist(), weights[moved].tolist()):
            moves = (_PITCHES > partner_sounding) if q > sounding else (_PITCHES < partner_sounding)
            parallel += w * (moves & ((q - _PITCHES) % 12 == before))
    return CONSONANCE_POWER * np.log(FLOOR + agree) + PARALLEL_POWER * np.log(FLOOR + 1.0 - parallel)


def mix(rows: np.ndarray, tokens: np.ndarray, weights: np.ndarray, sounding: int | None,
        partner_sounding: int | None) -> np.ndarray:
    """The partner's log-probabilities (float32 [130]) from the duet model's rows (log-softmax, one per performer
    token) mixed by ``weights`` and weighted by agreement."""
    out = np.log(np.exp(np.asarray(rows, dtype=np.float64) + np.log(weights)[:, None]).sum(axis=0))
    weight = agreement(tokens, weights, sounding, partner_sounding)
    out[melody.PITCH_OFFSET:] += weight
    out[melody.OFF] += CONSONANCE_POWER * np.log(FLOOR + REST_AGREEMENT)
    if partner_sounding is not None:
        out[melody.HOLD] += weight[partner_sounding]
    return out.astype(np.float32)
