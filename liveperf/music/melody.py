"""The shared melody representation: one monophonic line on a step grid, one token per step.

Every model family (DNN step models, VAE, GAN) reads and writes this, so phrases can be mixed, compared and
tested alike. ``export/`` imports it; it imports nothing of ours.

Tokens (``NUM_CLASSES`` = 130, as in MusicVAE's melody encoding, different order):
- ``HOLD`` (0): nothing new happens at this step (the sounding note goes on, or the silence goes on);
- ``OFF`` (1): the sounding note stops; silence starts;
- ``ON(pitch)`` (2 + pitch, pitch 0..127): a new note starts (ending any note that was sounding).

A token sequence starts in silence. An ``OFF`` while silent changes nothing; ``canonical()`` rewrites it as
``HOLD`` so every sounding line has exactly one token sequence.

Notes handed in (``Note``) carry integer step times; reducing polyphony keeps, at each step, the highest sounding
note (a performer's chord becomes its top voice; an overlap hands over to the later, higher note). A note shorter
than a step still lasts one step. Plain functions, no state, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

REPRESENTATION = "liveperf.melody"
#: Version 2 adds the position in the bar and the meter (``position_code``) and, for step models, the lookback
#: tokens one and two bars back (``lookback_tokens``). Version 1 knew only the position in the beat.
REPRESENTATION_VERSION = 2
#: Versions this runtime reads (a model says which one it was trained on; the version decides its ``pos`` input).
READABLE_VERSIONS = (1, 2)
NUM_CLASSES = 130
HOLD = 0
OFF = 1
PITCH_OFFSET = 2
NUM_PITCHES = 128
DEFAULT_STEPS_PER_BEAT = 4  # 16th notes in 4/4

#: Meters a v2 model knows by name (id = index); any other meter gets ``OTHER_METER``. A beat is a quarter note.
METERS: tuple[tuple[int, int], ...] = ((4, 4), (3, 4), (2, 4), (6, 8), (9, 8), (12, 8), (2, 2), (3, 2), (3, 8))
OTHER_METER = len(METERS)
NUM_METER_IDS = len(METERS) + 1
#: Bar positions a v2 model tells apart (a longer bar wraps: 4/2, 12/8 at 16ths = 32 / 24 steps fit).
MAX_BAR_STEPS = 48

#: Human-readable vocabulary, index = token. Written into model metadata and checked on load.
VOCABULARY: tuple[str, ...] = ("HOLD", "OFF") + tuple(f"ON{p}" for p in range(NUM_PITCHES))


def on(pitch: int) -> int:
    """Token that starts ``pitch`` (0..127)."""
    if not 0 <= pitch < NUM_PITCHES:
        raise ValueError(f"pitch {pitch} outside 0..127")
    return PITCH_OFFSET + pitch


def is_on(token: int) -> bool:
    return token >= PITCH_OFFSET


def pitch_of(token: int) -> int:
    """Pitch of an ON token; raises for HOLD/OFF."""
    if token < PITCH_OFFSET or token >= NUM_CLASSES:
        raise ValueError(f"token {token} is not a note-on")
    return token - PITCH_OFFSET


def token_name(token: int) -> str:
    return VOCABULARY[token]


@dataclass(frozen=True, order=True)
class Note:
    """A note on the step grid: sounds from ``start_step`` (inclusive) to ``end_step`` (exclusive)."""

    start_step: int
    end_step: int
    pitch: int
    velocity: int = 100


def validate_tokens(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Return ``tokens`` as an int64 array; raise ValueError naming the first bad index."""
    arr = np.asarray(tokens, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    bad = np.flatnonzero((arr < 0) | (arr >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"token {int(arr[i])} at index {i} outside 0..{NUM_CLASSES - 1}")
    return arr


def sounding_pitch(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per step, the pitch sounding at that step (-1 when silent), int64 [T]."""
    t = np.asarray(tokens, dtype=np.int64)
    change = t != HOLD
    idx = np.where(change, np.arange(t.size), -1)
    last = np.maximum.accumulate(idx) if t.size else idx
    src = np.where(last >= 0, t[np.maximum(last, 0)], OFF)
    return np.where(src >= PITCH_OFFSET, src - PITCH_OFFSET, -1)


def canonical(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rewrite no-op OFFs (OFF while already silent) as HOLD."""
    arr = validate_tokens(tokens).copy()
    sounding = False
    for i, t in enumerate(arr):
        if t >= PITCH_OFFSET:
            sounding = True
        elif t == OFF:
            if not sounding:
                arr[i] = HOLD
            sounding = False
    return arr


def canonical_rows(rows: np.ndarray) -> np.ndarray:
    """``canonical`` of every row of an int64 [K, T] token array at once (a new array)."""
    arr = np.array(rows, dtype=np.int64)
    event = arr != HOLD
    steps = np.arange(arr.shape[1])
    # index of the last event (note or OFF) at or before each step; -1 where none
    last = np.maximum.accumulate(np.where(event, steps, -1), axis=1)
    before = np.concatenate([np.full((arr.shape[0], 1), -1), last[:, :-1]], axis=1)
    sounding = (before >= 0) & (np.take_along_axis(arr, np.maximum(before, 0), axis=1) >= PITCH_OFFSET)
    arr[(arr == OFF) & ~sounding] = HOLD
    return arr


def notes_to_tokens(notes: Iterable[Note], num_steps: int | None = None) -> np.ndarray:
    """Reduce notes (any polyphony, any overlap) to one token per step.

    ``num_steps`` defaults to the last note's end; notes past it are cut. A note with ``end_step <= start_step``
    lasts one step. Notes with a negative start are clipped to step 0.
    """
    spans = []
    for n in notes:
        if not 0 <= n.pitch < NUM_PITCHES:
            raise ValueError(f"pitch {n.pitch} outside 0..127 in {n}")
        start = max(0, n.start_step)
        end = max(n.end_step, n.start_step + 1)
        if end <= start:
            continue
        spans.append((start, end, n.pitch))
    if num_steps is None:
        num_steps = max((e for _, e, _ in spans), default=0)
    tokens = np.full(num_steps, HOLD, dtype=np.int64)
    if num_steps == 0:
        return tokens
    # Per step: the highest sounding note, identified by (start, pitch) so a repeated pitch is a new note.
    top_pitch = np.full(num_steps, -1, dtype=np.int64)
    top_start = np.full(num_steps, -1, dtype=np.int64)
    for start, end, pitch in spans:
        for s in range(start, min(end, num_steps)):
            # Higher pitch wins; at equal pitch the later onset wins (a re-struck note is heard anew).
            if pitch > top_pitch[s] or (pitch == top_pitch[s] and start > top_start[s]):
                top_pitch[s] = pitch
                top_start[s] = start
    prev = (-1, -1)
    for s in range(num_steps):
        cur = (int(top_start[s]), int(top_pitch[s]))
        if cur[1] < 0:
            tokens[s] = OFF if prev[1] >= 0 else HOLD
        elif cur != prev:
            tokens[s] = PITCH_OFFSET + cur[1]
        prev = cur
    return tokens


def tokens_to_notes(tokens: Sequence[int] | np.ndarray, velocity: int = 100, offset_step: int = 0) -> list[Note]:
    """Expand tokens into notes; a note still sounding at the end closes at ``len(tokens)``."""
    arr = validate_tokens(tokens)
    notes: list[Note] = []
    cur_pitch, cur_start = -1, 0
    for s, t in enumerate(arr.tolist()):
        if t == HOLD:
            continue
        if cur_pitch >= 0:
            notes.append(Note(offset_step + cur_start, offset_step + s, cur_pitch, velocity))
            cur_pitch = -1
        if t >= PITCH_OFFSET:
            cur_pitch, cur_start = t - PITCH_OFFSET, s
    if cur_pitch >= 0:
        notes.append(Note(offset_step + cur_start, offset_step + len(arr), cur_pitch, velocity))
    return notes


def transpose_tokens(tokens: np.ndarray, semitones: int) -> np.ndarray | None:
    """Shift every ON by ``semitones``; None if any pitch would leave 0..127."""
    arr = np.asarray(tokens, dtype=np.int64)
    on_mask = arr >= PITCH_OFFSET
    if not on_mask.any() or semitones == 0:
        return arr.copy()
    shifted = arr[on_mask] + semitones
    if shifted.min() < PITCH_OFFSET or shifted.max() >= NUM_CLASSES:
        return None
    out = arr.copy()
    out[on_mask] = shifted
    return out


def ticks_to_step(tick: int, ticks_per_beat: int, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT) -> int:
    """Nearest step of a tick position (round half up; integer arithmetic)."""
    return (2 * tick * steps_per_beat + ticks_per_beat) // (2 * ticks_per_beat)


def step_to_ticks(step: int, ticks_per_beat: int, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT) -> int:
    return step * ticks_per_beat // steps_per_beat


def meter_id(meter: tuple[int, int]) -> int:
    return METERS.index(tuple(meter)) if tuple(meter) in METERS else OTHER_METER


def steps_per_bar(meter: tuple[int, int], steps_per_beat: int = DEFAULT_STEPS_PER_BEAT) -> int:
    """Steps in one bar of ``meter`` (a beat is a quarter note: 6/8 = 12 sixteenths)."""
    beats, unit = meter
    return max(1, beats * steps_per_beat * 4 // unit)


def position_codes(steps: np.ndarray | int, meter: tuple[int, int], steps_per_beat: int = DEFAULT_STEPS_PER_BEAT,
                   version: int = REPRESENTATION_VERSION) -> np.ndarray | int:
    """The ``pos`` input of a model at song ``steps`` (bar lines where ``step % steps_per_bar == 0``).

    Version 1: the position in the beat. Version 2: ``meter_id * MAX_BAR_STEPS + position in the bar`` (a model
    splits it back into meter, bar position and beat position)."""
    if version == 1:
        return steps % steps_per_beat
    bar = steps_per_bar(meter, steps_per_beat)
    return meter_id(meter) * MAX_BAR_STEPS + (steps % bar) % MAX_BAR_STEPS


def position_coder(meter: tuple[int, int], steps_per_beat: int = DEFAULT_STEPS_PER_BEAT,
                   version: int = REPRESENTATION_VERSION):
    """``position_codes`` for one int step, with the meter's constants worked out once (a per-step hot path)."""
    if version == 1:
        return lambda step: step % steps_per_beat
    bar, base = steps_per_bar(meter, steps_per_beat), meter_id(meter) * MAX_BAR_STEPS
    return lambda step: base + (step % bar) % MAX_BAR_STEPS


def lookback_tokens(history: np.ndarray, steps_per_bar_: int) -> np.ndarray:
    """For a line ``history`` (tokens fed so far, from a model reset), the lookback input of every step: row t
    holds the tokens one and two bars before step t + 1 (the step the model predicts), ``HOLD`` before the start.
    Returns int64 [len(history), 2]."""
    n = len(history)
    out = np.zeros((n, 2), dtype=np.int64)
    h = np.asarray(history, dtype=np.int64)
    for col, back in enumerate((steps_per_bar_, 2 * steps_per_bar_)):
        src = np.arange(n) + 1 - back
        ok = src >= 0
        out[ok, col] = h[src[ok]]
    return out
