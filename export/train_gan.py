"""Train, evaluate and export the 2-bar phrase GAN (WGAN-GP): ``python -m export.train_gan``.

Data as the VAE's (``export.phrase_data``: beat-aligned 32-step windows of the folk corpus, the melody DNN's split
by tune, a random transposition per window). The critic compares one-hot real phrases with the generator's phrases
as ``--relax`` shows them (default ``st``: the one-hot argmax -- the phrase the runtime plays -- with straight-through
gradients, so the critic cannot tell real from fake by softness); ``--critic-steps`` critic updates (with a gradient
penalty, weight ``--gp``) per generator update, Adam (betas 0.5/0.9) as in Gulrajani et al. 2017. The generator's
loss adds statistics matching against the real batch (``export.gan_model.phrase_features``): ``--leap-weight`` x
|leap rate gap| (intervals larger than a fifth), ``--scale-weight`` x the in-scale rate shortfall,
``--rhythm-weight`` x (|onsets per step gap| + |repeated-note rate gap|) and
``--sharpen`` x mean -log p(argmax) so that low-temperature sampling stays near the argmax. The first GAN
(``--relax softmax --leap-weight 0 --scale-weight 0 --sharpen 0 --steps 3000 --threads 1``) had 23 % leaps and an
in-scale rate of 0.86, and ranking by its critic raised copies of training windows (0.8 % -> 5 %).

Figures (``export.phrase_data.phrase_stats``, with ``leap_rate`` and the share of phrases found verbatim among the
training windows) on 1,000 argmax phrases from z ~ N(0, I), the best of 8 argmax candidates by the critic (as the
runtime's ``GanModel.best_of``) and 1,000 per-step samples, next to 1,000 held-out real
phrases (test tunes) and two baselines sampled from counts on the training tunes (unigram: each step drawn from the
token frequencies; bigram: the first token from the training windows' first tokens, then add-k bigram); pitch-class
statistics are key-normalised (each phrase's best major/minor key -> tonic 0) and compared with the valid phrases.
Writes the generator and critic ONNX files with metadata and ``export/results/melody_gan.json``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export import ngram, phrase_data
from export.gan_model import (CRITIC_INPUTS, CRITIC_OUTPUTS, GENERATOR_INPUTS, GENERATOR_OUTPUTS, RELAXATIONS,
                              PhraseCritic, PhraseGenerator, export_critic, export_generator, gradient_penalty,
                              phrase_features, relax)
from export.train_melody import seed_everything
from export.train_vae import command_line, folk_split
from export.vae_model import OPSET, num_params
from export.results_io import write_results
from liveperf.music import melody
from liveperf.models.metadata import build_metadata

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "liveperf" / "data" / "models"
DEFAULT_RESULTS = ROOT / "export" / "results" / "melody_gan.json"
QUICK_DIR = ROOT / "export" / "runs" / "quick"
SAMPLES = 1000
BEST_OF_K = 8  # as the runtime's GanModel.best_of is used


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.train_gan", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="generator updates (default 4000; quick 30)")
    ap.add_argument("--critic-steps", type=int, default=4)
    ap.add_argument("--gp", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=25.0, help="safety cap on training time (breaks determinism)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--relax", choices=RELAXATIONS, default="st",
                    help="what the critic sees of a generated phrase (export.gan_model.relax)")
    ap.add_argument("--leap-weight", type=float, default=10.0,
                    help="weight of |leap rate(fake) - leap rate(real)| per batch in the generator loss")
    ap.add_argument("--scale-weight", type=float, default=10.0,
                    help="weight of max(0, in-scale rate(real) - in-scale rate(fake)) per batch")
    ap.add_argument("--rhythm-weight", type=float, default=3.0,
                    help="weight of |onsets per step gap| + |repeated-note rate gap| per batch")
    ap.add_argument("--sharpen", type=float, default=0.1,
                    help="weight of the mean -log softmax(argmax) (with --relax st the critic sees only the argmax; "
                         "this keeps the distribution peaked there, so low-temperature sampling plays it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke run: ryansMammoth only, 30 generator updates")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 30 if args.quick else 4000
    args.out_dir = args.out_dir or (QUICK_DIR if args.quick else MODELS)
    args.results = args.results or (QUICK_DIR / "melody_gan.json" if args.quick else DEFAULT_RESULTS)
    return args


def one_hot(tokens: torch.Tensor) -> torch.Tensor:
    return F.one_hot(tokens, melody.NUM_CLASSES).float()


def train(args, sampler: phrase_data.WindowSampler, log):
    gen, critic = PhraseGenerator(latent=args.latent), PhraseCritic()
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(0.5, 0.9))
    rng = np.random.default_rng(args.seed + 1)
    pairs, cursor = sampler.epoch(rng), 0
    history, t0, capped = [], time.perf_counter(), False
    sums = np.zeros(6)
    bar = tqdm(total=args.steps, desc="train GAN", unit="G step", mininterval=2.0)
    for step in range(args.steps):
        for _ in range(args.critic_steps):
            if cursor + args.batch > len(pairs):
                pairs, cursor = sampler.epoch(rng), 0
            real = one_hot(torch.from_numpy(sampler.batch(pairs[cursor:cursor + args.batch], rng)))
            cursor += args.batch
            with torch.no_grad():
                fake = relax(gen(torch.randn(len(real), args.latent)), args.relax)
            wdist = critic(real).mean() - critic(fake).mean()
            gp = gradient_penalty(critic, real, fake)
            loss_c = -wdist + args.gp * gp
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        logits = gen(torch.randn(args.batch, args.latent))
        fake = relax(logits, args.relax)
        loss_g = -critic(fake).mean()
        feats_f = phrase_features(fake)
        with torch.no_grad():
            feats_r = phrase_features(real)
        leap_gap = (feats_f["leap_rate"] - feats_r["leap_rate"]).abs()
        scale_gap = (feats_r["in_scale_rate"] - feats_f["in_scale_rate"]).clamp(min=0.0)
        sharp = -torch.log_softmax(logits, -1).max(-1).values.mean()
        rhythm_gap = ((feats_f["onset_rate"] - feats_r["onset_rate"]).abs()
                      + (feats_f["repeat_rate"] - feats_r["repeat_rate"]).abs())
        loss_g = (loss_g + args.leap_weight * leap_gap + args.scale_weight * scale_gap
                  + args.rhythm_weight * rhythm_gap + args.sharpen * sharp)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        sums += (wdist.item(), gp.item(), float(torch.exp(-sharp)),
                 float(feats_f["leap_rate"]), float(feats_f["in_scale_rate"]), 1)
        bar.update(1)
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            m = sums[:5] / sums[5]
            history.append({"step": step + 1, "wasserstein_estimate": m[0], "gp": m[1], "mean_max_prob": m[2],
                            "leap_rate": m[3], "in_scale_rate": m[4], "minutes": (time.perf_counter() - t0) / 60})
            log(f"G step {step + 1}: W {m[0]:.3f} gp {m[1]:.3f} max prob {m[2]:.3f} leaps {m[3]:.3f} "
                f"in scale {m[4]:.3f}")
            sums[:] = 0
        if time.perf_counter() - t0 > args.minutes * 60:
            capped = True
            log(f"WARNING: --minutes {args.minutes} reached at step {step + 1}; not reproducible")
            break
    bar.close()
    gen.eval()
    critic.eval()
    return gen, critic, {"steps_done": step + 1, "time_capped": capped, "history": history,
                         "minutes": (time.perf_counter() - t0) / 60}


def baseline_phrases(train_tunes: list[np.ndarray], train_windows: np.ndarray, n: int,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unigram and bigram phrases sampled from counts on the training tunes (see the module docstring)."""
    flat = np.concatenate(train_tunes).astype(np.int64)
    uni = np.bincount(flat, minlength=melody.NUM_CLASSES) + 0.01
    uni = uni / uni.sum()
    unigram = rng.choice(melody.NUM_CLASSES, size=(n, phrase_data.PHRASE_STEPS), p=uni)
    table = ngram.AddKBigram(0.01).fit(train_tunes).table()
    first = np.bincount(train_windows[:, 0], minlength=melody.NUM_CLASSES) + 0.01
    bigram = np.zeros((n, phrase_data.PHRASE_STEPS), np.int64)
    bigram[:, 0] = rng.choice(melody.NUM_CLASSES, size=n, p=first / first.sum())
    cdf = np.cumsum(table, axis=1)
    for t in range(1, phrase_data.PHRASE_STEPS):
        u = rng.random(n)[:, None]
        bigram[:, t] = np.minimum((cdf[bigram[:, t - 1]] < u * cdf[bigram[:, t - 1], -1:]).sum(axis=1),
                                  melody.NUM_CLASSES - 1)
    return {"unigram": np.stack([melody.canonical(p) for p in unigram]),
            "bigram_addk": np.stack([melody.canonical(p) for p in bigram])}


