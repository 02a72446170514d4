"""Repeated log lines, rate-limited: garbage input must not bury the show's log (115 lines of "Program Change N: no
such song" from one burst of junk).

``RepeatLimiter.line(text, now_s)`` returns the line to print, or None to hold it back. Lines that differ only in
their numbers are one kind ("Program Change 12: ..." and "Program Change 99: ..."): each kind prints at most
``burst`` lines per ``window_s``; the next line of that kind printed after a hold-back says how many were held
back, and ``flush()`` gives one summary line per kind still holding some (at the end of the show). Every line still
counts wherever it is counted (the report's counters); only the printing is limited. Owned by one thread.
"""

from __future__ import annotations

import re

_NUMBERS = re.compile(r"\d+")


class RepeatLimiter:
    def __init__(self, burst: int = 3, window_s: float = 10.0) -> None:
        self.burst = burst
        self.window_s = window_s
        self._kinds: dict[str, list] = {}  # kind -> [window start, printed in window, held back since last print]

    def line(self, text: str, now_s: float) -> str | None:
        kind = _NUMBERS.sub("#", text)
        state = self._kinds.get(kind)
        if state is None or now_s - state[0] >= self.window_s:
            held = state[2] if state is not None else 0
            self._kinds[kind] = [now_s, 1, 0]
            return text + (f" ({held} more like it not printed)" if held else "")
        if state[1] < self.burst:
            state[1] += 1
            return text
        state[2] += 1
        return None

    def flush(self) -> list[str]:
        """One line per kind with lines held back since its last print (and forget them)."""
        out = [f"{held} more lines like {kind!r} not printed" for kind, (_, _, held) in self._kinds.items() if held]
        for state in self._kinds.values():
            state[2] = 0
        return out
