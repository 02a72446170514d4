"""The music-quality harness: ``python -m export.quality`` (see ``export/README.md``, "Music-quality harness").

What a performer hears, measured through the live code path (``export.quality.live``: setlist song -> shipped
models -> engine -> modes -> virtual wire) on held-out music, with the real music's own figures beside ours:

- call and response on held-out folk tunes (the content-clean split of ``export.clean_split``): the performer plays
  2 bars of a tune (a *call*, starting on a bar line), stops, the partner answers; the tune's own next 2 bars are
  the real answer. Per answer: beat reuse of the call (exact, and up to transposition), cadence (last note on a
  beat, in the tonic triad), answered at all, longest re-strike run, in-key share (and again with the key mask off:
  the model's own in-key share), longest copy of a training passage (``CopyIndex``, all transpositions);
- duet on held-out Bach chorales: the soprano as the performer, the partner as the bass; strong-beat consonance,
  onsets per beat, parallel 5ths/8ves per 100 beats, with Bach's own bass beside it;
- NLL per step and per note of the melody model on the held-out tunes, fed as the live stepper feeds it, next to
  the n-gram baselines of its training run (same split, same targets);
- piano-roll PNGs of four exchanges and a duet passage.

Writes JSON (``--out``) and PNGs (``--figures``) and prints the table. Deterministic for ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from export import clean_split, corpus as corpus_mod, duet_corpus
from export.quality import live, measures, pianoroll
from export.quality.copies import CopyIndex
from liveperf.music import melody
from liveperf.modes.build import SongModels

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "export" / "results" / "music_quality.json"
DEFAULT_FIGURES = ROOT / "docs" / "img"
CALL_BARS = 2
EXCHANGES_PER_TUNE = 4


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.quality", description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("test", "valid"), default="test",
                    help="held-out tunes to play (tune the answer planner on valid, report test)")
    ap.add_argument("--tunes", type=int, default=200, help="held-out folk tunes for call and response")
    ap.add_argument("--chorales", type=int, default=0, help="held-out chorales for the duet (0 = all)")
    ap.add_argument("--melody-model", default="melody_dnn", help="shipped name or .onnx path")
    ap.add_argument("--duet-model", default="duet_dnn", help="the duet mode's model: shipped name or .onnx path")
    ap.add_argument("--duet-predictor", default="soprano_dnn",
                    help="the duet's predictor of the performer: shipped name or .onnx path")
    ap.add_argument("--only", choices=("call_response", "duet"), default=None,
                    help="measure one mode only (tuning runs); the table needs both")
    ap.add_argument("--candidates", type=int, default=None,
                    help="answer candidates planned per answer (0 = draw step by step); default: the setlist's")
    ap.add_argument("--performer-jitter-ms", type=float, default=15.0,
                    help="the duet's soprano, played by a human: each note-on moved by a normal draw of this many "
                         "ms (standard deviation; 0 = exactly on the grid)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--figures", type=Path, default=DEFAULT_FIGURES)
    ap.add_argument("--label", default="", help="a name for this run in the JSON (e.g. 'before')")
    ap.add_argument("--no-figures", action="store_true")
    return ap.parse_args(argv)


def load_song_models(song, cache: dict) -> SongModels:
    """The song's models as ``liveperf play`` loads them (each file once per harness run)."""
    return SongModels.load(song, None, cache=cache)


# ---- call and response -------------------------------------------------------------------------------------------
def exchanges_of(tokens: np.ndarray, meta) -> list[int]:
    """Steps of the tune where a call (2 bars) and its real answer (2 bars) start: every 4 bars from the first bar
    line, up to ``EXCHANGES_PER_TUNE``, each call with at least 3 notes."""
    bar = meta.steps_per_bar()
    out = []
    c = meta.downbeat_step
    while c + 2 * CALL_BARS * bar <= len(tokens) and len(out) < EXCHANGES_PER_TUNE:
        if (tokens[c:c + CALL_BARS * bar] >= melody.PITCH_OFFSET).sum() >= 3:
            out.append(c)
        c += 2 * CALL_BARS * bar
    return out


def song_fields(meta, tokens: np.ndarray, seed: int, args, chromatic: bool = False) -> dict:
    ps = tokens[tokens >= melody.PITCH_OFFSET].astype(int) - melody.PITCH_OFFSET
    key = live.key_name(meta.tonic_pc, meta.mode)
    if chromatic:
        key = key.split()[0] + " chromatic"
    num, den = meta.meter
    meter = f"{num}/{den}" if meta.meter_known and den in (2, 4, 8, 16) and 1 <= num <= 32 else "4/4"
    fields = {"key": key, "meter": meter, "mode": "call_response", "model": args.melody_model, "seed": seed,
              "duet_model": args.duet_model,
              "pitch_range": [int(min(48, ps.min())), int(max(84, ps.max()))], "response_bars": CALL_BARS}
    if args.candidates is not None:
        fields["answer_candidates"] = args.candidates
    return fields


