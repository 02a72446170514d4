"""Train, evaluate and export the duet DNN on the Bach chorales: ``python -m export.train_duet``.

``--lag 1`` (the default, ``duet_causal.onnx``) trains the partner the way the live duet plays it: at step t it
sees the performer's token of step t - 1 (live, step t is computed ahead, before the performer's token at t
exists). ``--lag 0`` (``duet_dnn.onnx``) sees the performer at t: harmonize's model, which answers a note the
performer has just played. The split is by content (``export.clean_split`` on the soprano: a chorale melody that
Bach harmonised twice lies in one split).

Soprano = performer; bass, tenor and alto = partner (one model, a ``voice`` input). Split by chorale (seeded,
80/10/10: there are only ~350 chorales). Every epoch each training (chorale, partner voice) pair is seen once, in a
random one of the 12 transpositions -6..+5 (all four voices shifted together). Held-out figures (test chorales,
untransposed, all three partner voices): NLL and accuracy on partner tokens 1..T-1 (the n-gram targets), against
``export.baselines`` (add-k bigram and Kneser-Ney on partner tokens, tuned on valid) and a conditional add-k
baseline P(partner_t | soprano_t, partner_t-1) interpolated with the bigram; and the consonance rate on beats of a
partner line the model generates against the held-out soprano, next to Bach's own. Writes
``liveperf/data/models/duet_dnn.onnx`` and ``export/results/duet_dnn.json``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export import baselines, duet_corpus, melody_data, ngram, phrase_data
from export.duet_model import INPUT_NAMES, OUTPUT_NAMES, DuetGRU, export_onnx
from export.train_melody import seed_everything, warmup_cosine_lr
from export.train_vae import command_line
from export.vae_model import OPSET
from export.results_io import write_results
from liveperf.music import melody
from liveperf.models.metadata import build_metadata

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "liveperf" / "data" / "models"
NAMES = {0: "duet_dnn", 1: "duet_causal"}  # by --lag
QUICK_DIR = ROOT / "export" / "runs" / "quick"
V = melody.NUM_CLASSES


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m export.train_duet", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default 40; quick 2")
    ap.add_argument("--minutes", type=float, default=25.0, help="safety cap on training time (breaks determinism)")
    ap.add_argument("--batch", type=int, default=32, help="(chorale, voice) sequences per batch")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--embed", type=int, default=96)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, a small model")
    ap.add_argument("--lag", type=int, default=1, choices=(0, 1),
                    help="steps the performer input lags the partner's target (1: the live duet; 0: harmonize)")
    args = ap.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 40
    if args.quick:
        args.hidden = min(args.hidden, 64)
    args.name = NAMES[args.lag]
    args.out = args.out or (QUICK_DIR if args.quick else MODELS) / f"{args.name}.onnx"
    args.results = args.results or (QUICK_DIR if args.quick else ROOT / "export" / "results") / f"{args.name}.json"
    return args


def pairs_of(chorales: list[np.ndarray], metas) -> list[tuple[np.ndarray, np.ndarray, int, np.ndarray]]:
    """(soprano, partner, voice id, position codes) for every chorale and partner voice."""
    out = []
    for c, meta in zip(chorales, metas):
        pos = melody_data.tune_positions(c.shape[1], meta)
        for name, vid in duet_corpus.PARTNER_VOICES.items():
            out.append((c[duet_corpus.ROW["soprano"]].astype(np.int64), c[duet_corpus.ROW[name]].astype(np.int64),
                        vid, pos))
    return out


def shift_pair(sop: np.ndarray, partner: np.ndarray, k: int):
    s, p = melody.transpose_tokens(sop, k), melody.transpose_tokens(partner, k)
    return (s, p) if s is not None and p is not None else (sop, partner)


LAG = {"steps": 1}  # set by main from --lag: how many steps the performer input lags the target


def make_batch(items, lag: int | None = None):
    """Padded tensors: performer, partner_prev, voice, pos, target, mask (mask: targets t >= 1). The performer
    input at t is the soprano's token at t - ``lag`` (HOLD before the start)."""
    lag = LAG["steps"] if lag is None else lag
    width = max(len(it[0]) for it in items)
    perf = np.zeros((len(items), width), np.int64)
    prev = np.zeros_like(perf)
    tgt = np.zeros_like(perf)
    voice = np.zeros_like(perf)
    mask = np.zeros(perf.shape, bool)
    pos = np.zeros_like(perf)
    for r, (s, p, v, codes) in enumerate(items):
        n = len(s)
        perf[r, lag:n], tgt[r, :n], voice[r], pos[r, :n] = s[:n - lag], p, v, codes[:n]
        prev[r, 1:n] = p[:-1]  # HOLD (0) before the first step
        mask[r, 1:n] = True
    return tuple(torch.from_numpy(a) for a in (perf, prev, voice, pos, tgt, mask))


