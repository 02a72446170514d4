"""``Engine.on_step`` cost in-process: what the engine thread spends per grid step, model call included.

    python -m bench.engine_step [--steps 4000] [--json bench/results/engine_step.json]

Each mode of a song built as ``liveperf play`` builds it (``build_modes`` with the shipped models, the real
``Engine`` and ``run_loop``) runs in virtual time (``ScriptedInput`` + ``VirtualScheduler``) against a performer who
plays a 16th-note line for a bar and rests for a bar, with the MIDI clock out on; the loop's ``on_step_done`` gives
the wall time of every ``Engine.on_step``. Every mode runs twice in one process, alternating: with the clock's
integer step maps, and with the ``Fraction`` arithmetic per call they replaced (the baseline, patched in), so the
ratio is measured in the same minutes. Prints p50 / p99 in µs per mode and clock.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.modes.build import SongModels, build_modes
from liveperf.music.notes import note_off, note_on
from liveperf.setlist.schema import parse_setlist
from liveperf.timing.virtual_scheduler import VirtualScheduler

MODES = ("call_response", "duet", "harmonize", "phrase")


class FractionClock(InternalClock):
    """The baseline: the step maps computed with ``Fraction`` per call, as before."""

    def _set_step_ns(self, tempo_bpm):
        super()._set_step_ns(tempo_bpm)
        self._step_ns = Fraction(self._num, self._den)

    def ns_at_step(self, step: int) -> int:
        return self._anchor_ns + int((step - self._anchor_step) * self._step_ns)

    def step_at(self, ns: int) -> int:
        s = self._anchor_step + int((Fraction(ns - self._anchor_ns) / self._step_ns).__floor__())
        while self.ns_at_step(s + 1) <= ns:
            s += 1
        while self.ns_at_step(s) > ns:
            s -= 1
        return s

    def ns_at_tick(self, tick: int, ticks_per_beat: int) -> int:
        steps = Fraction(tick * self.steps_per_beat, ticks_per_beat)
        return self._anchor_ns + int((steps - self._anchor_step) * self._step_ns)


def performer(steps: int, step_ns: int) -> list[tuple[int, bytes]]:
    line = [64, 66, 67, 69, 71, 69, 67, 66]
    events = []
    for s in range(steps):
        if (s // 16) % 2 == 0:
            p = line[s % len(line)]
            events.append((s * step_ns, note_on(0, p, 90)))
            events.append((s * step_ns + step_ns * 3 // 4, note_off(0, p)))
    return events


def run_mode(mode: str, steps: int, clock_cls) -> np.ndarray:
    raw = {"show": {"send_clock": True},
           "song": [{"title": "bench", "tempo_bpm": 120, "key": "E minor", "mode": mode, "seed": 3}]}
    song = parse_setlist(raw, Path("bench.toml")).songs[0]
    models = SongModels.load(song, None)
    clock = clock_cls(song.tempo_bpm, models.steps_per_beat, 0)
    source = ScriptedInput(performer(steps, int(clock.step_ns)))
    sched = VirtualScheduler(now_fn=source.now_ns)
    modes = build_modes(song, models, clock, sched, song.seed, now_fn=source.now_ns)
    engine = Engine(modes, clock=clock, sink=sched, initial=mode, send_clock=True,
                    steps_per_bar=song.steps_per_bar(models.steps_per_beat))
    times: list[int] = []
    run_loop(engine, clock, source, lookahead_ns=8_000_000, stop_at_step=steps, stop_when_done=False,
             on_step_done=times.append)
    return np.asarray(times[steps // 10:], dtype=np.int64)  # after a warm-up


def stats_us(ns: np.ndarray) -> dict:
    return {"p50": float(np.percentile(ns, 50) / 1e3), "p99": float(np.percentile(ns, 99) / 1e3), "n": int(ns.size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of integer / Fraction clock per mode")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out = {}
    for mode in MODES:
        runs = {"integer": [], "fraction": []}
        for _ in range(args.rounds):
            runs["integer"].append(run_mode(mode, args.steps, InternalClock))
            runs["fraction"].append(run_mode(mode, args.steps, FractionClock))
        res = {k: stats_us(np.concatenate(v)) for k, v in runs.items()}
        res["p50_ratio"] = res["integer"]["p50"] / res["fraction"]["p50"]
        out[mode] = res
        print(f"{mode:<14} Engine.on_step p50 / p99: integer clock {res['integer']['p50']:7.1f} / "
              f"{res['integer']['p99']:7.1f} µs; Fraction clock (before) {res['fraction']['p50']:7.1f} / "
              f"{res['fraction']['p99']:7.1f} µs; p50 ratio {res['p50_ratio']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