@torch.no_grad()
def evaluate(gen, critic, tunes: dict, latent: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    valid = phrase_data.eval_windows(tunes["valid"])
    test = phrase_data.eval_windows(tunes["test"])
    ref = np.array(phrase_data.phrase_stats(valid)["degree_hist"])
    z = torch.from_numpy(rng.standard_normal((SAMPLES, latent)).astype(np.float32))
    logits = gen(z)
    gan_argmax = np.stack([melody.canonical(p) for p in logits.argmax(-1).numpy()])
    # best-of-K by the critic, as GanModel.best_of: K argmax candidates from fresh z, keep the highest score
    zk = torch.from_numpy(rng.standard_normal((SAMPLES * BEST_OF_K, latent)).astype(np.float32))
    cands = np.stack([melody.canonical(p) for p in gen(zk).argmax(-1).numpy()])
    scores = critic(one_hot(torch.from_numpy(cands))).numpy().reshape(SAMPLES, BEST_OF_K)
    gan_best = cands.reshape(SAMPLES, BEST_OF_K, -1)[np.arange(SAMPLES), scores.argmax(1)]
    gan_sampled = torch.distributions.Categorical(logits=logits).sample().numpy()
    gan_sampled = np.stack([melody.canonical(p) for p in gan_sampled])
    train_windows = phrase_data.eval_windows(tunes["train"])
    sets = {"held_out_real": test[rng.choice(len(test), min(SAMPLES, len(test)), replace=False)],
            "gan_argmax": gan_argmax, f"gan_best_of_{BEST_OF_K}": gan_best, "gan_sampled_t1": gan_sampled,
            **baseline_phrases(tunes["train"], train_windows, SAMPLES, rng)}
    # memorisation check: phrases that occur verbatim among the training windows (in the key they were written in)
    train_set = {p.tobytes() for p in train_windows}
    out = {}
    for name, phrases in sets.items():
        stats = phrase_data.phrase_stats(phrases, ref)
        stats["critic_score_mean"] = float(critic(one_hot(torch.from_numpy(phrases))).mean())
        stats["copied_from_train_windows_rate"] = float(np.mean([p.tobytes() in train_set for p in phrases]))
        out[name] = stats
    out["reference"] = {"degree_hist_valid": [round(float(x), 4) for x in ref], "valid_phrases": len(valid)}
    return out


def stats_table(metrics: dict) -> str:
    cols = ["leap_rate", "in_scale_rate", "copied_from_train_windows_rate", "empty_step_rate", "js_degree_hist",
            "pitch_range", "repeated_note_rate", "onsets_per_phrase", "distinct_rate", "critic_score_mean"]
    lines = [f"{'set':16}" + "".join(f"{c[:12]:>13}" for c in cols)]
    for name, s in metrics.items():
        if name != "reference":
            lines.append(f"{name:16}" + "".join(f"{s[c]:13.4f}" for c in cols))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        tqdm.write(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}")

    corpora, tunes, split_info = folk_split(args.quick, args.seed)
    sampler = phrase_data.WindowSampler(tunes["train"])
    split_info["train_windows_per_epoch"] = sampler.num_windows
    gen, critic, info = train(args, sampler, log)
    metrics = {"samples": evaluate(gen, critic, tunes, args.latent, args.seed + 2),
               "notes": f"{SAMPLES} phrases per set; real = random non-overlapping windows of test tunes "
                        "(untransposed); degree histogram JS divergence (bits) against the valid windows"}
    print(stats_table(metrics["samples"]))
    training_data = {"corpora": list(corpora), "source": f"music21 {__import__('music21').__version__} corpus (ABC)",
                     "windows": "32 steps, beat-aligned, re-struck first note, all-silent skipped; random "
                                "transposition -6..+5 per training window"}
    training = {
        "command": command_line("python -m export.train_gan", argv), "seed": args.seed, "steps": args.steps,
        "steps_done": info["steps_done"], "time_capped": info["time_capped"],
        "minutes_training": round(info["minutes"], 2), "batch": args.batch, "critic_steps": args.critic_steps,
        "gp_weight": args.gp, "relax": args.relax, "leap_weight": args.leap_weight,
        "scale_weight": args.scale_weight, "rhythm_weight": args.rhythm_weight,
        "sharpen_weight": args.sharpen, "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "params": {"generator": num_params(gen), "critic": num_params(critic)},
        "model": {"generator": gen.config, "critic": critic.config}, "phrase_steps": gen.steps,
        "latent_dim": gen.latent, "z_prior": "standard normal",
        "optimizer": {"name": "Adam", "lr": args.lr, "betas": [0.5, 0.9]}, "history": info["history"],
        "opset": OPSET,
    }
    common = dict(steps_per_beat=melody.DEFAULT_STEPS_PER_BEAT, training_data=training_data, split=split_info,
                  metrics=metrics, training=training)
    g_path = export_generator(gen, args.out_dir / "melody_gan_generator.onnx", build_metadata(
        name="melody_gan_generator", family="gan_generator", inputs=GENERATOR_INPUTS, outputs=GENERATOR_OUTPUTS,
        **common))
    c_path = export_critic(critic, args.out_dir / "melody_gan_critic.onnx", build_metadata(
        name="melody_gan_critic", family="gan_critic", inputs=CRITIC_INPUTS, outputs=CRITIC_OUTPUTS, **common))
    write_results(args.results, {"files": {p.name: p.stat().st_size for p in (g_path, c_path)}},
                  training_data=training_data, split=split_info, metrics=metrics, training=training, t_start=t_start)
    log(f"wrote {g_path}, {c_path} and {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
