"""The style knobs and restyling, measured through the live phrase generator: ``python -m export.style_eval``.

Both parts make phrases as phrase mode does on stage (``liveperf.modes.phrase.VaePhrases.next_phrase`` with the
settings a setlist song gives, ``settings_for``: the song's key mask and range, temperature 0.9, top-p 0.95), with
the shipped VAE and its directions. Attributes are ``liveperf.music.style.attributes``.

Knobs: ``--phrases`` latent draws (``latent = "random"``, song in C major, range 48-84; sampler seeds from
``--knob-seeds-from``, 1000: the knobs' strengths were chosen on seeds 0..199), each decoded with one knob at -1, -0.5,
0, 0.5, 1 (the same draw and sampler stream at every position). Per knob: the commanded attribute's mean
per position; Spearman's rho between knob and attribute pooled over all phrases, the median over phrases of each
phrase's own rho across the 5 positions, and rho of the 5 means; every attribute's move from -1 to +1 in standard
deviations of real phrases (the held-out windows), and the largest other move over the commanded one; the in-key share
before the key mask (the same draws decoded in "C chromatic", each phrase's best major/minor scale, as
``export.phrase_data.phrase_stats`` measures it).

GAN knobs: the same with the GAN (best of 12, as club_night's GAN song): the knobs choose among its candidates
instead of the critic, and register moves the chosen line along the scale as far as the range lets it.

Restyle: ``--phrases`` 2-bar windows of held-out tunes (the content-clean test split, or ``--split valid``, less any
tune the VAE trained on), each a performer's last 2 bars in a song in the tune's own key; ``latent = "restyle"`` with each knob at -1
and +1. Per knob and direction: the share of phrases whose attribute moved the commanded way, against the performer's
phrase and against the restyle with every knob at 0; the contour correlation (Pearson, the sounding pitch per step
where both sound) between the performer's phrase and the restyled one. ``--figure`` draws one phrase restyled by each
knob. Seeded; about a minute on the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from export import clean_split, corpus as corpus_mod, melody_data, phrase_data
from export.quality import live, pianoroll
from liveperf.music import melody, sampler, style
from liveperf.models.phrase_models import GanModel, VaeModel
from liveperf.modes.phrase import GanPhrases, VaePhrases
from liveperf.modes.settings import settings_for
from liveperf.music.style import STYLE_KNOBS, attributes_of

ROOT = Path(__file__).resolve().parent.parent
POSITIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)
FLOOR = {"density": 0.0, "register": 0.0, "range": 0.0, "mood": -2.0, "syncopation": 0.0}  # lowest values


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share theirs)."""
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(ranks(a[ok]), ranks(b[ok]))[0, 1])


def with_knob(settings, knob: str, value: float):
    knobs = [0.0] * len(STYLE_KNOBS)
    knobs[STYLE_KNOBS.index(knob)] = value
    return replace(settings, style=tuple(knobs))


def phrases(source: VaePhrases, settings, history: np.ndarray, seeds: list[int]) -> np.ndarray:
    """One phrase per seed (each seed its own sampler stream), through the live generator."""
    return np.stack([source.next_phrase(settings, history, sampler.new_rng_state(s)) for s in seeds])


def held_out(seed: int, n: int, rng: np.random.Generator, split: str = "test"):
    """(window, tune meta) pairs: ``n`` 2-bar windows of ``split`` tunes the VAE never trained on (module
    docstring)."""
    corpus = corpus_mod.load_corpus(corpus_mod.CORPORA)
    vae_train = set(int(i) for i in melody_data.split_by_tune(len(corpus.tokens), seed)["train"])
    test = [int(i) for i in clean_split.split_by_content(corpus.tokens, seed)[split]
            if int(i) not in vae_train and corpus.meta[int(i)].tonic_pc >= 0]
    pool = []
    for i in test:
        for w in phrase_data.eval_windows([corpus.tokens[i]]):
            if (w >= melody.PITCH_OFFSET).sum() >= 4:
                pool.append((w, corpus.meta[i]))
    pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[k] for k in sorted(pick)], len(test)


