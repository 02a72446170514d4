"""Tap tempo: the tempo from a performer's taps (a CC pedal, an OSC button, the stage view's space bar).
Pure: times in, tempo out; owned by the engine thread."""

from __future__ import annotations

from collections import deque
from statistics import median

NS_PER_MINUTE = 60_000_000_000


class TapTempo:
    """Tempo from taps: the median of the last ``taps_used`` intervals, once 3 taps came in a row.

    A gap longer than ``reset_after_ns`` (or a stamp that runs backwards) starts a new run with that tap. A median
    tempo outside ``min_bpm..max_bpm`` is ignored (``tap`` returns None), never clamped: a bounced or missed tap
    should not retune the show.
    """

    def __init__(self, min_bpm: float = 30.0, max_bpm: float = 300.0, reset_after_ns: int = 2_000_000_000,
                 taps_used: int = 4) -> None:
        if not 0 < min_bpm < max_bpm:
            raise ValueError(f"need 0 < min_bpm < max_bpm, got {min_bpm}, {max_bpm}")
        if taps_used < 2:
            raise ValueError(f"taps_used must be >= 2, got {taps_used}")
        self.min_bpm = min_bpm
        self.max_bpm = max_bpm
        self.reset_after_ns = reset_after_ns
        self._taps: deque[int] = deque(maxlen=taps_used + 1)  # taps_used intervals need one more tap

    def tap(self, ts_ns: int) -> float | None:
        """Register a tap at ``ts_ns``; returns the tempo in BPM, or None (fewer than 3 taps, or out of range)."""
        if self._taps and not 0 < ts_ns - self._taps[-1] <= self.reset_after_ns:
            self._taps.clear()
        self._taps.append(ts_ns)
        if len(self._taps) < 3:
            return None
        taps = list(self._taps)
        interval_ns = median(b - a for a, b in zip(taps, taps[1:]))
        bpm = NS_PER_MINUTE / interval_ns
        return bpm if self.min_bpm <= bpm <= self.max_bpm else None
