"""Build the copy guard's index of the folk training corpora: ``python -m export.copy_index``.

Every tune of music21's ``essenFolksong``, ``oneills1850`` and ``ryansMammoth`` (the melody DNN's, the VAE's and the
GAN's training data; the held-out tunes too, so the guard errs towards not copying) is cut into onset-started
passages of each of ``liveperf.music.copy_guard.INDEX_LENGTHS`` steps, keyed transposition-free; the sorted 32-bit keys
are written as compressed gaps to ``liveperf/data/copy_index.npz`` (``liveperf.music.copy_guard``). Deterministic; a few
seconds with the parse cache warm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export import corpus as corpus_mod
from liveperf.music.copy_guard import INDEX_LENGTHS, SHIPPED_INDEX, CopyIndex


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.copy_index", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SHIPPED_INDEX)
    args = ap.parse_args(argv)
    corpus = corpus_mod.load_corpus(corpus_mod.CORPORA)
    index = CopyIndex.build(corpus.tokens, INDEX_LENGTHS,
                            {"corpora": list(corpus_mod.CORPORA), "tunes": len(corpus.tokens),
                             "steps": int(sum(len(t) for t in corpus.tokens))})
    index.save(args.out)
    for length, keys in index.keys.items():
        print(f"{length:>3} steps: {keys.size:,} distinct passages")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
