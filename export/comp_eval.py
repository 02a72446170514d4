"""The comp through the live code path on held-out chorale melodies, Bach's own voices beside:
``python -m export.comp_eval [--split test] [--rhythm beat] [--figure docs/img/comp.png]``.

Each held-out chorale (the duet models' content split) is a song in its key and meter, ``mode = "comp"``, and its
soprano is the performer (``export.quality.live``: the setlist parser, ``build_modes``, the engine and the virtual
scheduler, exactly as ``liveperf play`` builds them; note-ons moved by a human's timing, ``--jitter-ms``). What the
comp sent on its channel is read back off the (virtual) wire at the middle of each step and compared on the beats
with the melody:

- **consonant with the melody on strong beats**, per voice (the lowest, middle and highest partner note: bass,
  tenor, alto; the comp never crosses its own voices): bass against the melody P1/m3/M3/P5/m6/M6, upper voices P4
  too. Strong beats: the bar line, and the middle of a bar of an even number of beats;
- **crossing**: beats where a voice is above the melody (Bach: where any two adjacent voices are out of order);
- **parallel fifths and octaves** per 100 beats between any two of the four voices, beat to beat;
- **chord present**: beats where the performer sounds and at least 3 partner notes sound;
- **timing**: partner onsets behind the performer's at the same step (ms), and the listening counters.
Bach's alto, tenor and bass get the same measures. Writes ``export/results/comp_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from export import duet_corpus, phrase_data
from export.quality import live, pianoroll
from export.quality.run import load_song_models
from liveperf.music import melody

ROOT = Path(__file__).resolve().parent.parent
BASS_OK = {0, 3, 4, 7, 8, 9}
UPPER_OK = BASS_OK | {5}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.comp_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=("valid", "test"))
    ap.add_argument("--rhythm", default="beat", choices=("beat", "half_bar", "bar", "model"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chorales", type=int, default=0, help="0 = all of the split")
    ap.add_argument("--jitter-ms", type=float, default=15.0, help="the performer's timing spread (sd)")
    ap.add_argument("--tempo", type=float, default=100.0)
    ap.add_argument("--comp-model", default="comp_dnn")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "export" / "results" / "comp_eval.json")
    return ap.parse_args(argv)


def wire_chords(sent, channel: int, step_ns: int, steps: int) -> list[list[int]]:
    """The partner's sounding pitches on ``channel`` at the middle of each step (sorted low to high)."""
    events = sorted((ns, i, data) for i, (ns, data) in enumerate(sent)
                    if len(data) == 3 and data[0] & 0x0F == channel and data[0] & 0xE0 == 0x80)
    out, sounding, e = [], set(), 0
    for step in range(steps):
        at = step * step_ns + step_ns // 2
        while e < len(events) and events[e][0] <= at:
            _, _, data = events[e]
            if data[0] & 0xF0 == 0x90 and data[2] > 0:
                sounding.add(data[1])
            else:
                sounding.discard(data[1])
            e += 1
        out.append(sorted(sounding))
    return out


