"""The duet corpus: the Bach chorales music21 ships, four voices tokenised on one 16th grid, cached once.

Each chorale (``music21.corpus.chorales.Iterator`` in Riemenschneider order, 371 files) becomes a uint8 array
``[4, T]`` of ``liveperf.melody`` tokens, rows in ``VOICES`` order (soprano, alto, tenor, bass). Per part the notes
come from ``export.corpus.score_to_notes`` (the folk corpus's rules: ties merged, grace notes ignored, onsets and ends
rounded to the nearest 16th, a pickup padded so ``step % 4`` is the position in the beat); all four rows share
the chorale's length (the latest note end), so step ``t`` of every row sounds at the same time. A chorale whose
parts cannot be named soprano/alto/tenor/bass is dropped and counted.

Parsing costs ~0.25 s per chorale (~1.5 minutes); ``load_chorales`` caches an ``.npz`` in ``export/cache/`` keyed by
``TOKEN_FORMAT`` (the token vocabulary, unchanged since representation v1) and ``PARSER_VERSION``. Pure functions apart from the cache.
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export import clean_split
from export.corpus import DEFAULT_CACHE_DIR, TOKEN_FORMAT, TuneMeta, _disable_beaming, score_to_notes, tune_meta
from liveperf.music import melody

PARSER_VERSION = 2  # 2: per-chorale meter, key and first downbeat (``export.corpus.TuneMeta``)
VOICES = ("soprano", "alto", "tenor", "bass")
#: The partner voices the duet model can play, and the ``voice`` input id of each.
PARTNER_VOICES = {"bass": 0, "tenor": 1, "alto": 2}
ROW = {name: i for i, name in enumerate(VOICES)}
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
CONTENT_WINDOW_STEPS = 64  # 4 bars of 4/4: chorale phrases open alike; a shared 4-bar run is the same melody


def content_split(sopranos: list[np.ndarray], seed: int = 0) -> dict:
    """Train / valid / test chorale indices by content on the soprano (``export.clean_split``: a melody Bach
    harmonised twice lies in one split), with ``stats`` and ``groups``: the split the duet and soprano models train
    on and every evaluation of them uses."""
    return clean_split.split_by_content(sopranos, seed, SPLIT_FRACTIONS, CONTENT_WINDOW_STEPS, max_held_group=8)


@dataclass
class Chorales:
    """``tokens[i]`` (uint8 [4, T], rows in ``VOICES`` order) belongs to ``ids[i]`` (e.g. ``bach/bwv269``)."""

    ids: list[str]
    tokens: list[np.ndarray]
    stats: dict = field(default_factory=dict)
    meta: list[TuneMeta] = field(default_factory=list)  # from the soprano part (parser 2 on)


def _voice_of(part) -> str | None:
    """'soprano' / 'alto' / 'tenor' / 'bass' from a part's name or id, else None."""
    for label in (part.partName, part.id):
        if not isinstance(label, str):
            continue
        low = label.strip().lower()
        for name in VOICES:
            if low.startswith(name) or low in (name[0], name[0] + "."):
                return name
    return None


def tokenise_chorale(score) -> tuple[np.ndarray | None, dict]:
    """One chorale -> (uint8 [4, T] or None if the voices cannot be found, counts)."""
    from music21 import stream

    parts = {}
    for part in score.parts:
        name = _voice_of(part)
        if name is not None and name not in parts:
            parts[name] = part
    if len(parts) != 4:
        return None, {"error": f"voices found: {sorted(parts)}"}
    counts = {"off_grid": 0, "grace": 0}
    notes = {}
    for name, part in parts.items():
        one = stream.Score([part])  # one-part score: the folk rules, pickup included
        notes[name], c = score_to_notes(one)
        counts["off_grid"] += c["off_grid"]
        counts["grace"] += c["grace"]
        if name == "soprano":
            counts["meta"] = tune_meta(one, c["lead_steps"])
    end = max((n.end_step for ns in notes.values() for n in ns), default=0)
    rows = np.stack([melody.notes_to_tokens(notes[name], end) for name in VOICES])
    return rows.astype(np.uint8), counts


