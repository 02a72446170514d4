"""The comp's voicing chooser: from the comp model's three distributions, the chord a musician would accept.

The comp model (``liveperf.models.comp_model``) gives each voice (bass, tenor, alto) its own distribution over
tokens at step t; drawn one by one they can cross, double, or move in parallel fifths. ``choose`` looks at the
``k`` likeliest allowed tokens of each voice (``k``**3 chords) and scores each chord:

    score = the three log-probabilities + the voice-leading penalties below (nats)

then draws one with weights exp((score - best) / temperature) (greedy when temperature <= 0), using one uniform
draw ``u`` from the caller's seeded stream. Rules (pitches after the step: ``HOLD`` keeps the voice's pitch):
- **invalid**: bass < tenor < alto, strictly (no crossing; no unison, which on one MIDI channel would cut a note);
- **above the melody**: alto over the melody's sounding pitch: ``ABOVE_MELODY``;
- **dissonant with the melody** (bass: anything but P1/m3/M3/P5/m6/M6; upper voices: P4 allowed too):
  ``DISSONANT_STRONG`` on a strong beat, ``DISSONANT`` elsewhere;
- **dissonant among the voices** (m2/M2/tritone/m7/M7, any pair of bass/tenor/alto): ``CLASH`` each;
- **parallel fifths or octaves** between any two of the four voices, both moving the same way: ``PARALLEL`` each
  pair (the melody is taken from where it was at the last chord and just before the step: a chord held under a
  moving melody meets both);
- **leaps**: an upper voice moving more than a fourth ``LEAP`` per semitone beyond it; the bass beyond an octave;
- **spacing**: alto-tenor over an octave, or melody-alto over an octave: ``SPACING``;
- **thin chord**: fewer than three pitch classes among melody and voices: ``THIN``.
``melody_pitch`` < 0 (the performer is silent) drops the melody rules. No valid chord: returns False and leaves
``out`` alone (the comp holds what sounds).

Compiled with numba (``cache=True``): ~k**3 small loops, a few microseconds; ``score_chord`` is the plain-Python
specification the tests hold the compiled ``choose`` to. Pure functions; any thread.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from liveperf.music.melody import HOLD, PITCH_OFFSET

K_DEFAULT = 6
ABOVE_MELODY = -5.0
DISSONANT_STRONG = -4.0
DISSONANT = -1.5
CLASH = -1.0
PARALLEL = -6.0
LEAP = -0.5
SPACING = -2.0
THIN = -2.0

_BASS_OK = np.zeros(12, np.bool_)
_BASS_OK[[0, 3, 4, 7, 8, 9]] = True
_UPPER_OK = _BASS_OK.copy()
_UPPER_OK[5] = True
_CLASH = np.zeros(12, np.bool_)
_CLASH[[1, 2, 6, 10, 11]] = True


@numba.njit(cache=True, nogil=True)
def _penalty(p, prev, melody, melody_prev, melody_last, strong, bass_ok, upper_ok, clash) -> float:
    """Voice-leading penalty of pitches ``p`` (bass, tenor, alto) after ``prev``; -inf when invalid."""
    if not (p[0] < p[1] < p[2]):
        return -math.inf
    s = 0.0
    if melody >= 0:
        if p[2] > melody:
            s += ABOVE_MELODY
        if melody - p[2] > 12:
            s += SPACING
        for v in range(3):
            ok = bass_ok[(melody - p[v]) % 12] if v == 0 else upper_ok[(melody - p[v]) % 12]
            if not ok:
                s += DISSONANT_STRONG if strong else DISSONANT
    for i in range(3):
        for j in range(i + 1, 3):
            if clash[(p[j] - p[i]) % 12]:
                s += CLASH
    if p[2] - p[1] > 12:
        s += SPACING
    # leaps
    for v in range(3):
        if prev[v] >= 0:
            d = abs(p[v] - prev[v])
            limit = 12 if v == 0 else 5
            if d > limit:
                s += LEAP * (d - limit)
    # parallel fifths / octaves over the four voices (index 3 = the melody, heard before the step as it was at
    # the last chord and as it was just before: a held chord under a moving melody has both)
    for i in range(4):
        for j in range(i + 1, 4):
            for before in (melody_prev, melody_last):
                a0 = prev[i] if i < 3 else before
                b0 = prev[j] if j < 3 else before
                a1 = p[i] if i < 3 else melody
                b1 = p[j] if j < 3 else melody
                if a0 < 0 or b0 < 0 or a1 < 0 or b1 < 0 or a0 == a1 or b0 == b1:
                    continue
                if (a1 - a0 > 0) != (b1 - b0 > 0):
                    continue
                c0, c1 = abs(b0 - a0) % 12, abs(b1 - a1) % 12
                if c0 == c1 and (c0 == 0 or c0 == 7):
                    s += PARALLEL
                    break  # one parallel per pair
                if j < 3:
                    break  # two comp voices: the melody does not come into it
    # thin chord
    seen = 0
    count = 0
    for v in range(4):
        q = p[v] if v < 3 else melody
        if q < 0:
            continue
        bit = 1 << (q % 12)
        if seen & bit == 0:
            seen |= bit
            count += 1
    if count < 3:
        s += THIN
    return s


@numba.njit(cache=True, nogil=True)
def _choose(logp, prev, melody, melody_prev, melody_last, strong, temperature, u, k, out, bass_ok, upper_ok,
            clash) -> bool:
    # the k likeliest allowed tokens of each voice (finite log-probability), best first
    top = np.full((3, k), -1, np.int64)
    for v in range(3):
        for r in range(k):
            best, arg = -math.inf, -1
            for t in range(logp.shape[1]):
                x = logp[v, t]
                if x > best:
                    taken = False
                    for q in range(r):
                        if top[v, q] == t:
                            taken = True
                    if not taken:
                        best, arg = x, t
            top[v, r] = arg
    n = k * k * k
    scores = np.full(n, -math.inf)
    p = np.empty(3, np.int64)
    for c in range(n):
        idx = (c // (k * k), (c // k) % k, c % k)
        valid = True
        lp = 0.0
        for v in range(3):
            t = top[v, idx[v]]
            if t < 0:
                valid = False
                break
            p[v] = prev[v] if t == HOLD else t - PITCH_OFFSET
            if p[v] < 0:  # HOLD on a silent voice, or a rest: the comp's voices always sound
                valid = False
                break
            lp += logp[v, t]
        if valid:
            scores[c] = lp + _penalty(p, prev, melody, melody_prev, melody_last, strong, bass_ok, upper_ok, clash)
    best = -math.inf
    for c in range(n):
        if scores[c] > best:
            best = scores[c]
    if best == -math.inf:
        return False
    chosen = -1
    if not temperature > 0:
        for c in range(n):
            if scores[c] == best:
                chosen = c
                break
    else:
        total = 0.0
        for c in range(n):
            if scores[c] > -math.inf:
                total += math.exp((scores[c] - best) / temperature)
        target = u * total
        run = 0.0
        for c in range(n):
            if scores[c] > -math.inf:
                run += math.exp((scores[c] - best) / temperature)
                chosen = c
                if run > target:
                    break
    out[0] = top[0, chosen // (k * k)]
    out[1] = top[1, (chosen // k) % k]
    out[2] = top[2, chosen % k]
    return True


def choose(logp: np.ndarray, prev: np.ndarray, melody: int, melody_prev: int, strong: bool, temperature: float,
           u: float, out: np.ndarray, k: int = K_DEFAULT, melody_last: int | None = None) -> bool:
    """Write the chosen tokens (bass, tenor, alto) into ``out`` (int64 [3]); False when no chord is valid.
    ``logp``: float64 [3, 130] log-probabilities with -inf where a token is not allowed (the key and range mask;
    ``HOLD`` out where a voice must strike); ``prev``: int64 [3] pitches sounding before the step (-1 silent);
    ``melody``: the melody's sounding pitch at the step; ``melody_prev``: at the last chord; ``melody_last``: just
    before the step (default: ``melody_prev``); -1 silent."""
    last = melody_prev if melody_last is None else melody_last
    return _choose(logp, prev, int(melody), int(melody_prev), int(last), bool(strong), float(temperature), float(u),
                   int(k), out, _BASS_OK, _UPPER_OK, _CLASH)


def score_chord(pitches, prev, melody: int, melody_prev: int, strong: bool, melody_last: int | None = None) -> float:
    """The penalty of one chord, in plain Python: the specification ``choose`` is tested against."""
    b, t, a = pitches
    if not b < t < a:
        return -math.inf
    s = 0.0
    if melody >= 0:
        s += ABOVE_MELODY if a > melody else 0.0
        s += SPACING if melody - a > 12 else 0.0
        for v, q in enumerate(pitches):
            ok = _BASS_OK if v == 0 else _UPPER_OK
            s += 0.0 if ok[(melody - q) % 12] else (DISSONANT_STRONG if strong else DISSONANT)
    s += sum(CLASH for i in range(3) for j in range(i + 1, 3) if _CLASH[(pitches[j] - pitches[i]) % 12])
    s += SPACING if a - t > 12 else 0.0
    for v in range(3):
        if prev[v] >= 0:
            limit = 12 if v == 0 else 5
            s += LEAP * max(0, abs(pitches[v] - prev[v]) - limit)
    after = list(pitches) + [melody]
    for i in range(4):
        for j in range(i + 1, 4):
            melodies = (melody_prev, melody_prev if melody_last is None else melody_last) if j == 3 else (None,)
            for m0 in melodies:
                before = list(prev) + [m0]
                a0, b0, a1, b1 = before[i], before[j], after[i], after[j]
                if min(a0, b0, a1, b1) < 0 or a0 == a1 or b0 == b1 or (a1 > a0) != (b1 > b0):
                    continue
                if abs(b0 - a0) % 12 == abs(b1 - a1) % 12 and abs(b0 - a0) % 12 in (0, 7):
                    s += PARALLEL
                    break
    pcs = {q % 12 for q in after if q >= 0}
    return s + (THIN if len(pcs) < 3 else 0.0)
