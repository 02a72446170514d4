"""How well ``liveperf.music.key_finder`` hears the key: held-out folk tunes, alone and joined with a modulation.

```
python -m export.key_eval [--split test] [--json export/results/key_eval.json]
```

The melody models' content split (``export.clean_split``, seed 0; the model was trained on its training tunes and
its half-life chosen on the validation tunes), labelled by ``export.key_data.tune_key``. Printed:

- **After N bars**: the share of tunes whose estimate (``KeyFinder.estimate``) names the key, root and mode (minor
  and harmonic minor are one), after 1, 2, 4 and 8 full bars from the first downbeat (a pickup is heard too), for
  the shipped model and the Krumhansl-Kessler and Temperley profiles (major/minor only); also the share with the
  right scale (the partner's mask) whatever the tonic.
- **Modulations**: every labelled tune (its pickup and 8 bars from its first downbeat) joined at a bar line to
  another held-out tune of the same meter (8 bars from its first downbeat; its pickup left out, so the new key
  starts on the bar line with no silence before it), transposed up a tone, to the dominant, or (major tunes joined
  to a minor one) to the relative minor. A ``KeyFollower`` starting with no key is asked at every bar line, as the engine asks: the
  share of joins whose new key it names within 2 bars of the join, and its spurious changes (to a key that is not
  the true key of that moment) per 32 bars.
- The estimator's cost per step, p50 / p99 in microseconds: every step, steps between bar lines (fade and count),
  and bar lines (fade, count and the follower's question: the network's two layers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from export import clean_split, corpus as corpus_mod
from export.key_data import labelled, play, snapshots
from liveperf.music import melody
from liveperf.music.key_finder import FOLLOW_AUTO, KeyFinder, KeyFollower, KeyModel, candidate_index
from liveperf.music.scales import Key

ROOT = Path(__file__).resolve().parents[1]
SPB = 4
BARS = (1, 2, 4, 8)
SEGMENT_BARS = 8
WITHIN_BARS = 2
DEMO_TAKE = ROOT / "liveperf" / "data" / "takes" / "demo_hornpipe_g_to_a.mid"
JOINS = {"up a tone": 2, "to the dominant": 7, "to the relative minor": 9}


def after_bars(model: KeyModel, tunes) -> dict:
    right = {b: [] for b in BARS}
    scale_right = {b: [] for b in BARS}
    finders: dict[int, KeyFinder] = {}
    for tokens, bar, key, downbeat in tunes:
        finder = finders.setdefault(bar, KeyFinder(model, bar, SPB))
        snaps = snapshots(finder, tokens, downbeat + max(BARS))
        for b in BARS:
            if len(snaps) >= downbeat + b:  # snaps[k]: at bar line k + 1
                finder.heard[:] = snaps[downbeat + b - 1]
                est, _, _ = finder.estimate()
                right[b].append(candidate_index(est) == candidate_index(key))
                scale_right[b].append(set(est.pitch_classes) == set(key.pitch_classes))
    return {f"after_{b}_bars": {"key": round(float(np.mean(right[b])), 4),
                                "scale": round(float(np.mean(scale_right[b])), 4), "tunes": len(right[b])}
            for b in BARS}


def transposed(tokens: np.ndarray, semitones: int) -> np.ndarray | None:
    for shift in (semitones, semitones - 12, semitones + 12):
        out = melody.transpose_tokens(tokens, shift)
        if out is not None:
            return out
    return None


def follow_asks(follower: KeyFollower, bar: int, every: str = "bar"):
    """The engine's questions to the follower, asked at every beat: ``key_change_at = "beat"`` asks in full; "bar"
    asks in full at bar lines and, between them, only whether the key plainly does not fit (``ask_escape``)."""
    def ask(step: int) -> None:
        (follower.ask if every == "beat" or step % bar == 0 else follower.ask_escape)(step)
    return ask


def joins(model: KeyModel, tunes, seed: int, follower_args: dict, every: str = "bar") -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    spurious = bars_played = 0
    for name, up in JOINS.items():
        named, named4 = [], []
        for tokens, bar, key, downbeat in tunes:
            n = (downbeat + SEGMENT_BARS) * bar  # the first tune: its pickup, then 8 full bars
            if len(tokens) < n:
                continue
            if name == "to the relative minor":
                if key.scale != "major":
                    continue
                target_scale = "minor"
            else:
                target_scale = key.scale
            pool = [t for t in tunes if t.bar == bar and t.key.scale == target_scale
                    and len(t.tokens) >= (t.downbeat_bar + SEGMENT_BARS) * bar and t.tokens is not tokens]
            if not pool:
                continue
            b_tokens, _, b_key, b_downbeat = pool[int(rng.integers(len(pool)))]
            new_root = (key.root + up) % 12
            # The second tune from its first downbeat (its pickup left out): the modulation falls on the bar line.
            b_moved = transposed(b_tokens[b_downbeat * bar:(b_downbeat + SEGMENT_BARS) * bar],
                                 (new_root - b_key.root) % 12)
            if b_moved is None:
                continue
            truth_b = candidate_index(Key(new_root, b_key.scale))
            truth_a = candidate_index(key)
            song = np.concatenate([tokens[:n], b_moved])
            finder = KeyFinder(model, bar, SPB)
            follower = KeyFollower(finder, None, **{**FOLLOW_AUTO, **follower_args})
            play(finder, song, ask=follow_asks(follower, bar, every), ask_every=SPB)
            hit = hit4 = False
            for change in follower.changes:
                truth = truth_a if change.step <= n else truth_b
                if candidate_index(change.key) != truth:
                    spurious += 1
                elif change.step > n:
                    hit = hit or change.step <= n + WITHIN_BARS * bar
                    hit4 = hit4 or change.step <= n + 2 * WITHIN_BARS * bar
            named.append(hit)
            named4.append(hit4)
            bars_played += downbeat + 2 * SEGMENT_BARS
        out[name] = {"named_within_2_bars": round(float(np.mean(named)), 4) if named else None,
                     "named_within_4_bars": round(float(np.mean(named4)), 4) if named4 else None,
                     "joins": len(named)}
    all_named = [v["named_within_2_bars"] * v["joins"] for v in out.values() if v["joins"]]
    total = sum(v["joins"] for v in out.values())
    out["all"] = {"named_within_2_bars": round(sum(all_named) / total, 4) if total else None, "joins": total,
                  "spurious_changes_per_32_bars": round(32.0 * spurious / max(1, bars_played), 4),
                  "spurious_changes": spurious, "bars": bars_played}
    return out


def cost(model: KeyModel, tunes) -> dict:
    """Wall time of each step's work (the bar line's question, or a beat's whether the key plainly does not fit;
    then the fade and count), the tunes played as the engine hears them (``key_data.play``)."""
    step_us, ask_us = [], []
    for tokens, bar, _, _ in tunes[:200]:
        finder = KeyFinder(model, bar, SPB)
        follower = KeyFollower(finder, None, **FOLLOW_AUTO)
        fade = finder.on_step
        asked = [0]
        question = follow_asks(follower, bar)

        def ask(step: int) -> None:
            t0 = time.perf_counter_ns()
            question(step)
            asked[0] = time.perf_counter_ns() - t0

        def on_step(step: int) -> None:
            t0 = time.perf_counter_ns()
            fade(step)
            took = (time.perf_counter_ns() - t0 + asked[0]) / 1e3
            (ask_us if step % bar == 0 else step_us).append(took)
            asked[0] = 0

        finder.on_step = on_step
        play(finder, tokens, ask=ask, ask_every=SPB)
    every = step_us + ask_us
    return {"all_steps_us": {"p50": round(float(np.percentile(every, 50)), 2),
                             "p99": round(float(np.percentile(every, 99)), 2)},
            "step_us": {"p50": round(float(np.percentile(step_us, 50)), 2),
                        "p99": round(float(np.percentile(step_us, 99)), 2)},
            "ask_us": {"p50": round(float(np.percentile(ask_us, 50)), 2),
                       "p99": round(float(np.percentile(ask_us, 99)), 2)}}


def take_figure(take: Path, out: Path, tempo_steps_per_beat: int = SPB, bar: int = 16) -> list:
    """Draw the performer's take (a piano roll), the key the follower plays in bar by bar and the best estimate's
    confidence at each bar line: the shipped take of the key-following demo song. Returns the key changes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mido

    mid = mido.MidiFile(take)
    step_ticks = mid.ticks_per_beat / tempo_steps_per_beat
    notes, held, tick = [], {}, 0
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            held[msg.note] = round(tick / step_ticks)
        elif msg.type in ("note_on", "note_off") and msg.note in held:
            notes.append((held.pop(msg.note), round(tick / step_ticks), msg.note))
    end = max(e for _, e, _ in notes) + bar
    finder = KeyFinder(KeyModel.load(), bar, tempo_steps_per_beat)
    follower = KeyFollower(finder, None, **FOLLOW_AUTO)
    events = sorted([(s, 1, p) for s, _, p in notes] + [(e, 0, p) for _, e, p in notes])
    asks, i = [], 0
    for step in range(end):
        if step % bar == 0:
            follower.ask(step)
            est, p, _ = finder.estimate()
            asks.append((step, est, p, follower.key))
        finder.on_step(step)
        while i < len(events) and events[i][0] <= step:
            s, is_on, pitch = events[i]
            (finder.note_on if is_on else finder.note_off)(pitch, s)
            i += 1
    fig, (ax, cx) = plt.subplots(2, 1, figsize=(12, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    for s, e, p in notes:
        ax.add_patch(plt.Rectangle((s / bar, p - 0.4), (e - s) / bar, 0.8, color="#1f4e79"))
    lo, hi = min(p for *_, p in notes) - 3, max(p for *_, p in notes) + 3
    colours = {}
    for k, (step, _, _, key) in enumerate(asks):
        if key is None:
            continue
        colour = colours.setdefault(str(key), ("#fde2c4", "#d4ecd4", "#dcd6f7", "#f7d6e0")[len(colours) % 4])
        ax.axvspan(step / bar, step / bar + 1, color=colour, zorder=0)
        if k == 0 or asks[k - 1][3] != key:
            ax.text(step / bar + 0.05, hi - 1, f"the partner plays in {key}", fontsize=9, va="top")
    ax.set_ylim(lo, hi)
    ax.set_ylabel("performer (MIDI pitch)")
    ax.set_title(f"key = \"auto\": {take.name} (two phrases in G major, two up a tone); the key follows at bar lines")
    cx.plot([s / bar for s, *_ in asks], [p for _, _, p, _ in asks], "o-", color="#333333", ms=3)
    for s, est, p, _ in asks:
        if p >= 0.5:
            cx.annotate(str(est).replace(" major", "").replace(" minor", "m"), (s / bar, p), fontsize=7,
                        xytext=(0, 4), textcoords="offset points", ha="center")
    cx.axhline(FOLLOW_AUTO["enter"], color="#b22222", lw=0.8, ls="--")
    cx.set_ylim(0, 1.15)
    cx.set_ylabel("best estimate\nconfidence")
    cx.set_xlabel("bar")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [(c.step // bar, str(c.key), round(c.confidence, 3)) for c in follower.changes]


def partner_in_key(tunes, limit: int, bars: int = 16, change_at: str = "bar") -> dict:
    """Through the live path (``export.quality.live``: the show's engine, modes and key follower in virtual time):
    each tune played by the performer in a duet song with ``key = "auto <wrong key>"``, the starting key a tritone
    away from the tune's; the share of the partner's notes after the first 2 bars (2 full bars from the tune's
    first downbeat) that lie in the tune's key."""
    from export.quality import live
    from liveperf.modes.build import SongModels

    inside = total = before = before_total = inside4 = total4 = 0
    played_tunes = 0
    cache: dict = {}
    for tokens, bar, key, downbeat in tunes:
        if played_tunes >= limit or len(tokens) < bars * bar or bar not in (8, 12, 16):
            continue
        wrong = Key((key.root + 6) % 12, key.scale)
        meter = {8: "2/4", 12: "6/8", 16: "4/4"}[bar]
        song = live.make_song(key=f"auto {wrong}", meter=meter, mode="duet", seed=played_tunes,
                              pitch_range=[36, 84], key_change_at=change_at)
        models = SongModels.load(song, ROOT, "cpu", cache)
        step_ns = int(round(60e9 / song.tempo_bpm / models.steps_per_beat))
        played = live.play(song, models, live.performer_events(tokens[:bars * bar], 0, step_ns), bars * bar)
        for ns, data in played.sent:
            if data[0] & 0xF0 == 0x90 and data[2] > 0 and data[0] & 0x0F == song.channel - 1:
                after = ns >= (downbeat + 2) * bar * step_ns  # 2 full bars from the first downbeat
                ok = key.contains(data[1])
                inside += after and ok
                total += after
                before += (not after) and ok
                before_total += not after
                later = ns >= (downbeat + 4) * bar * step_ns
                inside4 += later and ok
                total4 += later
        played_tunes += 1
    return {"tunes": played_tunes, "partner_notes_after_2_bars": total,
            "in_the_tunes_key_after_2_bars": round(inside / max(1, total), 4),
            "in_the_tunes_key_in_the_first_2_bars": round(before / max(1, before_total), 4),
            "in_the_tunes_key_after_4_bars": round(inside4 / max(1, total4), 4)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.key_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=("test", "valid"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=None, help="a key model JSON (default: the shipped one)")
    ap.add_argument("--enter", type=float, default=None, help="KeyFollower enter (default: the follower's)")
    ap.add_argument("--margin", type=float, default=None)
    ap.add_argument("--hold", type=int, default=None)
    ap.add_argument("--escape", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None, help="default export/results/key_eval.json for --split test")
    ap.add_argument("--live-tunes", type=int, default=100,
                    help="tunes played through the live path with a wrong starting key (0: skip)")
    ap.add_argument("--figure", type=Path, default=None, help="draw the key-following demo take here (PNG)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    corpus = corpus_mod.load_corpus()
    split = clean_split.split_by_content(corpus.tokens, args.seed)
    tunes = labelled(corpus, split[args.split])
    model = KeyModel.load() if args.model is None else KeyModel.load(args.model)
    follower_args = {k: v for k, v in (("enter", args.enter), ("margin", args.margin), ("hold", args.hold),
                                       ("escape", args.escape)) if v is not None}
    result = {"command": "python -m export.key_eval", "split": args.split, "tunes": len(tunes),
              "estimators": {m.name: after_bars(m, tunes)
                             for m in (model, KeyModel.classic("krumhansl"), KeyModel.classic("temperley"))},
              "follower": follower_args or "defaults",
              "modulations": joins(model, tunes, args.seed, follower_args),
              "modulations_changes_at_beats": joins(model, tunes, args.seed, follower_args, every="beat"),
              "partner_in_key": partner_in_key(tunes, args.live_tunes) if args.live_tunes else None,
              "partner_in_key_changes_at_beats": (partner_in_key(tunes, args.live_tunes, change_at="beat")
                                                  if args.live_tunes else None),
              "cost": cost(model, tunes)}
    if args.figure is not None:
        result["demo_take_changes"] = take_figure(DEMO_TAKE, args.figure)
        print(f"{args.figure}: key changes over the demo take (bar, key, confidence): {result['demo_take_changes']}")
    for name, rows in result["estimators"].items():
        print(f"{name:>40}: " + "  ".join(f"{k.replace('_', ' ')} {v['key']:.3f} (scale {v['scale']:.3f})"
                                          for k, v in rows.items()))
    for name, row in result["modulations"].items():
        print(f"modulation {name}: {row}")
    print(f"modulations, key_change_at = \"beat\": {result['modulations_changes_at_beats']['all']}")
    print(f"partner in key (live path, key = \"auto <a tritone off>\"): {result['partner_in_key']}")
    print(f"the same, key_change_at = \"beat\": {result['partner_in_key_changes_at_beats']}")
    print(f"cost: {result['cost']}")
    out = args.json if args.json is not None else (ROOT / "export" / "results" / "key_eval.json"
                                                   if args.split == "test" else None)
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
