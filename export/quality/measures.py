"""What a listener hears, measured on token lines: the music-quality harness's figures.

Every function takes ``liveperf.melody`` token arrays on the 16th grid with ``start`` = the absolute song step of
their first token (so beats and bars line up: a beat starts where ``step % steps_per_beat == 0``, a bar where
``step % steps_per_bar == 0``: callers place lines so that song step 0 is a bar line). The same functions measure the partner (from the wire) and the real
music (the tune's own continuation, Bach's own voices), so the two columns of every table mean the same thing.
Pure functions; no model, no time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveperf.music import melody
from liveperf.modes.answer_plan import beat_reuse, is_cadence, onset_beats, restrike_run, tonic_triad
from liveperf.music.scales import SCALES, Key

CONSONANT = frozenset((0, 3, 4, 7, 8, 9))  # P1/P8, m3, M3, P5, m6, M6 (a 4th is dissonant against the soprano)


def onsets(tokens: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(tokens) >= melody.PITCH_OFFSET)


def sounding(tokens: np.ndarray) -> np.ndarray:
    """Pitch sounding at every step (-1 for silence)."""
    out = np.full(len(tokens), -1, dtype=np.int64)
    cur = -1
    for i, t in enumerate(np.asarray(tokens).tolist()):
        if t == melody.OFF:
            cur = -1
        elif t >= melody.PITCH_OFFSET:
            cur = t - melody.PITCH_OFFSET
        out[i] = cur
    return out


@dataclass(frozen=True)
class AnswerFigures:
    answered: bool
    beats: int  # beats of the answer with an onset
    reuse_exact: float  # share of those beats whose tokens are a beat of the call
    reuse_shape: float  # the same, up to transposition
    cadence: bool  # last note in the tonic triad, starting on a beat
    in_key: float  # share of onsets in the key's scale
    restrike_run: int  # longest run of consecutive onsets on one pitch
    notes: int


def key_triad(key: Key) -> frozenset[int]:
    return tonic_triad(key.root, SCALES[key.scale])


def scale_pcs(key: Key) -> frozenset[int]:
    return frozenset((key.root + d) % 12 for d in SCALES[key.scale])


def answer_figures(call: np.ndarray, call_start: int, answer: np.ndarray, answer_start: int, key: Key,
                   spb: int = melody.DEFAULT_STEPS_PER_BEAT) -> AnswerFigures:
    call_beats = onset_beats(call, call_start, spb)
    ans_beats = onset_beats(answer, answer_start, spb)
    on = onsets(answer)
    pitches = [int(answer[i]) - melody.PITCH_OFFSET for i in on]
    pcs = scale_pcs(key)
    return AnswerFigures(
        answered=bool(on.size), beats=len(ans_beats),
        reuse_exact=beat_reuse(call_beats, ans_beats), reuse_shape=beat_reuse(call_beats, ans_beats, shape=True),
        cadence=is_cadence(answer, answer_start, spb, key_triad(key)),
        in_key=sum(p % 12 in pcs for p in pitches) / len(pitches) if pitches else 0.0,
        restrike_run=restrike_run(answer), notes=len(pitches))


def strong_steps(n: int, start: int, steps_per_bar: int, spb: int = melody.DEFAULT_STEPS_PER_BEAT,
                 compound: bool = False) -> np.ndarray:
    """Indices (into a line of ``n`` steps starting at song step ``start``, bars from song step 0) of the strong
    beats: the bar line, plus the middle of bars of 4 beats (4/4: beats 1 and 3); in compound meters (6/8, 12/8)
    every dotted-quarter beat."""
    pos = (np.arange(n) + start) % steps_per_bar
    if compound:
        return np.flatnonzero(pos % (3 * spb // 2) == 0)
    strong = pos == 0
    if steps_per_bar == 4 * spb:
        strong |= pos == 2 * spb
    return np.flatnonzero(strong)


@dataclass(frozen=True)
class DuetFigures:
    strong_counted: int  # strong beats where both voices sound
    strong_consonant: int
    beats: float  # length in beats
    partner_onsets: int
    parallels: int  # parallel 5ths / octaves (both voices move, same direction, P5 or P8 before and after)
    partner_silent_steps: int
    steps: int

    @property
    def consonance(self) -> float:
        return self.strong_consonant / self.strong_counted if self.strong_counted else 0.0

    @property
    def onsets_per_beat(self) -> float:
        return self.partner_onsets / self.beats if self.beats else 0.0

    @property
    def parallels_per_100_beats(self) -> float:
        return 100.0 * self.parallels / self.beats if self.beats else 0.0


def duet_figures(performer: np.ndarray, partner: np.ndarray, start: int, steps_per_bar: int,
                 spb: int = melody.DEFAULT_STEPS_PER_BEAT, compound: bool = False) -> DuetFigures:
    """Figures of ``partner`` against ``performer`` (same length, both starting at song step ``start``)."""
    n = min(len(performer), len(partner))
    sp, pp = sounding(performer[:n]), sounding(partner[:n])
    strong = strong_steps(n, start, steps_per_bar, spb, compound)
    both = strong[(sp[strong] >= 0) & (pp[strong] >= 0)]
    consonant = int(np.isin((sp[both] - pp[both]) % 12, list(CONSONANT)).sum())
    parallels = 0
    prev = None
    for t in range(n):
        if sp[t] < 0 or pp[t] < 0:
            prev = None
            continue
        if prev is not None and (sp[t] != sp[prev] or pp[t] != pp[prev]):
            a0, a1 = (sp[prev] - pp[prev]) % 12, (sp[t] - pp[t]) % 12
            ds, dp = sp[t] - sp[prev], pp[t] - pp[prev]
            if a0 == a1 and a0 in (0, 7) and ds and dp and (ds > 0) == (dp > 0):
                parallels += 1
        if prev is None or sp[t] != sp[prev] or pp[t] != pp[prev]:
            prev = t
    return DuetFigures(strong_counted=int(both.size), strong_consonant=consonant, beats=n / spb,
                       partner_onsets=int(onsets(partner[:n]).size), parallels=parallels,
                       partner_silent_steps=int((pp < 0).sum()), steps=n)


def sum_duets(figs: list[DuetFigures]) -> dict:
    tot = DuetFigures(sum(f.strong_counted for f in figs), sum(f.strong_consonant for f in figs),
                      sum(f.beats for f in figs), sum(f.partner_onsets for f in figs), sum(f.parallels for f in figs),
                      sum(f.partner_silent_steps for f in figs), sum(f.steps for f in figs))
    return {"strong_beat_consonance": tot.consonance, "onsets_per_beat": tot.onsets_per_beat,
            "parallels_per_100_beats": tot.parallels_per_100_beats, "strong_beats_counted": tot.strong_counted,
            "silent_share": tot.partner_silent_steps / tot.steps if tot.steps else 0.0, "beats": tot.beats,
            "passages": len(figs)}


def sum_answers(figs: list[AnswerFigures]) -> dict:
    if not figs:
        return {}
    answered = [f for f in figs if f.answered]
    with_beats = [f for f in answered if f.beats]
    beats = sum(f.beats for f in with_beats)
    return {
        "exchanges": len(figs),
        "answered": len(answered) / len(figs),
        # pooled over beats: every answer beat counts once
        "reuse_exact": sum(f.reuse_exact * f.beats for f in with_beats) / beats if beats else 0.0,
        "reuse_shape": sum(f.reuse_shape * f.beats for f in with_beats) / beats if beats else 0.0,
        "cadence": sum(f.cadence for f in answered) / len(answered) if answered else 0.0,
        "in_key": (sum(f.in_key * f.notes for f in answered) / sum(f.notes for f in answered)
                   if any(f.notes for f in answered) else 0.0),
        "restrike_run_max": max((f.restrike_run for f in figs), default=0),
        "restrike_run_p99": float(np.percentile([f.restrike_run for f in figs], 99)),
        "notes_per_answer": float(np.mean([f.notes for f in figs])),
    }
