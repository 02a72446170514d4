"""Feel: swing, heard in the performer's playing and given to the partner's off-beats.

Swing is the place of the off-beat eighth in the beat: ``swing`` = 0.5 is straight, 2/3 the triplet swing of a
hornpipe or a jazz ballad, 0.75 a dotted-eighth lilt (the largest allowed). A step's place in its beat (its
*phase*: step k of a beat of n steps is at k / n) is warped piecewise linearly: the first half of the beat is
stretched to end at ``swing``, the second half squeezed into the rest (``swung_phase``; ``straight_phase`` undoes
it). At 0.5 the warp is the identity, and ``Feel`` returns the clock's own integers: the grid stays exact.

``Feel`` (one per song, shared by its modes; engine thread only):
- ``due_ns(step)``: when the partner plays a note of ``step``: the clock's time of the step's beat plus the swung
  phase of a beat. Swing only ever delays a step (never earlier than straight), so a step computed ``lookahead``
  ahead is never due before it was computed.
- ``humanize_ns(step)``: with ``humanize_ms`` > 0, a seeded delay of each step's notes (``due_ns`` adds it): the
  partner drifts a little behind the grid, as a player does, the same way every run with the same seed.
- ``nearest_step(ns)``: the step a performer's note at ``ns`` belongs to, its phase straightened first (a swung
  off-beat at 0.66 of the beat is the beat's second eighth, step 2 of 4, not the fourth sixteenth).
- ``heard(ns)``: every performer note-on; ``SwingEstimator`` estimates the performer's swing (and how far they
  play ahead of or behind the beat). With ``follow`` the partner takes the estimate once it is confident.

``SwingEstimator``: per beat, the note-on phases (notes within ``CHORD_NS`` of each other are one onset). A beat
that holds exactly an onset on the beat and one in the middle (phase 0.40–0.72) is an *eighth pair*: the distance
between the two, in beats, is one sample (so playing behind or ahead of the beat does not read as swing). The estimate is the median of the last ``WINDOW`` samples; it is *confident* with at least
``MIN_SAMPLES`` of them within ``MAX_SPREAD`` (median absolute deviation). Sixteenth runs, triplets and chords
make no sample, so straight sixteenths never read as swing; the middle ends at 0.72 because a written dotted
eighth and sixteenth lands at 0.75 (and later, swung), and a straight hornpipe full of them read as swung (chosen on
the validation tunes: within +-0.02 on 92-95 % of them up to 0.80, 99 % with 0.72). ``offset_ns``: the median of how far the on-beat
onsets of the pairs fell from the beat (negative: the performer plays ahead).
Measured on held-out tunes played with a known swing: ``python -m export.feel_eval`` (README).
"""

from __future__ import annotations

from collections import deque
from statistics import median

STRAIGHT = 0.5
MAX_SWING = 0.75
CHORD_NS = 30_000_000
WINDOW = 16
MIN_SAMPLES = 6
MAX_SPREAD = 0.04
MIDDLE = (0.40, 0.72)
ON_BEAT = 0.12  # phases within this of a beat line are on it (either side)


def swung_phase(phase: float, swing: float) -> float:
    """Where a straight ``phase`` (0..1 of a beat) sounds with ``swing``."""
    if phase <= 0.5:
        return phase * 2.0 * swing
    return swing + (phase - 0.5) * 2.0 * (1.0 - swing)


def straight_phase(phase: float, swing: float) -> float:
    """The straight phase of a note heard at ``phase`` with ``swing`` (``swung_phase`` undone)."""
    if phase <= swing:
        return phase * 0.5 / swing
    return 0.5 + (phase - swing) * 0.5 / (1.0 - swing)


