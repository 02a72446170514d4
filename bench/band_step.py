"""Three partners at once (a bass duet, a comp, a call-and-response lead) at 180 BPM: the engine thread's work per
grid step, against each partner alone, measured in one process.

    python -m bench.band_step [--steps 960] [--pace] [--planner thread|inline] [--busy] [--only CONFIG ...]
                              [--json bench/results/band_step.json]

The song is built as ``liveperf play`` builds it (``build_song`` with the shipped models, the real ``Engine`` and
``run_loop``) and runs in virtual time (``ScriptedInput`` + ``VirtualScheduler``) against a performer who plays an
eighth-note melody for a bar and rests for a bar (the lead answers in the rests; it plans its whole answer in the
silence, ``answer_candidates`` = 16, so the same band with the lead drawing step by step is timed too). Where the
plan runs (``liveperf.modes.planner``): ``--planner thread`` on the planner's thread, as ``liveperf play`` does (the
default with ``--pace``; back to back, steps outrun the thread and most plans would come too late), ``inline``
inside the engine's step (the default back to back; before 2026-12-07 every show planned that way). The plans
made, those too late, and the plan's own wall time are printed; so are phrase mode's phrases and those made too
late for their first step (``--only "phrase, GAN best of 12" "phrase, VAE knobs turned"``: phrase mode alone, a
phrase every 2 bars). ``--busy`` keeps one core busy with a second process. Every engine call is timed
(``on_step``, each performer note, each listening window's end) and summed per step: that sum is "the per-step
cost of all partners together". ``--pace`` sleeps out each step's real duration (83 ms at 180 BPM), so caches cool
between steps as they do on stage (on this VM a model call after 100 ms idle costs 3-6x a back-to-back one);
without it the steps run back to back. Paced, it then times onnxruntime alone, paced the same (``bench.ort_floor``:
a one-node graph, the three step models' bare calls): the floor under the band's step. Each configuration runs twice, alternating; p50 / p99 / max in µs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench import ort_floor
from bench.proc import busy_core, stop_busy
from liveperf.timing.clock import InternalClock
from liveperf.engine import Engine
from liveperf.loop import ScriptedInput, run_loop
from liveperf.modes.build import SongModels, build_song
from liveperf.modes.planner import INLINE, ThreadPlanner
from liveperf.music.notes import note_off, note_on
from liveperf.setlist.schema import parse_setlist
from liveperf.timing.virtual_scheduler import VirtualScheduler

TEMPO = 180
BASS = {"mode": "duet", "voice": "bass", "pitch_range": [36, 55], "channel": 2}
COMP = {"name": "comp", "mode": "comp", "channel": 3}
LEAD = {"name": "lead", "mode": "call_response", "channel": 4, "pitch_range": [67, 88]}
CONFIGS = {"three partners": (BASS, [COMP, LEAD]), "duet alone": (BASS, []), "comp alone": (COMP, []),
           "call_response alone": (LEAD, []),
           # the lead drawing its answers step by step: no whole-answer plan in one step
           "three, lead unplanned": (BASS, [COMP, LEAD | {"answer_candidates": 0}]),
           # phrase mode alone (``--only``): a phrase every 2 bars, made on the planner as a show makes it
           "phrase, GAN best of 12": ({"mode": "phrase", "phrase_model": "gan", "candidates": 12,
                                       "phrase_every_bars": 2, "channel": 2}, []),
           "phrase, VAE knobs turned": ({"mode": "phrase", "phrase_model": "vae", "style_mood": 0.6,
                                         "style_syncopation": 0.4, "phrase_every_bars": 2, "channel": 2}, [])}
DEFAULT = [name for name in CONFIGS if not name.startswith("phrase")]


def performer(steps: int, step_ns: int) -> list[tuple[int, bytes]]:
    line = [64, 66, 67, 69, 71, 69, 67, 66]
    events = []
    for s in range(0, steps, 2):
        if (s // 16) % 2 == 0:
            p = line[(s // 2) % len(line)]
            events.append((s * step_ns, note_on(0, p, 90)))
            events.append((s * step_ns + step_ns * 3 // 2, note_off(0, p)))
    return events


def run(first: dict, partners: list[dict], steps: int, pace: bool, planner) -> tuple[np.ndarray, dict]:
    table = {"title": "bench", "tempo_bpm": TEMPO, "key": "E minor", "seed": 3, **{k: v for k, v in first.items()
                                                                                    if k != "name"}}
    if partners:
        table["partner"] = partners
    song = parse_setlist({"song": [table]}, Path("bench.toml")).songs[0]
    models = SongModels.load(song, None)
    clock = InternalClock(song.tempo_bpm, models.steps_per_beat, 0)
    source = ScriptedInput(performer(steps, int(clock.step_ns)))
    sched = VirtualScheduler(now_fn=source.now_ns)
    modes, initial = build_song(song, models, clock, sched, song.seed, now_fn=source.now_ns, planner=planner)
    engine = Engine(modes, clock=clock, sink=sched, initial=initial,
                    steps_per_bar=song.steps_per_bar(models.steps_per_beat))
    per_step = np.zeros(steps + 1, dtype=np.int64)
    current = [0]

    def timed(fn, at_step=None):
        def wrapper(*args):
            t0 = time.perf_counter_ns()
            try:
                return fn(*args)
            finally:
                per_step[current[0] if at_step is None else at_step(*args)] += time.perf_counter_ns() - t0
        return wrapper

    on_step = engine.on_step

    def step_wrapper(step):
        if pace:
            time.sleep(clock.step_ns / 1e9)
        current[0] = step
        t0 = time.perf_counter_ns()
        on_step(step)
        per_step[step] += time.perf_counter_ns() - t0

    engine.on_step = step_wrapper
    engine.on_input = timed(engine.on_input)
    engine.on_wake = timed(engine.on_wake)
    run_loop(engine, clock, source, lookahead_ns=8_000_000, stop_at_step=steps, stop_when_done=False)
    engine.stop(clock.ns_at_step(steps))
    modes = all_modes(engine)
    plans = {"plans": sum(m.stats.plans for m in modes), "late": sum(m.stats.plans_late for m in modes),
             "plan_ns": [ns for m in modes for ns in getattr(m, "plan_ns", ())],
             "phrase_ns": [ns for m in modes for ns in getattr(m, "phrase_ns", ())],
             "phrases": sum(m.stats.phrases for m in modes), "phrases_late": sum(m.stats.phrases_late for m in modes)}
    return per_step[steps // 10:steps], plans  # after a warm-up


def clock_step_s() -> float:
    """One 16th step at the bench's tempo, in s (what ``--pace`` sleeps)."""
    return 60 / TEMPO / 4