def play_calls(tokens, meta, seed, args, models_cache, chromatic=False, extra: dict | None = None):
    """Play the tune's calls through the live path; returns [(call, call_song_start, answer, real, answer_start)].
    ``extra``: more song fields (e.g. the style knobs)."""
    starts = exchanges_of(tokens, meta)
    if not starts:
        return [], None
    song = live.make_song(**song_fields(meta, tokens, seed, args, chromatic), **(extra or {}))
    models = load_song_models(song, models_cache)
    bar = song.steps_per_bar(models.steps_per_beat)
    call_len = CALL_BARS * bar
    gap = -(-(song.silence_steps + call_len + models.steps_per_beat) // bar) * bar
    step_ns = int(round(60e9 / song.tempo_bpm / models.steps_per_beat))
    events, placed, pos = [], [], 0
    for c in starts:
        call = tokens[c:c + call_len].astype(np.int64)
        events += live.performer_events(call, pos, step_ns)
        placed.append((c, pos))
        pos += call_len + gap
    played = live.play(song, models, events, pos)
    out = []
    for c, p in placed:
        call = tokens[c:c + call_len].astype(np.int64)
        real = tokens[c + call_len:c + 2 * call_len].astype(np.int64)
        answer = played.partner[p + call_len:p + call_len + gap]
        out.append((call, p, answer, real, p + call_len))
    return out, song


def call_response(tunes, metas, train_tunes, args, models_cache) -> tuple[dict, list]:
    ours, real, unmasked, copies, real_copies, rolls = [], [], [], [], [], []
    index = CopyIndex(train_tunes)
    t0 = time.perf_counter()
    for i, (tokens, meta) in enumerate(zip(tunes, metas)):
        ex, song = play_calls(tokens, meta, args.seed + i, args, models_cache)
        if not ex:
            continue
        key = song.key
        for call, cs, answer, real_answer, a_start in ex:
            ours.append(measures.answer_figures(call, cs, answer, a_start, key))
            real.append(measures.answer_figures(call, cs, real_answer, a_start, key))
            copies.append(index.longest_copy(answer))
            real_copies.append(index.longest_copy(real_answer))
            if len(rolls) < 4 and (call >= melody.PITCH_OFFSET).sum() >= 6 and all(r[-1] != i for r in rolls):
                rolls.append((call, cs, answer, real_answer, a_start, song.steps_per_bar(4), i))  # busy calls, 4 tunes
        ex_chrom, _ = play_calls(tokens, meta, args.seed + i, args, models_cache, chromatic=True)
        for call, cs, answer, _, a_start in ex_chrom:
            unmasked.append(measures.answer_figures(call, cs, answer, a_start, key))
    elapsed = time.perf_counter() - t0
    result = {
        "partner": measures.sum_answers(ours), "real_continuation": measures.sum_answers(real),
        "partner_without_key_mask": {"in_key": measures.sum_answers(unmasked).get("in_key", 0.0)},
        "longest_training_copy_steps": {"partner_max": int(max(copies, default=0)),
                                        "partner_p99": float(np.percentile(copies, 99)) if copies else 0.0,
                                        "partner_share_2_bars_or_more": float(np.mean(np.array(copies) >= 32))
                                        if copies else 0.0,
                                        "real_max": int(max(real_copies, default=0)),
                                        "lengths_indexed": list(index.lengths)},
        "tunes": len(tunes), "seconds": round(elapsed, 1),
    }
    return result, rolls


# ---- duet ----------------------------------------------------------------------------------------------------
def duet(chorales, metas, args, models_cache) -> tuple[dict, list]:
    ours, bach, rolls, delays, listening = [], [], [], [], [0, 0]
    sop_row, bass_row = duet_corpus.ROW["soprano"], duet_corpus.ROW["bass"]
    for i, (c, meta) in enumerate(zip(chorales, metas)):
        sop, bass = c[sop_row].astype(np.int64), c[bass_row].astype(np.int64)
        song = live.chorale_duet_song(meta, bass, args.seed + i, duet_model=args.duet_model,
                                      duet_predictor=args.duet_predictor)
        models = load_song_models(song, models_cache)
        bar = song.steps_per_bar(models.steps_per_beat)
        start = live.first_bar_line(meta, bar)
        num, den = meta.meter
        step_ns = int(round(60e9 / song.tempo_bpm / models.steps_per_beat))
        events = live.performer_events(sop, start, step_ns, jitter_ns=int(args.performer_jitter_ms * 1e6),
                                       rng=np.random.default_rng(args.seed + i))
        played = live.play(song, models, events, start + len(sop) + 1)
        delays.append(live.onset_delays_ns(events, played.sent, song.channel - 1, step_ns))
        mode = played.engine.modes["duet"]
        listening[0] += mode.listened
        listening[1] += mode.reactions
        partner = played.partner[start:start + len(sop)]
        compound = den == 8 and num % 3 == 0
        ours.append(measures.duet_figures(sop, partner, start, bar, compound=compound))
        bach.append(measures.duet_figures(sop, bass, start, bar, compound=compound))
        if not rolls:
            rolls.append((sop, partner, bass, start, bar))
    d = np.concatenate(delays) / 1e6 if delays else np.zeros(0)
    timing = {"performer_jitter_ms": args.performer_jitter_ms, "listened_steps": listening[0],
              "reactions": listening[1],
              "partner_onsets_with_the_performer": int(d.size),
              "delay_behind_performer_ms": {"p50": float(np.median(d)), "p90": float(np.percentile(d, 90)),
                                            "max": float(d.max())} if d.size else None}
    return {"partner": measures.sum_duets(ours), "bach": measures.sum_duets(bach), "chorales": len(chorales),
            "timing": timing}, rolls


# ---- likelihood ------------------------------------------------------------------------------------------------
def melody_nll(tunes, metas, args, models_cache) -> dict:
    """NLL of every held-out tune's tokens 1..T-1, fed to the live stepper as call and response feeds it."""
    from liveperf.models.onnx_model import load_model, resolve_model_path
    from liveperf.models.step_model import OnnxStepper

    model = load_model(resolve_model_path(args.melody_model, None))
    total = steps = notes = 0.0
    for tokens, meta in zip(tunes, metas):
        stepper = OnnxStepper(model, meta.meter if meta.meter_known else (1, 1))
        t = tokens.astype(np.int64)
        for k in range(len(t) - 1):
            logits = stepper.feed(int(t[k]), k - meta.downbeat_step).astype(np.float64)
            m = logits.max()
            total -= logits[t[k + 1]] - m - np.log(np.exp(logits - m).sum())
        steps += len(t) - 1
        notes += int((t[1:] >= melody.PITCH_OFFSET).sum())
    return {"nll_per_step": total / steps, "nll_per_note": total / notes, "steps": int(steps), "notes": int(notes)}


def baselines_of(results_json: Path) -> dict:
    if not results_json.exists():
        return {}
    data = json.loads(results_json.read_text())
    test = data.get("metrics", {}).get("test", {})
    return {name: {"nll_per_step": m["nll"], "nll_per_note": m.get("nll_per_note")} for name, m in test.items()}


# ---- main ------------------------------------------------------------------------------------------------------
def table(res: dict) -> str:
    cr, du = res["call_response"], res["duet"]
    p, r = cr["partner"], cr["real_continuation"]
    rows = [
        ("answer beat reuse of the call (exact / shape)", f"{p['reuse_exact']:.3f} / {p['reuse_shape']:.3f}",
         f"{r['reuse_exact']:.3f} / {r['reuse_shape']:.3f} (tune's continuation)"),
        ("answers ending on a cadence", f"{p['cadence']:.3f}", f"{r['cadence']:.3f}"),
        ("calls answered / longest re-strike run", f"{p['answered']:.1%} / {p['restrike_run_max']}",
         f"— / {r['restrike_run_max']}"),
        ("in-key share (with mask / model alone)", f"{p['in_key']:.3f} / {cr['partner_without_key_mask']['in_key']:.3f}",
         f"{r['in_key']:.3f}"),
        ("longest copy of a training passage (steps, max)", f"{cr['longest_training_copy_steps']['partner_max']}",
         f"{cr['longest_training_copy_steps']['real_max']}"),
        ("melody NLL per step / per note", f"{res['melody_nll']['nll_per_step']:.3f} / "
                                           f"{res['melody_nll']['nll_per_note']:.3f}", "—"),
        ("duet strong-beat consonance", f"{du['partner']['strong_beat_consonance']:.3f}",
         f"{du['bach']['strong_beat_consonance']:.3f} (Bach's bass)"),
        ("duet onsets per beat", f"{du['partner']['onsets_per_beat']:.2f}", f"{du['bach']['onsets_per_beat']:.2f}"),
        ("duet parallel 5ths/8ves per 100 beats", f"{du['partner']['parallels_per_100_beats']:.2f}",
         f"{du['bach']['parallels_per_100_beats']:.2f}"),
    ]
    tm = du.get("timing") or {}
    if tm.get("delay_behind_performer_ms"):
        d = tm["delay_behind_performer_ms"]
        rows.append((f"duet onset behind the performer's, same step (ms p50 / p90 / max; performer timing sd "
                     f"{tm['performer_jitter_ms']:g} ms)", f"{d['p50']:.1f} / {d['p90']:.1f} / {d['max']:.1f}",
                     "—"))
    out = ["| measure | liveperf (live path) | real music |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    for name, b in res.get("baselines", {}).items():
        if b.get("nll_per_note") is not None and name != "melody_dnn":
            out.append(f"| {name} NLL per step / per note (same split) | {b['nll_per_step']:.3f} / "
                       f"{b['nll_per_note']:.3f} | — |")
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    corpus = corpus_mod.load_corpus()
    split = clean_split.split_by_content(corpus.tokens, args.seed)
    held = [i for i in split[args.split] if corpus.meta[i].tonic_pc >= 0]
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.permutation(held)[:args.tunes].tolist()) if args.tunes else held
    tunes = [corpus.tokens[i] for i in chosen]
    metas = [corpus.meta[i] for i in chosen]
    train_tunes = [corpus.tokens[i] for i in split["train"]]
    cache: dict = {}
    res = {"label": args.label, "split": args.split, "seed": args.seed, "melody_model": args.melody_model,
           "duet_model": args.duet_model, "duet_predictor": args.duet_predictor, "candidates": args.candidates, "content_split": split["stats"]}
    cr_rolls = du_rolls = []
    if args.only != "duet":
        res["call_response"], cr_rolls = call_response(tunes, metas, train_tunes, args, cache)
        print(f"call and response: {json.dumps(res['call_response'])}", flush=True)
        if args.only:
            return _finish(res, args, t0, cr_rolls, du_rolls)

    chorales = duet_corpus.load_chorales(progress=False)
    csplit = duet_corpus.content_split([c[duet_corpus.ROW["soprano"]] for c in chorales.tokens], args.seed)
    cidx = csplit[args.split][:args.chorales or None]
    res["duet"], du_rolls = duet([chorales.tokens[i] for i in cidx], [chorales.meta[i] for i in cidx], args, cache)
    print(f"duet: {json.dumps(res['duet'])}", flush=True)
    if args.only:
        return _finish(res, args, t0, cr_rolls, du_rolls)
    res["melody_nll"] = melody_nll([corpus.tokens[i] for i in split[args.split]],
                                   [corpus.meta[i] for i in split[args.split]], args, cache)
    res["baselines"] = baselines_of(ROOT / "export" / "results" / "melody_dnn.json")
    return _finish(res, args, t0, cr_rolls, du_rolls)


def _finish(res: dict, args, t0: float, cr_rolls, du_rolls) -> int:
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.no_figures and not args.only:
        res["figures"] = figures(cr_rolls, du_rolls, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    if not args.only:
        print(table(res))
    print(f"wrote {args.out} ({res['seconds']} s)")
    return 0


def figures(cr_rolls, du_rolls, args) -> list[str]:
    tag = f"-{args.label}" if args.label else ""
    panels = []
    for call, cs, answer, real, a_start, bar, tune in cr_rolls:
        panels.append({"steps_per_bar": bar, "title": f"held-out tune {tune}: call (blue), liveperf's answer (red), "
                                                      f"the tune's own continuation (grey)",
                       "lines": [("call", call, cs, "performer"), ("answer", answer, a_start, "partner"),
                                 ("tune's continuation", real, a_start, "real")]})
    out = [str(pianoroll.save(panels, args.figures / f"call_response{tag}.png"))]
    if du_rolls:
        sop, partner, bass, start, bar = du_rolls[0]
        n = min(len(sop), 8 * bar)
        out.append(str(pianoroll.save([{"steps_per_bar": bar, "title": "held-out chorale: soprano (blue) as the "
                                                                       "performer, liveperf's bass (red), Bach's bass (grey)",
                                        "lines": [("soprano", sop[:n], start, "performer"),
                                                  ("liveperf bass", partner[:n], start, "partner"),
                                                  ("Bach's bass", bass[:n], start, "real")]}],
                                      args.figures / f"duet{tag}.png")))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