class SwingEstimator:
    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self.offsets: deque[int] = deque(maxlen=WINDOW)
        self._beat: int | None = None
        self._onsets: list[tuple[float, int]] = []  # (phase, ns from the beat line) of the current beat
        self._last_ns: int | None = None

    def heard(self, beat: int, phase: float, ns_from_beat: int, ns: int) -> None:
        """A note-on at ``phase`` of ``beat`` (``ns_from_beat`` after its line; phases near 1 belong to the next
        beat, as the caller rounds them)."""
        if self._last_ns is not None and 0 <= ns - self._last_ns < CHORD_NS:
            return  # part of the last onset (a chord, a roll)
        self._last_ns = ns
        if beat != self._beat:
            self._close()
            self._beat, self._onsets = beat, []
        self._onsets.append((phase, ns_from_beat))

    def _close(self) -> None:
        """The last beat is over: an eighth pair gives a sample."""
        on = [o for o in self._onsets if abs(o[0]) <= ON_BEAT]
        mid = [o for o in self._onsets if MIDDLE[0] <= o[0] <= MIDDLE[1]]
        if len(on) == 1 and len(mid) == 1 and len(self._onsets) == 2:
            # From the pair's own on-beat onset, not the beat line: a performer who plays 5 ms late plays both
            # late, and their swing is the distance between the two.
            self.samples.append(mid[0][0] - on[0][0])
            self.offsets.append(on[0][1])

    @property
    def swing(self) -> float | None:
        return median(self.samples) if self.samples else None

    @property
    def spread(self) -> float | None:
        if not self.samples:
            return None
        m = median(self.samples)
        return median(abs(s - m) for s in self.samples)

    @property
    def confident(self) -> bool:
        return len(self.samples) >= MIN_SAMPLES and self.spread <= MAX_SPREAD

    @property
    def offset_ns(self) -> int | None:
        return int(median(self.offsets)) if self.offsets else None


class Feel:
    def __init__(self, clock, steps_per_beat: int, swing: float | None = STRAIGHT, humanize_ms: float = 0.0,
                 seed: int = 0) -> None:
        """``swing``: a ratio (0.5 .. 0.75) to play with, or None to follow the performer's (straight until the
        estimate is confident). ``humanize_ms``: the largest delay ``humanize`` adds to a step; ``seed`` its
        stream."""
        self.clock = clock
        self.spb = steps_per_beat
        self.follow = swing is None
        self.swing = STRAIGHT if swing is None else float(swing)
        self.estimator = SwingEstimator()
        self.humanize_ms = float(humanize_ms)
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF

    def set(self, swing: float | None) -> None:
        """A new setting (the ``swing`` parameter; None: follow)."""
        self.follow = swing is None
        if swing is not None:
            self.swing = float(swing)
        elif self.estimator.confident:
            self.swing = self._clamp(self.estimator.swing)

    @staticmethod
    def _clamp(swing: float) -> float:
        return min(MAX_SWING, max(STRAIGHT, swing))

    def due_ns(self, step: int) -> int:
        if self.swing == STRAIGHT:
            due = self.clock.ns_at_step(step)
        else:
            beat = step // self.spb
            start, end = self.clock.ns_at_step(beat * self.spb), self.clock.ns_at_step((beat + 1) * self.spb)
            phase = swung_phase((step - beat * self.spb) / self.spb, self.swing)
            due = max(self.clock.ns_at_step(step), start + int(round(phase * (end - start))))
        return due + self.humanize_ns(step) if self.humanize_ms else due

    def humanize_ns(self, step: int) -> int:
        """The humanize delay of ``step``: uniform in 0 .. ``humanize_ms`` (at most a third of a step), the same
        for every note of the step (a chord stays together) and for every run with the same seed. Only ever a
        delay: a step computed ahead is never due before it was computed, and a note's end (a later step) stays
        after its start."""
        x = (self.seed ^ (step * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 31)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF  # splitmix64's finaliser
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
        span = min(int(self.humanize_ms * 1e6), (self.clock.ns_at_step(step + 1) - self.clock.ns_at_step(step)) // 3)
        return int(x % (span + 1)) if span > 0 else 0

    def _beat_phase(self, ns: int) -> tuple[int, float, int]:
        """(beat, phase in it, ns from its line) of a time; phases past 1 - ON_BEAT belong to the next beat."""
        beat = self.clock.step_at(ns) // self.spb
        start, end = self.clock.ns_at_step(beat * self.spb), self.clock.ns_at_step((beat + 1) * self.spb)
        phase = (ns - start) / max(1, end - start)
        if phase >= 1.0 - ON_BEAT:
            return beat + 1, phase - 1.0, ns - end
        return beat, phase, ns - start

    def nearest_step(self, ns: int) -> int:
        if self.swing == STRAIGHT:
            return self.clock.nearest_step(ns)
        beat, phase, _ = self._beat_phase(ns)
        straight = straight_phase(phase, self.swing) if phase >= 0 else phase
        return beat * self.spb + int(round(straight * self.spb))

    def heard(self, ns: int) -> None:
        """A performer note-on at ``ns``: the estimator hears it; following, a confident estimate is taken."""
        beat, phase, from_beat = self._beat_phase(ns)
        self.estimator.heard(beat, phase, from_beat, ns)
        if self.follow and self.estimator.confident:
            self.swing = self._clamp(self.estimator.swing)
