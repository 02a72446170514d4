"""Does the partner follow the performer's dynamics? ``python -m export.dynamics_eval``

Held-out Bach chorales (the duet's content split, as ``export.quality``), the soprano played as a performer would
play a take with a crescendo and a decrescendo: per bar a level rising from ``QUIET`` to ``LOUD`` over the first
half of the chorale and falling back over the second, +``DOWNBEAT_ACCENT`` on each bar's first beat,
+``BEAT_ACCENT`` on the other beats, and a seeded normal spread of ``SPREAD`` (a person's hand). The duet mode
plays the bass through the live code path (``export.quality.live``: setlist song, shipped models, engine, virtual
wire), with ``velocity = "follow"``. Measured from the wire: per bar, the partner's mean note-on velocity against
the performer's (Pearson correlation over every bar of every chorale, and the median per chorale), and the accent:
mean velocity on downbeats minus elsewhere, the partner's beside the performer's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from export import duet_corpus
from export.quality import live
from export.quality.run import load_song_models
from liveperf.music import melody

ROOT = Path(__file__).resolve().parents[1]
QUIET, LOUD = 40, 112
DOWNBEAT_ACCENT, BEAT_ACCENT = 12, 5
SPREAD = 4.0


def take_velocities(tokens: np.ndarray, start: int, bar: int, spb: int, rng) -> dict[int, int]:
    """Velocity per note-on step (song steps) of a take with a crescendo, a decrescendo and accents."""
    onsets = [start + t for t in np.flatnonzero(tokens >= melody.PITCH_OFFSET)]
    bars = max(1, (start + len(tokens)) // bar)
    out = {}
    for step in onsets:
        b = step // bar
        level = QUIET + (LOUD - QUIET) * np.sin(np.pi * min(1.0, (b + 0.5) / bars))
        pos = step % bar
        accent = DOWNBEAT_ACCENT if pos == 0 else BEAT_ACCENT if pos % spb == 0 else 0
        out[step] = int(np.clip(round(level + accent + rng.normal(0.0, SPREAD)), 1, 127))
    return out


def with_velocities(events, velocities: dict[int, int], step_ns: int):
    out = []
    for ns, data in events:
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            data = bytes([data[0], data[1], velocities.get(int(round(ns / step_ns)), data[2])])
        out.append((ns, data))
    return out


def per_bar(notes: list[tuple[int, int]], bar: int) -> dict[int, float]:
    bars: dict[int, list[int]] = {}
    for step, v in notes:
        bars.setdefault(step // bar, []).append(v)
    return {b: float(np.mean(vs)) for b, vs in bars.items()}


def accent(notes: list[tuple[int, int]], bar: int) -> float:
    down = [v for s, v in notes if s % bar == 0]
    other = [v for s, v in notes if s % bar != 0]
    return float(np.mean(down) - np.mean(other)) if down and other else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.dynamics_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("test", "valid"), default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "export" / "results" / "dynamics.json")
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    data = duet_corpus.load_chorales(progress=False)
    split = duet_corpus.content_split([c[duet_corpus.ROW["soprano"]] for c in data.tokens], args.seed)
    cache: dict = {}
    xs, ys, per_chorale, accents = [], [], [], []
    for i in (int(k) for k in split[args.split]):
        c, meta = data.tokens[i], data.meta[i]
        sop, bass = c[duet_corpus.ROW["soprano"]].astype(np.int64), c[duet_corpus.ROW["bass"]].astype(np.int64)
        song = live.chorale_duet_song(meta, bass, args.seed + i)
        models = load_song_models(song, cache)
        spb = models.steps_per_beat
        bar = song.steps_per_bar(spb)
        start = live.first_bar_line(meta, bar)
        step_ns = int(round(60e9 / song.tempo_bpm / spb))
        rng = np.random.default_rng(args.seed + i)
        vel = take_velocities(sop, start, bar, spb, rng)
        events = with_velocities(live.performer_events(sop, start, step_ns), vel, step_ns)
        played = live.play(song, models, events, start + len(sop) + 1)
        ch = song.channel - 1
        partner = [(int(round(ns / step_ns)), d[2]) for ns, d in played.sent
                   if len(d) == 3 and d[0] == 0x90 | ch and d[2] > 0]
        performer = sorted(vel.items())
        a, b = per_bar(performer, bar), per_bar(partner, bar)
        both = sorted(set(a) & set(b))
        xs += [a[k] for k in both]
        ys += [b[k] for k in both]
        if len(both) >= 4 and np.std([a[k] for k in both]) > 0 and np.std([b[k] for k in both]) > 0:
            per_chorale.append(float(np.corrcoef([a[k] for k in both], [b[k] for k in both])[0, 1]))
        accents.append((accent(performer, bar), accent(partner, bar)))
    r = float(np.corrcoef(xs, ys)[0, 1])
    acc = np.array(accents)
    res = {"label": args.label, "split": args.split, "chorales": len(split[args.split]), "bars": len(xs),
           "per_bar_correlation": r, "per_chorale_correlation_median": float(np.median(per_chorale)),
           "mean_abs_level_difference": float(np.mean(np.abs(np.array(xs) - np.array(ys)))),
           "downbeat_accent": {"performer": float(acc[:, 0].mean()), "partner": float(acc[:, 1].mean())}}
    print(f"{res['chorales']} held-out chorales, {res['bars']} bars: partner per-bar mean velocity vs the "
          f"performer's: r = {r:.3f} (median per chorale {res['per_chorale_correlation_median']:.3f}), mean "
          f"|difference| {res['mean_abs_level_difference']:.1f}; downbeat accent: performer "
          f"{res['downbeat_accent']['performer']:+.1f}, partner {res['downbeat_accent']['partner']:+.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
