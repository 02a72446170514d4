"""Train, evaluate and export the comp DNN on the Bach chorales: ``python -m export.train_comp``.

Melody = soprano; the comp's voices = bass, tenor and alto, predicted together at each step (``export.comp_model``).
The split is the duet's (``duet_corpus.content_split``, seed 0: by content on the soprano, so a melody Bach
harmonised twice lies in one split); the validation chorales pick nothing but the epoch count's sanity, the test
chorales are for ``export.comp_eval`` only. Every epoch each training chorale is seen once, in a random one of the
12 transpositions -6..+5 (all four voices together; a shift that leaves MIDI's range keeps the chorale as written).
Held-out figures: NLL and accuracy per voice on test tokens 1..T-1 (the duet models' targets), beside the duet DNN's
(the same voices one at a time, hearing the soprano of the same step: ``export/results/duet_dnn.json``).
Writes ``liveperf/data/models/comp_dnn.onnx`` and ``export/results/comp_dnn.json``. Seeded; ~13 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export import duet_corpus, melody_data
from export.comp_model import INPUT_NAMES, OUTPUT_NAMES, VOICE_ORDER, CompGRU, export_onnx
from export.results_io import write_results
from export.train_melody import seed_everything, warmup_cosine_lr
from export.train_vae import command_line
from export.vae_model import OPSET
from liveperf.music import melody
from liveperf.models.metadata import build_metadata

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "liveperf" / "data" / "models"
QUICK_DIR = ROOT / "export" / "runs" / "quick"
ROWS = [duet_corpus.ROW[name] for name in VOICE_ORDER]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.train_comp", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default 300; quick 2")
    ap.add_argument("--minutes", type=float, default=25.0, help="safety cap on training time (breaks determinism)")
    ap.add_argument("--batch", type=int, default=16, help="chorales per batch")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, a small model")
    args = ap.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 300
    if args.quick:
        args.hidden = min(args.hidden, 64)
    args.out = args.out or (QUICK_DIR if args.quick else MODELS) / "comp_dnn.onnx"
    args.results = args.results or (QUICK_DIR if args.quick else ROOT / "export" / "results") / "comp_dnn.json"
    return args


def shifted(chorale: np.ndarray, k: int) -> np.ndarray:
    """All four voices moved ``k`` semitones, or the chorale as written when a voice would leave MIDI's range."""
    rows = [melody.transpose_tokens(chorale[r].astype(np.int64), k) for r in range(chorale.shape[0])]
    return chorale.astype(np.int64) if any(r is None for r in rows) else np.stack(rows)


def make_batch(items):
    """Padded tensors from (chorale [4, T] int64, pos [T]) items: melody [B, T], voices_prev [B, T, 3], pos [B, T],
    target [B, T, 3], mask [B, T] (every real step; t = 0 predicts the first chord from the first melody note)."""
    width = max(c.shape[1] for c, _ in items)
    mel = np.zeros((len(items), width), np.int64)
    pos = np.zeros_like(mel)
    prev = np.zeros((len(items), width, 3), np.int64)
    tgt = np.zeros_like(prev)
    mask = np.zeros(mel.shape, bool)
    for r, (c, codes) in enumerate(items):
        n = c.shape[1]
        mel[r, :n] = c[duet_corpus.ROW["soprano"]]
        voices = c[ROWS].T  # [T, 3]
        tgt[r, :n] = voices
        prev[r, 1:n] = voices[:-1]
        pos[r, :n] = codes
        mask[r, :n] = True
    return tuple(torch.from_numpy(a) for a in (mel, prev, pos, tgt, mask))


@torch.no_grad()
def evaluate(model: CompGRU, items) -> dict:
    """NLL (nats per voice step) and accuracy per voice on steps 1..T-1 (the duet models' targets)."""
    model.eval()
    out = {}
    sums = np.zeros((3, 3))  # voice x (nll, correct, n)
    for a in range(0, len(items), 32):
        mel, prev, pos, tgt, mask = make_batch(items[a:a + 32])
        mask[:, 0] = False
        logits, _ = model(mel, prev, pos)
        logp = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [B, T, 3]
        hit = logits.argmax(-1) == tgt
        for v in range(3):
            sums[v, 0] += float(-logp[..., v][mask].double().sum())
            sums[v, 1] += int(hit[..., v][mask].sum())
            sums[v, 2] += int(mask.sum())
    for v, name in enumerate(VOICE_ORDER):
        out[name] = {"nll": sums[v, 0] / sums[v, 2], "acc": sums[v, 1] / sums[v, 2], "steps": int(sums[v, 2])}
    out["all"] = {"nll": sums[:, 0].sum() / sums[:, 2].sum(), "acc": sums[:, 1].sum() / sums[:, 2].sum(),
                  "steps": int(sums[:, 2].sum())}
    return out


