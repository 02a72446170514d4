"""How well ``liveperf.music.feel`` hears swing: held-out folk tunes played with a known swing.

```
python -m export.feel_eval [--split test] [--jitter-ms 8] [--json export/results/feel.json]
```

The held-out tunes of the melody models' content split (``export.clean_split``, seed 0) in duple meters (4/4, 2/4,
2/2), each played by a simulated performer at 110 BPM with every note-on moved to its swung place in the beat
(``feel.swung_phase``) for a swing of 0.50 (straight: the control), 0.55, 0.60, 0.65 and 0.70, plus a seeded normal
timing spread (``--jitter-ms``) and a constant lateness (``--offset-ms``). A ``Feel`` following the performer hears
the note-ons in order, as the engine would. Per swing: the share of tunes whose estimate became confident, the
share of those within +-0.02 of the truth (the issue's goal), the median absolute error, and the estimated lateness.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from export import clean_split, corpus as corpus_mod
from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.music.feel import Feel, swung_phase

ROOT = Path(__file__).resolve().parents[1]
SWINGS = (0.50, 0.55, 0.60, 0.65, 0.70)
TEMPO_BPM = 110.0
SPB = 4


def onsets_ns(tokens: np.ndarray, swing: float, beat_ns: float, jitter_ns: float, offset_ns: float, rng) -> list[int]:
    steps = np.flatnonzero(tokens >= melody.PITCH_OFFSET)
    out = []
    for t in steps.tolist():
        beat, k = divmod(t, SPB)
        at = (beat + swung_phase(k / SPB, swing)) * beat_ns + offset_ns
        at += float(np.clip(rng.normal(0.0, jitter_ns), -3 * jitter_ns, 3 * jitter_ns)) if jitter_ns else 0.0
        out.append(int(round(at)))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.feel_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("test", "valid"), default="test")
    ap.add_argument("--jitter-ms", type=float, default=8.0)
    ap.add_argument("--offset-ms", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "export" / "results" / "feel.json")
    args = ap.parse_args(argv)
    corpus = corpus_mod.load_corpus()
    split = clean_split.split_by_content(corpus.tokens, args.seed)
    duple = [i for i in split[args.split] if corpus.meta[i].meter_known and
             tuple(corpus.meta[i].meter) in ((4, 4), (2, 4), (2, 2))]
    beat_ns = 60e9 / TEMPO_BPM
    res = {"split": args.split, "tunes": len(duple), "jitter_ms": args.jitter_ms, "offset_ms": args.offset_ms,
           "by_swing": {}}
    print(f"{len(duple)} held-out tunes in 2/4, 4/4 or 2/2; timing spread {args.jitter_ms:g} ms, "
          f"{args.offset_ms:g} ms late")
    for swing in SWINGS:
        errors, confident, offsets, applied = [], 0, [], []
        for n, i in enumerate(duple):
            rng = np.random.default_rng(args.seed * 1000 + n)
            clock = InternalClock(TEMPO_BPM, SPB, 0)
            feel = Feel(clock, SPB, swing=None)
            for ns in onsets_ns(corpus.tokens[i], swing, beat_ns, args.jitter_ms * 1e6, args.offset_ms * 1e6, rng):
                feel.heard(ns)
            if feel.estimator.confident:
                confident += 1
                errors.append(abs(feel.estimator.swing - swing))
                offsets.append(feel.estimator.offset_ns / 1e6)
                applied.append(feel.swing)
        e = np.array(errors)
        row = {"confident": confident / max(1, len(duple)),
               "within_0.02": float((e <= 0.02).mean()) if e.size else None,
               "median_abs_error": float(np.median(e)) if e.size else None,
               "applied_median": float(np.median(applied)) if applied else None,
               "offset_ms_median": float(np.median(offsets)) if offsets else None}
        res["by_swing"][f"{swing:.2f}"] = row
        print(f"swing {swing:.2f}: confident on {row['confident']:.1%} of tunes; within +-0.02: "
              f"{row['within_0.02'] if row['within_0.02'] is None else format(row['within_0.02'], '.1%')}; "
              f"median error {row['median_abs_error'] if row['median_abs_error'] is None else format(row['median_abs_error'], '.3f')}; "
              f"partner plays {row['applied_median']}; lateness heard {row['offset_ms_median']} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
