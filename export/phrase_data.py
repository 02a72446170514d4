"""2-bar phrases (32 steps of 16ths) cut from the folk corpus, for the VAE and the GAN.

The corpus only knows where beats are (``export.corpus`` pads a pickup so ``step % 4`` is the position in the beat),
not where bars start (tunes are in 2/4, 3/4, 4/4, 6/8, 9/8 ...), so windows are *beat*-aligned: they start at a step
with ``step % 4 == 0``. Training windows start at a random beat per tune and pass; evaluation windows are fixed,
non-overlapping, at multiples of 32 steps. A window that starts while a note from before it is sounding begins with
that note re-struck (``ON(pitch)``), so each window is a phrase on its own (a token sequence starts in silence), and
a no-op ``OFF`` becomes ``HOLD`` (``melody.canonical``). All-silent windows are skipped.

The split is ``melody_data.split_by_tune(len(tunes), seed)`` -- the same tunes as the melody DNN.
Everything random takes an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

from export.melody_data import SHIFTS
from liveperf.music import melody
from liveperf.music.melody import sounding_pitch  # noqa: F401  (export's name for it)

PHRASE_STEPS = 32


def cut(tokens: np.ndarray, sounding: np.ndarray, start: int, length: int = PHRASE_STEPS) -> np.ndarray:
    """The window ``tokens[start:start+length]`` as a phrase on its own (see the module docstring)."""
    w = np.asarray(tokens[start:start + length], dtype=np.int64).copy()
    if w[0] == melody.HOLD and sounding[start] >= 0:
        w[0] = melody.PITCH_OFFSET + sounding[start]
    return melody.canonical(w)


def eval_windows(tunes: list[np.ndarray], length: int = PHRASE_STEPS) -> np.ndarray:
    """Fixed non-overlapping windows at multiples of ``length``, skipping all-silent ones: int64 [N, length]."""
    out = []
    for tok in tunes:
        snd = sounding_pitch(tok)
        for s in range(0, len(tok) - length + 1, length):
            w = cut(tok, snd, s, length)
            if (w >= melody.PITCH_OFFSET).any():
                out.append(w)
    return np.stack(out)


class WindowSampler:
    """Random beat-aligned training windows with random transposition (-6..+5 semitones, kept inside 0..127)."""

    def __init__(self, tunes: list[np.ndarray], length: int = PHRASE_STEPS):
        self.length = length
        self.tunes = [np.asarray(t, dtype=np.int64) for t in tunes if len(t) >= length]
        self.sounding = [sounding_pitch(t) for t in self.tunes]
        # candidate starts: every beat (step % 4 == 0) with a full window after it
        self.starts = [np.arange(0, len(t) - length + 1, melody.DEFAULT_STEPS_PER_BEAT) for t in self.tunes]
        self.num_windows = int(sum(s.size for s in self.starts))

    def epoch(self, rng: np.random.Generator) -> np.ndarray:
        """One pass: every beat-aligned start of every tune once, shuffled -> (tune, start) int64 [N, 2]."""
        pairs = np.concatenate([np.stack([np.full(s.size, i), s], axis=1) for i, s in enumerate(self.starts)])
        return pairs[rng.permutation(len(pairs))]

    def batch(self, pairs: np.ndarray, rng: np.random.Generator, augment: bool = True) -> np.ndarray:
        """Windows for ``pairs`` (all-silent ones dropped), each in its own random key: int64 [B, length]."""
        out = []
        for tune, start in pairs.tolist():
            w = cut(self.tunes[tune], self.sounding[tune], start, self.length)
            on = w[w >= melody.PITCH_OFFSET]
            if on.size == 0:
                continue
            if augment:
                lo, hi = int(on.min()) - melody.PITCH_OFFSET, int(on.max()) - melody.PITCH_OFFSET
                ok = [k for k in SHIFTS if lo + k >= 0 and hi + k < melody.NUM_PITCHES]
                w = melody.transpose_tokens(w, int(ok[rng.integers(len(ok))]))
            out.append(w)
        return np.stack(out) if out else np.zeros((0, self.length), np.int64)


# ---- phrase statistics (GAN evaluation; used on real, generated and baseline phrases alike) ----

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
LEAP_SEMITONES = 7  # a leap: more than a perfect fifth between consecutive onsets
CONSONANT = frozenset({0, 3, 4, 7, 8, 9})  # P1/P8, m3, M3, P5, m6, M6 (mod 12)


def _scale_masks() -> np.ndarray:
    """[24, 12] bool: keys 0..11 major (tonic = index), 12..23 natural minor."""
    masks = np.zeros((24, 12), dtype=bool)
    for tonic in range(12):
        masks[tonic, (MAJOR + tonic) % 12] = True
        masks[12 + tonic, (MINOR + tonic) % 12] = True
    return masks


SCALES = _scale_masks()


def phrase_stats(phrases: np.ndarray, reference_degree_hist: np.ndarray | None = None) -> dict:
    """Summary statistics of token phrases [N, T]; JS distances to ``reference_degree_hist`` if given.

    - ``in_scale_rate``: per phrase, the share of onsets inside its best-fitting major/natural-minor scale
      (ties: the first key), averaged over phrases with onsets;
    - ``empty_step_rate``: share of steps where nothing sounds; ``empty_phrase_rate``: phrases with no onset;
    - ``onsets_per_phrase``; ``pitch_range`` (mean max - min pitch, semitones, phrases with onsets);
    - ``repeated_note_rate``: share of onsets (after a phrase's first) with the pitch of the previous onset;
    - ``leap_rate``: share of intervals between consecutive onsets within a phrase that are larger than a fifth
      (|interval| > ``LEAP_SEMITONES`` = 7 semitones), pooled over all phrases;
    - ``distinct_rate``: distinct phrases / N;
    - ``degree_hist``: histogram of onsets' pitch classes relative to each phrase's best key tonic (12 bins,
      key-normalised, so phrases in any key compare), and ``js_degree_hist`` (Jensen-Shannon divergence, bits).
    """
    phrases = np.asarray(phrases, dtype=np.int64)
    n, length = phrases.shape
    onset = phrases >= melody.PITCH_OFFSET
    pitch = np.where(onset, phrases - melody.PITCH_OFFSET, 0)
    empty = np.stack([sounding_pitch(p) < 0 for p in phrases])
    in_scale, ranges, degree = [], [], np.zeros(12)
    repeats = rep_n = leaps = 0
    for i in range(n):
        ps = pitch[i][onset[i]]
        if ps.size == 0:
            continue
        pc_counts = np.bincount(ps % 12, minlength=12)
        fit = SCALES.astype(np.int64) @ pc_counts
        key = int(np.argmax(fit))
        in_scale.append(fit[key] / ps.size)
        ranges.append(int(ps.max() - ps.min()))
        tonic = key % 12
        degree += np.roll(pc_counts, -tonic)
        repeats += int((ps[1:] == ps[:-1]).sum())
        leaps += int((np.abs(np.diff(ps)) > LEAP_SEMITONES).sum())
        rep_n += ps.size - 1
    with_onsets = int(onset.any(axis=1).sum())
    degree_hist = degree / max(degree.sum(), 1)
    out = {
        "phrases": n,
        "in_scale_rate": float(np.mean(in_scale)) if in_scale else 0.0,
        "empty_step_rate": float(empty.mean()),
        "empty_phrase_rate": 1.0 - with_onsets / n,
        "onsets_per_phrase": float(onset.sum() / n),
        "pitch_range": float(np.mean(ranges)) if ranges else 0.0,
        "repeated_note_rate": repeats / max(rep_n, 1),
        "leap_rate": leaps / max(rep_n, 1),
        "distinct_rate": len({p.tobytes() for p in phrases}) / n,
        "degree_hist": [round(float(x), 4) for x in degree_hist],
    }
    if reference_degree_hist is not None:
        out["js_degree_hist"] = js_divergence(degree_hist, np.asarray(reference_degree_hist))
    return out


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = equal, 1 = disjoint)."""
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)
