"""N-gram baselines over melody tokens: add-k bigram and interpolated modified Kneser-Ney (Chen & Goodman).

Both predict token ``t`` from the tokens before it in the same tune; a tune's history is padded with ``BOS``
(id 130, never predicted), so every target ``t >= 1`` has a full context. They score exactly the targets the
GRU is scored on (tokens 1..T-1 of each tune; ``target_mask`` drops token 0).

Counting is vectorised with numpy: an n-gram is one int64 key in base ``BASE`` = 131 (up to order 8), unique keys
are sorted, and look-ups are ``searchsorted``. The baselines see tokens only (no position-in-beat input). ``KneserNey.fit`` counts every order up to ``max_order`` once, so
models of any lower order can be compared without refitting (``order=`` on the query methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveperf.music import melody

V = melody.NUM_CLASSES
BOS = V
BASE = V + 1


def _padded_stream(seqs: list[np.ndarray], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``seqs`` each preceded by ``pad`` BOS; returns (stream int64, is_target mask).

    Targets are tokens 1..T-1 of each tune (token 0 is given, as it is to the GRU)."""
    total = sum(len(s) + pad for s in seqs)
    stream = np.full(total, BOS, dtype=np.int64)
    is_target = np.zeros(total, dtype=bool)
    i = 0
    for s in seqs:
        i += pad
        stream[i:i + len(s)] = s
        is_target[i + 1:i + len(s)] = True
        i += len(s)
    return stream, is_target


