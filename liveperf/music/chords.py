"""Hearing chords: what chord the performer's held notes make, and a listener that follows it step by step.

``recognise(weights, bass_pc)`` names the chord of a pitch-class profile (``weights``: 12 non-negative floats, how
much each pitch class sounds; ``bass_pc``: the lowest sounding pitch class, or None) by template matching: every
root x ``CHORD_TYPES`` template scores the weight of its chord tones, minus the weight of the tones outside it,
minus ``MISSING_PENALTY`` for each of its tones that does not sound. The best score wins; on a tie a sus chord
last, then the chord whose root is the bass, then the simpler type (the order of ``CHORD_TYPES``: a triad before a
seventh), then the root nearest above the bass. Fewer than ``MIN_PITCH_CLASSES`` distinct pitch classes, or a best chord whose tones hold less than
``MIN_CHORD_SHARE`` of the weight (a cluster), is no chord (None): a melody line alone never names one.
Measured against music21's own chord labels on held-out Bach chorales (``python -m export.chord_eval``; docs/modes.md).

``ChordListener`` (engine thread) follows the performer: note-ons, note-offs and the sustain pedal (CC 64: a note
released while the pedal is down sounds until the pedal comes up) keep the set of sounding pitches; ``on_step``
names the chord of what sounds at that step (recomputed only when the set changed) and keeps the last chord named
(``current``) through single notes, rests and clusters. ``changes`` counts how often it changed. Bounded: at most
128 pitches sound; nothing else grows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

#: (name suffix, quality, intervals above the root), simplest first (the tie order).
CHORD_TYPES = (
    ("", "major", (0, 4, 7)),
    ("m", "minor", (0, 3, 7)),
    ("dim", "diminished", (0, 3, 6)),
    ("aug", "augmented", (0, 4, 8)),
    ("7", "major", (0, 4, 7, 10)),
    ("m7", "minor", (0, 3, 7, 10)),
    ("maj7", "major", (0, 4, 7, 11)),
    ("m7b5", "diminished", (0, 3, 6, 10)),
    ("dim7", "diminished", (0, 3, 6, 9)),
    ("sus4", "suspended", (0, 5, 7)),
)
MISSING_PENALTY = 0.1  # per template tone that does not sound (a fraction of the profile's total weight)
MIN_PITCH_CLASSES = 3
MIN_CHORD_SHARE = 0.6  # the chord's tones must hold this much of the weight
SUSTAIN_CC = 64


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class 0..11 (C = 0)
    suffix: str  # "", "m", "7", ... (``CHORD_TYPES``)
    quality: str  # major | minor | diminished | augmented | suspended (a seventh chord: its triad's quality)
    bass: int  # pitch class of the lowest sounding note

    @property
    def name(self) -> str:
        """E.g. ``Am7``, ``G/B``, ``Bdim``."""
        base = PITCH_NAMES[self.root] + self.suffix
        return base if self.bass == self.root else f"{base}/{PITCH_NAMES[self.bass]}"


def _templates() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Rows: +1 on the chord's tones, -1 elsewhere, for every (type, root); and (type index, root) per row."""
    rows, keys = [], []
    for t, (_suffix, _quality, intervals) in enumerate(CHORD_TYPES):
        for root in range(12):
            row = -np.ones(12)
            row[[(root + i) % 12 for i in intervals]] = 1.0
            rows.append(row)
            keys.append((t, root))
    return np.array(rows), keys


_TEMPLATES, _KEYS = _templates()
_SIZES = (_TEMPLATES > 0).sum(axis=1)


def recognise(weights: np.ndarray, bass_pc: int | None = None) -> Chord | None:
    """The chord of pitch-class profile ``weights`` (module docstring), or None."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if not np.isfinite(total) or total <= 0 or int((w > 0).sum()) < MIN_PITCH_CLASSES:
        return None
    w = w / total
    present = (w > 0).astype(np.float64)
    chord_tones = _TEMPLATES > 0
    missing = _SIZES - chord_tones @ present
    scores = _TEMPLATES @ w - MISSING_PENALTY * missing
    best = float(scores.max())
    tied = np.flatnonzero(scores >= best - 1e-9)
    # Ties: a sus chord last (it is another chord's suspension more often than not), then the root in the bass, then
    # the simpler type, then the root nearest above the bass (so that a transposed chord is the same chord).
    base = 0 if bass_pc is None else bass_pc

    def order(i: int) -> tuple:
        t, root = _KEYS[i]
        return CHORD_TYPES[t][1] == "suspended", root != bass_pc, t, (root - base) % 12

    pick = min(tied, key=order)
    t, root = _KEYS[pick]
    if float(chord_tones[pick] @ w) < MIN_CHORD_SHARE:
        return None
    suffix, quality, _ = CHORD_TYPES[t]
    return Chord(root, suffix, quality, root if bass_pc is None else int(bass_pc))


def chord_of(pitches) -> Chord | None:
    """The chord of a set of MIDI pitches sounding together (each counts once; the lowest is the bass). Answers
    are cached by pitch-class counts and bass: a show plays the same few hundred sets again and again (measured:
    ~26 µs a new set, ~2 µs a known one)."""
    pitches = [int(p) for p in pitches]
    if not pitches:
        return None
    counts = [0] * 12
    for p in pitches:
        counts[p % 12] += 1
    return _chord_of_counts(tuple(counts), min(pitches) % 12)


@functools.lru_cache(maxsize=4096)
def _chord_of_counts(counts: tuple[int, ...], bass_pc: int) -> Chord | None:
    return recognise(np.array(counts, dtype=np.float64), bass_pc)


class ChordListener:
    """Follows the chord the performer holds (module docstring). Engine thread only."""

    def __init__(self) -> None:
        self._held: set[int] = set()  # keys down
        self._sustained: set[int] = set()  # released while the pedal was down
        self._pedal = False
        self._dirty = False
        self.current: Chord | None = None  # the last chord named (kept through single notes and rests)
        self.current_step = -1  # the step it was named at
        self.changes = 0

    def note_on(self, pitch: int) -> None:
        self._held.add(pitch)
        self._sustained.discard(pitch)
        self._dirty = True

    def note_off(self, pitch: int) -> None:
        if pitch in self._held:
            self._held.discard(pitch)
            if self._pedal:
                self._sustained.add(pitch)
            self._dirty = True

    def control(self, cc: int, value: int) -> None:
        """A controller change: the sustain pedal (CC 64, down at 64 and above) matters."""
        if cc != SUSTAIN_CC:
            return
        down = value >= 64
        if self._pedal and not down and self._sustained:
            self._sustained.clear()
            self._dirty = True
        self._pedal = down

    def release_all(self) -> None:
        """Every key up, the pedal too (All Notes Off from the controller, the input ended)."""
        self._held.clear()
        self._sustained.clear()
        self._pedal = False
        self._dirty = True

    @property
    def sounding(self) -> set[int]:
        return self._held | self._sustained

    def on_step(self, step: int) -> bool:
        """Name the chord of what sounds at ``step``; True when ``current`` changed."""
        if not self._dirty:
            return False
        self._dirty = False
        chord = chord_of(self.sounding)
        if chord is None or chord == self.current:
            return False
        self.current, self.current_step = chord, step
        self.changes += 1
        return True
