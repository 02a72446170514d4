"""Make the shipped demo performer takes from held-out tunes (test split) of the folk corpora, and one from a held-out
Bach chorale's melody (the comp's demo).

Each take is a few phrases of a real tune, transposed into the song's key, played with a little human timing and
dynamics, and separated by room for the partner's answer (silence + answer + one bar). The takes are what the
default `liveperf play setlists/demo.toml` plays on a machine with no MIDI system.

    python -m export.make_demo_takes            # writes liveperf/data/takes/*.mid (needs the export extra)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from export.corpus import load_corpus
from export.melody_data import split_by_tune
from liveperf.music import melody
from liveperf.io.midi_file import track_from_events
from liveperf.music.scales import parse_key

OUT_DIR = Path(__file__).resolve().parents[1] / "liveperf" / "data" / "takes"


@dataclass(frozen=True)
class TakeSpec:
    name: str
    corpus: str  # pick the tune from this corpus's test-split tunes
    key: str
    tempo_bpm: float
    steps_per_bar: int
    phrase_bars: int
    phrases: int
    gap_bars: int  # bars after each phrase: the answer (2 bars) + 1 bar
    modulate_from: int = 0  # phrases from this one on (0: none) are moved ``modulate_by`` semitones: a new key
    modulate_by: int = 0


TAKES = (
    TakeSpec("demo_jig_d", "oneills1850", "D major", 150, 12, 2, 4, 3),
    TakeSpec("demo_reel_a", "oneills1850", "A dorian", 104, 16, 2, 3, 3),
    # key = "auto": two phrases in G major, then two up a tone, in A major (the key follower's demo)
    TakeSpec("demo_hornpipe_g_to_a", "oneills1850", "G major", 112, 16, 2, 4, 3, modulate_from=2, modulate_by=2),
)


def best_shift(tokens: np.ndarray, key_text: str) -> int:
    """Transposition (-6..5) that puts most notes in the key, preferring the key's root as the last note."""
    key = parse_key(key_text)
    pitches = [melody.pitch_of(t) for t in tokens if melody.is_on(t)]

    def score(shift: int) -> tuple:
        in_key = sum(key.contains(p + shift) for p in pitches)
        ends_on_root = (pitches[-1] + shift) % 12 == key.root
        return in_key, ends_on_root

    return max(range(-6, 6), key=score)


def phrase_like(tokens: np.ndarray, length: int) -> bool:
    """A phrase worth playing: starts with a note and has at least 6 onsets."""
    return melody.is_on(int(tokens[0])) and int(np.sum(tokens >= melody.PITCH_OFFSET)) >= 6


def pick_tune(corpus, test_idx: np.ndarray, spec: TakeSpec, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    length = spec.phrase_bars * spec.steps_per_bar
    candidates = [i for i in test_idx if corpus.ids[i].startswith(spec.corpus + "/")]
    for i in rng.permutation(candidates):
        toks = np.asarray(corpus.tokens[i], dtype=np.int64)
        first = int(np.flatnonzero(toks >= melody.PITCH_OFFSET)[0]) if (toks >= melody.PITCH_OFFSET).any() else 0
        toks = toks[first:]
        if len(toks) < length * spec.phrases:
            continue
        parts = [toks[k * length:(k + 1) * length] for k in range(spec.phrases)]
        if all(phrase_like(p, length) for p in parts):
            return corpus.ids[i], toks
    raise SystemExit(f"no test-split tune in {spec.corpus} fits {spec}")


def write_take(path: Path, spec: TakeSpec, tokens: np.ndarray, rng: np.random.Generator) -> int:
    tpb = 480
    step_ticks = tpb // 4
    ms_to_ticks = spec.tempo_bpm * tpb / 60_000
    length = spec.phrase_bars * spec.steps_per_bar
    events = []
    for k in range(spec.phrases):
        at_step = k * (spec.phrase_bars + spec.gap_bars) * spec.steps_per_bar
        part = tokens[k * length:(k + 1) * length]
        if spec.modulate_from and k >= spec.modulate_from:
            part = melody.transpose_tokens(part, spec.modulate_by)
        for n in melody.tokens_to_notes(part, offset_step=at_step):
            # Human feel: onsets within a few ms of the grid, slightly detached, accents on the beat.
            jitter = int(np.clip(rng.normal(0, 6), -15, 15) * ms_to_ticks)
            start = max(0, n.start_step * step_ticks + jitter)
            end = max(start + step_ticks // 2, n.end_step * step_ticks - step_ticks // 6)
            accent = 12 if n.start_step % 4 == 0 else 0
            vel = int(np.clip(rng.normal(82, 6) + accent, 40, 120))
            events.append((start, 1, mido.Message("note_on", note=n.pitch, velocity=vel)))
            events.append((end, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
    track = track_from_events(events, [mido.MetaMessage("track_name", name=f"performer ({spec.name})"),
                                       mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(spec.tempo_bpm))])
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    mid.tracks.append(track)
    mid.save(path)
    return len(events) // 2


CHORALE_TAKE = "demo_chorale"  # the comp's demo: a held-out chorale's melody (the duet models' test split)
CHORALE_BARS = 8


def write_chorale_take(out_dir: Path, seed: int) -> str:
    """The melody of the first held-out chorale in 4/4 with at least 8 bars of soprano, moved into G major (or E
    minor), played with a little human feel at 84 BPM. Its own RNG: the folk takes stay as they were."""
    from export import duet_corpus

    data = duet_corpus.load_chorales(progress=False)
    split = duet_corpus.content_split([c[duet_corpus.ROW["soprano"]] for c in data.tokens], 0)
    rng = np.random.default_rng(seed)
    for i in split["test"]:
        meta = data.meta[i]
        sop = data.tokens[i][duet_corpus.ROW["soprano"]].astype(np.int64)
        if meta.meter != (4, 4) or not meta.meter_known or len(sop) - meta.downbeat_step < CHORALE_BARS * 16:
            continue
        key = "E minor" if meta.mode == "minor" else "G major"
        shift = ((7 if key == "G major" else 4) - meta.tonic_pc + 6) % 12 - 6
        start = meta.downbeat_step  # from the first bar line: the pickup is left out
        tokens = melody.canonical(melody.transpose_tokens(sop[start:start + CHORALE_BARS * 16], shift))
        spec = TakeSpec(CHORALE_TAKE, "chorales", key, 84, 16, CHORALE_BARS, 1, 0)
        n = write_take(out_dir / f"{CHORALE_TAKE}.mid", spec, tokens, rng)
        return f"{CHORALE_TAKE}.mid: {n} notes from held-out chorale {data.ids[i]} (transposed {shift:+d}) in {key}"
    raise SystemExit("no held-out 4/4 chorale with 8 bars")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split-seed", type=int, default=0, help="the training split seed (test tunes only)")
    ap.add_argument("--seed", type=int, default=1, help="seed for the tune choice and the human feel")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    corpus = load_corpus()
    test_idx = split_by_tune(len(corpus.ids), args.split_seed)["test"]
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in TAKES:
        tune_id, toks = pick_tune(corpus, test_idx, spec, rng)
        shift = best_shift(toks[: spec.phrases * spec.phrase_bars * spec.steps_per_bar], spec.key)
        toks = melody.transpose_tokens(toks, shift)
        n = write_take(args.out / f"{spec.name}.mid", spec, toks, rng)
        print(f"{spec.name}.mid: {n} notes from held-out tune {tune_id} (transposed {shift:+d}) in {spec.key}, "
              f"{spec.tempo_bpm:g} BPM")
    print(write_chorale_take(args.out, args.seed))


if __name__ == "__main__":
    main()