def all_modes(engine: Engine) -> list:
    out = []
    for mode in engine.modes.values():
        out += [m for part in mode.parts for m in part.modes.values()] if hasattr(mode, "parts") else [mode]
    return out


def stats_us(ns: np.ndarray) -> dict:
    return {"p50": float(np.percentile(ns, 50) / 1e3), "p99": float(np.percentile(ns, 99) / 1e3),
            "max": float(ns.max() / 1e3), "n": int(ns.size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=960, help="steps per run (960 = 60 bars, 80 s paced at 180 BPM)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pace", action="store_true", help="sleep out each step's real duration (caches cool)")
    ap.add_argument("--planner", choices=("thread", "inline"), help="where answers are planned (see above)")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a second process")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), metavar="CONFIG",
                    help="run only these configurations (default: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    configs = {name: CONFIGS[name] for name in (args.only or DEFAULT)}
    where = args.planner or ("thread" if args.pace else "inline")
    planner = ThreadPlanner() if where == "thread" else INLINE
    runs: dict[str, list] = {name: [] for name in configs}
    plans: dict[str, list] = {name: [] for name in configs}
    hog = busy_core(args.busy)
    try:
        for _ in range(args.rounds):
            for name, (first, partners) in configs.items():
                per_step, made = run(first, partners, args.steps, args.pace, planner)
                runs[name].append(per_step)
                plans[name].append(made)
    finally:
        planner.close()
        stop_busy(hog)
    out = {"tempo_bpm": TEMPO, "paced": args.pace, "planner": where, "busy_core": args.busy, "steps": args.steps,
           "rounds": args.rounds}
    for name, parts in runs.items():
        out[name] = stats_us(np.concatenate(parts))
        made = sum(p["plans"] for p in plans[name])
        late = sum(p["late"] for p in plans[name])
        plan_ns = np.array([ns for p in plans[name] for ns in p["plan_ns"]])
        out[name]["plans"], out[name]["plans_late"] = made, late
        phrases = sum(p["phrases"] for p in plans[name])
        out[name]["phrases"], out[name]["phrases_late"] = phrases, sum(p["phrases_late"] for p in plans[name])
        phrase_ns = np.array([ns for p in plans[name] for ns in p["phrase_ns"]])
        if phrase_ns.size:
            out[name]["phrase_ms"] = {"p50": float(np.percentile(phrase_ns, 50) / 1e6),
                                      "p99": float(np.percentile(phrase_ns, 99) / 1e6),
                                      "max": float(phrase_ns.max() / 1e6)}
        if plan_ns.size:
            out[name]["plan_ms"] = {"p50": float(np.percentile(plan_ns, 50) / 1e6),
                                    "p99": float(np.percentile(plan_ns, 99) / 1e6), "max": float(plan_ns.max() / 1e6)}
        print(f"{name:<20} per step, all engine work: p50 {out[name]['p50']:7.1f} µs  p99 {out[name]['p99']:7.1f} µs  "
              f"max {out[name]['max']:7.1f} µs" + (f"  plans {made}, late {late}, plan p50 "
                                                 f"{out[name]['plan_ms']['p50']:.1f} ms" if plan_ns.size else "")
              + (f"  phrases {phrases}, late {out[name]['phrases_late']}, made in p50 "
                 f"{out[name]['phrase_ms']['p50']:.1f} / p99 {out[name]['phrase_ms']['p99']:.1f} ms" if phrases else ""),
              flush=True)
    if all(n in out for n in ("three partners", "duet alone", "comp alone", "call_response alone")):
        alone = sum(out[n]["p99"] for n in ("duet alone", "comp alone", "call_response alone"))
        out["p99_three_over_sum_alone"] = out["three partners"]["p99"] / alone
        print(f"three partners p99 / (sum of the three alone p99): {out['p99_three_over_sum_alone']:.2f}")
    if args.pace and not args.only:  # the floor: onnxruntime alone, paced the same, in the same minutes
        out["ort_floor"] = ort_floor.measure(args.steps // 4, clock_step_s())
        ort_floor.print_floor(out["ort_floor"], clock_step_s())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