def _parse_one(name: str) -> tuple[str, np.ndarray | None, dict]:
    from music21 import corpus

    try:
        score = corpus.parse(name)
        tokens, counts = tokenise_chorale(score)
    except Exception as exc:  # a chorale music21 cannot read: counted, never hidden
        return name, None, {"error": f"{type(exc).__name__}: {exc}"}
    return name, tokens, counts


def chorale_names() -> list[str]:
    from music21.corpus import chorales

    return list(chorales.Iterator(returnType="filename"))


def parse_chorales(workers: int = 2, progress: bool = True) -> Chorales:
    """Parse every chorale (slow: ~1.5 minutes). Deterministic order: the Riemenschneider numbering."""
    from tqdm import tqdm

    names = chorale_names()
    results = {}
    bar = tqdm(total=len(names), desc="parse chorales", unit="chorale", disable=not progress)
    if workers > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_disable_beaming) as pool:
            for res in pool.imap(_parse_one, names, chunksize=4):
                results[res[0]] = res
                bar.update(1)
    else:
        _disable_beaming()
        for name in names:
            results[name] = _parse_one(name)
            bar.update(1)
    bar.close()
    ids, tokens, metas = [], [], []
    stats = {"files": len(names), "kept": 0, "dropped": [], "chorales_quantised": 0, "notes_off_grid": 0,
             "duplicates_dropped": 0, "rule": "4 named voices SATB; quantise to nearest 16th"}
    seen = set()
    for name in names:
        if name in seen:  # the Riemenschneider list names a few files twice
            stats["duplicates_dropped"] += 1
            continue
        seen.add(name)
        _, toks, counts = results[name]
        if toks is None:
            stats["dropped"].append(f"{name}: {counts['error']}")
            continue
        if counts["off_grid"]:
            stats["chorales_quantised"] += 1
            stats["notes_off_grid"] += counts["off_grid"]
        stats["kept"] += 1
        ids.append(name)
        tokens.append(toks)
        metas.append(counts["meta"])
    return Chorales(ids, tokens, stats, metas)


def cache_path(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    return Path(cache_dir) / f"chorales_rep{TOKEN_FORMAT}_parser{PARSER_VERSION}.npz"


def save_chorales(data: Chorales, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([t.shape[1] for t in data.tokens], dtype=np.int64)
    flat = np.concatenate(data.tokens, axis=1) if data.tokens else np.zeros((4, 0), np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    meta = np.array([[m.meter[0], m.meter[1], int(m.meter_known), m.downbeat_step, m.tonic_pc] for m in data.meta],
                    dtype=np.int64).reshape(-1, 5)
    np.savez_compressed(tmp, tokens=flat, lengths=lengths, ids=np.array(data.ids),
                        stats=np.array(json.dumps(data.stats)), meta=meta, modes=np.array([m.mode for m in data.meta]))
    tmp.replace(path)


def read_chorales(path: Path) -> Chorales:
    with np.load(path, allow_pickle=False) as data:
        flat, lengths = data["tokens"], data["lengths"]
        ids = [str(x) for x in data["ids"]]
        stats = json.loads(str(data["stats"]))
        meta = [TuneMeta((int(r[0]), int(r[1])), bool(r[2]), int(r[3]), int(r[4]), str(m))
                for r, m in zip(data["meta"], data["modes"])] if "meta" in data else []
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return Chorales(ids, [flat[:, bounds[i]:bounds[i + 1]] for i in range(len(lengths))], stats, meta)


def load_chorales(cache_dir: Path = DEFAULT_CACHE_DIR, workers: int = 2, progress: bool = True) -> Chorales:
    """The cached chorales, parsing (and caching) them first if the cache is missing."""
    path = cache_path(cache_dir)
    if path.exists():
        return read_chorales(path)
    data = parse_chorales(workers=workers, progress=progress)
    save_chorales(data, path)
    return data


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    c = load_chorales()
    print(f"{len(c.ids)} chorales in {time.perf_counter() - t0:.1f} s")
    print(json.dumps(c.stats, indent=1))
