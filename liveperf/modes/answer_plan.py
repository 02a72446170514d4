"""Answer planning for call and response: when the performer's phrase ends, draw several whole answers at once,
score them, and play the best.

Why: drawn one step at a time, an answer commits to every note without knowing where it is going; it starts by
re-striking the call's last note and wanders. Real answers reuse the call's rhythm and motifs and end on a cadence.
Planning costs a few ms (one batched model call per answer step for all candidates), taken in the silence before
the answer starts, never on the step that plays it.

Candidates (``candidates`` in all, half of them *echoes*):
- free: drawn step by step from the model with the song's sampler settings and key/range mask;
- echo: for the first half of the answer, each step repeats the call's token at the same place in the bar (the
  latest bar of the call that has that place), then the model goes on alone; a repeated note the mask refuses is
  drawn instead. Antecedent -> consequent, AA' form: what folk answers do.
Every candidate is fed back through the model, so its likelihood is the model's own.

Score = mean log-probability per step (the model at temperature 1, renormalised over the mask)
        + ``REUSE_WEIGHT`` x beat reuse of the call + ``CADENCE_WEIGHT`` x cadence
        - ``DRONE_WEIGHT`` x (a pitch struck more than ``MAX_RESTRIKES`` times in a row)
        - ``DENSITY_WEIGHT`` x |log((notes + 1) / (the call's notes per step x answer steps + 1))|
        + ``STYLE_WEIGHT`` x sum over the style knobs of knob x the candidate's attribute (``style_score``; only
        with a knob turned); a silent candidate loses. (The likelihood alone favours held notes and rests, the model's likeliest tokens: a
        one-note answer to a busy call scored well before the density term.)
The musical measures are the ones the music-quality harness (``export/quality``) reports, defined once here.
Weights were chosen on the validation tunes, never the test tunes. Engine thread only; deterministic for a given
RNG state (the mode's own stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from liveperf.music import melody, style

REUSE_WEIGHT = 0.6
CADENCE_WEIGHT = 0.6
DRONE_WEIGHT = 2.0
MAX_RESTRIKES = 3
DENSITY_WEIGHT = 0.5
STYLE_WEIGHT = 0.4  # per knob unit and standard deviation of the attribute
# The attributes' mean and standard deviation over the VAE's training phrases (export/results/vae_attributes.json)
STYLE_MEAN = np.array([1.363, 69.425, 2.715, 0.097, 0.027])
STYLE_SD = np.array([0.706, 5.44, 1.18, 0.297, 0.076])


# ---- the musical measures (shared with the music-quality harness) ------------------------------------------------
def onset_beats(tokens: np.ndarray, start: int, spb: int) -> list[tuple[int, ...]]:
    """The whole beats of a line (beat-aligned on the song grid: ``start`` = song step of ``tokens[0]``) that hold an
    onset, as token tuples."""
    t = np.asarray(tokens)
    out = []
    for a in range((-start) % spb, len(t) - spb + 1, spb):
        beat = tuple(int(x) for x in t[a:a + spb])
        if any(x >= melody.PITCH_OFFSET for x in beat):
            out.append(beat)
    return out


def beat_shape(beat: tuple[int, ...]) -> tuple[int, ...]:
    """A beat without its key: its rhythm and the intervals from its first onset."""
    first = next(x for x in beat if x >= melody.PITCH_OFFSET)
    return tuple(x if x < melody.PITCH_OFFSET else 200 + x - first for x in beat)


def beat_reuse(call_beats: list[tuple[int, ...]], answer_beats: list[tuple[int, ...]], shape: bool = False) -> float:
    """Share of the answer's onset beats that are beats of the call (exactly, or up to transposition)."""
    if not answer_beats:
        return 0.0
    if shape:
        known = {beat_shape(b) for b in call_beats}
        return sum(beat_shape(b) in known for b in answer_beats) / len(answer_beats)
    known_exact = set(call_beats)
    return sum(b in known_exact for b in answer_beats) / len(answer_beats)


def is_cadence(tokens: np.ndarray, start: int, spb: int, tonic_pcs: frozenset[int]) -> bool:
    """The line's last note that starts on a beat is a note of the tonic triad (notes after it, off the beat, are
    a pickup into what follows, not the cadence)."""
    t = np.asarray(tokens)
    on = np.flatnonzero((t >= melody.PITCH_OFFSET) & ((np.arange(t.size) + start) % spb == 0))
    if on.size == 0:
        return False
    return (int(t[on[-1]]) - melody.PITCH_OFFSET) % 12 in tonic_pcs


def restrike_run(tokens: np.ndarray) -> int:
    """The longest run of consecutive onsets on one pitch."""
    pitches = [int(x) for x in np.asarray(tokens) if x >= melody.PITCH_OFFSET]
    best = run = 0
    for i, p in enumerate(pitches):
        run = run + 1 if i and p == pitches[i - 1] else 1
        best = max(best, run)
    return best


def tonic_triad(root: int, scale_degrees: tuple[int, ...]) -> frozenset[int]:
    """Root, third (minor where the scale has a minor third and no major one) and fifth of a key's tonic."""
    third = 3 if 3 in scale_degrees and 4 not in scale_degrees else 4
    return frozenset({root % 12, (root + third) % 12, (root + 7) % 12})


