"""The MIDI clock follower's position map, tick index -> ns, and its exact least-squares fit (``liveperf.timing.midi_clock``).

All integer (and ``Fraction``) arithmetic on offsets from the window's first point: no float rounding at any stage,
however long the show. Pure functions and a frozen value: no threads, no state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class TickLine:
    """The map tick index -> ns: ``t(n) = t0 + floor((c + s * (n - n0)) / d)``, all ints, ``s > 0`` and ``d > 0``."""

    n0: int
    t0: int
    c: int
    s: int
    d: int

    @staticmethod
    def through(n0: int, t0: int, tick_ns: Fraction) -> TickLine:
        return TickLine(n0, t0, 0, tick_ns.numerator, tick_ns.denominator)

    def ns_at(self, n: int | Fraction) -> int:
        return self.t0 + (self.c + self.s * (n - self.n0)) // self.d  # int or Fraction // int: an exact floor

    def tick_floor(self, ns: int) -> int:
        """An estimate of the last tick index at or before ``ns`` (callers correct it by +-1)."""
        return self.n0 + ((ns - self.t0) * self.d - self.c) // self.s

    def tick_nearest(self, ns: int) -> int:
        return self.n0 + round(Fraction((ns - self.t0) * self.d - self.c, self.s))


def fit(points: deque[tuple[int, int]]) -> tuple[TickLine, Fraction] | None:
    """Least-squares line through (tick index, ns) points, exact: offsets from the first point, integer sums.

    Returns the line and its slope (ns per tick), or None if the points do not determine a line.
    """
    n_first, t_first = points[0]
    count = len(points)
    sn = st = snn = snt = 0
    for n, t in points:
        dn, dt = n - n_first, t - t_first
        sn += dn
        st += dt
        snn += dn * dn
        snt += dn * dt
    sxx = count * snn - sn * sn  # count^2 * variance of n
    sxy = count * snt - sn * st  # count^2 * covariance of n and t
    if sxx <= 0:
        return None
    # Through the centroid: t(dn) = (st + b * (count*dn - sn)) / count with b = sxy / sxx.
    return TickLine(n_first, t_first, st * sxx - sxy * sn, count * sxy, count * sxx), Fraction(sxy, sxx)
