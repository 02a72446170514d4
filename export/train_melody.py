"""Train, evaluate and export the DNN next-note melody model: ``python -m export.train_melody``.

End to end on a 2-core CPU: tokenised corpus (parsed once, cached in ``export/cache/``), split by content
(``export.clean_split``: tunes that share a 4-bar run in any transposition lie in one split), n-gram
baselines (tuned on valid), GRU training with transposition augmentation, test/valid metrics, ONNX export with
metadata to ``liveperf/data/models/melody_dnn.onnx`` and the figures to ``export/results/melody_dnn.json``.
The same seed gives the same model (a fixed number of epochs; ``--minutes`` is only a safety cap and, if it
cuts training short, the run is marked non-reproducible). ``--quick`` is a tiny smoke run on one small corpus.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export import baselines, clean_split, corpus as corpus_mod, duet_corpus, melody_data
from export.melody_model import INPUT_NAMES, OPSET, OUTPUT_NAMES, MelodyGRU, export_onnx
from export.results_io import write_results
from liveperf.music import melody
from liveperf.models.metadata import build_metadata

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "liveperf" / "data" / "models" / "melody_dnn.onnx"
DEFAULT_RESULTS = ROOT / "export" / "results" / "melody_dnn.json"
QUICK_DIR = ROOT / "export" / "runs" / "quick"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.train_melody", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seeds the split, the training stream and the weights")
    ap.add_argument("--epochs", type=int, default=None, help="passes over the training tunes (default 4; quick 2)")
    ap.add_argument("--minutes", type=float, default=20.0, help="safety cap on training time (breaks determinism)")
    ap.add_argument("--out", type=Path, default=None, help=f"ONNX file (default {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--results", type=Path, default=None, help="figures JSON (default export/results/...)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run: ryansMammoth only, small model, 2 epochs")
    ap.add_argument("--embed", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--dropout", type=float, default=0.0, help="off by default: it halves CPU training speed")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=None, help="chunks per batch (default 64; quick 16)")
    ap.add_argument("--window", type=int, default=256, help="training chunk length in steps")
    ap.add_argument("--no-augment", action="store_true", help="train without transposition (for comparison)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the n-gram baselines (experiments only)")
    ap.add_argument("--workers", type=int, default=2, help="parser processes on a cold cache")
    ap.add_argument("--corpus", choices=("folk", "chorales"), default="folk",
                    help="folk: the melody model (call and response); chorales: the Bach chorale sopranos, the duet's "
                         "predictor of the performer (soprano_dnn)")
    args = ap.parse_args(argv)
    quick_defaults = {"epochs": 2, "embed": 32, "hidden": 64, "layers": 1, "batch": 16}
    full_defaults = {"epochs": 6, "embed": 96, "hidden": 256, "layers": 1, "batch": 64}
    if args.corpus == "chorales":  # ~280 sopranos: many short epochs
        full_defaults.update(epochs=60, batch=16, hidden=192)
    args.name = "melody_dnn" if args.corpus == "folk" else "soprano_dnn"
    for key, value in (quick_defaults if args.quick else full_defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = QUICK_DIR / f"{args.name}.onnx" if args.quick else DEFAULT_OUT.with_name(f"{args.name}.onnx")
    if args.results is None:
        args.results = QUICK_DIR / f"{args.name}.json" if args.quick else DEFAULT_RESULTS.with_name(f"{args.name}.json")
    return args


def warmup_cosine_lr(peak: float, step: int, total: int, warmup: int) -> float:
    """Every trainer's schedule: linear warm-up over ``warmup`` steps, then cosine down to 5 % of ``peak`` at step
    ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