def style_score(line: np.ndarray, knobs, spb: int) -> float:
    """``STYLE_WEIGHT`` x sum of knob x attribute (standardised on the VAE's training phrases) of an answer line;
    0 for a silent one."""
    a = style.attributes(line, spb)
    if not np.isfinite(a).all():
        return 0.0
    return STYLE_WEIGHT * float(np.dot(np.asarray(knobs, dtype=np.float64), (a - STYLE_MEAN) / STYLE_SD))


# ---- planning --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    tokens: np.ndarray  # the chosen answer, one token per step from ``start``
    start: int  # song step of tokens[0]
    score: float
    candidates: int
    echo: bool  # the winner began as an echo of the call
    copied: int = 0  # candidates passed over: they replayed a training passage (``liveperf.music.copy_guard``)
    cut: bool = False  # every candidate did: the best was cut short of its copy


def echo_line(call: np.ndarray, call_start: int, start: int, steps: int, steps_per_bar: int) -> np.ndarray:
    """For answer steps ``start .. start+steps-1``: the call's token at the same bar position (latest call bar that
    has it), or -1 where the call has none."""
    out = np.full(steps, -1, dtype=np.int64)
    call_end = call_start + len(call)
    for i in range(steps):
        t = start + i
        back = t - ((t - call_start) // steps_per_bar) * steps_per_bar  # same bar position, in the call's first bar
        k = back + ((call_end - 1 - back) // steps_per_bar) * steps_per_bar  # ... the latest such step in the call
        if call_start <= k < call_end:
            out[i] = int(call[k - call_start])
    return out


def plan_answer(batch, first_logits: np.ndarray | None, lead: list[tuple[int, int]], start: int, steps: int,
                call: np.ndarray, call_start: int, allowed: np.ndarray, choose: Callable[[np.ndarray, bool], int],
                spb: int, steps_per_bar: int, tonic_pcs: frozenset[int], guard=None, style_knobs=None) -> Plan:
    """Draw ``batch.n`` candidate answers of ``steps`` steps from song step ``start`` and return the best.

    ``batch``: a ``BatchStepper`` forked from the call's model state; ``lead``: (token, step) pairs still to feed
    before the answer (the silent steps between now and ``start``), or empty, in which case ``first_logits`` (the
    model's prediction for ``start``) is used. ``choose(logits_row, must_play)`` draws one token (the mode's
    sampler and RNG). ``call``: the performer's phrase from song step ``call_start``. ``guard`` (a
    ``liveperf.music.copy_guard.CopyGuard`` or None): a candidate that replays a training passage is passed over; when
    every one does, the best is cut short of its copy. ``style_knobs`` (``liveperf.music.style.STYLE_KNOBS`` order, -1..1,
    or None): each candidate also scores ``STYLE_WEIGHT`` x knob x its attribute in standard deviations of real
    phrases, so the knobs pick denser, higher, wider, brighter or more syncopated answers among the candidates."""
    n = batch.n
    logits = None
    for token, step in lead:
        logits = batch.feed(np.full(n, token, dtype=np.int64), step)
    if logits is None:
        logits = np.broadcast_to(first_logits, (n, first_logits.size))
    n_echo = n // 2
    echo = echo_line(call, call_start, start, steps // 2, steps_per_bar)
    out = np.zeros((n, steps), dtype=np.int64)
    logp = np.zeros(n)
    masked = ~allowed
    for i in range(steps):
        lg = logits.astype(np.float64)
        lg[:, masked] = -np.inf
        top = lg.max(axis=1, keepdims=True)
        norm = top[:, 0] + np.log(np.exp(lg - top).sum(axis=1))
        for r in range(n):
            forced = int(echo[i]) if r < n_echo and i < echo.size else -1
            if forced >= 0 and allowed[forced]:
                tok = forced
            else:
                tok = choose(logits[r], i == 0)
            out[r, i] = tok
            logp[r] += lg[r, tok] - norm[r] if np.isfinite(lg[r, tok]) else -50.0
        if i + 1 < steps:
            logits = batch.feed(out[:, i], start + i)
    call_beats = onset_beats(call, call_start, spb)
    call_notes = int((np.asarray(call) >= melody.PITCH_OFFSET).sum())
    expected = call_notes / max(len(call), 1) * steps
    best, best_score, best_any, best_any_score, copied = 0, -np.inf, 0, -np.inf, 0
    for r in range(n):
        line = melody.canonical(out[r])
        notes = int((line >= melody.PITCH_OFFSET).sum())
        if not notes:
            continue
        score = (logp[r] / steps
                 + (style_score(line, style_knobs, spb) if style_knobs is not None else 0.0)
                 - DENSITY_WEIGHT * abs(np.log((notes + 1) / (expected + 1)))
                 + REUSE_WEIGHT * beat_reuse(call_beats, onset_beats(line, start, spb))
                 + CADENCE_WEIGHT * is_cadence(line, start, spb, tonic_pcs)
                 - DRONE_WEIGHT * (restrike_run(line) > MAX_RESTRIKES))
        if score > best_any_score:
            best_any, best_any_score = r, score
        if guard is not None and guard.first_copy(line) is not None:
            copied += 1
            continue
        if score > best_score:
            best, best_score = r, score
    if best_score == -np.inf and best_any_score > -np.inf:  # every candidate with a note copies: cut the best
        line, _ = guard.cut(melody.canonical(out[best_any]))
        return Plan(melody.canonical(line), start, float(best_any_score), n, best_any < n_echo, copied, True)
    return Plan(melody.canonical(out[best]), start, float(best_score), n, best < n_echo, copied)