def duet_reference() -> dict | None:
    """The shipped duet DNN's test figures (one voice at a time, the soprano of the same step), if recorded."""
    path = ROOT / "export" / "results" / "duet_dnn.json"
    if not path.exists():
        return None
    test = json.loads(path.read_text())["metrics"]["test"]
    return test.get("duet_dnn")


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    seed_everything(args.seed)

    def log(msg: str) -> None:
        tqdm.write(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}")

    data = duet_corpus.load_chorales()
    sopranos = [c[duet_corpus.ROW["soprano"]] for c in data.tokens]
    split = duet_corpus.content_split(sopranos, 0)  # the duet's split, always (the test chorales stay unseen)
    split_stats = split.pop("stats")
    split.pop("groups")
    items = {name: [(data.tokens[i].astype(np.int64), melody_data.tune_positions(data.tokens[i].shape[1],
                                                                                 data.meta[i])) for i in idx]
             for name, idx in split.items()}
    sizes = {name: int(len(idx)) for name, idx in split.items()}
    log(f"{len(data.tokens)} chorales, split {sizes}")

    model = CompGRU(embed=args.embed, hidden=args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    train = items["train"]
    per_epoch = math.ceil(len(train) / args.batch)
    total = per_epoch * args.epochs

    def lr_at(step: int) -> float:
        return warmup_cosine_lr(args.lr, step, total, min(100, total // 10 + 1))

    history, step, t0, capped = [], 0, time.perf_counter(), False
    bar = tqdm(total=total, desc="train comp", unit="batch", mininterval=2.0)
    for epoch in range(args.epochs):
        model.train()
        order = sorted(rng.permutation(len(train)).tolist(), key=lambda i: train[i][0].shape[1])
        batches = [order[a:a + args.batch] for a in range(0, len(order), args.batch)]
        loss_sum = 0.0
        for b in rng.permutation(len(batches)):
            chosen = [(shifted(train[i][0], int(rng.integers(-6, 6))), train[i][1]) for i in batches[b]]
            mel, prev, pos, tgt, mask = make_batch(chosen)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits, _ = model(mel, prev, pos)
            loss = F.cross_entropy(logits[mask].reshape(-1, melody.NUM_CLASSES), tgt[mask].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += loss.item()
            step += 1
            bar.update(1)
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            val = evaluate(model, items["valid"])["all"]
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / len(batches), "valid_nll": val["nll"],
                            "minutes": (time.perf_counter() - t0) / 60})
            log(f"epoch {epoch + 1}: train {loss_sum / len(batches):.4f} valid NLL {val['nll']:.4f}")
        if time.perf_counter() - t0 > args.minutes * 60:
            capped = True
            log(f"WARNING: --minutes {args.minutes} reached after epoch {epoch + 1}; not reproducible")
            break
    bar.close()
    model.eval()

    metrics = {"units": "nats per voice step; targets are tokens 1..T-1 of each held-out chorale's bass, tenor and "
                        "alto, untransposed (the duet models' targets)",
               "test": evaluate(model, items["test"]), "valid": evaluate(model, items["valid"]),
               "duet_dnn_test": duet_reference()}
    for name, m in metrics["test"].items():
        log(f"test {name:6} NLL {m['nll']:.4f} acc {m['acc']:.4f}")
    if metrics["duet_dnn_test"]:
        log(f"duet_dnn (one voice at a time) test NLL {metrics['duet_dnn_test']['nll']:.4f}")

    training_data = {"corpus": "music21 Bach chorales (corpus.chorales.Iterator, Riemenschneider order)",
                     "source": f"music21 {__import__('music21').__version__}",
                     "parser_version": duet_corpus.PARSER_VERSION, "stats": data.stats, "chorales": len(data.tokens),
                     "melody": "soprano", "voices": list(VOICE_ORDER)}
    split_info = {"method": "by content (export.clean_split on the soprano): the duet models' split",
                  "content": split_stats, "seed": 0, "fractions": list(duet_corpus.SPLIT_FRACTIONS), "sizes": sizes,
                  "test_chorales": [data.ids[i] for i in split["test"]]}
    training = {"command": command_line("python -m export.train_comp", argv), "seed": args.seed,
                "epochs": args.epochs, "epochs_done": len(history) and history[-1]["epoch"], "time_capped": capped,
                "minutes_training": round((time.perf_counter() - t0) / 60, 2), "batches": step,
                "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                "params": model.num_params(), "model": model.config,
                "augmentation": "a random transposition -6..+5 per chorale per epoch, all voices together",
                "optimizer": {"name": "Adam", "lr": args.lr, "schedule": "warm-up + cosine to 5%",
                              "clip_grad_norm": 1.0}, "batch": args.batch, "history": history, "opset": OPSET}
    meta = build_metadata(name="comp_dnn", family="comp_step", steps_per_beat=melody.DEFAULT_STEPS_PER_BEAT,
                          inputs=INPUT_NAMES, outputs=OUTPUT_NAMES, state_shape=[model.layers, model.hidden],
                          training_data=training_data, split=split_info, metrics=metrics, training=training)
    path = export_onnx(model, args.out, meta)
    write_results(args.results, {"model_file": path.name, "onnx_bytes": path.stat().st_size},
                  training_data=training_data, split=split_info, metrics=metrics, training=training, t_start=t_start)
    log(f"wrote {path} and {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