def strong_positions(bar: int, spb: int) -> set[int]:
    beats = bar // spb
    return {0, bar // 2} if beats % 2 == 0 and beats > 1 else {0}


def figures(mel: np.ndarray, voices: list[list[int]], start: int, bar: int, spb: int) -> dict:
    """Counts over beats of one chorale: ``mel`` the soprano's sounding pitch per step (-1 silent), ``voices`` per
    step the partner pitches low to high (bass, tenor, alto when three)."""
    c = {"strong_beats": 0, "consonant": [0, 0, 0], "voiced": [0, 0, 0], "beats": 0, "crossing": 0,
         "parallels": 0, "melody_beats": 0, "chord_present": 0}
    strong = strong_positions(bar, spb)
    last = None
    for t in range(0, len(mel), spb):
        if (t % bar) % spb:
            continue
        m, v = int(mel[t]), voices[t]
        c["beats"] += 1
        if m >= 0:
            c["melody_beats"] += 1
            c["chord_present"] += len(v) >= 3
            if any(p > m for p in v):
                c["crossing"] += 1
            if t % bar in strong:
                c["strong_beats"] += 1
                for k, p in enumerate(v[:3] if len(v) >= 3 else []):
                    c["voiced"][k] += 1
                    c["consonant"][k] += ((m - p) % 12) in (BASS_OK if k == 0 else UPPER_OK)
        now = (list(v[:3]) + [m]) if len(v) >= 3 and m >= 0 else None
        if last is not None and now is not None:
            for i in range(4):
                for j in range(i + 1, 4):
                    a0, b0, a1, b1 = last[i], last[j], now[i], now[j]
                    if a0 == a1 or b0 == b1 or (a1 > a0) != (b1 > b0):
                        continue
                    if abs(b0 - a0) % 12 == abs(b1 - a1) % 12 and abs(b0 - a0) % 12 in (0, 7):
                        c["parallels"] += 1
        last = now
    return c


def bach_figures(chorale: np.ndarray, bar: int, spb: int, start: int) -> dict:
    """The same counts for Bach's own alto, tenor and bass (crossing: any two adjacent voices out of order)."""
    rows = [phrase_data.sounding_pitch(chorale[duet_corpus.ROW[n]].astype(np.int64))
            for n in ("soprano", "bass", "tenor", "alto")]
    mel = np.concatenate([np.full(start, -1), rows[0]])
    voices = [[] for _ in range(start)] + [[int(r[t]) for r in rows[1:] if r[t] >= 0] for t in range(len(rows[0]))]
    c = figures(mel, [sorted(v) for v in voices], start, bar, spb)
    crossing = 0
    for t in range(0, len(rows[0])):
        if ((t + start) % bar) % spb:
            continue
        s, b, te, a = (int(r[t]) for r in rows)
        if min(s, b, te, a) >= 0 and not (b <= te <= a <= s):
            crossing += 1
    c["crossing"] = crossing
    return c


def total(counts: list[dict]) -> dict:
    keys = counts[0].keys()
    out = {}
    for k in keys:
        vals = [c[k] for c in counts]
        out[k] = [sum(x) for x in zip(*vals)] if isinstance(vals[0], list) else sum(vals)
    return out


def rates(c: dict) -> dict:
    return {"consonant_on_strong_beats": {name: c["consonant"][k] / max(c["voiced"][k], 1)
                                          for k, name in enumerate(("bass", "tenor", "alto"))},
            "crossing_per_beat": c["crossing"] / max(c["melody_beats"], 1),
            "parallels_per_100_beats": 100 * c["parallels"] / max(c["beats"], 1),
            "chord_present": c["chord_present"] / max(c["melody_beats"], 1),
            "beats": c["beats"], "strong_beats": c["strong_beats"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    data = duet_corpus.load_chorales(progress=False)
    split = duet_corpus.content_split([c[duet_corpus.ROW["soprano"]] for c in data.tokens], 0)
    idx = split[args.split][:args.chorales or None]
    cache: dict = {}
    ours, bach, delays = [], [], []
    counters = {"listened": 0, "reactions": 0, "fallbacks": 0, "refed": 0, "chords": 0, "no_candidate": 0}
    roll = None
    for n, i in enumerate(idx):
        chorale, meta = data.tokens[i], data.meta[i]
        sop = chorale[duet_corpus.ROW["soprano"]].astype(np.int64)
        num, den = meta.meter
        meter = f"{num}/{den}" if meta.meter_known and den in (2, 4, 8, 16) else "4/4"
        song = live.make_song(key=live.key_name(meta.tonic_pc, meta.mode), meter=meter, mode="comp",
                              comp_rhythm=args.rhythm, seed=args.seed + n, tempo_bpm=args.tempo,
                              comp_model=args.comp_model, temperature=args.temperature)
        models = load_song_models(song, cache)
        spb = models.steps_per_beat
        bar = song.steps_per_bar(spb)
        start = live.first_bar_line(meta, bar)
        step_ns = int(round(60e9 / song.tempo_bpm / spb))
        events = live.performer_events(sop, start, step_ns, jitter_ns=int(args.jitter_ms * 1e6),
                                       rng=np.random.default_rng(args.seed + n))
        steps = start + len(sop) + 1
        played = live.play(song, models, events, steps)
        delays.append(live.onset_delays_ns(events, played.sent, song.channel - 1, step_ns))
        mode = played.engine.modes["comp"]
        for k in counters:
            counters[k] += getattr(mode, k) if k != "no_candidate" else mode.stats.no_candidate
        chords = wire_chords(played.sent, song.channel - 1, step_ns, steps)
        mel = np.concatenate([np.full(start, -1), phrase_data.sounding_pitch(sop), [-1]])
        ours.append(figures(mel, chords, start, bar, spb))
        bach.append(bach_figures(chorale, bar, spb, start))
        if roll is None:
            roll = (sop, chords, chorale, start, bar)
    d = np.concatenate(delays) / 1e6
    res = {"split": args.split, "rhythm": args.rhythm, "chorales": len(idx), "seed": args.seed,
           "tempo_bpm": args.tempo, "jitter_ms": args.jitter_ms, "temperature": args.temperature,
           "comp": rates(total(ours)), "bach": rates(total(bach)), "counters": counters,
           "delay_behind_performer_ms": {"p50": float(np.median(d)), "p90": float(np.percentile(d, 90)),
                                         "max": float(d.max()), "onsets": int(d.size)}}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(res))
    if args.figure is not None:
        res["figure"] = str(draw(roll, args.figure))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out} ({res['seconds']} s)")
    return 0


def table(res: dict) -> str:
    c, b = res["comp"], res["bach"]
    lines = [f"comp on {res['chorales']} {res['split']} chorales, rhythm {res['rhythm']} ({c['beats']} beats)",
             f"{'':34}{'liveperf':>10}{'Bach':>10}"]
    for v in ("bass", "tenor", "alto"):
        lines.append(f"{'consonant on strong beats, ' + v:34}{c['consonant_on_strong_beats'][v]:10.3f}"
                     f"{b['consonant_on_strong_beats'][v]:10.3f}")
    lines += [f"{'voice crossings per beat':34}{c['crossing_per_beat']:10.3f}{b['crossing_per_beat']:10.3f}",
              f"{'parallel 5ths/8ves per 100 beats':34}{c['parallels_per_100_beats']:10.2f}"
              f"{b['parallels_per_100_beats']:10.2f}",
              f"{'chord present (>= 3 notes)':34}{c['chord_present']:10.3f}{b['chord_present']:10.3f}",
              f"delay behind the performer: p50 {res['delay_behind_performer_ms']['p50']:.1f} ms, "
              f"p90 {res['delay_behind_performer_ms']['p90']:.1f} ms; counters {res['counters']}"]
    return "\n".join(lines)


def draw(roll, out: Path) -> Path:
    sop, chords, chorale, start, bar = roll
    n = min(len(sop), 8 * bar)
    tracks = [np.zeros(n, np.int64) for _ in range(3)]
    for v in range(3):  # the wire's chords as three lines, low to high (a note re-struck on a beat starts anew)
        last = None
        for t in range(n):
            ch = chords[start + t]
            p = ch[v] if len(ch) == 3 else None
            beat = t % 4 == (-start) % 4
            if p != last or (p is not None and beat and t > 0 and chords[start + t - 1] != ch):
                tracks[v][t] = melody.on(p) if p is not None else melody.OFF
            last = p
    lines = [("soprano (performer)", sop[:n], start, "performer")]
    for v, name in enumerate(("bass", "tenor", "alto")):
        lines.append(("liveperf comp" if v == 0 else None, tracks[v], start, "partner"))
    for v, name in enumerate(("bass", "tenor", "alto")):
        lines.append(("Bach's voices" if v == 0 else None, chorale[duet_corpus.ROW[name]][:n].astype(np.int64),
                      start, "real"))
    return pianoroll.save([{"steps_per_bar": bar, "title": "held-out chorale: soprano (blue) as the performer, "
                                                          "liveperf's comp (red), Bach's alto, tenor and bass (grey)",
                            "lines": lines}], out)


if __name__ == "__main__":
    raise SystemExit(main())
