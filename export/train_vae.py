"""Train, evaluate and export the 2-bar phrase VAE: ``python -m export.train_vae``.

Data: 32-step beat-aligned windows of the folk corpus (``export.phrase_data``), the melody DNN's split by tune
(``split_by_tune(len, seed)``), a random transposition per window. Loss per phrase: cross-entropy summed over the
32 steps + beta * KL, with beta annealed linearly from 0 over the first ``--anneal`` of training and *free bits*
(each latent dimension's batch-mean KL counts at least ``--free-bits`` nats), so the encoder cannot collapse to the
prior. Held-out figures (test tunes, untransposed): argmax reconstruction from mu (the decoder is
non-autoregressive, so there is no teacher forcing), KL per phrase, active units (Cov_x(E[z|x]) > 0.01), a 10-step
interpolation check and statistics of phrases decoded from the prior. Writes the encoder and decoder ONNX files
with metadata and ``export/results/melody_vae.json``. ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export import corpus as corpus_mod, melody_data, phrase_data
from export.train_melody import seed_everything, warmup_cosine_lr
from export.vae_model import (DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, OPSET, PhraseVAE,
                              export_decoder, export_encoder, num_params)
from export.results_io import write_results
from liveperf.music import melody
from liveperf.models.metadata import build_metadata

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "liveperf" / "data" / "models"
DEFAULT_RESULTS = ROOT / "export" / "results" / "melody_vae.json"
QUICK_DIR = ROOT / "export" / "runs" / "quick"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.train_vae", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seeds the split, the window stream and the weights")
    ap.add_argument("--steps", type=int, default=None, help="training batches (default 3000; quick 100)")
    ap.add_argument("--minutes", type=float, default=25.0, help="safety cap on training time (breaks determinism)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--beta", type=float, default=0.2, help="final KL weight")
    ap.add_argument("--anneal", type=float, default=0.3, help="fraction of training over which beta rises from 0")
    ap.add_argument("--free-bits", type=float, default=0.1, help="nats per latent dimension (batch mean)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the two ONNX files go")
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke run: ryansMammoth only, 100 batches")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 100 if args.quick else 3000
    args.out_dir = args.out_dir or (QUICK_DIR if args.quick else MODELS)
    args.results = args.results or (QUICK_DIR / "melody_vae.json" if args.quick else DEFAULT_RESULTS)
    return args


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per example and dimension, nats: [B, Z]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@torch.no_grad()
def encode_all(model: PhraseVAE, phrases: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    mus, lvs = [], []
    for a in range(0, len(phrases), batch):
        mu, lv = model.encoder(torch.from_numpy(phrases[a:a + batch]))
        mus.append(mu.numpy())
        lvs.append(lv.numpy())
    return np.concatenate(mus), np.concatenate(lvs)


@torch.no_grad()
def decode_argmax(model: PhraseVAE, z: np.ndarray, batch: int = 1024) -> np.ndarray:
    out = [model.decoder(torch.from_numpy(z[a:a + batch].astype(np.float32))).argmax(-1).numpy()
           for a in range(0, len(z), batch)]
    return np.concatenate(out)


@torch.no_grad()
def evaluate(model: PhraseVAE, phrases: np.ndarray, rng: np.random.Generator) -> dict:
    """Held-out figures on ``phrases`` [N, 32] (see the module docstring)."""
    model.eval()
    mu, lv = encode_all(model, phrases)
    logits = torch.cat([model.decoder(torch.from_numpy(mu[a:a + 1024])) for a in range(0, len(mu), 1024)])
    target = torch.from_numpy(phrases)
    recon_nll = float(F.cross_entropy(logits.reshape(-1, melody.NUM_CLASSES), target.reshape(-1),
                                      reduction="sum")) / len(phrases)
    pred = logits.argmax(-1).numpy()
    hit = pred == phrases
    onset = phrases >= melody.PITCH_OFFSET
    kl = kl_per_dim(torch.from_numpy(mu), torch.from_numpy(lv)).numpy()
    var_mu = mu.var(axis=0)
    # interpolation: 200 random pairs, 11 points (10 steps) of linear interpolation between their mu, argmax decode
    pairs = rng.choice(len(phrases), size=(200, 2), replace=True)
    ts = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    changes, end_diff = [], []
    for a, b in pairs:
        zs = (1 - ts)[:, None] * mu[a] + ts[:, None] * mu[b]
        dec = decode_argmax(model, zs)
        changes.extend((dec[1:] != dec[:-1]).sum(axis=1).tolist())
        end_diff.append(int((dec[0] != dec[-1]).sum()))
    prior = decode_argmax(model, rng.standard_normal((1000, model.latent)).astype(np.float32))
    prior_stats = phrase_data.phrase_stats(np.stack([melody.canonical(p) for p in prior]))
    return {
        "phrases": int(len(phrases)),
        "recon_acc_argmax_from_mu": float(hit.mean()),
        "recon_onset_acc_argmax_from_mu": float(hit[onset].mean()),
        "recon_phrase_exact_rate": float(hit.all(axis=1).mean()),
        "recon_nll_per_phrase_from_mu": recon_nll,
        "kl_per_phrase": float(kl.sum(axis=1).mean()),
        "active_units": int((var_mu > 0.01).sum()),
        "latent": int(model.latent),
        "interpolation": {"pairs": 200, "points": 11, "method": "linear in z between the two mu, argmax decode",
                          "tokens_changed_per_step_mean": float(np.mean(changes)),
                          "tokens_changed_per_step_max": int(np.max(changes)),
                          "tokens_differing_between_endpoints_mean": float(np.mean(end_diff))},
        "prior_samples_argmax": {k: v for k, v in prior_stats.items() if k != "degree_hist"},
    }


def train(args, sampler: phrase_data.WindowSampler, valid: np.ndarray, log) -> tuple[PhraseVAE, dict]:
    model = PhraseVAE(latent=args.latent)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    total, warmup = args.steps, min(200, args.steps // 10 + 1)

    def lr_at(step: int) -> float:
        return warmup_cosine_lr(args.lr, step, total, warmup)

    pairs, cursor = sampler.epoch(rng), 0
    history, t0, capped = [], time.perf_counter(), False
    sums = np.zeros(3)
    bar = tqdm(total=total, desc="train VAE", unit="batch", mininterval=2.0)
    model.train()
    for step in range(total):
        if cursor + args.batch > len(pairs):
            pairs, cursor = sampler.epoch(rng), 0
        x = torch.from_numpy(sampler.batch(pairs[cursor:cursor + args.batch], rng))
        cursor += args.batch
        beta = args.beta * min(1.0, step / max(1.0, args.anneal * total))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits, mu, logvar = model(x)
        recon = F.cross_entropy(logits.reshape(-1, melody.NUM_CLASSES), x.reshape(-1), reduction="sum") / len(x)
        kl_dim = kl_per_dim(mu, logvar).mean(dim=0)
        loss = recon + beta * torch.clamp(kl_dim, min=args.free_bits).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sums += (recon.item(), kl_dim.sum().item(), 1)
        bar.update(1)
        if (step + 1) % 250 == 0 or step + 1 == total:
            model.eval()
            with torch.no_grad():
                vlog, vmu, _ = model(torch.from_numpy(valid), sample=False)
                vacc = float((vlog.argmax(-1).numpy() == valid).mean())
            model.train()
            history.append({"step": step + 1, "train_recon": sums[0] / sums[2], "train_kl": sums[1] / sums[2],
                            "beta": beta, "valid_acc_from_mu": vacc, "minutes": (time.perf_counter() - t0) / 60})
            log(f"step {step + 1}: recon {sums[0] / sums[2]:.2f} kl {sums[1] / sums[2]:.2f} beta {beta:.3f} "
                f"valid acc {vacc:.4f}")
            sums[:] = 0
        if time.perf_counter() - t0 > args.minutes * 60:
            capped = True
            log(f"WARNING: --minutes {args.minutes} reached at step {step + 1}; not reproducible")
            break
    bar.close()
    model.eval()
    return model, {"steps_done": step + 1, "time_capped": capped, "history": history,
                   "minutes": (time.perf_counter() - t0) / 60}


def command_line(prog: str, argv) -> str:
    extra = argv if argv is not None else sys.argv[1:]
    return prog + ("" if not extra else " " + " ".join(extra))


def folk_split(quick: bool, seed: int):
    corpora = ("ryansMammoth",) if quick else corpus_mod.CORPORA
    corpus = corpus_mod.load_corpus(corpora)
    split = melody_data.split_by_tune(len(corpus.tokens), seed)
    tunes = {name: [corpus.tokens[i] for i in idx] for name, idx in split.items()}
    split_info = {"method": "by tune (the melody DNN's split)", "seed": seed,
                  "fractions": list(melody_data.SPLIT_FRACTIONS), "sizes": {k: len(v) for k, v in tunes.items()}}
    return corpora, tunes, split_info


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    seed_everything(args.seed)
    torch.set_num_threads(1)

    def log(msg: str) -> None:
        tqdm.write(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}")

    corpora, tunes, split_info = folk_split(args.quick, args.seed)
    sampler = phrase_data.WindowSampler(tunes["train"])
    valid = phrase_data.eval_windows(tunes["valid"])[:2000]
    test = phrase_data.eval_windows(tunes["test"])
    split_info["train_windows_per_epoch"] = sampler.num_windows
    split_info["test_phrases"], split_info["valid_phrases_used"] = len(test), len(valid)
    log(f"{sampler.num_windows} training windows per pass; {len(test)} test phrases")

    model, info = train(args, sampler, valid, log)
    metrics = {"test": evaluate(model, test, np.random.default_rng(args.seed + 2)),
               "notes": "test tunes, untransposed, fixed non-overlapping 32-step windows; the decoder is "
                        "non-autoregressive, so reconstruction is argmax per step from z = mu (no teacher forcing)"}
    m = metrics["test"]
    log(f"test: acc {m['recon_acc_argmax_from_mu']:.4f} onset acc {m['recon_onset_acc_argmax_from_mu']:.4f} "
        f"KL {m['kl_per_phrase']:.2f} active {m['active_units']}/{args.latent} "
        f"interp mean {m['interpolation']['tokens_changed_per_step_mean']:.2f} max "
        f"{m['interpolation']['tokens_changed_per_step_max']}")

    training_data = {"corpora": list(corpora), "source": f"music21 {__import__('music21').__version__} corpus (ABC)",
                     "parser_version": corpus_mod.PARSER_VERSION,
                     "windows": "32 steps, beat-aligned, re-struck first note, all-silent skipped; random "
                                "transposition -6..+5 per training window"}
    training = {
        "command": command_line("python -m export.train_vae", argv), "seed": args.seed, "steps": args.steps,
        "steps_done": info["steps_done"], "time_capped": info["time_capped"],
        "minutes_training": round(info["minutes"], 2), "batch": args.batch, "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "params": {"encoder": num_params(model.encoder), "decoder": num_params(model.decoder)},
        "model": model.config, "phrase_steps": model.steps, "latent_dim": model.latent,
        "loss": {"beta": args.beta, "anneal_fraction": args.anneal, "free_bits_nats_per_dim": args.free_bits},
        "optimizer": {"name": "Adam", "lr": args.lr, "schedule": "warm-up + cosine to 5%", "clip_grad_norm": 5.0},
        "history": info["history"], "opset": OPSET,
    }
    common = dict(steps_per_beat=melody.DEFAULT_STEPS_PER_BEAT, training_data=training_data, split=split_info,
                  metrics=metrics, training=training)
    enc_path = export_encoder(model.encoder, args.out_dir / "melody_vae_encoder.onnx", build_metadata(
        name="melody_vae_encoder", family="vae_encoder", inputs=ENCODER_INPUTS, outputs=ENCODER_OUTPUTS, **common))
    dec_path = export_decoder(model.decoder, args.out_dir / "melody_vae_decoder.onnx", build_metadata(
        name="melody_vae_decoder", family="vae_decoder", inputs=DECODER_INPUTS, outputs=DECODER_OUTPUTS, **common))
    write_results(args.results, {"files": {p.name: p.stat().st_size for p in (enc_path, dec_path)}},
                  training_data=training_data, split=split_info, metrics=metrics, training=training, t_start=t_start)
    log(f"wrote {enc_path}, {dec_path} and {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
