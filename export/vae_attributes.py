"""Fit the style knobs' latent directions for the shipped VAE and write them into its decoder's metadata:
``python -m export.vae_attributes``.

Data: the VAE's own training tunes (``export.train_vae.folk_split``: the melody DNN's split by tune, seed 0), less
every tune of the content-clean split's valid and test groups (``export.clean_split``), so no tune the style
evaluation (``export.style_eval``) plays is seen here. ``--windows`` random beat-aligned 2-bar windows, each in a
random key as in training, are encoded (the encoder's mean) and measured (``liveperf.music.style.attributes``).

Fit: the code is regressed on all five attributes, standardised, together (least squares, ``mu ~ A B + c``); row
``B_i`` is how the mean code moves per standard deviation of attribute ``i`` with the other four held, and the
direction of a latent knob (``liveperf.music.style.LATENT_KNOBS``) is ``KNOB_SPAN_SD x B_i``. (The other way round, a
read-out of the attributes from the code inverted by its pseudo-inverse, gave directions the decoder hardly
noticed: a knob at +-1 moved the decoded density by 0.2 standard deviations.)
Mix: each of the five means (three latent directions, two logit steers: ``liveperf.music.style``) also moves the other
attributes (more notes spread wider). ``calibrate`` measures, through the live generator on prior phrases, how far
each means moves every attribute, and inverts that, so that a knob drives the means in the mix that moves its own
attribute and, to first order, no other.

Writes the key ``liveperf.attribute_directions`` (directions and mix) into the decoder ONNX file (every other byte
of the model as it was) and ``export/results/vae_attributes.json``. Seeded; about a minute on the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from export import clean_split, corpus as corpus_mod, melody_data, phrase_data
from liveperf.models.metadata import PREFIX
from export.quality import live
from liveperf.music import sampler
from liveperf.models.phrase_models import VaeModel
from liveperf.modes.phrase import VaePhrases
from liveperf.modes.settings import settings_for
from liveperf.music.style import KNOB_SPAN_SD, LATENT_KNOBS, METADATA_KEY, STYLE_KNOBS, attributes_of

ROOT = Path(__file__).resolve().parent.parent
DECODER = ROOT / "liveperf" / "data" / "models" / "melody_vae_decoder.onnx"
RESULTS = ROOT / "export" / "results" / "vae_attributes.json"


def fit_tunes(seed: int = 0) -> list[np.ndarray]:
    """The VAE's training tunes less the content split's held-out groups (module docstring)."""
    corpus = corpus_mod.load_corpus(corpus_mod.CORPORA)
    by_tune = melody_data.split_by_tune(len(corpus.tokens), seed)
    held = clean_split.split_by_content(corpus.tokens, seed)
    out = set(int(i) for i in held["test"]) | set(int(i) for i in held["valid"])
    return [corpus.tokens[i] for i in by_tune["train"] if int(i) not in out]


def encode(vae: VaeModel, phrases: np.ndarray, batch: int = 512) -> np.ndarray:
    return np.concatenate([vae.encode(phrases[a:a + batch])[0] for a in range(0, len(phrases), batch)])


def fit(mu: np.ndarray, attrs: np.ndarray) -> tuple[np.ndarray, dict]:
    """Directions float32 [latent knobs, latent] and the fit's figures (see the module docstring)."""
    mean, sd = attrs.mean(axis=0), attrs.std(axis=0)
    a = np.concatenate([(attrs - mean) / sd, np.ones((len(attrs), 1))], axis=1)
    b = np.linalg.lstsq(a, mu, rcond=None)[0][:-1]  # [attributes, latent]
    resid = mu - a @ np.linalg.lstsq(a, mu, rcond=None)[0]
    rows = [STYLE_KNOBS.index(k) for k in LATENT_KNOBS]
    directions = (KNOB_SPAN_SD * b[rows]).astype(np.float32)
    figures = {"attribute_mean": dict(zip(STYLE_KNOBS, mean.round(4).tolist())),
               "attribute_sd": dict(zip(STYLE_KNOBS, sd.round(4).tolist())),
               "code_variance_explained": round(float(1.0 - resid.var(axis=0).sum() / mu.var(axis=0).sum()), 3),
               "direction_norm_per_sd": dict(zip(STYLE_KNOBS, np.linalg.norm(b, axis=1).round(3).tolist()))}
    return directions, figures