def contour_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of the sounding pitches where both sound (``liveperf.music.style.contour_corr``); no contour to
    follow counts as not following it (0)."""
    return float(style.contour_corr(a, np.asarray(b)[None])[0])


def knob_figures(source, n: int, real_sd: np.ndarray, first_seed: int = 0, model: str = "vae") -> dict:
    """The knobs through ``source`` (``VaePhrases``; or ``GanPhrases`` with ``model`` "gan": best of 12, as
    club_night's GAN song)."""
    extra = {"latent": "random"} if model == "vae" else {"candidates": 12}
    song = live.make_song(key="C major", mode="phrase", phrase_model=model, pitch_range=[48, 84], **extra)
    spb = (source.vae if model == "vae" else source.gan).steps_per_beat
    base = settings_for(song, spb)
    open_ = settings_for(replace(song, key=live.make_song(key="C chromatic").key), spb)
    silent = np.zeros(source.phrase_steps, dtype=np.int64)
    out = {}
    for knob in STYLE_KNOBS:
        i = STYLE_KNOBS.index(knob)
        attrs, in_key = [], []
        for p in POSITIONS:
            seeds = list(range(first_seed, first_seed + n))
            attrs.append(attributes_of(phrases(source, with_knob(base, knob, p), silent, seeds)))
            unmasked = phrases(source, with_knob(open_, knob, p), silent, seeds)
            in_key.append(phrase_data.phrase_stats(unmasked)["in_scale_rate"])
        a = np.stack(attrs)  # [positions, n, attributes]
        means = np.nanmean(a, axis=1)
        moves = (means[-1] - means[0]) / real_sd
        others = np.delete(np.abs(moves), i)
        per_phrase = [spearman(POSITIONS, a[:, k, i]) for k in range(n)]
        out[knob] = {"mean_by_position": [round(float(m), 3) for m in means[:, i]],
                     "rho_pooled": spearman(np.repeat(POSITIONS, n), a[:, :, i].ravel()),
                     "rho_per_phrase_median": float(np.nanmedian(per_phrase)),
                     "rho_of_means": spearman(POSITIONS, means[:, i]),
                     "moves_sd": dict(zip(STYLE_KNOBS, np.round(moves, 3).tolist())),
                     "largest_other_over_commanded": float(others.max() / max(abs(moves[i]), 1e-9)),
                     "in_key_before_mask_by_position": [round(float(x), 3) for x in in_key]}
    return out


def generator_stats(source: VaePhrases, n: int = 1000, first_seed: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the attributes of the VAE's own phrases with every knob at 0 (``n`` draws, the
    knobs' song): what ``liveperf.music.style.ATTRIBUTE_MEAN`` / ``ATTRIBUTE_SD`` hold (a knob's target scale)."""
    song = live.make_song(key="C major", mode="phrase", phrase_model="vae", latent="random", pitch_range=[48, 84])
    a = attributes_of(phrases(source, settings_for(song, source.vae.steps_per_beat),
                              np.zeros(source.phrase_steps, dtype=np.int64), list(range(first_seed, first_seed + n))))
    return np.nanmean(a, axis=0), np.nanstd(a, axis=0)


def restyle_figures(source: VaePhrases, windows, figure: Path | None) -> dict:
    out = {knob: {} for knob in STYLE_KNOBS}
    contour = {knob: [] for knob in STYLE_KNOBS}
    panels = []
    for w_i, (window, meta) in enumerate(windows):
        song = live.make_song(key=live.key_name(meta.tonic_pc, meta.mode), mode="phrase", phrase_model="vae",
                              latent="restyle", pitch_range=[36, 96])
        s = settings_for(song, source.vae.steps_per_beat)
        plain = source.next_phrase(s, window, sampler.new_rng_state(w_i))
        a_perf, a_plain = attributes_of([window])[0], attributes_of([plain])[0]
        rolls = [("performer", window, 0, "performer")]
        for knob in STYLE_KNOBS:
            i = STYLE_KNOBS.index(knob)
            for sign in (-1.0, 1.0):
                line = source.next_phrase(with_knob(s, knob, sign), window, sampler.new_rng_state(w_i))
                a = attributes_of([line])[0][i]
                rec = out[knob].setdefault("up" if sign > 0 else "down", {"vs_performer": [], "vs_plain": [],
                                                                          "vs_performer_movable": []})
                right = bool(np.sign(a - a_perf[i]) == sign)
                rec["vs_performer"].append(right)
                rec["vs_plain"].append(bool(np.sign(a - a_plain[i]) == sign))
                if sign > 0 or a_perf[i] > FLOOR[knob]:  # a phrase with no syncopation cannot lose any
                    rec["vs_performer_movable"].append(right)
                contour[knob].append(contour_corr(window, line))
                if w_i == 0 and figure is not None:
                    rolls.append((f"{knob} {sign:+.0f}", line, 0, "partner"))
        if w_i == 0 and figure is not None:
            panels = [{"lines": [rolls[0], r], "steps_per_bar": 16, "title": f"performer's 2 bars and restyled: {r[0]}"}
                      for r in rolls[1:]]
    res = {}
    for knob in STYLE_KNOBS:
        res[knob] = {d: {k: float(np.mean(v)) for k, v in rec.items()} for d, rec in out[knob].items()}
        res[knob]["down"]["movable"] = len(out[knob]["down"]["vs_performer_movable"])
        res[knob]["contour_corr_median"] = float(np.median(contour[knob]))
        res[knob]["contour_corr_mean"] = float(np.mean(contour[knob]))
    if panels:
        pianoroll.save(panels, figure, width=11.0)
    return res


def answer_figures(n_tunes: int, seed: int, split: str, real_sd: np.ndarray) -> dict:
    """Call and response with one knob at -1, 0 and +1 (the answer plan picks among its candidates by the knobs;
    ``liveperf.modes.answer_plan.style_score``): the harness's calls of ``n_tunes`` held-out tunes (the content
    split, as ``export.quality`` plays them), the answers' attributes. The candidates are the same at every knob
    value (the knobs only choose), so each answer is compared with the same call's answer at 0."""
    from export.quality import run as harness
    args = harness.parse_args(["--split", split, "--seed", str(seed)])
    corpus = corpus_mod.load_corpus(corpus_mod.CORPORA)
    held = [int(i) for i in clean_split.split_by_content(corpus.tokens, seed)[split]
            if corpus.meta[int(i)].tonic_pc >= 0][:n_tunes]
    cache: dict = {}

    def answers(extra: dict) -> np.ndarray:
        out = []
        for k, i in enumerate(held):
            ex, _ = harness.play_calls(corpus.tokens[i], corpus.meta[i], seed + k, args, cache, extra=extra)
            out += [attributes_of([a])[0] for _, _, a, _, _ in ex]
        return np.stack(out)
    plain = answers({})
    res = {"answers": int(len(plain))}
    for knob in STYLE_KNOBS:
        i = STYLE_KNOBS.index(knob)
        lo, hi = answers({f"style_{knob}": -1.0}), answers({f"style_{knob}": 1.0})
        means = [float(np.nanmean(x[:, i])) for x in (lo, plain, hi)]
        changed_hi = np.isfinite(hi[:, i]) & np.isfinite(plain[:, i]) & (hi[:, i] != plain[:, i])
        changed_lo = np.isfinite(lo[:, i]) & np.isfinite(plain[:, i]) & (lo[:, i] != plain[:, i])
        res[knob] = {"mean_at_-1_0_+1": [round(m, 3) for m in means],
                     "move_sd": round((means[2] - means[0]) / float(real_sd[i]), 3),
                     "changed_share": round(float((changed_hi | changed_lo).mean()), 3),
                     "right_way_of_changed": round(float(np.mean(np.concatenate([
                         hi[changed_hi, i] > plain[changed_hi, i], lo[changed_lo, i] < plain[changed_lo, i]]))), 3)
                     if (changed_hi | changed_lo).any() else None}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.style_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--phrases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--knob-seeds-from", type=int, default=1000,
                    help="the knobs' latent draws use sampler seeds from here (the selection's strengths were chosen "
                         "on draws 0..199)")
    ap.add_argument("--split", choices=("test", "valid"), default="test",
                    help="held-out tunes for restyle (the steering strengths were chosen on valid)")
    ap.add_argument("--json", type=Path, default=ROOT / "export" / "results" / "style_eval.json")
    ap.add_argument("--figure", type=Path, default=None, help="PNG: one held-out phrase restyled by each knob")
    ap.add_argument("--answer-tunes", type=int, default=60,
                    help="held-out tunes for the knobs in call and response's answers (0: skip)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    windows, tunes = held_out(args.seed, args.phrases, rng, args.split)
    real = attributes_of(np.stack([w for w, _ in windows]))
    real_sd, real_mean = np.nanstd(real, axis=0), np.nanmean(real, axis=0)
    source = VaePhrases(VaeModel.load())
    res = {"phrases": args.phrases, "split": args.split, "held_out_tunes": tunes, "positions": list(POSITIONS),
           "real_mean": dict(zip(STYLE_KNOBS, np.round(real_mean, 3).tolist())),
           "real_sd": dict(zip(STYLE_KNOBS, np.round(real_sd, 3).tolist())),
           "generated_at_0": dict(zip(("mean", "sd"), (np.round(x, 4).tolist() for x in generator_stats(source)))),
           "knob_seeds_from": args.knob_seeds_from,
           "knobs": knob_figures(source, args.phrases, real_sd, args.knob_seeds_from),
           "restyle": restyle_figures(source, windows, args.figure),
           "gan_knobs": knob_figures(GanPhrases(GanModel.load()), args.phrases, real_sd, args.knob_seeds_from, "gan")}
    if args.answer_tunes:
        res["answers"] = answer_figures(args.answer_tunes, args.seed, args.split, real_sd)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"Real held-out 2-bar phrases ({len(windows)}, from {tunes} tunes): " + ", ".join(
        f"{k} {res['real_mean'][k]:.2f} (sd {res['real_sd'][k]:.2f})" for k in STYLE_KNOBS))
    print(f"The VAE's own phrases, every knob at 0 (liveperf.music.style.ATTRIBUTE_MEAN / _SD): mean "
          f"{res['generated_at_0']['mean']}, sd {res['generated_at_0']['sd']}")
    print("| knob | mean at -1 .. +1 | rho pooled / per phrase (median) / of means | largest other move / own "
          "| in-key before mask |")
    for k, f in res["knobs"].items():
        print(f"| {k} | {' '.join(f'{m:.2f}' for m in f['mean_by_position'])} | {f['rho_pooled']:.2f} / "
              f"{f['rho_per_phrase_median']:.2f} / {f['rho_of_means']:.2f} | {f['largest_other_over_commanded']:.2f} "
              f"| {min(f['in_key_before_mask_by_position']):.3f}-{max(f['in_key_before_mask_by_position']):.3f} |")
    print("| GAN knob (best of 12) | mean at -1 .. +1 | rho pooled / per phrase / of means | largest other / own "
          "| in-key before mask |")
    for k, f in res["gan_knobs"].items():
        print(f"| {k} | {' '.join(f'{m:.2f}' for m in f['mean_by_position'])} | {f['rho_pooled']:.2f} / "
              f"{f['rho_per_phrase_median']:.2f} / {f['rho_of_means']:.2f} | {f['largest_other_over_commanded']:.2f} "
              f"| {min(f['in_key_before_mask_by_position']):.3f}-{max(f['in_key_before_mask_by_position']):.3f} |")
    print("| restyle | down: right way vs performer / vs plain / of those that can go down | up: vs performer / vs "
          "plain | contour corr median |")
    for k, f in res["restyle"].items():
        print(f"| {k} | {f['down']['vs_performer']:.2f} / {f['down']['vs_plain']:.2f} / "
              f"{f['down']['vs_performer_movable']:.2f} ({f['down']['movable']}) | {f['up']['vs_performer']:.2f}"
              f" / {f['up']['vs_plain']:.2f} | {f['contour_corr_median']:.2f} |")
    if "answers" in res:
        print(f"| call and response, {res['answers']['answers']} answers | mean at -1 / 0 / +1 | move (sd) | answers "
              f"changed | right way, of those |")
        for k in STYLE_KNOBS:
            f = res["answers"][k]
            right = f"{f['right_way_of_changed']:.2f}" if f["right_way_of_changed"] is not None else "—"
            print(f"| {k} | {' / '.join(f'{m:.2f}' for m in f['mean_at_-1_0_+1'])} | {f['move_sd']:.2f} | "
                  f"{f['changed_share']:.2f} | {right} |")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{res['seconds']} s; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
