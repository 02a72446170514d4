"""The copy guard measured: ``python -m export.copy_eval [--phrases 10000]``.

Phrases are made as phrase mode makes them (``PhraseMode._guarded`` around the live sources: the GAN's best of 8 by
its critic, and the VAE from random codes at temperature 0.9), half from each, for a song in C major, back to back
(each joined to the one before, as a phrase every 2 bars plays them). Each is checked with an *exact* index of the
same corpora (``export.quality.copies.CopyIndex``: full 64-bit keys, built here, independent of the shipped 32-bit
one): a phrase copies when the partner's line (the phrase, joined to the last 31 steps before it) holds a training
passage of ``max_copy_bars`` (2 bars of 4/4 = 32 steps) ending in the phrase. Run twice with the same seeds: guard
off, guard on. Prints the copy rate of each, the redraws and cuts, and the guard's cost per phrase (its checks only,
not the redraws' generation), p50 / p99 / max. Seeded; a few minutes on the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export import corpus as corpus_mod
from export.quality import live
from export.quality.copies import CopyIndex as ExactIndex
from liveperf.music import sampler
from liveperf.timing.clock import InternalClock
from liveperf.music.copy_guard import CopyGuard, CopyIndex
from liveperf.models.phrase_models import GanModel, VaeModel
from liveperf.modes.phrase import GanPhrases, PhraseMode, VaePhrases
from liveperf.modes.settings import settings_for
from liveperf.timing.scheduler import DiscardSink

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 32  # max_copy_bars = 2 (the default) in 4/4


class TimedGuard(CopyGuard):
    """A ``CopyGuard`` that keeps the wall time of each check (ns)."""

    def __init__(self, index, max_copy_steps: int) -> None:
        super().__init__(index, max_copy_steps)
        self.ns: list[int] = []

    def first_copy(self, line, new_from=0):
        t0 = time.perf_counter_ns()
        try:
            return super().first_copy(line, new_from)
        finally:
            self.ns.append(time.perf_counter_ns() - t0)


def run(kind: str, n: int, guard: TimedGuard | None, exact: ExactIndex, seed: int) -> dict:
    song = live.make_song(key="C major", mode="phrase", phrase_model=kind, latent="random", pitch_range=[48, 84],
                          candidates=8)
    source = GanPhrases(GanModel.load()) if kind == "gan" else VaePhrases(VaeModel.load())
    s = settings_for(song, 4)
    mode = PhraseMode(s, source, InternalClock(120, 4, 0), DiscardSink(), sampler.new_rng_state(seed), guard=guard)
    history = np.zeros(32, dtype=np.int64)
    copies, per_phrase_ns = 0, []
    for _ in tqdm(range(n), desc=f"{kind} guard {'on' if guard else 'off'}", unit="phrase", mininterval=2.0):
        before = len(guard.ns) if guard else 0
        tokens = mode._guarded(lambda: source.next_phrase(s, history, mode.rng))
        if guard:
            per_phrase_ns.append(sum(guard.ns[before:]))
        past = np.asarray(mode._played, dtype=np.int64)[-(WINDOW - 1):]
        line = np.concatenate([past, tokens])
        copies += _copies(exact, line, past.size)
        mode._played.extend(int(t) for t in tokens)
    out = {"phrases": n, "copies": copies, "copy_rate": copies / n, "redrawn": mode.stats.copies_redrawn,
           "cut": mode.stats.copies_cut}
    if per_phrase_ns:
        a = np.asarray(per_phrase_ns) / 1e3
        out["guard_us_per_phrase"] = {"p50": float(np.median(a)), "p99": float(np.percentile(a, 99)),
                                      "max": float(a.max())}
    return out


def _copies(exact: ExactIndex, line: np.ndarray, new_from: int) -> bool:
    from export.quality.copies import _hashes
    keys = _hashes(line[max(0, new_from - WINDOW + 1):], WINDOW)
    return bool(keys.size and exact.contains(WINDOW, keys).any())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.copy_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--phrases", type=int, default=10000, help="in all, half GAN, half VAE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "export" / "results" / "copy_eval.json")
    args = ap.parse_args(argv)
    exact = ExactIndex(corpus_mod.load_corpus(corpus_mod.CORPORA).tokens, lengths=(WINDOW,))
    shipped = CopyIndex.load()
    res = {"window_steps": WINDOW, "seed": args.seed}
    for kind in ("gan", "vae"):
        n = args.phrases // 2
        res[kind] = {"off": run(kind, n, None, exact, args.seed),
                     "on": run(kind, n, TimedGuard(shipped, WINDOW), exact, args.seed)}
    print("| source | phrases | copies of 2 bars, guard off | guard on | redrawn | cut | guard per phrase p50 / p99 / "
          "max |")
    for kind in ("gan", "vae"):
        off, on = res[kind]["off"], res[kind]["on"]
        g = on["guard_us_per_phrase"]
        print(f"| {kind} | {off['phrases']} | {off['copies']} ({100 * off['copy_rate']:.2f} %) | {on['copies']} | "
              f"{on['redrawn']} | {on['cut']} | {g['p50']:.0f} / {g['p99']:.0f} / {g['max']:.0f} µs |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
