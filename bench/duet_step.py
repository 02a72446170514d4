"""The anticipating duet's per-step cost, fused graph against the two-model path, alternated in one process.

    python -m bench.duet_step [--rounds 6] [--steps 3000] [--json bench/results/duet_step.json]

Each round times ``liveperf check``'s own unit of work for the modes tour's duet song (``check.measure_mode``:
``Anticipation.hear`` + ``partner_logits`` + ``NoteChoice``) twice: with the shipped fused graph
(``liveperf.models.fused_duet``) and with the same song's two models called as before (predictor step, duet step
when the last peek did not hold the performer's token, batched peek). Alternating rounds put both paths in the
same minutes of a noisy machine; the figures printed are each round's p50 / p99 and the medians over rounds, in µs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from liveperf.check import measure_mode
from liveperf.modes.build import SongModels
from liveperf.setlist.schema import load_setlist

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    setlist = load_setlist(ROOT / "setlists" / "modes_tour.toml")
    song = next(s for s in setlist.songs if s.mode == "duet")
    fused = SongModels.load(song, None)
    if fused.fused is None:
        print("the shipped fused graph does not match the shipped pair: run python -m export.fuse_duet")
        return 1
    paths = {"fused": fused, "two models": dataclasses.replace(fused, fused=None)}
    runs: dict[str, list[dict]] = {k: [] for k in paths}
    for r in range(args.rounds):
        for name, models in paths.items():
            unit, figures = measure_mode(models, song, args.steps, 300)
            runs[name].append(figures)
            print(f"round {r + 1}: {name:<10} p50 {figures['p50']:6.1f} µs  p99 {figures['p99']:6.1f} µs  ({unit})")
    summary = {name: {q: float(np.median([f[q] for f in figures])) for q in ("p50", "p99", "max")}
               for name, figures in runs.items()}
    for name, s in summary.items():
        print(f"median over {args.rounds} rounds, {name:<10}: p50 {s['p50']:.1f} µs, p99 {s['p99']:.1f} µs")
    ratio = summary["fused"]["p99"] / summary["two models"]["p99"]
    print(f"fused / two models, p99: {ratio:.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"song": song.title, "steps": args.steps, "rounds": runs,
                                         "median": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