def _keys(stream: np.ndarray, idx: np.ndarray, order: int) -> np.ndarray:
    """Key of the n-gram of length ``order`` ending at each index in ``idx``."""
    key = np.zeros(idx.size, dtype=np.int64)
    for j in range(order - 1, -1, -1):
        key = key * BASE + stream[idx - j]
    return key


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` at each query key, 0 where the key is absent."""
    if sorted_keys.size == 0:
        return np.zeros(query.shape, dtype=values.dtype)
    pos = np.searchsorted(sorted_keys, query)
    pos_c = np.minimum(pos, sorted_keys.size - 1)
    found = sorted_keys[pos_c] == query
    return np.where(found, values[pos_c], 0)


def transpositions(seqs: list[np.ndarray], shifts=range(-6, 6)) -> list[np.ndarray]:
    """Every sequence in every shift that keeps its pitches in 0..127 (the all-12-keys augmentation)."""
    out = []
    for s in seqs:
        for k in shifts:
            t = melody.transpose_tokens(np.asarray(s, dtype=np.int64), k)
            if t is not None:
                out.append(t)
    return out


class AddKBigram:
    """P(w | prev) = (c(prev, w) + k) / (c(prev) + k V); ``prev`` may be BOS."""

    def __init__(self, k: float = 0.01):
        self.k = k
        self.counts = np.zeros((BASE, V), dtype=np.float64)

    def fit(self, seqs: list[np.ndarray]) -> "AddKBigram":
        stream, is_target = _padded_stream(seqs, 1)
        idx = np.flatnonzero(is_target)
        np.add.at(self.counts, (stream[idx - 1], stream[idx]), 1.0)
        return self

    def table(self) -> np.ndarray:
        c = self.counts + self.k
        return c / c.sum(axis=1, keepdims=True)

    def distributions(self, seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [N, V] for every target, targets [N]) in tune order."""
        stream, is_target = _padded_stream(seqs, 1)
        idx = np.flatnonzero(is_target)
        return self.table()[stream[idx - 1]], stream[idx]

    def target_nll(self, seqs: list[np.ndarray]) -> float:
        probs, targets = self.distributions(seqs)
        return float(-np.log(probs[np.arange(targets.size), targets]).mean())


@dataclass
class _Order:
    """Counts of one order: n-gram keys (sorted) with counts, and per-context totals and count-of-count sums."""

    keys: np.ndarray
    counts: np.ndarray
    ctx_keys: np.ndarray
    ctx_total: np.ndarray
    ctx_gamma_num: np.ndarray  # D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)
    discounts: np.ndarray  # [0, D1, D2, D3]


def _discounts(counts: np.ndarray) -> np.ndarray:
    n = [np.count_nonzero(counts == i) for i in range(1, 5)]
    if min(n) == 0:
        return np.array([0.0, 0.5, 1.0, 1.5])
    y = n[0] / (n[0] + 2 * n[1])
    d = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
    return np.array([0.0] + [min(max(x, 0.0), i + 1.0) for i, x in enumerate(d)])


def _make_order(keys: np.ndarray, counts: np.ndarray) -> _Order:
    disc = _discounts(counts)
    ctx = keys // BASE
    ctx_keys, start = np.unique(ctx, return_index=True)
    total = np.add.reduceat(counts, start).astype(np.float64) if keys.size else np.zeros(0)
    per_key = disc[np.minimum(counts, 3)]
    gamma_num = np.add.reduceat(per_key, start) if keys.size else np.zeros(0)
    return _Order(keys, counts, ctx_keys, total, gamma_num, disc)


class KneserNey:
    """Interpolated modified Kneser-Ney of order up to ``max_order``, interpolated down to a uniform 1/V."""

    def __init__(self, max_order: int = 5):
        if not 1 <= max_order <= 8:
            raise ValueError("max_order must be in 1..8 (keys are int64 in base 131)")
        self.max_order = max_order
        self.raw: dict[int, _Order] = {}  # order -> raw counts (used at the top order of a model)
        self.cont: dict[int, _Order] = {}  # order -> continuation counts N1+(. x) (used below the top)

    def fit(self, seqs: list[np.ndarray]) -> "KneserNey":
        n = self.max_order
        stream, is_target = _padded_stream(seqs, n - 1)
        idx = np.flatnonzero(is_target)
        uniq: dict[int, np.ndarray] = {}
        for k in range(n, 0, -1):
            keys, counts = np.unique(_keys(stream, idx, k), return_counts=True)
            uniq[k] = keys
            self.raw[k] = _make_order(keys, counts)
            if k < n:
                # continuation count of a k-gram = number of distinct (k+1)-grams that end with it
                ckeys, ccounts = np.unique(uniq[k + 1] % (BASE ** k), return_counts=True)
                self.cont[k] = _make_order(ckeys, ccounts)
                del uniq[k + 1]
        return self

    def _level(self, k: int, order: int) -> _Order:
        return self.raw[k] if k == order else self.cont[k]

    def prob(self, contexts: np.ndarray, words: np.ndarray, order: int | None = None) -> np.ndarray:
        """P(word | context) for parallel arrays: ``contexts`` [N, order-1] (BOS-padded ids), ``words`` [N]."""
        order = order or self.max_order
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(words), -1)[:, -(order - 1):] if order > 1 \
            else np.zeros((len(words), 0), dtype=np.int64)
        words = np.asarray(words, dtype=np.int64)
        p = np.full(words.shape, 1.0 / V)
        for k in range(1, order + 1):
            lv = self._level(k, order)
            ctx_key = np.zeros(words.shape, dtype=np.int64)
            for j in range(k - 1):
                ctx_key = ctx_key * BASE + contexts[:, contexts.shape[1] - (k - 1) + j]
            c = _lookup(lv.keys, lv.counts, ctx_key * BASE + words)
            total = _lookup(lv.ctx_keys, lv.ctx_total, ctx_key)
            gnum = _lookup(lv.ctx_keys, lv.ctx_gamma_num, ctx_key)
            seen = total > 0
            safe_total = np.where(seen, total, 1.0)
            mixed = (np.maximum(c - lv.discounts[np.minimum(c, 3)], 0.0) + gnum * p) / safe_total
            p = np.where(seen, mixed, p)
        return p

    def _targets(self, seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        pad = self.max_order - 1
        stream, is_target = _padded_stream(seqs, max(pad, 1))
        idx = np.flatnonzero(is_target)
        width = max(pad, 1)
        ctx = np.stack([stream[idx - width + j] for j in range(width)], axis=1)
        return ctx, stream[idx]

    def target_nll(self, seqs: list[np.ndarray], order: int | None = None) -> float:
        ctx, targets = self._targets(seqs)
        return float(-np.log(self.prob(ctx, targets, order)).mean())

    def dist(self, contexts: np.ndarray, order: int | None = None) -> np.ndarray:
        """Full distributions [N, V] for ``contexts`` [N, >= order-1] (BOS-padded ids, most recent last)."""
        order = order or self.max_order
        contexts = np.asarray(contexts, dtype=np.int64)
        n = contexts.shape[0]
        words = np.arange(V, dtype=np.int64)
        p = np.full((n, V), 1.0 / V)
        for k in range(1, order + 1):
            lv = self._level(k, order)
            ctx_key = np.zeros(n, dtype=np.int64)
            for j in range(k - 1):
                ctx_key = ctx_key * BASE + contexts[:, contexts.shape[1] - (k - 1) + j]
            total = _lookup(lv.ctx_keys, lv.ctx_total, ctx_key)
            gnum = _lookup(lv.ctx_keys, lv.ctx_gamma_num, ctx_key)
            c = _lookup(lv.keys, lv.counts, (ctx_key[:, None] * BASE + words[None, :]).ravel()).reshape(n, V)
            seen = (total > 0)[:, None]
            mixed = (np.maximum(c - lv.discounts[np.minimum(c, 3)], 0.0) + gnum[:, None] * p) \
                / np.where(seen, total[:, None], 1.0)
            p = np.where(seen, mixed, p)
        return p

    def distributions(self, seqs: list[np.ndarray], order: int | None = None, chunk: int = 20000):
        """Yield (probabilities [n, V], targets [n]) chunks for every target, in tune order."""
        ctx, targets = self._targets(seqs)
        for a in range(0, targets.size, chunk):
            yield self.dist(ctx[a:a + chunk], order), targets[a:a + chunk]


def metrics_from_distributions(chunks) -> dict:
    """NLL (nats/step), accuracy, onset accuracy (targets that are ON) from (probs, targets) chunks."""
    nll = correct = onset_correct = n = n_onset = 0
    for probs, targets in chunks:
        rows = np.arange(targets.size)
        nll += float(-np.log(probs[rows, targets]).sum())
        hit = probs.argmax(axis=1) == targets
        onset = targets >= melody.PITCH_OFFSET
        correct += int(hit.sum())
        onset_correct += int((hit & onset).sum())
        n += targets.size
        n_onset += int(onset.sum())
    return {"nll": nll / n, "nll_per_note": nll / max(n_onset, 1), "acc": correct / n,
            "onset_acc": onset_correct / max(n_onset, 1), "steps": n, "onset_steps": n_onset}
