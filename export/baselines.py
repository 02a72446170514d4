"""Fit, tune (on valid) and score the n-gram baselines on exactly the targets the GRU is scored on.

For each family the choices that give the best *valid* NLL are kept: training data as is or in all 12
transpositions, add-k's ``k``, Kneser-Ney's order. Then test and valid metrics are computed with full
distributions (for accuracy). Returns plain dicts for the metadata and the results file.
"""

from __future__ import annotations

import time

import numpy as np

from export import ngram

ADD_K_GRID = (0.001, 0.01, 0.1, 0.5, 1.0)
KN_MAX_ORDER = 8  # keys are exact int64s in base 131, so 8 is the highest order this implementation counts


def tune_and_score(train: list[np.ndarray], valid: list[np.ndarray], test: list[np.ndarray], log=print) -> dict:
    """Returns {"bigram_addk": {...}, "kneser_ney": {...}}, each with config, tuning table, valid and test metrics."""
    out = {}
    t0 = time.perf_counter()
    best_bigram, best_kn = None, None
    tuning = {"bigram_addk": [], "kneser_ney": []}
    for augment in (False, True):
        data = ngram.transpositions(train) if augment else train
        for k in ADD_K_GRID:
            model = ngram.AddKBigram(k).fit(data)
            nll = model.target_nll(valid)
            tuning["bigram_addk"].append({"augment_12_keys": augment, "k": k, "valid_nll": nll})
            if best_bigram is None or nll < best_bigram[0]:
                best_bigram = (nll, model, {"augment_12_keys": augment, "k": k})
        kn = ngram.KneserNey(KN_MAX_ORDER).fit(data)
        for order in range(2, KN_MAX_ORDER + 1):
            nll = kn.target_nll(valid, order)
            tuning["kneser_ney"].append({"augment_12_keys": augment, "order": order, "valid_nll": nll})
            if best_kn is None or nll < best_kn[0]:
                best_kn = (nll, kn, {"augment_12_keys": augment, "order": order})
        log(f"baselines: fitted augment={augment} ({len(data)} sequences), {time.perf_counter() - t0:.0f} s")

    _, bigram, cfg = best_bigram
    out["bigram_addk"] = {
        "config": cfg, "tuning": tuning["bigram_addk"],
        "valid": ngram.metrics_from_distributions([bigram.distributions(valid)]),
        "test": ngram.metrics_from_distributions([bigram.distributions(test)]),
    }
    _, kn, cfg = best_kn
    out["kneser_ney"] = {
        "config": {**cfg, "smoothing": "interpolated modified Kneser-Ney (3 discounts per order), down to uniform"},
        "tuning": tuning["kneser_ney"],
        "valid": ngram.metrics_from_distributions(kn.distributions(valid, cfg["order"])),
        "test": ngram.metrics_from_distributions(kn.distributions(test, cfg["order"])),
    }
    log(f"baselines: scored in {time.perf_counter() - t0:.0f} s total")
    return out