def write_directions(decoder: Path, directions: np.ndarray | None, mix: np.ndarray | None = None) -> None:
    """Set (or, with None, remove) the style entry of the decoder ONNX file, keeping every other key and the graph
    as they are."""
    import onnx

    proto = onnx.load(str(decoder))
    key = PREFIX + METADATA_KEY
    for i in reversed(range(len(proto.metadata_props))):
        if proto.metadata_props[i].key == key:
            del proto.metadata_props[i]
    if directions is not None:
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = json.dumps({"knobs": list(LATENT_KNOBS),
                                  "directions": [[round(float(v), 5) for v in row] for row in directions],
                                  "mix": [[round(float(v), 4) for v in row] for row in mix]})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(decoder))


def calibrate(decoder: Path, sd: np.ndarray, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """(moves [attributes, means], mix): how far each means alone moves every attribute (in standard deviations of
    the fit phrases, per unit), over ``draws`` prior phrases through the live generator (seeds from 10,000: the
    style evaluation draws from 0), and the mix that makes knob i move attribute i as its own means does and the
    others, to first order, not at all: ``inv(moves) @ diag(moves)``."""
    source = VaePhrases(VaeModel.load(decoder=decoder))
    song = live.make_song(key="C major", mode="phrase", phrase_model="vae", latent="random", pitch_range=[48, 84])
    settings = settings_for(song, source.vae.steps_per_beat)
    silent = np.zeros(source.phrase_steps, dtype=np.int64)
    moves = np.zeros((len(STYLE_KNOBS), len(STYLE_KNOBS)))
    for i in range(len(STYLE_KNOBS)):
        ends = []
        for sign in (-1.0, 1.0):
            u = np.zeros(len(STYLE_KNOBS), dtype=np.float32)
            u[i] = sign
            out = []
            for seed in range(10_000, 10_000 + draws):
                rng_state = sampler.new_rng_state(seed)
                out.append(source.decode(source.latent(settings, silent, rng_state), u, settings, rng_state))
            ends.append(np.nanmean(attributes_of(np.stack(out)), axis=0))
        moves[:, i] = (ends[1] - ends[0]) / 2 / sd
    return moves, np.linalg.inv(moves) @ np.diag(np.diag(moves))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.vae_attributes", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=30000)
    ap.add_argument("--draws", type=int, default=400, help="prior phrases per calibration point")
    ap.add_argument("--decoder", type=Path, default=DECODER)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    sampler = phrase_data.WindowSampler(fit_tunes(args.seed))
    phrases = sampler.batch(sampler.epoch(rng)[:args.windows], rng)
    write_directions(args.decoder, None)  # an entry from an earlier run (or runtime) must not stop the load
    vae = VaeModel.load(decoder=args.decoder)
    mu = encode(vae, phrases)
    attrs = attributes_of(phrases)
    keep = np.isfinite(attrs).all(axis=1)
    directions, figures = fit(mu[keep], attrs[keep])
    write_directions(args.decoder, directions, np.eye(len(STYLE_KNOBS)))
    moves, mix = calibrate(args.decoder, attrs[keep].std(axis=0), args.draws)
    write_directions(args.decoder, directions, mix)
    res = {"windows": int(keep.sum()), "seed": args.seed, "knob_span_sd": KNOB_SPAN_SD, **figures,
           "calibration_draws": args.draws, "moves_per_unit_sd": np.round(moves, 3).tolist(), "mix": np.round(mix, 4).tolist()}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(res, indent=1) + "\n")
    for k in STYLE_KNOBS:
        print(f"{k:<12} mean {figures['attribute_mean'][k]:7.3f}  sd {figures['attribute_sd'][k]:7.3f}  code moves "
              f"{figures['direction_norm_per_sd'][k]:.2f} per sd" + ("" if k in LATENT_KNOBS else "  (steered)"))
    print("moves per unit of each means (columns), in sd of the fit phrases:\n" + "\n".join(
        f"  {k:<12}" + " ".join(f"{v:6.2f}" for v in row) for k, row in zip(STYLE_KNOBS, moves)))
    print(f"wrote {args.decoder} ({PREFIX}{METADATA_KEY}) and {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