@torch.no_grad()
def evaluate_model(model: MelodyGRU, tunes: list[np.ndarray], metas, batch_size: int = 64) -> dict:
    """NLL (nats/step and per note), accuracy, onset accuracy on targets 1..T-1 of whole tunes, each from a zero
    state."""
    model.eval()
    nll = correct = onset_correct = n = n_onset = 0
    for x, pos, back, y, mask in melody_data.tune_batches(tunes, batch_size, metas):
        logits, _ = model(x, pos, back)
        logp = torch.log_softmax(logits, dim=-1)
        tgt_logp = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        hit = (logits.argmax(-1) == y) & mask
        onset = (y >= melody.PITCH_OFFSET) & mask
        nll += float(-(tgt_logp[mask].double()).sum())
        correct += int(hit.sum())
        onset_correct += int((hit & onset).sum())
        n += int(mask.sum())
        n_onset += int(onset.sum())
    return {"nll": nll / n, "nll_per_note": nll / max(n_onset, 1), "acc": correct / n,
            "onset_acc": onset_correct / max(n_onset, 1), "steps": n, "onset_steps": n_onset}


def train_model(args, train: list[np.ndarray], valid: list[np.ndarray], log, metas) -> tuple[MelodyGRU, dict]:
    model = MelodyGRU(embed=args.embed, hidden=args.hidden, layers=args.layers, dropout=args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    lengths = np.array([len(t) for t in train])
    per_epoch = math.ceil(len(melody_data.make_chunks(lengths, args.window, np.random.default_rng(0))) / args.batch)
    total = per_epoch * args.epochs
    warmup = min(200, total // 10 + 1)

    def lr_at(step: int) -> float:
        return warmup_cosine_lr(args.lr, step, total, warmup)

    history, step, t0, capped = [], 0, time.perf_counter(), False
    bar = tqdm(total=total, desc="train GRU", unit="batch", mininterval=2.0)
    for epoch in range(args.epochs):
        model.train()
        chunks = melody_data.make_chunks(lengths, args.window, rng)
        loss_sum = loss_n = 0.0
        for x, pos, back, y, mask in melody_data.chunk_batches(train, chunks, args.batch, rng, not args.no_augment,
                                                               metas["train"]):
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits, _ = model(x, pos, back)
            loss = F.cross_entropy(logits[mask], y[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum, loss_n, step = loss_sum + float(loss), loss_n + 1, step + 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / loss_n:.3f}")
            if time.perf_counter() - t0 > args.minutes * 60:
                capped = True
                break
        val = evaluate_model(model, valid, metas["valid"])
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(loss_n, 1), "valid_nll": val["nll"],
                        "minutes": (time.perf_counter() - t0) / 60})
        log(f"epoch {epoch + 1}: train loss {loss_sum / max(loss_n, 1):.4f}, valid NLL {val['nll']:.4f}, "
            f"{history[-1]['minutes']:.1f} min")
        if capped:
            log(f"WARNING: --minutes {args.minutes} reached; training cut short (not reproducible)")
            break
    bar.close()
    model.eval()
    info = {"epochs_done": len(history), "batches": step, "batches_planned": total, "time_capped": capped,
            "history": history, "minutes": (time.perf_counter() - t0) / 60}
    return model, info


def figures_table(metrics: dict) -> str:
    lines = [f"{'split':6} {'model':22} {'NLL':>7} {'NLL/note':>8} {'acc':>7} {'onset acc':>9}"]
    for split in ("test", "valid"):
        for name, m in metrics[split].items():
            lines.append(f"{split:6} {name:22} {m['nll']:7.4f} {m['nll_per_note']:8.4f} {m['acc']:7.4f} "
                         f"{m['onset_acc']:9.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    seed_everything(args.seed)

    def log(msg: str) -> None:
        tqdm.write(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}")

    if args.corpus == "chorales":
        corpora = ("bach chorales (soprano)",)
        chorales = duet_corpus.load_chorales(workers=args.workers)
        corpus = corpus_mod.Corpus(chorales.ids, [c[duet_corpus.ROW["soprano"]] for c in chorales.tokens],
                                   {"corpora": {}, "file_errors": [], "rule": chorales.stats["rule"]}, chorales.meta)
        split = duet_corpus.content_split(corpus.tokens, args.seed)  # the duet's split
    else:
        corpora = ("ryansMammoth",) if args.quick else corpus_mod.CORPORA
        corpus = corpus_mod.load_corpus(corpora, workers=args.workers)
        split = clean_split.split_by_content(corpus.tokens, args.seed, melody_data.SPLIT_FRACTIONS)
    log(f"corpus: {len(corpus.tokens)} tunes from {', '.join(corpora)}")
    content = split.pop("stats")
    split.pop("groups")
    tunes = {name: [corpus.tokens[i] for i in idx] for name, idx in split.items()}
    metas = {name: [corpus.meta[i] for i in idx] for name, idx in split.items()}
    sizes = {name: len(v) for name, v in tunes.items()}
    log(f"split by content (seed {args.seed}): {sizes}; {content}")

    base = {} if args.no_baselines else baselines.tune_and_score(tunes["train"], tunes["valid"], tunes["test"], log)
    model, train_info = train_model(args, tunes["train"], tunes["valid"], log, metas)
    metrics = {"units": "nats per predicted step; targets are tokens 1..T-1 of each held-out tune, untransposed",
               "test": {}, "valid": {}}
    for split_name in ("test", "valid"):
        metrics[split_name][args.name] = evaluate_model(model, tunes[split_name], metas[split_name])
        for name, b in base.items():
            metrics[split_name][name] = b[split_name]
    metrics["baselines"] = {name: {"config": b["config"], "tuning_on_valid": b["tuning"]} for name, b in base.items()}
    beats = all(metrics["test"][args.name]["nll"] < metrics["test"][n]["nll"] for n in base)
    metrics["beats_all_baselines_on_test_nll"] = beats

    stats = corpus.stats
    training_data = {
        "corpora": list(corpora), "source": f"music21 {__import__('music21').__version__} corpus (ABC)",
        "parser_version": corpus_mod.PARSER_VERSION, "rule": stats["rule"],
        "per_corpus": stats["corpora"], "tunes": len(corpus.tokens),
        "dropped": {c: s["dropped_short"] + s["dropped_error"] for c, s in stats["corpora"].items()},
        "file_errors": stats["file_errors"],
    }
    split_info = {"method": "by content (export.clean_split)", "content": content, "seed": args.seed, "fractions": list(melody_data.SPLIT_FRACTIONS),
                  "sizes": sizes, "steps": {k: int(sum(len(t) for t in v)) for k, v in tunes.items()}}
    command = "python -m export.train_melody" + ("" if argv is None and len(sys.argv) <= 1 else
                                                 " " + " ".join(argv if argv is not None else sys.argv[1:]))
    training = {
        "command": command, "seed": args.seed, "epochs": args.epochs, "epochs_done": train_info["epochs_done"],
        "minutes_training": round(train_info["minutes"], 2), "time_capped": train_info["time_capped"],
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "params": model.num_params(), "model": {"type": "GRU", **model.config},
        "optimizer": {"name": "Adam", "lr": args.lr, "schedule": "warm-up + cosine to 5%", "clip_grad_norm": 1.0},
        "batch": args.batch, "window_steps": args.window,
        "augmentation": "none" if args.no_augment else "random transposition per chunk, -6..+5 semitones, "
                                                        "only shifts that keep pitches in 0..127",
        "history": train_info["history"], "opset": OPSET,
    }
    meta = build_metadata(name=args.name, family="dnn_step", steps_per_beat=melody.DEFAULT_STEPS_PER_BEAT,
                          inputs=INPUT_NAMES, outputs=OUTPUT_NAMES, state_shape=[model.layers, model.hidden],
                          training_data=training_data, split=split_info, metrics=metrics, training=training)
    path = export_onnx(model, args.out, meta)
    write_results(args.results, {"model_file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                                 "onnx_bytes": path.stat().st_size},
                  training_data=training_data, split=split_info, metrics=metrics, training=training, t_start=t_start)
    log(f"wrote {path} ({path.stat().st_size} bytes) and {args.results}")
    print(figures_table(metrics))
    if base and not beats:
        log("WARNING: the GRU does not beat every baseline on test NLL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
