"""Data plumbing for the melody model: the by-tune split, training chunks with transposition, padded batches.

Everything random takes an explicit ``numpy.random.Generator`` so a seed fixes the whole training stream.
"""

from __future__ import annotations

import numpy as np
import torch

from liveperf.music import melody

SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
SHIFTS = tuple(range(-6, 6))  # transposition augmentation, semitones


def split_by_tune(num_tunes: int, seed: int, fractions=SPLIT_FRACTIONS) -> dict[str, np.ndarray]:
    """Indices of train / valid / test tunes: a seeded permutation of whole tunes (no tune in two splits)."""
    order = np.random.default_rng(seed).permutation(num_tunes)
    n_valid = int(round(fractions[1] * num_tunes))
    n_test = int(round(fractions[2] * num_tunes))
    return {
        "test": np.sort(order[:n_test]),
        "valid": np.sort(order[n_test:n_test + n_valid]),
        "train": np.sort(order[n_test + n_valid:]),
    }


def make_chunks(lengths: np.ndarray, window: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Cut every tune into training chunks ``(tune, start, end)``: inputs ``start..end-1``, targets one later.

    The first chunk of a tune has a random length in [window/2, window] so chunk borders move every epoch; each
    chunk starts from a zero state (as the runtime does when a performer starts a phrase mid-tune)."""
    chunks = []
    for tune, n in enumerate(lengths.tolist()):
        last = n - 1  # last input index with a target after it
        if last < 1:
            continue
        start, end = 0, int(rng.integers(window // 2, window + 1))
        while start < last:
            chunks.append((tune, start, min(end, last)))
            start, end = end, end + window
    return chunks


def _valid_shifts(seq: np.ndarray) -> list[int]:
    on = seq[seq >= melody.PITCH_OFFSET]
    if on.size == 0:
        return [0]
    lo, hi = int(on.min()) - melody.PITCH_OFFSET, int(on.max()) - melody.PITCH_OFFSET
    return [k for k in SHIFTS if 0 <= lo + k and hi + k < melody.NUM_PITCHES]


def tune_positions(n: int, meta) -> np.ndarray:
    """``pos`` inputs (``melody.position_codes``) of steps 0..n-1 of a tune whose ``meta`` is an
    ``export.corpus.TuneMeta`` (bar lines at ``meta.downbeat_step``); a tune with no time signature gets the
    ``OTHER_METER`` id with 4/4 bar positions."""
    steps = np.arange(n) - meta.downbeat_step
    meter = meta.meter if meta.meter_known else (1, 1)  # (1, 1) is no known meter: OTHER_METER
    bar = melody.steps_per_bar(meta.meter)
    return melody.meter_id(meter) * melody.MAX_BAR_STEPS + (steps % bar) % melody.MAX_BAR_STEPS


def _inputs(seg: np.ndarray, pos: np.ndarray, bar: int, n: int):
    """Rows for one sequence: inputs, targets, positions and lookback for ``n`` predicted steps of ``seg``."""
    return seg[:n], seg[1:n + 1], pos[:n], melody.lookback_tokens(seg[:n], bar)


def chunk_batches(tokens: list[np.ndarray], chunks, batch_size: int, rng: np.random.Generator,
                  augment: bool = True, metas=None):
    """Yield (inputs [B,T], pos [B,T], lookback [B,T,2], targets [B,T], mask [B,T]) torch tensors, batches in
    random order.

    Chunks of similar length share a batch (little padding); each chunk gets its own random transposition. The
    lookback sees only the chunk (a chunk starts from a zero state, as the runtime's model after a reset)."""
    order = sorted(range(len(chunks)), key=lambda i: (chunks[i][2] - chunks[i][1], i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for b in rng.permutation(len(batches)):
        members = [chunks[i] for i in batches[b]]
        width = max(e - s for _, s, e in members)
        x = np.zeros((len(members), width), dtype=np.int64)
        y = np.zeros_like(x)
        pos = np.zeros_like(x)
        back = np.zeros((len(members), width, 2), dtype=np.int64)
        mask = np.zeros(x.shape, dtype=bool)
        for r, (tune, s, e) in enumerate(members):
            seg = tokens[tune][s:e + 1].astype(np.int64)
            if augment:
                shifts = _valid_shifts(seg)
                seg = melody.transpose_tokens(seg, int(shifts[rng.integers(len(shifts))]))
            n = e - s
            meta = metas[tune]
            tp = tune_positions(len(tokens[tune]), meta)[s:e]
            x[r, :n], y[r, :n], pos[r, :n], back[r, :n] = _inputs(seg, tp, melody.steps_per_bar(meta.meter), n)
            mask[r, :n] = True
        yield (torch.from_numpy(x), torch.from_numpy(pos), torch.from_numpy(back), torch.from_numpy(y),
               torch.from_numpy(mask))


def tune_batches(tokens: list[np.ndarray], batch_size: int, metas=None):
    """Whole tunes (no augmentation), similar lengths together, for evaluation; yields the same tuple as above.

    Inputs are tokens 0..T-2, targets 1..T-1; each tune starts from a zero state."""
    order = sorted((i for i in range(len(tokens)) if len(tokens[i]) >= 2), key=lambda i: (len(tokens[i]), i))
    for a in range(0, len(order), batch_size):
        members = order[a:a + batch_size]
        width = max(len(tokens[i]) - 1 for i in members)
        x = np.zeros((len(members), width), dtype=np.int64)
        y = np.zeros_like(x)
        pos = np.zeros_like(x)
        back = np.zeros((len(members), width, 2), dtype=np.int64)
        mask = np.zeros(x.shape, dtype=bool)
        for r, i in enumerate(members):
            seq = tokens[i].astype(np.int64)
            n = len(seq) - 1
            meta = metas[i]
            x[r, :n], y[r, :n], pos[r, :n], back[r, :n] = _inputs(seq, tune_positions(len(seq), meta),
                                                                  melody.steps_per_bar(meta.meter), n)
            mask[r, :n] = True
        yield (torch.from_numpy(x), torch.from_numpy(pos), torch.from_numpy(back), torch.from_numpy(y),
               torch.from_numpy(mask))
