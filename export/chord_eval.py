"""How well ``liveperf.music.chords`` hears chords: against music21's labels of held-out Bach chorales.

```
python -m export.chord_eval [--split test] [--json export/results/chord_recognition.json]
```

The chorales of the duet's content split (``export.clean_split`` on the soprano, seed 0, as ``export.quality``),
four voices on the 16th grid (``export.duet_corpus``). At every beat (step % 4 == 0: a quarter note) the pitches the
four voices sound there are one chord, as a keyboardist's hands would hold it. music21 labels it (``Chord.root()``,
``Chord.quality``: music21's own analysis of the same notes, the reference the issue names); ``liveperf.music.chords.
chord_of`` hears the same pitches through the live code path. A beat counts when music21 names a triad quality
(major, minor, diminished, augmented); the rest (music21's "other": suspensions, bare fifths) are counted apart.
Printed: root + quality accuracy, root accuracy, the share we leave unnamed, by the number of distinct pitch
classes sounding, and the per-beat cost of ``chord_of``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from export import duet_corpus
from liveperf.music import melody
from liveperf.music.chords import chord_of

ROOT = Path(__file__).resolve().parents[1]
TRIADS = ("major", "minor", "diminished", "augmented")


def sounding_pitches(chorale: np.ndarray) -> list[list[int]]:
    """Per step, the pitches the four voices sound (a voice that rests sounds none)."""
    now: list[int | None] = [None] * chorale.shape[0]
    out = []
    for t in range(chorale.shape[1]):
        for v in range(chorale.shape[0]):
            tok = int(chorale[v, t])
            if melody.is_on(tok):
                now[v] = melody.pitch_of(tok)
            elif tok == melody.OFF:
                now[v] = None
        out.append([p for p in now if p is not None])
    return out


def evaluate(chorales: list[np.ndarray]) -> dict:
    import music21

    counts = Counter()
    by_classes: dict[int, Counter] = {}
    costs = []
    confusions = Counter()
    for chorale in chorales:
        steps = sounding_pitches(chorale)
        for t in range(0, len(steps), 4):
            pitches = steps[t]
            if not pitches:
                continue
            ref = music21.chord.Chord(pitches)
            quality = ref.quality
            if quality not in TRIADS:
                counts["other"] += 1
                continue
            root = ref.root().pitchClass
            t0 = time.perf_counter_ns()
            ours = chord_of(pitches)
            costs.append(time.perf_counter_ns() - t0)
            n = len({p % 12 for p in pitches})
            c = by_classes.setdefault(n, Counter())
            counts["beats"] += 1
            c["beats"] += 1
            if ours is None:
                counts["unnamed"] += 1
                c["unnamed"] += 1
                continue
            if ours.root == root:
                counts["root"] += 1
                c["root"] += 1
                if ours.quality == quality:
                    counts["right"] += 1
                    c["right"] += 1
                    continue
            confusions[f"{quality} -> {ours.quality}{'' if ours.root == root else ' (other root)'}"] += 1
    beats = max(1, counts["beats"])
    cost = np.asarray(costs, dtype=np.float64) / 1e3
    return {
        "beats": counts["beats"], "beats_music21_other": counts["other"],
        "root_and_quality": counts["right"] / beats, "root": counts["root"] / beats,
        "unnamed": counts["unnamed"] / beats,
        "by_pitch_classes": {str(n): {"beats": c["beats"], "root_and_quality": c["right"] / max(1, c["beats"]),
                                      "unnamed": c["unnamed"] / max(1, c["beats"])}
                             for n, c in sorted(by_classes.items())},
        "confusions": dict(confusions.most_common(8)),
        "chord_of_us": {"p50": float(np.median(cost)), "p99": float(np.percentile(cost, 99))},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.chord_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("test", "valid"), default="test")
    ap.add_argument("--json", type=Path, default=ROOT / "export" / "results" / "chord_recognition.json")
    args = ap.parse_args(argv)
    data = duet_corpus.load_chorales(progress=False)
    split = duet_corpus.content_split([c[duet_corpus.ROW["soprano"]] for c in data.tokens])
    idx = split[args.split]
    res = {"split": args.split, "chorales": len(idx), **evaluate([data.tokens[i] for i in idx])}
    print(f"{len(idx)} held-out chorales ({args.split}), {res['beats']} beats music21 names a triad quality "
          f"({res['beats_music21_other']} it calls 'other', not counted)")
    print(f"root and quality right: {res['root_and_quality']:.3f}   root right: {res['root']:.3f}   "
          f"left unnamed: {res['unnamed']:.3f}")
    for n, c in res["by_pitch_classes"].items():
        print(f"  {n} pitch classes: {c['beats']:5d} beats, right {c['root_and_quality']:.3f}, "
              f"unnamed {c['unnamed']:.3f}")
    print(f"wrong, most often: {res['confusions']}")
    print(f"chord_of per beat: p50 {res['chord_of_us']['p50']:.1f} µs, p99 {res['chord_of_us']['p99']:.1f} µs")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
