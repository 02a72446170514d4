"""Following an external MIDI clock (24 ticks per quarter note), and tap tempo.

Both classes are pure and deterministic: no threads, no wall clock. Every method takes the driver's timestamp of the
message in integer monotonic ns (keep the driver's stamp, STYLE 5). They are owned and called by one thread (the
engine's); the returned event lists are new objects that the caller owns.

``MidiClockFollower`` mirrors ``InternalClock`` (``steps_per_beat``, ``tempo_bpm``, ``step_ns``, ``start_ns``,
``ns_at_step``, ``step_at``, ``nearest_step``, ``ns_at_tick``), so the engine can run from either.

MIDI semantics (MIDI 1.0 spec):

- Position is counted in ticks, 24 per quarter note; a grid step is ``24 // steps_per_beat`` ticks (6 at 16ths).
  ``position`` is the index of the next tick to come: after ticks 0..k it is k + 1.
- Start (FA): position 0, running. The first F8 after FA is tick 0, the downbeat of step 0.
- Stop (FC): not running; the position is kept (the count of ticks received), so Continue goes on from there.
- Continue (FB): running from the position; the first F8 after FB is the tick at the position.
  FB while already running changes nothing (counted in ``stats.continues``, no event).
- Song Position Pointer (F2 lsb msb): a 14-bit count of MIDI beats (16th notes = 6 ticks). It sets the position,
  whether stopped or running (while running, the next F8 is the tick at the new position), and emits "locate".
- Clock (F8) while stopped by FC (many devices send F8 all the time): it never moves the position and is kept out of
  the position map; it is counted in ``stats.idle_ticks`` and refines ``tempo_bpm`` through a fit of its own, so a
  later Start predicts its first tick at the right distance.
- Anything else (other status bytes, wrong lengths, data bytes >= 0x80) returns [] and counts in ``stats.ignored``.

Events (``ClockEvent.step``):

- "start": step 0. "continue", "locate", "resume": the first whole step at or after the tick the transport goes on
  from (``ceil(position / ticks_per_step)``; an SPP between steps gives the next whole step).
- "stop", "dropout": the step that holds the last tick received (or, if no tick came since the last
  Start/Continue/locate, the step the transport would go on from).

Tempo and the position map:

- Each accepted tick is a point (n, t): n its tick index (its position), t its stamp. Every tick refits
  ``t = a + b*n`` by least squares over the last ``window_ticks`` points (48 = 2 beats by default), which smooths
  the jitter of stamps that JACK gives per period (256 frames at 48 kHz = 5.33 ms), then moves the line (same
  slope) through the mean of the last ``phase_ticks`` points (6 = a 16th): a step in the delivery time (a stalled
  JACK graph) is followed within a 16th instead of over 2 beats. The fit is exact integer arithmetic on offsets
  from the window's first point: no float rounding at any stage, however long the show.
- Lost ticks. A JACK client that misses a process cycle never sees that cycle's events, and jack_midi_clock skips
  the ticks of cycles it missed; counting alone would then put us a tick behind the sender for the rest of the
  run. Once the run has a fit, a tick that comes k + 1 periods (+-0.2, k >= 1) after the previous one is held out
  of the fit; if the next tick comes one period (+-0.25) after it, k ticks were lost: the position jumps over
  them (both ticks get their true indices, ``stats.lost_ticks`` += k). Otherwise the held tick is fitted as
  counted. A new tempo cannot pass for lost ticks: its second interval is not one old period. A gap that is not
  near a whole number of periods (a stalled sender) is counted as it comes. Duplicated ticks are not guessed at.
  Just after a tempo change the fit still holds (part of) the old period; there the period of the last two
  intervals, when they agree and differ from the fit, is tried too, and a gap just before those two intervals is
  counted again in their period (jack_midi_clock skipping a tick at a change of 97.3 -> 131.7 BPM left the show a
  tick behind until the next locate, in 2 of about 20 runs through JACK).
- With fewer than ``min_fit_ticks`` points since the last Start/Continue/locate/resume (or when the fit gives a
  tempo outside 20..400 BPM, counted in ``stats.rejected_fits``), the map is the previous tick period anchored on
  the latest point. Before the first tick of a run, the tick at the position is predicted one period after the
  FA/FB/F2 message.
- A tick whose stamp runs backwards, or comes later than one tick at 20 BPM (125 ms) per tick since the last
  accepted point, still advances the position (a tick is a tick) but its stamp stays out of the fit
  (``stats.rejected_ticks``).
- ``ns_at_step(step) = floor(a + b * step * ticks_per_step)`` through the current map, for every step, past or
  future: a step whose tick was received gets its fitted (smoothed) time, not the raw stamp. It is strictly
  increasing in ``step``. The map moves with each tick (and is frozen while stopped); ask for a step's time when
  you schedule it.
- The fit cannot see a constant delivery latency: JACK floors stamps to the period start, so stamps, and the fit,
  lie half a period early on average. That is a fixed output offset for the show to configure, not jitter.
  Around that offset, with +-0.2 ms sender jitter (tests): 64-frame periods give steps within 0.5 ms after 1 beat
  and tempo within 0.1 BPM after 2; 256-frame periods within 1.5 ms and 0.25 BPM. Where a tick lasts nearly a whole
  number of periods (e.g. ~118 BPM at 256 frames) the stamp error drifts slowly and a 2-beat fit keeps ~3.5 ms.

Dropout: when running and no tick for more than ``dropout_ns`` after the last tick (or the FA/FB/F2 that began the
run), ``poll(now)`` (and ``on_message``, which polls at its own stamp first) emits ("dropout", now, step at the last
tick) once.

- "stop" mode: not running. If ticks come back without FA/FB, the first one restarts the transport as if Continue
  had come at the position where it stopped (that tick is the tick at the position; "resume" event). An FC first
  makes later ticks idle ones instead.
- "freewheel" mode: still running on the last map (predictions extrapolate). The first tick back is given the
  tick index nearest to its stamp on the extrapolated map (at least the position), the fit history is cleared
  (re-lock) and "resume" is emitted.

Tap tempo (the median of the last tap intervals) is ``liveperf.timing.tap_tempo.TapTempo``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from liveperf.timing.clock import StepMap
from liveperf.timing.tick_line import TickLine as _Line
from liveperf.timing.tick_line import fit as _fit

NS_PER_MINUTE = 60_000_000_000
TICKS_PER_BEAT = 24  # MIDI clock: 24 ticks per quarter note
TICKS_PER_SPP_BEAT = 6  # a Song Position Pointer "MIDI beat" is a 16th note
MIN_BPM = 20
MAX_BPM = 400
_MIN_TICK_NS = Fraction(NS_PER_MINUTE, TICKS_PER_BEAT * MAX_BPM)  # 6.25 ms
_MAX_TICK_NS = Fraction(NS_PER_MINUTE, TICKS_PER_BEAT * MIN_BPM)  # 125 ms
# Lost ticks (module docstring): a gap of k + 1 +- 0.2 fitted periods (k >= 1) may hold k lost ticks; the next tick
# confirms them when it comes 1 +- 0.25 periods later. Gaps in between are a stalled sender or JACK graph (measured
# on a loaded JACK dummy server: stalls of 0.4 to 1 period), not lost ticks: counted as they come.
_LOST_TOLERANCE = Fraction(1, 5)
_CONFIRM_PERIODS = Fraction(1, 4)


@dataclass(frozen=True)
class ClockEvent:
    """A transport change: ``kind`` (start/stop/continue/locate/dropout/resume), ``ts_ns``, ``step`` (see module)."""

    kind: str
    ts_ns: int
    step: int


@dataclass
class MidiClockStats:
    """Counts since construction. Message counters count every well-formed message of that kind."""

    ticks: int = 0  # F8 while running (each advanced the position)
    idle_ticks: int = 0  # F8 while stopped by FC (tempo only)
    starts: int = 0
    stops: int = 0
    continues: int = 0
    locates: int = 0
    dropouts: int = 0
    resumes: int = 0
    ignored: int = 0  # unknown or malformed messages
    rejected_ticks: int = 0  # tick stamps kept out of the fit (ran backwards or absurdly late)
    rejected_fits: int = 0  # refits refused because the tempo came out outside 20..400 BPM
    lost_ticks: int = 0  # ticks that never arrived, recovered from the stamps (the position jumped over them)


def _tick_ns_from_bpm(tempo_bpm: float) -> Fraction:
    bpm = Fraction(str(tempo_bpm))
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise ValueError(f"tempo must be within {MIN_BPM}..{MAX_BPM} BPM, got {tempo_bpm}")
    return Fraction(NS_PER_MINUTE) / (bpm * TICKS_PER_BEAT)


class MidiClockFollower(StepMap):
    """Transport state and a smoothed ns <-> step map from MIDI clock messages (contract in the module docstring).

    ``dropout_ns``: silence (ns) after which a running clock counts as lost; ``on_dropout``: "stop" or
    "freewheel"; ``window_ticks``: ticks in the tempo fit; ``min_fit_ticks``: ticks before the fit is trusted;
    ``phase_ticks``: the last ticks the fitted line is moved through (its phase; the slope stays the window's).
    """

    def __init__(self, steps_per_beat: int = 4, initial_tempo_bpm: float = 120.0, *, dropout_ns: int = 250_000_000,
                 on_dropout: str = "stop", window_ticks: int = 48, min_fit_ticks: int = 6, phase_ticks: int = 6) -> None:
        if steps_per_beat < 1 or TICKS_PER_BEAT % steps_per_beat:
            raise ValueError(f"steps_per_beat must divide {TICKS_PER_BEAT}, got {steps_per_beat}")
        if on_dropout not in ("stop", "freewheel"):
            raise ValueError(f"on_dropout must be 'stop' or 'freewheel', got {on_dropout!r}")
        if not 2 <= min_fit_ticks <= window_ticks:
            raise ValueError(f"need 2 <= min_fit_ticks <= window_ticks, got {min_fit_ticks}, {window_ticks}")
        if not 1 <= phase_ticks <= window_ticks:
            raise ValueError(f"need 1 <= phase_ticks <= window_ticks, got {phase_ticks}, {window_ticks}")
        if dropout_ns <= 0:
            raise ValueError(f"dropout_ns must be > 0, got {dropout_ns}")
        self.steps_per_beat = steps_per_beat
        self.ticks_per_step = TICKS_PER_BEAT // steps_per_beat
        self.dropout_ns = int(dropout_ns)
        self.on_dropout = on_dropout
        self.min_fit_ticks = min_fit_ticks
        self.phase_ticks = phase_ticks
        self.stats = MidiClockStats()
        self.running = False
        self._tick_ns = _tick_ns_from_bpm(initial_tempo_bpm)  # current tempo estimate, ns per tick
        self.tempo_bpm = float(initial_tempo_bpm)
        self._position = 0  # index of the next tick
        self._last_n: int | None = None  # index of the last tick since the last anchor
        self._points: deque[tuple[int, int]] = deque(maxlen=window_ticks)  # accepted (tick index, ns) of this run
        self._held: tuple[int, int] | None = None  # a tick after a gap, out of the fit until the next one decides
        self._held_lost = 0  # ticks lost in that gap, if the next tick confirms it
        self._held_period = Fraction(0)  # the tick period that gap was measured in (the next tick must keep it)
        self._fitted = False  # the map is a fit of this run's ticks (lost-tick recovery needs a measured period)
        self._idle: deque[tuple[int, int]] = deque(maxlen=window_ticks)  # F8 while stopped: (count, ns)
        self._line = _Line.through(0, 0, self._tick_ns)  # before any message: step 0 at ns 0
        self._watch_ns = 0  # stamp of the last tick, or of the message that began the run
        self._freewheeling = False
        self._dropped = False  # stopped by a "stop"-mode dropout: returning ticks resume

    # -- the map (same contract as InternalClock) --------------------------------------------------------------

    @property
    def step_ns(self) -> float:
        """Length of one step in ns at the current tempo estimate (for display and tolerances)."""
        return float(self._tick_ns * self.ticks_per_step)

    @property
    def start_ns(self) -> int:
        """Wall time of step 0 on the current map."""
        return self.ns_at_step(0)

    def ns_at_step(self, step: int) -> int:
        """Wall time (ns, floored) of the downbeat tick of ``step`` on the current map; strictly increasing."""
        return self._line.ns_at(step * self.ticks_per_step)

    def ns_at_tick(self, tick: int, ticks_per_beat: int) -> int:
        """Wall time of a position given in file ticks (``ticks_per_beat`` per beat)."""
        return self._line.ns_at(Fraction(tick * TICKS_PER_BEAT, ticks_per_beat))

    def _step_guess(self, ns: int) -> int:  # ``StepMap.step_at`` settles it on this map
        return self._line.tick_floor(ns) // self.ticks_per_step

    # -- input -------------------------------------------------------------------------------------------------

    def on_message(self, ts_ns: int, data: bytes) -> list[ClockEvent]:
        """Feed one MIDI message stamped ``ts_ns``; returns the transport events it causes (often none)."""
        events = self.poll(ts_ns)  # a dropout is a dropout even if nobody polled
        try:  # not bytes(int): that would allocate int zero bytes
            msg = bytes(data) if isinstance(data, (bytes, bytearray, memoryview, list, tuple)) else b""
        except (TypeError, ValueError):  # e.g. a list holding values outside 0..255
            msg = b""
        status = msg[0] if msg else None
        if len(msg) == 1 and status == 0xF8:
            events += self._on_tick(ts_ns)
        elif len(msg) == 1 and status == 0xFA:
            self.stats.starts += 1
            self._go(ts_ns, 0)
            events.append(ClockEvent("start", ts_ns, 0))
        elif len(msg) == 1 and status == 0xFB:
            self.stats.continues += 1
            if not self.running:
                self._go(ts_ns, self._position)
                events.append(ClockEvent("continue", ts_ns, self._resume_step()))
        elif len(msg) == 1 and status == 0xFC:
            self.stats.stops += 1
            self._dropped = False
            if self.running:
                events.append(ClockEvent("stop", ts_ns, self._stop_step()))
                self._halt()
        elif len(msg) == 3 and status == 0xF2 and msg[1] < 0x80 and msg[2] < 0x80:
            self.stats.locates += 1
            self._anchor(ts_ns, (msg[1] | msg[2] << 7) * TICKS_PER_SPP_BEAT)
            events.append(ClockEvent("locate", ts_ns, self._resume_step()))
        else:
            self.stats.ignored += 1
        return events

    @property
    def freewheeling(self) -> bool:
        """Running on the last tempo after a dropout (``on_dropout="freewheel"``), until ticks return."""
        return self._freewheeling

    def dropout_deadline_ns(self) -> int | None:
        """The earliest ``now_ns`` at which ``poll`` declares a dropout; None when stopped or already freewheeling."""
        if not self.running or self._freewheeling:
            return None
        return self._watch_ns + self.dropout_ns + 1

    def poll(self, now_ns: int) -> list[ClockEvent]:
        """Declare a dropout if running and no tick for more than ``dropout_ns``; call it at least every few ms."""
        deadline = self.dropout_deadline_ns()
        if deadline is None or now_ns < deadline:
            return []
        self.stats.dropouts += 1
        event = ClockEvent("dropout", now_ns, self._stop_step())
        if self.on_dropout == "stop":
            self._halt()
            self._dropped = True
        else:
            self._freewheeling = True
        return [event]

    # -- internals ---------------------------------------------------------------------------------------------

    def _resume_step(self) -> int:
        return -(-self._position // self.ticks_per_step)

    def _stop_step(self) -> int:
        return self._resume_step() if self._last_n is None else self._last_n // self.ticks_per_step

    def _anchor(self, ts_ns: int, position: int) -> None:
        """New position: forget the fit; predict the tick at ``position`` one period after ``ts_ns``."""
        self._position = position
        self._last_n = None
        self._points.clear()
        self._held = None
        self._fitted = False
        self._line = _Line.through(position - 1, ts_ns, self._tick_ns)
        self._watch_ns = ts_ns
        self._freewheeling = False

    def _go(self, ts_ns: int, position: int) -> None:
        self._anchor(ts_ns, position)
        self.running = True
        self._dropped = False

    def _halt(self) -> None:
        self._release_held()
        self.running = False
        self._freewheeling = False
        self._idle.clear()  # idle ticks count from the stop, not across the run

    def _on_tick(self, ts_ns: int) -> list[ClockEvent]:
        events = []
        if not self.running:
            if not self._dropped:
                self._on_idle_tick(ts_ns)
                return events
            self.stats.resumes += 1  # after a "stop"-mode dropout: as if Continue at the position
            self._go(ts_ns, self._position)
            events.append(ClockEvent("resume", ts_ns, self._resume_step()))
        elif self._freewheeling:
            self.stats.resumes += 1  # re-lock at the tick index the extrapolated map puts nearest
            self._anchor(ts_ns, max(self._position, self._line.tick_nearest(ts_ns)))
            events.append(ClockEvent("resume", ts_ns, self._resume_step()))
        n = self._position
        self._position += 1
        self._last_n = n
        self._watch_ns = max(self._watch_ns, ts_ns)
        self.stats.ticks += 1
        if self._points and not self._plausible(n, ts_ns):
            self.stats.rejected_ticks += 1
        elif self._fitted:
            self._after_gap(n, ts_ns)
        else:
            self._points.append((n, ts_ns))
            self._refit()
        return events

    def _after_gap(self, n: int, ts_ns: int) -> None:
        """Add tick ``(n, ts_ns)`` to the fit, recovering ticks lost before it (see "Lost ticks" in the module)."""
        n_prev, t_prev = self._held or self._points[-1]
        period = self._held_period if self._held else self._tick_ns
        periods = Fraction(ts_ns - t_prev) / period - (n - n_prev)  # periods beyond the ticks counted
        if self._held and abs(periods) <= _CONFIRM_PERIODS:  # the stream goes on at that period: confirmed
            lost, (n_held, t_held) = self._held_lost, self._held
            self._held = None
            self._points.extend(((n_held + lost, t_held), (n + lost, ts_ns)))
            self._position += lost
            self._last_n = n + lost
            self.stats.lost_ticks += lost
            self._refit()
            return
        self._release_held()
        # The fitted period, or just after a tempo change the fit has not caught up with, the new one.
        for period in (self._tick_ns, self._recent_period()):
            if period is None:
                continue
            periods = Fraction(ts_ns - t_prev) / period - (n - n_prev)
            lost = round(periods)
            if lost >= 1 and abs(periods - lost) <= _LOST_TOLERANCE:
                self._held, self._held_lost, self._held_period = (n, ts_ns), lost, period  # until the next tick
                return
        self._points.append((n, ts_ns))
        self._recount_after_change()
        self._refit()

    def _recount_after_change(self) -> None:
        """A gap counted as one tick, followed by two intervals of a new tempo, held k + 1 ticks of that tempo: the
        sender skipped k right at the change (before any interval of the new tempo could tell). The ticks after
        the gap move on by k."""
        recent = self._recent_period()
        if recent is None or len(self._points) < 4:
            return
        (na, ta), (nb, tb) = self._points[-4], self._points[-3]  # deque ends: no copy on this per-tick path
        periods = Fraction(tb - ta) / recent - (nb - na)
        lost = round(periods)
        if nb - na != 1 or lost < 1 or abs(periods - lost) > _LOST_TOLERANCE:
            return
        moved = [self._points.pop() for _ in range(3)]
        self._points.extend((n_i + lost, t_i) for n_i, t_i in reversed(moved))
        self._position += lost
        self._last_n += lost
        self.stats.lost_ticks += lost

    def _recent_period(self) -> Fraction | None:
        """The period of the last two single-tick intervals when they agree (within 1/16) and differ from the fitted
        one by more than 1/20: a new tempo the 2-beat fit has not caught up with yet (else None)."""
        if len(self._points) < 3:
            return None
        (n0, t0), (n1, t1), (n2, t2) = self._points[-3], self._points[-2], self._points[-1]
        a, b = t1 - t0, t2 - t1
        if n1 - n0 != 1 or n2 - n1 != 1 or a <= 0 or b <= 0 or abs(a - b) * 16 > max(a, b):
            return None
        recent = Fraction(a + b, 2)
        return recent if abs(recent - self._tick_ns) * 20 > self._tick_ns else None

    def _release_held(self) -> None:
        """The held tick was not followed at the fitted period (a late tick, a new tempo): fit it as counted."""
        if self._held:
            self._points.append(self._held)
            self._held = None
            self._refit()

    def _plausible(self, n: int, ts_ns: int) -> bool:
        n_last, t_last = self._points[-1]
        return t_last <= ts_ns and ts_ns - t_last <= (n - n_last) * _MAX_TICK_NS

    def _refit(self) -> None:
        if len(self._points) >= self.min_fit_ticks:
            fitted = self._fit_in_range(self._points)
            if fitted is not None:
                # The window's tempo, through the last phase_ticks points: a step in the delivery time follows fast.
                recent = list(self._points)[-self.phase_ticks:]
                shift = sum(t - fitted.ns_at(n) for n, t in recent) // len(recent)
                self._line = _Line(fitted.n0, fitted.t0 + shift, fitted.c, fitted.s, fitted.d)
                self._fitted = True
                return
        self._line = _Line.through(*self._points[-1], self._tick_ns)

    def _fit_in_range(self, points: deque[tuple[int, int]]) -> _Line | None:
        """Fit ``points``; if the tempo is plausible, adopt it as the estimate and return the line."""
        fitted = _fit(points)
        if fitted is None or not _MIN_TICK_NS <= fitted[1] <= _MAX_TICK_NS:
            self.stats.rejected_fits += 1
            return None
        line, self._tick_ns = fitted
        self.tempo_bpm = float(NS_PER_MINUTE / (self._tick_ns * TICKS_PER_BEAT))
        return line

    def _on_idle_tick(self, ts_ns: int) -> None:
        """F8 while stopped: refine the tempo estimate only (the map stays frozen)."""
        self.stats.idle_ticks += 1
        if self._idle and not 0 <= ts_ns - self._idle[-1][1] <= self.dropout_ns:
            self._idle.clear()  # a gap or a backwards stamp: the run of idle ticks starts over
        self._idle.append((self._idle[-1][0] + 1 if self._idle else 0, ts_ns))
        if len(self._idle) >= self.min_fit_ticks:
            self._fit_in_range(self._idle)