@torch.no_grad()
def evaluate(model: DuetGRU, items) -> dict:
    model.eval()
    nll = correct = n = onset_correct = n_onset = 0
    for a in range(0, len(items), 64):
        perf, prev, voice, pos, tgt, mask = make_batch(items[a:a + 64])
        logits, _ = model(perf, prev, voice, pos)
        logp = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        hit = (logits.argmax(-1) == tgt) & mask
        onset = (tgt >= melody.PITCH_OFFSET) & mask
        nll += float(-logp[mask].double().sum())
        correct += int(hit.sum())
        onset_correct += int((hit & onset).sum())
        n += int(mask.sum())
        n_onset += int(onset.sum())
    return {"nll": nll / n, "acc": correct / n, "onset_acc": onset_correct / max(n_onset, 1), "steps": n}


def conditional_baseline(train_items, valid_items, test_items, bigram_table: np.ndarray) -> dict:
    """P(w | soprano_t-lag, partner_t-1) = lam * add-k(counts) + (1 - lam) * bigram(w | partner_t-1); tuned on valid."""
    counts = np.zeros((V, ngram.BASE, V))
    lag = LAG["steps"]

    def heard(s):  # the soprano as the model hears it: ``lag`` steps late
        return np.concatenate([np.zeros(lag, s.dtype), s[:len(s) - lag]]) if lag else s

    for s, p, *_ in train_items:
        s = heard(s)
        prev = np.concatenate([[ngram.BOS], p[:-1]])
        np.add.at(counts, (s[1:], prev[1:], p[1:]), 1.0)
    totals = counts.sum(axis=2)

    def dists(items, lam, k):
        probs, targets = [], []
        for s, p, *_ in items:
            s = heard(s)
            prev = p[:-1]
            c = counts[s[1:], prev]
            cond = (c + k) / (totals[s[1:], prev][:, None] + k * V)
            probs.append(lam * cond + (1 - lam) * bigram_table[prev])
            targets.append(p[1:])
        return np.concatenate(probs), np.concatenate(targets)

    best, tuning = None, []
    for lam in (0.5, 0.7, 0.8, 0.9, 0.95):
        for k in (0.001, 0.01, 0.1):
            pr, tg = dists(valid_items, lam, k)
            nll = float(-np.log(pr[np.arange(tg.size), tg]).mean())
            tuning.append({"lambda": lam, "k": k, "valid_nll": nll})
            if best is None or nll < best[0]:
                best = (nll, lam, k)
    _, lam, k = best
    return {"config": {"lambda": lam, "k": k, "training": "train chorales in all 12 transpositions"},
            "tuning": tuning,
            "valid": ngram.metrics_from_distributions([dists(valid_items, lam, k)]),
            "test": ngram.metrics_from_distributions([dists(test_items, lam, k)])}


def consonance(sop: np.ndarray, partner: np.ndarray) -> tuple[int, int]:
    """(consonant, counted) over beats (t % 4 == 0) where both voices sound."""
    sp, pp = phrase_data.sounding_pitch(sop), phrase_data.sounding_pitch(partner)
    beats = np.arange(0, len(sop), melody.DEFAULT_STEPS_PER_BEAT)
    both = beats[(sp[beats] >= 0) & (pp[beats] >= 0)]
    interval = (sp[both] - pp[both]) % 12
    return int(np.isin(interval, list(phrase_data.CONSONANT)).sum()), int(both.size)


