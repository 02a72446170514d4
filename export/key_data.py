"""Keys of the folk tunes, and the tunes played through the live ``KeyFinder`` (for ``train_key`` and ``key_eval``).

**Labels.** O'Neill's and Ryan's K: fields name the key with its mode (``K:Ador``): used as written. Essen's K:
fields name the *tonic* only, and the notes carry their own accidentals (``K: D`` over a tune full of ``=F``: D
minor). An Essen tune's key is that tonic with the church mode whose scale holds the most of the tune's sounding
time (ties: the commoner mode, ``LABEL_ORDER``). Tunes with no K: field get no label (``tune_key`` None).

**Playing a tune.** ``play`` steps a ``KeyFinder`` through a tune's tokens as the engine would (step t is
computed before the notes that start on it arrive), the tune's first downbeat placed on a bar line. ``snapshots`` also yields the heard profiles at each bar line.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from liveperf.music import melody
from liveperf.music.key_finder import MODES, KeyFinder
from liveperf.music.scales import Key

#: The modes an Essen tune can be labelled with, the commoner first (a tie goes to the earlier).
LABEL_ORDER = ("major", "minor", "dorian", "mixolydian", "phrygian", "lydian", "locrian")


def tune_key(meta, tokens: np.ndarray, corpus: str = "essenFolksong") -> Key | None:
    """The tune's key (module docstring); None when it cannot be named."""
    if meta.tonic_pc < 0 or meta.mode not in MODES + ("aeolian", "ionian"):
        return None
    if corpus != "essenFolksong":  # O'Neill's and Ryan's K: fields name the key with its mode (Ador, Em, Amix)
        return Key(meta.tonic_pc, {"aeolian": "minor", "ionian": "major"}.get(meta.mode, meta.mode))
    weight = pitch_class_weight(tokens)
    if weight.sum() == 0:
        return None
    return max((Key(meta.tonic_pc, m) for m in LABEL_ORDER),
               key=lambda k: (round(float(weight[list(k.pitch_classes)].sum()), 9), -LABEL_ORDER.index(k.scale)))


def pitch_class_weight(tokens: np.ndarray) -> np.ndarray:
    """Steps each pitch class sounds in a tune (float64 (12,))."""
    weight = np.zeros(12)
    sounding = None
    for tok in np.asarray(tokens).tolist():
        if tok >= melody.PITCH_OFFSET:
            sounding = (tok - melody.PITCH_OFFSET) % 12
        elif tok == melody.OFF:
            sounding = None
        if sounding is not None:
            weight[sounding] += 1.0
    return weight


class Tune(NamedTuple):
    """A labelled tune, bar-aligned (``bar_aligned``): ``tokens``, ``bar`` (steps per bar), ``key`` (a ``Key``, or a
    candidate index for training) and ``downbeat_bar``, the bar line of its first downbeat (0 without a pickup,
    1 with one: the pickup sits in bar 0 after silence). "After N bars" counts N full bars from that bar line."""

    tokens: np.ndarray
    bar: int
    key: object
    downbeat_bar: int


def labelled(corpus, indices, steps_per_beat: int = 4) -> list[Tune]:
    """Every tune among ``indices`` of ``corpus`` (``export.corpus``) that ``tune_key`` can name: bar-aligned, with
    its ``Key`` and the bar line of its first downbeat."""
    out = []
    for i in indices:
        meta, tokens = corpus.meta[i], corpus.tokens[i]
        key = tune_key(meta, tokens, corpus.ids[i].split("/")[0])
        if key is not None:
            bar = meta.steps_per_bar(steps_per_beat)
            out.append(Tune(bar_aligned(tokens, meta.downbeat_step, bar), bar, key,
                            first_downbeat_bar(meta.downbeat_step, bar)))
    return out


def first_downbeat_bar(downbeat_step: int, steps_per_bar: int) -> int:
    """The bar line a tune's first downbeat lands on once ``bar_aligned``: 0 without a pickup, else 1 (or more
    for a pickup longer than a bar)."""
    return -(-int(downbeat_step) // max(1, int(steps_per_bar)))


def bar_aligned(tokens: np.ndarray, downbeat_step: int, steps_per_bar: int) -> np.ndarray:
    """The tune with silence (OFF) in front so its first downbeat lands on a bar line (step % bar == 0)."""
    pad = (-downbeat_step) % steps_per_bar
    return np.concatenate([np.full(pad, melody.OFF, dtype=tokens.dtype), tokens])


def play(finder: KeyFinder, tokens: np.ndarray, start_step: int = 0, ask=None, ask_every: int | None = None) -> None:
    """Step ``finder`` through ``tokens`` (starting at song step ``start_step``) as the engine hears a performer:
    at every step, the bar line's (or every ``ask_every`` steps') ``ask(step)`` first (before the step is computed),
    then the grid reaches the step, then the notes that start or end on it arrive."""
    sounding: int | None = None
    spb = ask_every or finder.steps_per_bar
    for i, tok in enumerate(np.asarray(tokens).tolist()):
        step = start_step + i
        if ask is not None and step % spb == 0:
            ask(step)
        finder.on_step(step)
        if tok >= melody.PITCH_OFFSET or tok == melody.OFF:
            if sounding is not None:
                finder.note_off(sounding, step)
                sounding = None
            if tok >= melody.PITCH_OFFSET:
                sounding = tok - melody.PITCH_OFFSET
                finder.note_on(sounding, step)


def snapshots(finder: KeyFinder, tokens: np.ndarray, bars: int) -> list[np.ndarray]:
    """The heard profiles at bar lines 1..``bars`` after the first (``tokens`` bar-aligned), copies."""
    out: list[np.ndarray] = []
    finder.clear()
    spb = finder.steps_per_bar

    def ask(step: int) -> None:
        if 0 < step <= bars * spb:
            out.append(finder.heard.copy())

    play(finder, tokens[:bars * spb + 1], ask=ask)
    return out
