"""An index of every training passage, in all transpositions, to ask: what is the longest run a generated line
copies from the training data?

A passage of ``length`` steps that starts on an onset and holds at least ``max(4, length // 8)`` onsets (a long
note and rests are not a passage anyone could recognise) is keyed by its tokens with pitches taken relative to its
first note (so one key covers all 12 transpositions), hashed to 64 bits. The index keeps a sorted array of hashes
per length (a few MB for the folk corpus), so a lookup is a binary search. A hash collision could only make a copy
look longer than it is (never hide one); at 64 bits over ~10^6 passages that is ~10^-7 per query.
"""

from __future__ import annotations

import numpy as np

from liveperf.music.copy_guard import window_hashes

DEFAULT_LENGTHS = (8, 12, 16, 24, 32, 48, 64)


def _hashes(tokens: np.ndarray, length: int) -> np.ndarray:
    """64-bit keys of every onset-started run of ``length`` steps in ``tokens`` (transposition-free): the copy
    guard's own keys (``liveperf.music.copy_guard.window_hashes``), so the harness and the guard count the same passages."""
    return window_hashes(tokens, length)[0]


class CopyIndex:
    def __init__(self, tunes: list[np.ndarray], lengths=DEFAULT_LENGTHS) -> None:
        self.lengths = tuple(sorted(lengths))
        self._index = {L: np.unique(np.concatenate([_hashes(t, L) for t in tunes] or [np.zeros(0, np.uint64)]))
                       for L in self.lengths}

    def contains(self, length: int, keys: np.ndarray) -> np.ndarray:
        idx = self._index[length]
        pos = np.searchsorted(idx, keys)
        pos[pos >= idx.size] = 0
        return idx[pos] == keys if idx.size else np.zeros(keys.size, bool)

    def longest_copy(self, tokens: np.ndarray) -> int:
        """The longest indexed length (steps) of which ``tokens`` holds a run found in the training data; 0 if
        none of the indexed lengths is found."""
        best = 0
        for L in self.lengths:
            keys = _hashes(tokens, L)
            if keys.size and self.contains(L, keys).any():
                best = L
            else:
                break  # a run of L+ steps contains one of L steps: none of L means none longer
        return best
