"""Units of work ``liveperf check`` times that need a mode object: one comp step, a band's partners summed, and the
copy guard.
Plain functions, the caller's thread (``liveperf.check``)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.music.copy_guard import CopyGuard, CopyIndex
from liveperf.models.comp_model import CompStepper
from liveperf.modes.build import SongModels
from liveperf.modes.comp import Comp
from liveperf.timing.scheduler import DiscardSink


def comp_stepper(models: SongModels, song, s, rng, performer: list[int]) -> Callable[[int], None]:
    """One comp step as the engine runs it (``Comp.on_step`` deciding at once, with a performer note each beat)."""
    spb = models.steps_per_beat
    comp = Comp(s, CompStepper(models.comp, song.meter), InternalClock(song.tempo_bpm, spb, 0), DiscardSink(), rng)

    def step(i: int) -> None:
        if i % spb == 0:
            comp.grid.release_all(i)
            comp.grid.note_on(i, melody.pitch_of(performer[(i // spb) % len(performer)]), 90)
        if i > comp._first:
            comp._settle(i - 1)
        comp._decide(i, 0)

    return step


def measure_band(models: SongModels, song, steps: int, warmup: int) -> tuple[str, dict]:
    """A song with several partners: each partner's unit timed on its own and the percentiles summed (every partner
    computes every step, one after the other, so the sum bounds the step: a p99 above the sum of p99s would need
    every partner's slow step at once)."""
    from liveperf.check import measure_mode  # check imports this module
    units, figures = [], []
    for k, (pm, partner) in enumerate(zip([models] + models.partners, (song,) + song.partners), start=1):
        unit, f = measure_mode(pm, partner, steps, warmup)
        units.append(f"p{k}{' ' + partner.partner_name if partner.partner_name else ''} [{unit}]")
        figures.append(f)
    total = {q: round(sum(f[q] for f in figures), 1) for q in ("p50", "p99", "max")}
    total["n"] = figures[0]["n"]
    return f"{len(figures)} partners, summed: {'; '.join(units)}", total


def measure_copy_guard(max_copy_bars: int, n: int = 2000, warmup: int = 100) -> dict:
    """The copy guard's cost, µs: one phrase's check (a 2-bar phrase of 4/4 joined to the partner's last
    ``max_copy_bars`` of 4/4, as phrase mode asks) and one answer step's (the window ending at that step). Seeded
    lines of in-key 8ths and 16ths. Raises ``CopyIndexError`` naming the file when the shipped index cannot be read."""
    from liveperf.check import _timed  # check imports this module
    guard = CopyGuard(CopyIndex.load(), max_copy_bars * 16)
    rng = np.random.default_rng(0)
    pitches = rng.choice([60, 62, 64, 65, 67, 69, 71, 72], size=(64, 128))
    rhythm = rng.random((64, 128)) < 0.5
    lines = np.where(rhythm, pitches + melody.PITCH_OFFSET, melody.HOLD)
    past = max(guard.window_steps - 1, 0)
    w = guard.window_steps
    return {"window_steps": w,
            "phrase": _timed(lambda i: guard.first_copy(lines[i % 64, :past + 32], past), n, warmup),
            "step": _timed(lambda i: guard.first_copy(lines[i % 64, :w], w - 1), n, warmup)}