@torch.no_grad()
def generate(model: DuetGRU, items, temperature: float, seed: int) -> list[np.ndarray]:
    """A partner line per item, generated step by step against the real soprano (argmax if temperature 0)."""
    gen = torch.Generator().manual_seed(seed)
    perf, _, voice, pos, _, _ = make_batch(items)
    batch, width = perf.shape
    state = model.zero_state(batch)
    prev = torch.zeros(batch, dtype=torch.int64)
    out = torch.zeros(batch, width, dtype=torch.int64)
    for t in range(width):
        logits, state = model(perf[:, t:t + 1], prev[:, None], voice[:, t:t + 1], pos[:, t:t + 1], state)
        logits = logits[:, 0]
        tok = logits.argmax(-1) if temperature <= 0 else \
            torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)[:, 0]
        out[:, t] = tok
        prev = tok
    return [melody.canonical(out[r, :len(items[r][0])].numpy()) for r in range(batch)]


def consonance_table(model, test_items, bigram_table, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    lines = {"bach": [it[1] for it in test_items],
             "duet_dnn_sampled_t1": generate(model, test_items, 1.0, seed),
             "duet_dnn_argmax": generate(model, test_items, 0.0, seed)}
    # soprano-blind reference: the partner-token bigram sampled freely, started from the real first token
    cdf = np.cumsum(bigram_table, axis=1)
    blind = []
    for _, p, *_ in test_items:
        seq = np.zeros(len(p), np.int64)
        seq[0] = p[0]
        for t in range(1, len(p)):
            seq[t] = min(int(np.searchsorted(cdf[seq[t - 1]], rng.random() * cdf[seq[t - 1], -1], "right")), V - 1)
        blind.append(melody.canonical(seq))
    lines["bigram_sampled_soprano_blind"] = blind
    out = {}
    for name, parts in lines.items():
        by_voice = {}
        total = [0, 0]
        for (s, _, v, _), part in zip(test_items, parts):
            c, n = consonance(s, part)
            vname = [k for k, i in duet_corpus.PARTNER_VOICES.items() if i == v][0]
            bv = by_voice.setdefault(vname, [0, 0])
            bv[0] += c
            bv[1] += n
            total[0] += c
            total[1] += n
        out[name] = {"rate": total[0] / max(total[1], 1), "beats_counted": total[1],
                     "by_voice": {k: v[0] / max(v[1], 1) for k, v in by_voice.items()}}
    out["definition"] = ("share of beats (step % 4 == 0) where soprano and partner both sound and their interval "
                         "mod 12 is P1/P8, m3, M3, P5, m6 or M6; test chorales, untransposed")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    seed_everything(args.seed)
    torch.set_num_threads(1)

    def log(msg: str) -> None:
        tqdm.write(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}")

    LAG["steps"] = args.lag
    data = duet_corpus.load_chorales()
    sopranos = [c[duet_corpus.ROW["soprano"]] for c in data.tokens]
    split = duet_corpus.content_split(sopranos, args.seed)
    split_stats = split.pop("stats")
    split.pop("groups")
    log(f"content split: {split_stats}")
    items = {name: pairs_of([data.tokens[i] for i in idx], [data.meta[i] for i in idx]) for name, idx in split.items()}
    sizes = {name: int(len(idx)) for name, idx in split.items()}
    log(f"{len(data.tokens)} chorales, split {sizes}")

    partner = {k: [it[1] for it in v] for k, v in items.items()}
    base = baselines.tune_and_score(partner["train"], partner["valid"], partner["test"], log)
    bigram_table = ngram.AddKBigram(base["bigram_addk"]["config"]["k"]).fit(
        ngram.transpositions(partner["train"])).table()
    shifted_train = [(s2, p2, v, c) for s, p, v, c in items["train"] for k in range(-6, 6)
                     for s2, p2 in [shift_pair(s, p, k)]]
    base["conditional_addk"] = conditional_baseline(shifted_train, items["valid"], items["test"], bigram_table)

    model = DuetGRU(embed=args.embed, hidden=args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    per_epoch = math.ceil(len(items["train"]) / args.batch)
    total = per_epoch * args.epochs

    def lr_at(step: int) -> float:
        return warmup_cosine_lr(args.lr, step, total, min(100, total // 10 + 1))

    history, step, t0, capped = [], 0, time.perf_counter(), False
    bar = tqdm(total=total, desc="train duet", unit="batch", mininterval=2.0)
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(items["train"]))
        # similar lengths together: sort a shuffled order by length, then shuffle the batches
        order = sorted(order.tolist(), key=lambda i: len(items["train"][i][0]))
        batches = [order[a:a + args.batch] for a in range(0, len(order), args.batch)]
        loss_sum = 0.0
        for b in rng.permutation(len(batches)):
            chosen = []
            for i in batches[b]:
                s, p, v, c = items["train"][i]
                s, p = shift_pair(s, p, int(rng.integers(-6, 6)))
                chosen.append((s, p, v, c))
            perf, prev, voice, pos, tgt, mask = make_batch(chosen)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits, _ = model(perf, prev, voice, pos)
            loss = F.cross_entropy(logits[mask], tgt[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += loss.item()
            step += 1
            bar.update(1)
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            val = evaluate(model, items["valid"])
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / len(batches), "valid_nll": val["nll"],
                            "minutes": (time.perf_counter() - t0) / 60})
            log(f"epoch {epoch + 1}: train {loss_sum / len(batches):.4f} valid NLL {val['nll']:.4f}")
        if time.perf_counter() - t0 > args.minutes * 60:
            capped = True
            log(f"WARNING: --minutes {args.minutes} reached after epoch {epoch + 1}; not reproducible")
            break
    bar.close()
    model.eval()

    metrics = {"units": "nats per partner step; targets are partner tokens 1..T-1 of each held-out chorale and "
                        "voice (bass, tenor, alto), untransposed; the same targets for every model",
               "test": {}, "valid": {}}
    for sp in ("test", "valid"):
        metrics[sp][args.name] = evaluate(model, items[sp])
        for name, b in base.items():
            metrics[sp][name] = b[sp]
    metrics["baselines"] = {name: {"config": b["config"]} for name, b in base.items()}
    metrics["beats_all_baselines_on_test_nll"] = all(
        metrics["test"][args.name]["nll"] < metrics["test"][n]["nll"] for n in base)
    metrics["consonance_on_beats"] = consonance_table(model, items["test"], bigram_table, args.seed + 2)
    for sp in ("test",):
        for name, m in metrics[sp].items():
            log(f"{sp} {name:18} NLL {m['nll']:.4f} acc {m['acc']:.4f}")
    for name, c in metrics["consonance_on_beats"].items():
        if isinstance(c, dict):
            log(f"consonance {name:30} {c['rate']:.4f} ({c['beats_counted']} beats)")

    training_data = {"corpus": "music21 Bach chorales (corpus.chorales.Iterator, Riemenschneider order)",
                     "source": f"music21 {__import__('music21').__version__}", "parser_version":
                         duet_corpus.PARSER_VERSION, "stats": data.stats, "chorales": len(data.tokens),
                     "performer": "soprano", "partners": duet_corpus.PARTNER_VOICES}
    split_info = {"method": "by content (export.clean_split on the soprano)", "content": split_stats,
                  "performer_lag_steps": args.lag, "seed": args.seed, "fractions": list(duet_corpus.SPLIT_FRACTIONS), "sizes": sizes,
                  "test_chorales": [data.ids[i] for i in split["test"]]}
    training = {"command": command_line("python -m export.train_duet", argv), "seed": args.seed,
                "performer_lag_steps": args.lag,
                "epochs": args.epochs, "epochs_done": len(history) and history[-1]["epoch"],
                "time_capped": capped, "minutes_training": round((time.perf_counter() - t0) / 60, 2),
                "batches": step, "torch": torch.__version__, "python": platform.python_version(),
                "threads": torch.get_num_threads(), "params": model.num_params(), "model": model.config,
                "augmentation": "a random transposition -6..+5 per (chorale, voice) per epoch, all voices together",
                "optimizer": {"name": "Adam", "lr": args.lr, "schedule": "warm-up + cosine to 5%",
                              "clip_grad_norm": 1.0}, "batch": args.batch, "history": history, "opset": OPSET}
    meta = build_metadata(name=args.name, family="duet_step", steps_per_beat=melody.DEFAULT_STEPS_PER_BEAT,
                          inputs=INPUT_NAMES, outputs=OUTPUT_NAMES, state_shape=[model.layers, model.hidden],
                          training_data=training_data, split=split_info, metrics=metrics, training=training,
                          extra={"performer_lag_steps": args.lag})
    path = export_onnx(model, args.out, meta)
    write_results(args.results, {"model_file": path.name, "onnx_bytes": path.stat().st_size},
                  training_data=training_data, split=split_info, metrics=metrics, training=training, t_start=t_start)
    log(f"wrote {path} and {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
