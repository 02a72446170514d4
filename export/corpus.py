"""The folk-tune corpus: music21's ABC collections tokenised into ``liveperf.music.melody`` arrays, cached once.

Three corpora that ship with music21 (``essenFolksong``, ``oneills1850``, ``ryansMammoth``; each ABC file is an
opus of one or more tunes) become one token array per tune, on a grid of 4 steps per quarter note.

Per tune: the flattened notes (chords -> top note; grace notes ignored; chord symbols are not notes; tied notes of
the same pitch merged into one note), onsets and ends rounded to the nearest 16th step (tunes with triplets etc. are
*quantised*, not dropped, and counted); if the first bar is a pickup, leading silent steps are added so that
``step % 4`` is the position within the quarter-note beat of the bar grid. Repeats are not expanded. Tunes with
fewer than ``MIN_ONSETS`` onsets are dropped (counted).

Parsing costs ~25 ms per tune with beaming switched off (music21's ``makeBeams`` is half the parse time and does not
change notes); ``load_corpus`` parses once with a progress bar and caches an ``.npz`` in ``export/cache/`` keyed by
the corpus names, ``TOKEN_FORMAT`` (the token vocabulary, unchanged since representation v1) and ``PARSER_VERSION``. Pure functions apart from the cache.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liveperf.music import melody

TOKEN_FORMAT = 1  # the cache holds tokens only; representation v2 added model inputs, not tokens
PARSER_VERSION = 2  # 2: per-tune meter, key and first downbeat (for bar position, cadences, key masks)
CORPORA = ("essenFolksong", "oneills1850", "ryansMammoth")
STEPS_PER_QUARTER = melody.DEFAULT_STEPS_PER_BEAT
MIN_ONSETS = 8
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / "cache"
_EPS = 1e-6


@dataclass
class Corpus:
    """Tokenised tunes: ``tokens[i]`` (uint8 array) belongs to ``ids[i]`` (``corpus/file/index``)."""

    ids: list[str]
    tokens: list[np.ndarray]
    stats: dict = field(default_factory=dict)
    meta: list[TuneMeta] = field(default_factory=list)  # one per tune (parser 2 on), same order as ``tokens``


@dataclass(frozen=True)
class TuneMeta:
    """What the ABC header says about a tune, on the token grid.

    ``meter`` is the time signature that covers most of the tune (``(4, 4)`` when the tune has none: ``meter_known``
    False); ``downbeat_step`` is the step of a bar line (the first full bar), so bar position = (step - downbeat) mod
    steps per bar; ``tonic_pc`` (0 = C .. 11, -1 unknown) and ``mode`` (music21's name: major, minor, dorian, ...)
    come from the K: field."""

    meter: tuple[int, int] = (4, 4)
    meter_known: bool = False
    downbeat_step: int = 0
    tonic_pc: int = -1
    mode: str = ""

    def steps_per_bar(self, steps_per_quarter: int = 4) -> int:
        num, den = self.meter
        return max(1, int(round(num * 4 * steps_per_quarter / den)))


def _disable_beaming() -> None:
    """Make music21's ABC import skip ``makeBeams`` (notation only; halves the parse time). Call in workers."""
    from music21 import stream

    def _no_beams(self, *args, **kwargs):
        return None if kwargs.get("inPlace", True) else self

    stream.Stream.makeBeams = _no_beams


def _pickup_lead_steps(score) -> int:
    """Silent steps to prepend so the first full bar starts on a beat (``step % 4 == 0``)."""
    from music21 import stream

    parts = score.parts if score.parts else [score]
    measures = parts[0].getElementsByClass(stream.Measure)
    if len(measures) < 2:
        return 0
    first = measures[0]
    try:
        bar_ql = float(first.barDuration.quarterLength)
    except Exception:  # no usable time signature: keep the tune as it starts
        return 0
    if float(first.duration.quarterLength) >= bar_ql - _EPS and not first.paddingLeft:
        return 0  # no pickup: the tune starts on a downbeat
    first_full = float(measures[1].getOffsetBySite(parts[0]))
    return (-int(round(first_full * STEPS_PER_QUARTER))) % STEPS_PER_QUARTER


def _dominant_meter(score) -> tuple[tuple[int, int], bool]:
    """The time signature covering the longest stretch of the tune (pickup bars' odd signatures lose)."""
    from music21 import meter

    flat = score.flatten()
    sigs = list(flat.getElementsByClass(meter.TimeSignature))
    if not sigs:
        return (4, 4), False
    end = float(flat.highestTime)
    cover: dict[tuple[int, int], float] = {}
    for i, ts in enumerate(sigs):
        until = float(sigs[i + 1].offset) if i + 1 < len(sigs) else end
        sig = (int(ts.numerator), int(ts.denominator))
        cover[sig] = cover.get(sig, 0.0) + max(0.0, until - float(ts.offset))
    return max(cover.items(), key=lambda kv: (kv[1], -kv[0][0]))[0], True


def _key_of(score) -> tuple[int, str]:
    from music21 import key

    for k in score.flatten().getElementsByClass(key.KeySignature):
        if isinstance(k, key.Key):
            return int(k.tonic.pitchClass), str(k.mode)
        try:
            kk = k.asKey("major")
            return int(kk.tonic.pitchClass), "major"
        except Exception:  # a key signature music21 cannot name: unknown
            return -1, ""
    return -1, ""


def tune_meta(score, lead_steps: int) -> TuneMeta:
    """Meter, key and the first downbeat's step (after the ``lead_steps`` the tokeniser prepends)."""
    from music21 import stream

    sig, known = _dominant_meter(score)
    parts = score.parts if score.parts else [score]
    measures = parts[0].getElementsByClass(stream.Measure)
    downbeat = lead_steps
    if len(measures) >= 2:
        first = measures[0]
        try:
            pickup = float(first.duration.quarterLength) < float(first.barDuration.quarterLength) - _EPS
        except Exception:
            pickup = False
        if pickup or first.paddingLeft:
            downbeat = lead_steps + int(round(float(measures[1].getOffsetBySite(parts[0])) * STEPS_PER_QUARTER))
    tonic, mode = _key_of(score)
    return TuneMeta(sig, known, downbeat, tonic, mode)


def score_to_notes(score) -> tuple[list[melody.Note], dict]:
    """Notes of one tune on the 16th grid, plus counts (``grace``, ``off_grid`` notes, ``merged_ties``)."""
    from music21 import chord, harmony

    counts = {"grace": 0, "off_grid": 0, "merged_ties": 0}
    raw: list[tuple[float, float, int, str | None]] = []  # (start_ql, end_ql, midi, tie type)
    for n in score.flatten().notes:
        if isinstance(n, harmony.ChordSymbol):
            continue
        if n.duration.isGrace or n.quarterLength <= 0:
            counts["grace"] += 1
            continue
        if isinstance(n, chord.Chord):
            if not n.pitches:
                continue
            midi = max(p.midi for p in n.pitches)
        else:
            midi = n.pitch.midi
        start = float(n.offset)
        raw.append((start, start + float(n.quarterLength), int(midi), n.tie.type if n.tie is not None else None))
    raw.sort(key=lambda r: (r[0], r[2]))

    merged: list[list] = []
    open_by_pitch: dict[int, int] = {}
    for start, end, midi, tie in raw:
        j = open_by_pitch.get(midi)
        if tie in ("stop", "continue") and j is not None and abs(merged[j][1] - start) < _EPS:
            merged[j][1] = end
            counts["merged_ties"] += 1
            continue
        open_by_pitch[midi] = len(merged)
        merged.append([start, end, midi])

    lead = _pickup_lead_steps(score)
    counts["lead_steps"] = lead
    notes = []
    for start, end, midi in merged:
        s, e = start * STEPS_PER_QUARTER, end * STEPS_PER_QUARTER
        if abs(s - round(s)) > _EPS or abs(e - round(e)) > _EPS:
            counts["off_grid"] += 1
        s_i, e_i = math.floor(s + 0.5), math.floor(e + 0.5)  # nearest step, halves up
        if 0 <= midi < melody.NUM_PITCHES:
            notes.append(melody.Note(lead + s_i, lead + max(e_i, s_i + 1), midi))
    return notes, counts


def tokenise_score(score) -> tuple[np.ndarray, dict]:
    """One tune -> (uint8 tokens, counts). Tokens end with the last note's end; ``counts["meta"]`` is its
    ``TuneMeta``."""
    notes, counts = score_to_notes(score)
    tokens = melody.notes_to_tokens(notes)
    counts["onsets"] = int(np.count_nonzero(tokens >= melody.PITCH_OFFSET))
    counts["meta"] = tune_meta(score, counts["lead_steps"])
    return tokens.astype(np.uint8), counts


def _parse_file(job: tuple[str, str]) -> tuple[str, str, list, str | None]:
    """Worker: parse one ABC file -> (corpus, file, [(index, tokens | None, counts)], error)."""
    from music21 import converter, stream

    corpus_name, path = job
    try:
        parsed = converter.parse(path, forceSource=True, storePickle=False)
    except Exception as exc:  # a file music21 cannot read: counted and reported, never hidden
        return corpus_name, path, [], f"{type(exc).__name__}: {exc}"
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    out = []
    for index, score in enumerate(scores):
        try:
            tokens, counts = tokenise_score(score)
        except Exception as exc:  # one bad tune should not lose its file
            out.append((index, None, {"error": f"{type(exc).__name__}: {exc}"}))
            continue
        out.append((index, tokens, counts))
    return corpus_name, path, out, None


def _jobs(corpora) -> list[tuple[str, str]]:
    from music21 import corpus as m21corpus

    jobs = []
    for name in corpora:
        files = sorted(str(p) for p in m21corpus.getComposer(name))
        if not files:
            raise RuntimeError(f"music21 corpus {name!r} has no files; is music21's corpus installed?")
        jobs.extend((name, f) for f in files)
    return jobs


def parse_corpora(corpora=CORPORA, workers: int = 2, progress: bool = True) -> Corpus:
    """Parse every tune (slow: minutes). Deterministic order: corpus, file name, index in the opus."""
    from tqdm import tqdm

    jobs = _jobs(corpora)
    # Big files first so the two workers finish together; results are re-ordered afterwards.
    order = sorted(range(len(jobs)), key=lambda i: -Path(jobs[i][1]).stat().st_size)
    results: dict[int, tuple] = {}
    bar = tqdm(total=len(jobs), desc="parse ABC files", unit="file", disable=not progress)
    if workers > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_disable_beaming) as pool:
            for i, res in zip(order, pool.imap(_parse_file, [jobs[i] for i in order], chunksize=1)):
                results[i] = res
                bar.update(1)
    else:
        _disable_beaming()
        for i in order:
            results[i] = _parse_file(jobs[i])
            bar.update(1)
    bar.close()

    ids, tokens, metas = [], [], []
    stats = {
        "corpora": {},
        "file_errors": [],
        "rule": f"quantise to nearest 16th; drop tunes with < {MIN_ONSETS} onsets",
    }
    for i in range(len(jobs)):
        corpus_name, path, tunes, error = results[i]
        st = stats["corpora"].setdefault(
            corpus_name,
            {"files": 0, "tunes_parsed": 0, "tunes_kept": 0, "dropped_short": 0, "dropped_error": 0,
             "tunes_quantised": 0, "notes_off_grid": 0, "grace_notes_ignored": 0, "steps": 0},
        )
        st["files"] += 1
        if error is not None:
            stats["file_errors"].append(f"{Path(path).name}: {error}")
            continue
        for index, toks, counts in tunes:
            st["tunes_parsed"] += 1
            if toks is None:
                st["dropped_error"] += 1
                continue
            st["grace_notes_ignored"] += counts["grace"]
            if counts["onsets"] < MIN_ONSETS:
                st["dropped_short"] += 1
                continue
            if counts["off_grid"]:
                st["tunes_quantised"] += 1
                st["notes_off_grid"] += counts["off_grid"]
            st["tunes_kept"] += 1
            st["steps"] += int(toks.size)
            ids.append(f"{corpus_name}/{Path(path).name}/{index}")
            tokens.append(toks)
            metas.append(counts["meta"])
    return Corpus(ids, tokens, stats, metas)


