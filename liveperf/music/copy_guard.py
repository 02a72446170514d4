"""The copy guard: is the partner replaying a passage of the music its models were trained on?

A *passage* is a run of ``length`` steps that starts on an onset and holds at least ``max(4, length // 8)`` onsets
(a long note and rests are not a passage anyone could recognise), keyed by its tokens with every pitch taken
relative to its first note, so one key covers all 12 transpositions (``window_hashes``, 64-bit FNV-style).

The shipped index (``liveperf/data/copy_index.npz``, written by ``python -m export.copy_index`` from the folk
training corpora) keeps, per length of ``INDEX_LENGTHS`` steps, the sorted upper 32 bits of every training
passage's key, stored as gaps so the file compresses. A lookup is a binary search. 32 bits over ~0.5 million
passages per length make a false match about 1 in 8,000 windows: a phrase is then re-drawn that did not copy
anything (the guard errs on the side of not copying; it never misses a copy of an indexed length).

``CopyGuard(index, max_copy_steps)`` guards one song: a line copies when it holds a training passage of
``window_steps`` steps, the longest indexed length not over ``max_copy_steps`` (``max_copy_bars`` of the song's
meter), so a copy of that length or longer is caught. ``first_copy(line, new_from)`` looks only at windows that
end at or after ``new_from`` (the partner's recent past is ``line[:new_from]``, already checked). Engine thread;
the index arrays are read-only and shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from liveperf.music import melody

INDEX_LENGTHS = (16, 24, 32, 48)  # 1-3 bars of 4/4, 2-4 bars of 3/4 and 6/8, 2-6 bars of 2/4
INDEX_FORMAT = 1
SHIPPED_INDEX = Path(__file__).resolve().parents[1] / "data" / "copy_index.npz"
_P = np.uint64(0x100000001B3)  # FNV prime: odd, so its powers never vanish mod 2^64


class CopyIndexError(ValueError):
    """An index file the runtime cannot read; the message names the file."""


def min_onsets(length: int) -> int:
    return max(4, length // 8)


@numba.njit(cache=True, nogil=True)
def _keys(t: np.ndarray, length: int, min_on: int) -> tuple[np.ndarray, np.ndarray]:
    n = max(t.size - length + 1, 0)
    keys = np.empty(n, np.uint64)
    starts = np.empty(n, np.int64)
    k = 0
    for s in range(n):
        if t[s] < melody.PITCH_OFFSET:
            continue
        count = 0
        for j in range(length):
            if t[s + j] >= melody.PITCH_OFFSET:
                count += 1
        if count < min_on:
            continue
        key = np.uint64(0)
        power = np.uint64(1)
        first = np.uint64(t[s])
        for j in range(length):
            x = t[s + j]
            if x >= melody.PITCH_OFFSET:  # ON(p) -> p + 202 - the first note's token: relative pitch
                key += (np.uint64(x) + np.uint64(200) - first) * power
            else:  # HOLD 0, OFF 1
                key += np.uint64(x) * power
            power *= _P
        keys[k] = key
        starts[k] = s
        k += 1
    return keys[:k], starts[:k]


def window_hashes(tokens: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit keys, start steps) of every onset-started passage of ``length`` steps in ``tokens`` (module
    docstring); empty arrays when the line is shorter. Compiled: a window costs about a microsecond."""
    return _keys(np.ascontiguousarray(tokens, dtype=np.int64), int(length), min_onsets(length))


def short_keys(keys: np.ndarray) -> np.ndarray:
    """The 32 bits the shipped index keeps of each 64-bit key."""
    return (np.asarray(keys, dtype=np.uint64) >> np.uint64(32)).astype(np.uint32)


@dataclass(frozen=True)
class CopyIndex:
    """Sorted 32-bit passage keys per length (read-only; shared between songs and threads)."""

    keys: dict  # length -> np.ndarray uint32, sorted
    meta: dict

    @classmethod
    def load(cls, path: str | Path = SHIPPED_INDEX) -> "CopyIndex":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                keys = {int(k): np.cumsum(data[f"gaps_{k}"].astype(np.uint64)).astype(np.uint32)
                        for k in meta["lengths"]}
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise CopyIndexError(f"{path}: not a readable copy index ({exc})") from None
        if meta.get("format") != INDEX_FORMAT or meta.get("representation") != melody.REPRESENTATION:
            raise CopyIndexError(f"{path}: copy index format {meta.get('format')} / {meta.get('representation')}; "
                                 f"this runtime reads format {INDEX_FORMAT} of {melody.REPRESENTATION}")
        return cls(keys, meta)

    @classmethod
    def build(cls, tunes, lengths=INDEX_LENGTHS, meta: dict | None = None) -> "CopyIndex":
        keys = {}
        for length in lengths:
            parts = [short_keys(window_hashes(t, length)[0]) for t in tunes]
            keys[length] = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint32)
        return cls(keys, {"format": INDEX_FORMAT, "representation": melody.REPRESENTATION,
                          "lengths": list(lengths), **(meta or {})})

    def save(self, path: str | Path) -> None:
        arrays = {f"gaps_{k}": np.diff(v.astype(np.int64), prepend=0).astype(np.uint32) for k, v in self.keys.items()}
        np.savez_compressed(path, meta=np.array(json.dumps(self.meta)), **arrays)

    def contains(self, length: int, keys: np.ndarray) -> np.ndarray:
        """Per 64-bit key: whether its passage (of ``length`` steps) is in the index."""
        idx = self.keys[length]
        short = short_keys(keys)
        if idx.size == 0 or short.size == 0:
            return np.zeros(short.size, bool)
        pos = np.minimum(np.searchsorted(idx, short), idx.size - 1)
        return idx[pos] == short


class CopyGuard:
    """One song's guard (module docstring). ``window_steps`` is 0 when nothing can be guarded (``max_copy_steps``
    under the shortest indexed length, or the guard off): ``first_copy`` then finds nothing."""

    def __init__(self, index: CopyIndex | None, max_copy_steps: int) -> None:
        self.index = index
        fits = [k for k in (index.keys if index is not None else ()) if k <= max_copy_steps]
        self.window_steps = max(fits) if fits else 0

    def first_copy(self, line: np.ndarray, new_from: int = 0) -> int | None:
        """The first step of ``line`` at which a copied passage ends, among windows that end at or after
        ``new_from``; None when there is none."""
        w = self.window_steps
        if not w:
            return None
        lo = max(0, new_from - w + 1)
        keys, starts = window_hashes(np.asarray(line[lo:], dtype=np.int64), w)
        if keys.size == 0:
            return None
        hit = self.index.contains(w, keys)
        if not hit.any():
            return None
        return lo + int(starts[hit].min()) + w - 1

    def cut(self, line: np.ndarray, new_from: int = 0) -> tuple[np.ndarray, int]:
        """``line`` with every copied passage broken where it ends (that step becomes ``OFF``: the note before it
        stops, the passage is one step short; should that still match, the step before it too, and so on) and the
        number of steps changed; steps before ``new_from`` are never changed."""
        out = np.array(line, dtype=np.int64)
        cuts, pos, last_end = 0, -1, None
        while (end := self.first_copy(out, new_from)) is not None:
            pos = end if end != last_end else pos - 1
            if pos < new_from:
                break  # the copy lies in what was already played (cannot happen after a check of that past)
            out[pos] = melody.OFF if out[pos] != melody.OFF else melody.HOLD
            cuts, last_end = cuts + 1, end
        return out, cuts