def cache_path(corpora=CORPORA, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    key = "+".join(corpora)
    return Path(cache_dir) / f"folk_{key}_rep{TOKEN_FORMAT}_parser{PARSER_VERSION}.npz"


def save_corpus(corpus: Corpus, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([t.size for t in corpus.tokens], dtype=np.int64)
    flat = np.concatenate(corpus.tokens) if corpus.tokens else np.zeros(0, np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    meta = np.array([[m.meter[0], m.meter[1], int(m.meter_known), m.downbeat_step, m.tonic_pc] for m in corpus.meta],
                    dtype=np.int64).reshape(-1, 5)
    np.savez_compressed(
        tmp, tokens=flat, lengths=lengths, ids=np.array(corpus.ids), stats=np.array(json.dumps(corpus.stats)),
        meta=meta, modes=np.array([m.mode for m in corpus.meta])
    )
    tmp.replace(path)


def read_corpus(path: Path) -> Corpus:
    with np.load(path, allow_pickle=False) as data:
        flat, lengths = data["tokens"], data["lengths"]
        ids = [str(x) for x in data["ids"]]
        stats = json.loads(str(data["stats"]))
        meta = [TuneMeta((int(r[0]), int(r[1])), bool(r[2]), int(r[3]), int(r[4]), str(m))
                for r, m in zip(data["meta"], data["modes"])] if "meta" in data else []
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    tokens = [flat[bounds[i]:bounds[i + 1]] for i in range(len(lengths))]
    return Corpus(ids, tokens, stats, meta)


def load_corpus(corpora=CORPORA, cache_dir: Path = DEFAULT_CACHE_DIR, workers: int = 2,
                progress: bool = True) -> Corpus:
    """The cached corpus, parsing (and caching) it first if the cache for this key is missing."""
    path = cache_path(corpora, cache_dir)
    if path.exists():
        return read_corpus(path)
    corpus = parse_corpora(corpora, workers=workers, progress=progress)
    save_corpus(corpus, path)
    return corpus


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    c = load_corpus()
    print(f"{len(c.ids)} tunes in {time.perf_counter() - t0:.1f} s")
    print(json.dumps(c.stats, indent=1))
